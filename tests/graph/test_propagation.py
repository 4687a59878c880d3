"""The CSR propagation against the GCNConv (edgewise) path and against a float64 dense model written here.

* ``csr`` and ``edgewise`` give the same outputs and the same gradients for every parameter
  (relation weights included) on a batch of dialogues of different lengths, windows 1/1, 3/3
  and whole dialogue, for the temporal (one modality) and the cross-modal (pair) graphs.
* The whole ``GraphSmile`` forward equals a float64 reference whose adjacency is built here,
  utterance by utterance, from the window rule (not from ``erc.graph.edges``).
* Gradients reach every parameter; the sparse matmul's backward passes ``gradcheck``.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from erc.data.batch import Dialogue, collate_dialogues
from erc.graph.edges import cross_modal_graph
from erc.graph.layers import CSRLayout, RelationalGraphStack, csr_matmul
from erc.graph.model import GraphModelConfig, GraphSmile

LENGTHS = (5, 1, 9, 3, 7)          # several dialogues of different lengths, one of a single utterance


def _dialogues(dims: dict[str, int], lengths=LENGTHS, seed: int = 0) -> list[Dialogue]:
    rng = np.random.default_rng(seed)
    return [Dialogue(dialogue_id=f"d{k}", labels=rng.integers(0, 4, L), speakers=rng.integers(0, 2, L),
                     sentiments=rng.integers(0, 3, L),
                     features={m: rng.normal(size=(L, d)).astype(np.float32) for m, d in dims.items()})
            for k, L in enumerate(lengths)]


def _randomise(model: torch.nn.Module, seed: int) -> None:
    """Every parameter and BatchNorm statistic random (relation weights differ per relation)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in itertools.chain(model.named_parameters(), model.named_buffers()):
            if not p.is_floating_point():
                continue
            if name.endswith("running_var"):
                p.copy_(torch.rand(p.shape, generator=gen, dtype=p.dtype) + 0.5)
            else:
                p.copy_(0.5 * torch.randn(p.shape, generator=gen, dtype=p.dtype))


def _all_outputs_loss(out, seed: int = 1) -> torch.Tensor:
    """A fixed random linear function of every output, so every parameter is on the gradient path."""
    gen = torch.Generator().manual_seed(seed)
    total = 0.0
    for t in (out.emotion_logits, out.sentiment_logits, out.shift_logits):
        total = total + (t * torch.randn(t.shape, generator=gen, dtype=t.dtype)).sum()
    return total


def _forward_backward(model: GraphSmile, batch, propagation: str):
    model.set_propagation(propagation)
    model.zero_grad(set_to_none=True)
    out = model(batch)
    _all_outputs_loss(out).backward()
    return out, {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("window", [(1, 1), (3, 3), (-1, -1)])
@pytest.mark.parametrize("dims", [{"text": 6}, {"text": 6, "audio": 4}], ids=["temporal", "pair"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_csr_matches_gcnconv_outputs_and_gradients(window, dims, dtype):
    torch.manual_seed(0)
    cfg = GraphModelConfig(input_dims=dims, num_classes=4, hidden_dim=16, layers=[3], win_p=window[0],
                           win_f=window[1], max_distance=4, dropout=0.0, shift_win=3)
    model = GraphSmile(cfg).to(dtype).train()   # train mode: BatchNorm uses batch statistics, no dropout
    _randomise(model, seed=sum(window) + 10 * len(dims))
    batch = collate_dialogues(_dialogues(dims))
    ref_out, ref_grads = _forward_backward(model, batch, "edgewise")
    out, grads = _forward_backward(model, batch, "csr")
    for name in ("emotion_logits", "sentiment_logits", "shift_logits", "fused"):
        got, ref = getattr(out, name), getattr(ref_out, name)
        if dtype == torch.float64:
            assert torch.allclose(got, ref, rtol=1e-5, atol=1e-5), name
        else:   # float32 logits reach |60|: sums in another order differ by a few ulp of the largest value
            assert float((got - ref).abs().max()) <= 1e-5 * max(1.0, float(ref.abs().max())), name
    assert sorted(grads) == sorted(ref_grads) == sorted(k for k, _ in model.named_parameters())
    for name, g in ref_grads.items():
        if dtype == torch.float64:
            assert torch.allclose(grads[name], g, rtol=1e-5, atol=1e-5), name
        else:   # float32: a relation weight's gradient sums many edge terms of both signs; scale by the largest
            assert float((grads[name] - g).abs().max()) <= 1e-5 * max(1.0, float(g.abs().max())), name
    # the relation weights really are learned per relation: their gradients differ between relations
    rel = [k for k in grads if k.endswith("relation_weight")]
    assert rel and all(grads[k].unique().numel() > 1 for k in rel)


# ----------------------------------------------------------------------------- float64 dense reference
def _in_window(i: int, j: int, win_p: int, win_f: int) -> bool:
    return (win_p < 0 or j >= i - win_p) and (win_f < 0 or j <= i + win_f)


def _bucket(d: int, win_p: int, win_f: int, max_distance: int) -> int:
    P = max_distance if win_p < 0 else win_p
    F_ = max_distance if win_f < 0 else win_f
    return min(max(d, -P), F_) + P


def _dense_stack(stack, x, A):
    """x + sum_l LeakyReLU(branch_l(H_l)), H_l = A_hat (H_{l-1} W_l) + b_l, A_hat = D^-1/2 A D^-1/2 (rows)."""
    d = A.sum(1)
    dis = torch.where(d > 0, d.pow(-0.5), torch.zeros_like(d))
    A_hat = dis[:, None] * A * dis[None, :]
    h, out = x, x.clone()
    for conv, branch in zip(stack.convs, stack.branches):
        h = A_hat @ (h @ conv.lin.weight.T) + conv.bias
        out = out + F.leaky_relu(branch(h))
    return out


def _reference_forward(model: GraphSmile, dialogues: list[Dialogue]):
    """The whole model in float64, one dialogue at a time, adjacency from the window rule."""
    cfg = model.cfg
    wp, wf, md = cfg.win_p, cfg.win_f, cfg.max_distance
    nb = (md if wp < 0 else wp) + (md if wf < 0 else wf) + 1
    emo, sen, fused_all, shift = [], [], [], {}
    offset = 0
    for dlg in dialogues:
        L = len(dlg)
        h = {}
        for m in cfg.modalities:
            x = torch.from_numpy(dlg.features[m]).double()
            if m in model.norms:       # eval-mode BatchNorm: running statistics
                bn = model.norms[m]
                x = (x - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
            h[m] = F.leaky_relu(model.proj[m][0](x))
        reps = []
        if len(cfg.modalities) == 1:
            stack = model.graphs[cfg.modalities[0]]
            w = F.softplus(stack.relation_weight)
            A = torch.zeros(L, L, dtype=torch.float64)
            for i in range(L):              # row i receives from j
                for j in range(L):
                    if _in_window(i, j, wp, wf):
                        A[i, j] = w[_bucket(j - i, wp, wf, md)]
            reps.append(model.modal_fusion(_dense_stack(stack, h[cfg.modalities[0]], A)))
        else:
            for a, b in itertools.combinations(cfg.modalities, 2):
                stack = model.graphs[f"{a}_{b}"]
                w = F.softplus(stack.relation_weight)
                A = torch.zeros(2 * L, 2 * L, dtype=torch.float64)   # nodes: a_0..a_{L-1}, b_0..b_{L-1}
                for i in range(L):
                    for j in range(L):
                        if _in_window(i, j, wp, wf):
                            r = _bucket(j - i, wp, wf, md)
                            A[i, L + j] = w[r]              # a_i receives from b_j: direction 0
                            A[L + i, j] = w[nb + r]         # b_i receives from a_j: direction 1
                out = _dense_stack(stack, torch.cat([h[a], h[b]]), A)
                reps += [model.modal_fusion(out[:L]), model.modal_fusion(out[L:])]
        fused = torch.stack(reps).mean(0)
        fused_all.append(fused)
        emo.append(model.emotion_head(fused))
        sen.append(model.sentiment_head(fused))
        for i in range(L):              # shift pairs: distinct utterances in the same block of shift_win
            for j in range(L):
                if i != j and i // cfg.shift_win == j // cfg.shift_win:
                    shift[(offset + i, offset + j)] = model.shift_head(torch.cat([fused[i], fused[j]]))
        offset += L
    return torch.cat(emo), torch.cat(sen), torch.cat(fused_all), shift


@pytest.mark.parametrize("dims,window,layers,max_distance", [
    ({"text": 5, "visual": 4, "audio": 3}, (2, 1), [2, 1, 3], 32),
    ({"text": 5}, (-1, -1), [3], 2),          # whole dialogue, distances clipped to [-2, 2]
    ({"text": 5, "audio": 3}, (0, -1), [2], 3),
], ids=["three_modalities", "temporal_whole_clipped", "pair_future_only"])
def test_model_forward_equals_float64_dense_reference(dims, window, layers, max_distance):
    torch.manual_seed(0)
    cfg = GraphModelConfig(input_dims=dims, num_classes=4, hidden_dim=8, layers=layers, win_p=window[0],
                           win_f=window[1], max_distance=max_distance, dropout=0.0, shift_win=3)
    model = GraphSmile(cfg).double().eval()
    _randomise(model, seed=3)
    dialogues = _dialogues(dims, lengths=(4, 1, 6))
    with torch.no_grad():
        out = model(collate_dialogues(dialogues))
        emo, sen, fused, shift = _reference_forward(model, dialogues)
    assert torch.allclose(out.emotion_logits, emo, atol=1e-10)
    assert torch.allclose(out.sentiment_logits, sen, atol=1e-10)
    assert torch.allclose(out.fused, fused, atol=1e-10)
    pairs = [tuple(p) for p in out.shift_pairs.T.tolist()]
    assert sorted(pairs) == sorted(shift)
    assert torch.allclose(out.shift_logits, torch.stack([shift[p] for p in pairs]), atol=1e-10)


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    dims = {"text": 5, "visual": 4, "audio": 3}
    cfg = GraphModelConfig(input_dims=dims, num_classes=4, hidden_dim=8, layers=[2, 2, 2], win_p=2, win_f=2,
                           dropout=0.1, shift_win=3)
    model = GraphSmile(cfg).train()
    batch = collate_dialogues(_dialogues(dims, lengths=(4, 6, 3)))   # every distance -2..2 occurs
    _all_outputs_loss(model(batch)).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and bool((p.grad != 0).any()), name
    for stack in model.graphs.values():       # each relation (direction x distance) has its own gradient
        assert bool((stack.relation_weight.grad != 0).all())


# ----------------------------------------------------------------------------- the sparse operator itself
def test_csr_layout_of_a_literal_graph():
    # edges s -> t: 0->1, 0->2, 1->0, 2->2 ; A[t, s]
    edge_index = torch.tensor([[0, 0, 1, 2], [1, 2, 0, 2]])
    layout = CSRLayout.from_edges(edge_index, 3)
    values = torch.tensor([10.0, 20.0, 30.0, 40.0])[layout.order]   # edge order -> CSR order
    expected = torch.tensor([[0.0, 30.0, 0.0], [10.0, 0.0, 0.0], [20.0, 0.0, 40.0]])
    assert torch.equal(layout.matrix(values).to_dense(), expected)
    assert torch.equal(layout.transpose(values).to_dense(), expected.T)
    assert layout.crow.tolist() == [0, 1, 2, 4] and layout.num_edges == 4
    with pytest.raises(ValueError, match=r"outside \[0, 3\)"):
        CSRLayout.from_edges(torch.tensor([[0, 3], [1, 0]]), 3)


def test_csr_matmul_gradcheck_and_dense_product():
    g = cross_modal_graph(torch.tensor([0, 3, 5]), 1, 1)
    layout = CSRLayout.from_edges(g.edge_index, g.num_nodes)
    gen = torch.Generator().manual_seed(0)
    v = torch.rand(layout.num_edges, generator=gen, dtype=torch.float64, requires_grad=True)
    x = torch.randn(g.num_nodes, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    dense = torch.zeros(g.num_nodes, g.num_nodes, dtype=torch.float64)
    dense[layout.row, layout.col] = v.detach()
    assert torch.allclose(csr_matmul(v, x, layout), dense @ x, atol=1e-12)
    assert torch.autograd.gradcheck(lambda v, x: csr_matmul(v, x, layout), (v, x))


def test_inference_mode_and_identity_floor():
    torch.manual_seed(0)
    g = cross_modal_graph(torch.tensor([0, 4, 6]), 1, 1)
    stack = RelationalGraphStack(6, 2, g.num_relations).eval()
    x = torch.randn(g.num_nodes, 6)
    with torch.no_grad():
        ref = stack(x, g.edge_index, g.relation)
    with torch.inference_mode():
        assert torch.equal(stack(x, g.edge_index, g.relation), ref)
    stack.propagation = "identity"        # the bench's floor: no message passing at all
    h, floor = x, x
    for conv, branch in zip(stack.convs, stack.branches):
        h = h @ conv.lin.weight.T + conv.bias
        floor = floor + F.leaky_relu(branch(h))
    assert torch.allclose(stack(x, g.edge_index, g.relation), floor, atol=1e-6)


def test_bf16_autocast_computes_the_sparse_product_in_float32():
    torch.manual_seed(0)
    g = cross_modal_graph(torch.tensor([0, 5, 8]), 2, 2)
    stack = RelationalGraphStack(16, 2, g.num_relations).eval()
    x = torch.randn(g.num_nodes, 16)
    with torch.no_grad():
        ref = stack(x, g.edge_index, g.relation)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = stack(x, g.edge_index, g.relation)
    assert low.dtype == torch.float32     # residual sum stays in float32
    assert math.isclose(float((low - ref).abs().max()), 0.0, abs_tol=0.1)


def test_unknown_propagation_is_refused():
    with pytest.raises(ValueError, match="propagation: expected one of"):
        GraphSmile(GraphModelConfig(input_dims={"text": 4}, layers=[1], propagation="dense"))
