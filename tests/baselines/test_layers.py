"""DialogueGCN's edge attention and the edge-weighted RGCNConv on literal small graphs with known answers."""
from __future__ import annotations

import math

import pytest
import torch
from torch_geometric.nn import RGCNConv

from erc.baselines.layers import EdgeAttention, EdgeWeightedRGCNConv, self_loop_weight

# 4 nodes; edges j -> i (row 0 = source, row 1 = target), self-loops included; node 3 has one incoming edge
EDGE_INDEX = torch.tensor([[0, 1, 0, 1, 2, 1, 2, 3],
                           [0, 0, 1, 1, 1, 2, 2, 3]])
EDGE_TYPE = torch.tensor([0, 2, 1, 0, 3, 2, 0, 0])


def test_attention_weights_are_the_softmax_over_each_window_by_hand():
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, -1.0]])
    att = EdgeAttention(2)
    with torch.no_grad():
        att.lin.weight.copy_(torch.tensor([[1.0, 2.0], [0.0, -1.0]]))       # W_e
        alpha = att(x, EDGE_INDEX)
    # score(j -> i) = g_i . (W_e g_j): W_e g_0 = (1, 0), W_e g_1 = (2, -1), W_e g_2 = (3, -1), W_e g_3 = (0, 1)
    # node 0 <- {0: 1, 1: 2}; node 1 <- {0: 0, 1: -1, 2: -1}; node 2 <- {1: 1, 2: 2}; node 3 <- {3: -1}
    windows = {0: [1.0, 2.0], 1: [0.0, -1.0, -1.0], 2: [1.0, 2.0], 3: [-1.0]}
    expected = []
    for scores in windows.values():                       # EDGE_INDEX is ordered by target, then source
        z = sum(math.exp(s) for s in scores)
        expected += [math.exp(s) / z for s in scores]
    torch.testing.assert_close(alpha, torch.tensor(expected))
    into = torch.zeros(4).index_add_(0, EDGE_INDEX[1], alpha)
    torch.testing.assert_close(into, torch.ones(4))


@pytest.mark.parametrize("num_bases", [None, 2, 6])     # relation matrices; bases mixed per edge; composed
def test_unit_weights_give_rgcnconv_with_the_same_parameters(num_bases):
    torch.manual_seed(0)
    plain = RGCNConv(3, 5, num_relations=4, num_bases=num_bases)
    weighted = EdgeWeightedRGCNConv(3, 5, num_relations=4, num_bases=num_bases)
    assert [n for n, _ in plain.named_parameters()] == [n for n, _ in weighted.named_parameters()]
    weighted.load_state_dict(plain.state_dict())
    x = torch.randn(4, 3)
    want = plain(x, EDGE_INDEX, EDGE_TYPE)
    torch.testing.assert_close(weighted(x, EDGE_INDEX, EDGE_TYPE), want)
    torch.testing.assert_close(weighted(x, EDGE_INDEX, EDGE_TYPE, edge_weight=torch.ones(8),
                                        root_weight=torch.ones(4)), want)


@pytest.mark.parametrize("num_bases", [None, 2, 6])
def test_weighted_messages_against_a_slow_reference(num_bases):
    torch.manual_seed(0)
    conv = EdgeWeightedRGCNConv(3, 5, num_relations=4, num_bases=num_bases)
    x, w, s = torch.randn(4, 3), torch.rand(8), torch.rand(4)
    out = conv(x, EDGE_INDEX, EDGE_TYPE, edge_weight=w, root_weight=s)
    w_r = conv.weight if num_bases is None else (conv.comp @ conv.weight.view(num_bases, -1)).view(4, 3, 5)
    for i in range(4):               # h_i = sum_r mean_{j in N_r(i)} w_ji W_r x_j + s_i W_0 x_i + b
        ref = s[i] * x[i] @ conv.root + conv.bias
        for r in range(4):
            into = [e for e in range(8) if EDGE_INDEX[1, e] == i and EDGE_TYPE[e] == r]
            for e in into:
                ref = ref + w[e] * x[EDGE_INDEX[0, e]] @ w_r[r] / len(into)
        torch.testing.assert_close(out[i], ref)


def test_gradients_reach_the_attention_and_self_loop_weights():
    torch.manual_seed(0)
    att, conv = EdgeAttention(3), EdgeWeightedRGCNConv(3, 5, num_relations=4, num_bases=2)
    x = torch.randn(4, 3)
    alpha = att(x, EDGE_INDEX)
    loop = self_loop_weight(alpha, EDGE_INDEX, 4)
    torch.testing.assert_close(loop, alpha[torch.tensor([0, 3, 6, 7])])    # the edges i -> i, in node order
    conv(x, EDGE_INDEX, EDGE_TYPE, edge_weight=alpha, root_weight=loop).square().sum().backward()
    assert att.lin.weight.grad is not None and att.lin.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("num_bases", [None, 2])
def test_gradients_match_rgcnconv(num_bases):
    """The single pass's backward is RGCNConv's: every parameter's and the input's gradient agree."""
    torch.manual_seed(0)
    plain = RGCNConv(3, 5, num_relations=4, num_bases=num_bases)
    fast = EdgeWeightedRGCNConv(3, 5, num_relations=4, num_bases=num_bases)
    fast.load_state_dict(plain.state_dict())
    x1 = torch.randn(4, 3, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_(True)
    plain(x1, EDGE_INDEX, EDGE_TYPE).pow(3).sum().backward()
    fast(x2, EDGE_INDEX, EDGE_TYPE).pow(3).sum().backward()
    torch.testing.assert_close(x2.grad, x1.grad)
    for (name, p), q in zip(plain.named_parameters(), fast.parameters()):
        torch.testing.assert_close(q.grad, p.grad, msg=name)
