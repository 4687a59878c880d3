"""Known-answer tests for graph/edges.py."""
from __future__ import annotations

import torch

from erc.graph.edges import (cross_modal_graph, num_distance_buckets, shift_labels, shift_pairs,
                         temporal_graph, window_pairs)


def _edge_set(g):
    return {(int(s), int(t), int(r)) for (s, t), r in zip(g.edge_index.T.tolist(), g.relation.tolist())}


def test_cross_modal_edges_of_4_utterance_dialogue_window_1_1_by_hand():
    # Nodes: text t0..t3 = 0..3, visual v0..v3 = 4..7. Buckets: j - i = -1, 0, +1 -> 0, 1, 2;
    # relation = bucket for "text receives from visual", 3 + bucket for "visual receives from text".
    g = cross_modal_graph(torch.tensor([0, 4]), win_p=1, win_f=1)
    expected = {
        # target t_i <- source v_j, relation = (j - i) + 1
        (4, 0, 1), (5, 0, 2),
        (4, 1, 0), (5, 1, 1), (6, 1, 2),
        (5, 2, 0), (6, 2, 1), (7, 2, 2),
        (6, 3, 0), (7, 3, 1),
        # target v_i <- source t_j, relation = 3 + (j - i) + 1
        (0, 4, 4), (1, 4, 5),
        (0, 5, 3), (1, 5, 4), (2, 5, 5),
        (1, 6, 3), (2, 6, 4), (3, 6, 5),
        (2, 7, 3), (3, 7, 4),
    }
    assert g.edge_index.shape == (2, 20)
    assert _edge_set(g) == expected
    assert g.num_nodes == 8 and g.num_relations == 6


def test_asymmetric_window_and_whole_dialogue():
    i, j, b = window_pairs(torch.tensor([0, 4]), win_p=0, win_f=2)
    assert sorted(zip(i.tolist(), j.tolist())) == [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (1, 3),
                                                  (2, 2), (2, 3), (3, 3)]
    assert b.tolist() == [(jj - ii) for ii, jj in zip(i.tolist(), j.tolist())]  # P = 0
    i, j, b = window_pairs(torch.tensor([0, 5]), win_p=-1, win_f=-1, max_distance=2)
    assert len(i) == 25                                           # every pair of the dialogue
    assert b.min() == 0 and b.max() == 4                          # distances clipped to [-2, 2]
    assert num_distance_buckets(-1, 3, max_distance=2) == 6


def test_no_edge_crosses_dialogues_in_a_batch():
    ptr = torch.tensor([0, 3, 10, 11, 16])
    n = int(ptr[-1])
    dialogue = torch.repeat_interleave(torch.arange(4), ptr[1:] - ptr[:-1])
    for win in ((1, 1), (3, 0), (-1, -1), (17, 17)):
        g = cross_modal_graph(ptr, *win)
        s, t = g.edge_index % n
        assert torch.equal(dialogue[s], dialogue[t])
        assert ((g.edge_index[0] < n) != (g.edge_index[1] < n)).all()     # bipartite across modalities
        tg = temporal_graph(ptr, *win)
        assert torch.equal(dialogue[tg.edge_index[0]], dialogue[tg.edge_index[1]])
    # whole-dialogue window: each dialogue is complete bipartite, nothing more
    g = cross_modal_graph(ptr, -1, -1)
    assert g.edge_index.shape[1] == 2 * sum(L * L for L in (3, 7, 1, 5))


def test_single_utterance_dialogue_has_its_own_edge():
    g = temporal_graph(torch.tensor([0, 1]), 2, 2)
    assert g.edge_index.tolist() == [[0], [0]]


def test_shift_pairs_and_labels_hand_made_dialogue():
    # one dialogue of 5 utterances with sentiments [neg, neg, pos, neu, ?], shift_win 3
    # blocks: positions {0,1,2} and {3,4}
    ptr = torch.tensor([0, 5])
    position = torch.arange(5)
    sentiments = torch.tensor([0, 0, 2, 1, -1])
    pairs = shift_pairs(ptr, position, 3)
    assert pairs.T.tolist() == [[0, 1], [0, 2], [1, 0], [1, 2], [2, 0], [2, 1], [3, 4], [4, 3]]
    assert shift_labels(sentiments, pairs).tolist() == [0, 1, 0, 1, 1, 1, -1, -1]


def test_shift_pairs_stay_inside_each_dialogue():
    # two dialogues of 2 and 3 utterances, shift_win 4: blocks are the whole dialogues
    ptr = torch.tensor([0, 2, 5])
    position = torch.tensor([0, 1, 0, 1, 2])
    pairs = shift_pairs(ptr, position, 4)
    assert pairs.T.tolist() == [[0, 1], [1, 0], [2, 3], [2, 4], [3, 2], [3, 4], [4, 2], [4, 3]]
