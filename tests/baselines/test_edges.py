"""DialogueGCN's relational graph: edges and relation types of hand-written dialogues."""
from __future__ import annotations

import torch

from erc.baselines.edges import FUTURE, PAST, dialogue_edges, num_relations


def _decode(etype: torch.Tensor, s: int) -> list[tuple[int, int, str]]:
    """relation id -> (source speaker, target speaker, past/future)."""
    out = []
    for r in etype.tolist():
        pair, direction = divmod(r, 2)
        out.append((pair // s, pair % s, "future" if direction == FUTURE else "past"))
    return out


def test_five_turn_two_speaker_dialogue_window_2_past_1_future():
    # turns 0..4 said by A B A A B; node i hears j with i-2 <= j <= i+1 (itself included)
    speakers = torch.tensor([0, 1, 0, 0, 1])
    edge_index, etype = dialogue_edges(torch.tensor([0, 5]), speakers, win_p=2, win_f=1, num_speakers=2)
    edges = list(zip(edge_index[0].tolist(), edge_index[1].tolist()))      # (source, target)
    assert edges == [(0, 0), (1, 0),
                     (0, 1), (1, 1), (2, 1),
                     (0, 2), (1, 2), (2, 2), (3, 2),
                     (1, 3), (2, 3), (3, 3), (4, 3),
                     (2, 4), (3, 4), (4, 4)]
    # relation = (source speaker, target speaker, source in the target's past (or itself) / future)
    assert _decode(etype, 2) == [(0, 0, "past"), (1, 0, "future"),
                                 (0, 1, "past"), (1, 1, "past"), (0, 1, "future"),
                                 (0, 0, "past"), (1, 0, "past"), (0, 0, "past"), (0, 0, "future"),
                                 (1, 0, "past"), (0, 0, "past"), (0, 0, "past"), (1, 0, "future"),
                                 (0, 1, "past"), (0, 1, "past"), (1, 1, "past")]
    # the ids themselves: (s_src * 2 + s_dst) * 2 + future
    assert etype.tolist() == [0, 5, 2, 6, 3, 0, 4, 0, 1, 4, 0, 0, 5, 2, 2, 6]
    assert num_relations(2) == 8 and PAST == 0


def test_batch_offsets_indices_and_no_edge_crosses_dialogues():
    speakers = torch.tensor([0, 1, 0, 0, 1, 1, 0, 2])             # dialogues of 5 and 3 turns
    ptr = torch.tensor([0, 5, 8])
    edge_index, etype = dialogue_edges(ptr, speakers, win_p=2, win_f=1, num_speakers=3)
    dialogue = torch.repeat_interleave(torch.arange(2), ptr[1:] - ptr[:-1])
    assert torch.equal(dialogue[edge_index[0]], dialogue[edge_index[1]])
    second = edge_index[:, dialogue[edge_index[1]] == 1] - 5
    # the 3-turn dialogue on its own: same edges, shifted by 5
    alone, alone_type = dialogue_edges(torch.tensor([0, 3]), speakers[5:], 2, 1, num_speakers=3)
    assert torch.equal(second, alone)
    assert torch.equal(etype[dialogue[edge_index[1]] == 1], alone_type)
    assert second.t().tolist() == [[0, 0], [1, 0], [0, 1], [1, 1], [2, 1], [0, 2], [1, 2], [2, 2]]


def test_whole_dialogue_and_causal_windows():
    speakers = torch.tensor([0, 1, 0, 1])
    full, _ = dialogue_edges(torch.tensor([0, 4]), speakers, win_p=-1, win_f=-1, num_speakers=2)
    assert full.shape[1] == 16                                    # every ordered pair, self loops included
    causal, ctype = dialogue_edges(torch.tensor([0, 4]), speakers, win_p=-1, win_f=0, num_speakers=2)
    assert causal.shape[1] == 10 and bool((causal[0] <= causal[1]).all())   # only past -> present
    assert bool((ctype % 2 == PAST).all())
