"""erc.hrg.graph: windows, explicit edges of a hand-written dialogue, implicit selection, the GAT."""
from __future__ import annotations

import math

import pytest
import torch

from erc.hrg.graph import (GATBlock, HybridRelationalGraph, ImplicitEdgeScorer, build_edges, explicit_edges,
                           implicit_selection, pair_mask, window_grid)

# 5 turns, two speakers: A B A A B
SPEAKERS = torch.tensor([0, 1, 0, 0, 1])
POSITION = torch.arange(5)


def _edges_of(grid, edges, target: int) -> dict[tuple[int, int], tuple[int, ...]]:
    """{(source utterance, receiver utterance): flags} of the window of ``target``."""
    src, dst = edges.edge_index
    out = {}
    for s, d, attr in zip(src.tolist(), dst.tolist(), edges.edge_attr.tolist()):
        assert int(grid.window[s]) == int(grid.window[d])          # edges never leave their window
        if int(grid.window[d]) == target:
            out[(int(grid.node[s]), int(grid.node[d]))] = tuple(int(v) for v in attr[:4])
    return out


def test_window_grid_slots():
    grid = window_grid(POSITION, window=2)
    assert grid.index.tolist()[4] == [2, 3, 4] and grid.valid.tolist()[4] == [True, True, True]
    assert grid.valid.tolist()[0] == [False, False, True] and grid.index.tolist()[0][2] == 0
    assert grid.valid.tolist()[1] == [False, True, True] and grid.index.tolist()[1][1:] == [0, 1]
    assert grid.num_window_nodes == 1 + 2 + 3 + 3 + 3


def test_explicit_edges_of_a_hand_written_dialogue():
    grid = window_grid(POSITION, window=4)                       # the last turn sees the whole dialogue
    edges = build_edges(grid, explicit_edges(grid, SPEAKERS), None, "explicit")
    # flags: (self, previous, same_speaker, implicit)
    expected = {(0, 0): (1, 0, 0, 0), (1, 1): (1, 0, 0, 0), (2, 2): (1, 0, 0, 0), (3, 3): (1, 0, 0, 0),
                (4, 4): (1, 0, 0, 0),
                (0, 1): (0, 1, 0, 0), (1, 2): (0, 1, 0, 0), (2, 3): (0, 1, 1, 0), (3, 4): (0, 1, 0, 0),
                (0, 2): (0, 0, 1, 0), (0, 3): (0, 0, 1, 0), (1, 4): (0, 0, 1, 0)}
    assert _edges_of(grid, edges, 4) == expected
    # the window of turn 2 holds turns 0-2 only
    assert _edges_of(grid, edges, 2) == {k: v for k, v in expected.items() if max(k) <= 2}
    # window 2: turn 4 sees turns 2, 3, 4; the same-speaker edge 1 -> 4 is outside the window
    g2 = window_grid(POSITION, window=2)
    e2 = build_edges(g2, explicit_edges(g2, SPEAKERS), None, "explicit")
    assert _edges_of(g2, e2, 4) == {(2, 2): (1, 0, 0, 0), (3, 3): (1, 0, 0, 0), (4, 4): (1, 0, 0, 0),
                                    (2, 3): (0, 1, 1, 0), (3, 4): (0, 1, 0, 0)}
    # "self" mode keeps the self loops only
    es = build_edges(grid, explicit_edges(grid, SPEAKERS), None, "self")
    assert set(_edges_of(grid, es, 4)) == {(k, k) for k in range(5)}


def test_windows_never_cross_dialogues():
    position = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2])            # two dialogues: 5 and 3 turns
    speakers = torch.tensor([0, 1, 0, 0, 1, 0, 0, 1])
    dialogue = torch.tensor([0] * 5 + [1] * 3)
    grid = window_grid(position, window=8)
    assert (dialogue[grid.node] == dialogue[grid.window]).all()
    edges = build_edges(grid, explicit_edges(grid, speakers), None, "explicit")
    src, dst = edges.edge_index
    assert (dialogue[grid.node[src]] == dialogue[grid.node[dst]]).all()
    assert (grid.node[src] <= grid.node[dst]).all()                  # past -> present only


def test_implicit_selection_above_uniform_and_not_explicit():
    grid = window_grid(POSITION, window=4)
    explicit = explicit_edges(grid, SPEAKERS)
    pairs = pair_mask(grid)
    alpha = torch.zeros(5, 5, 5)
    alpha[4, 0, 1:] = torch.tensor([0.1, 0.2, 0.3, 0.4])          # window of turn 4, source slot 0 (turn 0)
    alpha[4, 1, 2:] = torch.tensor([0.5, 0.2, 0.3])               # source turn 1: threshold 1/3
    sel = implicit_selection(alpha, pairs, explicit)
    # turn 0: 0.3 (-> 3) and 0.4 (-> 4) exceed 1/4; 0 -> 3 is a same-speaker edge already, so only 0 -> 4
    # turn 1: 0.5 (-> 2) exceeds 1/3 but 1 -> 2 is the previous-turn edge: nothing
    assert sel[4].nonzero().tolist() == [[0, 4]]
    edges = build_edges(grid, explicit, alpha, "hybrid")
    got = _edges_of(grid, edges, 4)
    assert got[(0, 4)] == (0, 0, 0, 1)
    src, dst = edges.edge_index
    k = [i for i in range(src.numel()) if int(grid.window[dst[i]]) == 4 and int(grid.node[src[i]]) == 0
         and int(grid.node[dst[i]]) == 4][0]
    assert edges.edge_attr[k, 4].item() == pytest.approx(0.4)      # the soft weight travels with the edge


def test_scorer_is_a_softmax_over_later_nodes():
    torch.manual_seed(0)
    grid = window_grid(torch.arange(4), window=3)
    scorer = ImplicitEdgeScorer(6, 5)
    x = torch.randn(4, 4, 6)
    alpha = scorer(x, pair_mask(grid)).detach()
    n, a = 3, 1                                                      # window of turn 3, source slot 1
    with torch.no_grad():
        ref = [float(scorer.v(torch.tanh(scorer.source(x[n, a]) + scorer.receiver(x[n, b])))) for b in (2, 3)]
    z = [math.exp(r) for r in ref]
    assert alpha[n, a, 2:].tolist() == pytest.approx([z[0] / sum(z), z[1] / sum(z)], rel=1e-5)
    assert float(alpha[n, a, :2].abs().sum()) == 0.0 and float(alpha[n, 3].abs().sum()) == 0.0


def test_gat_uses_edges_and_the_scorer_gets_gradient():
    torch.manual_seed(0)
    grid = window_grid(POSITION, window=4)
    explicit = explicit_edges(grid, SPEAKERS)
    graph = HybridRelationalGraph(8, num_layers=1, heads=2, head_dim=4, scorer_dim=4)
    x = grid.to_grid(torch.randn(5, 8)[grid.node])
    full, edges = graph(x, grid, explicit, "hybrid")
    alone, _ = graph(x, grid, explicit, "self")
    last = grid.size - 1
    assert not torch.allclose(full[4, last], alone[4, last], atol=1e-4)     # the target's context matters
    # with self loops only a node ignores the others: changing turn 3 (its previous turn, slot 3 of turn 4's
    # window) leaves turn 4's output as it was; with the hybrid graph it changes it
    x2 = x.clone()
    x2[4, 3] += 1.0
    assert torch.allclose(graph(x2, grid, explicit, "self")[0][4, last], alone[4, last])
    assert not torch.allclose(graph(x2, grid, explicit, "hybrid")[0][4, last], full[4, last])
    assert bool(edges.edge_attr[:, 3].any())                                  # some implicit edge was kept
    full.sum().backward()
    for name, p in graph.scorer.named_parameters():
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, name


def test_gat_block_shapes_and_residual():
    block = GATBlock(8, heads=3, head_dim=4)
    x = torch.randn(4, 8)
    ei = torch.tensor([[0, 1, 2, 3], [0, 1, 2, 3]])
    out = block(x, ei, torch.zeros(4, 5))
    assert out.shape == (4, 8)
    rms = out.pow(2).mean(-1).sqrt()
    assert torch.allclose(rms, torch.ones(4), atol=1e-3)                      # RMSNorm output
