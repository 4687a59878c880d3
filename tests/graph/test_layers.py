"""Sparse normalised propagation vs a dense reference written here; relation weights; model shapes."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from erc.data.batch import Dialogue, collate_dialogues
from erc.graph.edges import cross_modal_graph
from erc.graph.layers import RelationalGraphStack, normalized_edge_weight
from erc.graph.model import GraphModelConfig, GraphSmile, load_graph_model, save_graph_model


def _dense_norm(edge_index, w, n):
    A = torch.zeros(n, n, dtype=torch.float64)
    for (s, t), we in zip(edge_index.T.tolist(), w.tolist()):
        A[t, s] += we                       # row = receiver
    d = A.sum(1)
    dis = torch.where(d > 0, d.pow(-0.5), torch.zeros_like(d))
    return dis[:, None] * A * dis[None, :]


def test_normalised_weights_match_dense_d_half_a_d_half():
    g = cross_modal_graph(torch.tensor([0, 3, 7]), 1, 2)
    w = torch.rand(g.edge_index.shape[1], dtype=torch.float64) + 0.1
    norm = normalized_edge_weight(g.edge_index, w, g.num_nodes)
    dense = _dense_norm(g.edge_index, w, g.num_nodes)
    sparse = torch.zeros_like(dense)
    sparse[g.edge_index[1], g.edge_index[0]] = norm
    assert torch.allclose(sparse, dense, atol=1e-12)


def test_stack_forward_equals_dense_reference():
    torch.manual_seed(0)
    g = cross_modal_graph(torch.tensor([0, 4, 9]), 2, 1)
    stack = RelationalGraphStack(channels=5, num_layers=3, num_relations=g.num_relations, dropout=0.0).double()
    with torch.no_grad():
        stack.relation_weight.normal_()
    stack.eval()
    x = torch.randn(g.num_nodes, 5, dtype=torch.float64)
    out = stack(x, g.edge_index, g.relation)
    w = torch.nn.functional.softplus(stack.relation_weight)[g.relation]
    A_hat = _dense_norm(g.edge_index, w, g.num_nodes)
    h, ref = x, x.clone()
    for conv, branch in zip(stack.convs, stack.branches):
        h = A_hat @ (h @ conv.lin.weight.T) + conv.bias
        ref = ref + torch.nn.functional.leaky_relu(branch(h))
    assert torch.allclose(out, ref, atol=1e-10)


def test_edge_weight_depends_on_relation_not_position():
    stack = RelationalGraphStack(4, 1, num_relations=3)
    with torch.no_grad():
        stack.relation_weight.copy_(torch.tensor([0.0, 1.0, 2.0]))
    rel = torch.tensor([2, 0, 1, 2, 2])
    w = stack.edge_weight(rel)
    assert torch.equal(w[0], w[3]) and torch.equal(w[3], w[4])
    assert torch.allclose(stack.edge_weight(rel.flip(0)), w.flip(0))


def _dialogues(n_dlg=3, seed=0, dims=None):
    dims = dims or {"text": 6, "visual": 4, "audio": 3}
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n_dlg):
        L = int(rng.integers(2, 7))
        out.append(Dialogue(dialogue_id=f"d{k}", labels=rng.integers(0, 4, L), speakers=rng.integers(0, 2, L),
                            sentiments=rng.integers(0, 3, L),
                            features={m: rng.normal(size=(L, d)).astype(np.float32) for m, d in dims.items()}))
    return out


def test_model_shapes_pairs_and_per_dialogue_independence(tmp_path):
    torch.manual_seed(0)
    dl = _dialogues()
    cfg = GraphModelConfig(input_dims={"text": 6, "visual": 4, "audio": 3}, num_classes=4, hidden_dim=8,
                           layers=[2, 1, 1], win_p=1, win_f=1, shift_win=3, dropout=0.0)
    model = GraphSmile(cfg).eval()
    batch = collate_dialogues(dl)
    out = model(batch)
    n = batch.num_nodes
    assert out.emotion_logits.shape == (n, 4) and out.sentiment_logits.shape == (n, 3)
    assert out.shift_logits.shape == (out.shift_pairs.shape[1], 2)
    assert sorted(out.modality_reps) == ["text_audio:audio", "text_audio:text", "text_visual:text",
                                         "text_visual:visual", "visual_audio:audio", "visual_audio:visual"]
    # eval mode: a dialogue's logits do not depend on the other dialogues in the batch
    alone = model(collate_dialogues(dl[1:2])).emotion_logits
    assert torch.allclose(out.emotion_logits[batch.ptr[1]:batch.ptr[2]], alone, atol=1e-5)
    save_graph_model(model, tmp_path / "m", extra={"label_names": list("abcd")})
    loaded, meta = load_graph_model(tmp_path / "m")
    assert torch.allclose(loaded(batch).emotion_logits, out.emotion_logits)
    assert meta["label_names"] == list("abcd")


def test_single_modality_uses_temporal_graph():
    dl = _dialogues(dims={"text": 5})
    model = GraphSmile(GraphModelConfig(input_dims={"text": 5}, num_classes=4, hidden_dim=8, layers=[2],
                                        win_p=-1, win_f=-1, shift_win=2)).eval()
    out = model(collate_dialogues(dl))
    assert list(out.modality_reps) == ["text"]
    assert out.emotion_logits.shape[0] == sum(len(d) for d in dl)


def test_layer_weights_are_drawn_as_gcnconv_draws_them():
    """Same names, shapes and numbers as GCNConv(c, c) from the same seed, and the RNG left in the same state."""
    from torch_geometric.nn import GCNConv

    from erc.graph.layers import GraphConvWeights

    torch.manual_seed(3)
    ref = GCNConv(6, 6, normalize=False, add_self_loops=False)
    after_ref = torch.rand(4)
    torch.manual_seed(3)
    ours = GraphConvWeights(6)
    after_ours = torch.rand(4)
    assert sorted(ours.state_dict()) == sorted(ref.state_dict()) == ["bias", "lin.weight"]
    assert torch.equal(ours.lin.weight, ref.lin.weight) and torch.equal(ours.bias, ref.bias)
    assert torch.equal(after_ours, after_ref)
    ours.load_state_dict(ref.state_dict())        # a saved GCNConv-built model loads as is


def test_normalised_weights_equal_torch_geometric_gcn_norm():
    from torch_geometric.nn.conv.gcn_conv import gcn_norm

    g = torch.Generator().manual_seed(0)
    edge_index = torch.randint(0, 7, (2, 30), generator=g)      # nodes 7..9 have no edges: degree 0
    w = torch.rand(30, generator=g, dtype=torch.float64) + 0.05
    _, expected = gcn_norm(edge_index, w, num_nodes=10, add_self_loops=False)
    assert torch.allclose(normalized_edge_weight(edge_index, w, 10), expected, atol=1e-14)


def test_row_normalisation_is_the_mean_over_in_neighbours():
    """norm=row on a hand graph: node 2 receives from 0 (w 1) and 1 (w 3): weights 1/4 and 3/4."""
    edge_index = torch.tensor([[0, 1, 2, 0], [2, 2, 2, 1]])       # source -> target
    w = torch.tensor([1.0, 3.0, 4.0, 2.0], dtype=torch.float64)
    got = normalized_edge_weight(edge_index, w, 3, "row")
    assert torch.allclose(got, torch.tensor([1 / 8, 3 / 8, 4 / 8, 1.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="norm: expected one of"):
        normalized_edge_weight(edge_index, w, 3, "col")


def test_a_model_saved_before_the_norm_field_loads_as_sym(tmp_path):
    from erc.core.io import read_json, write_json
    from erc.graph.model import GraphModelConfig, GraphSmile, load_graph_model, save_graph_model

    model = GraphSmile(GraphModelConfig(input_dims={"text": 4}, hidden_dim=8, layers=[1], win_p=2, win_f=0))
    save_graph_model(model, tmp_path)
    meta = read_json(tmp_path / "model_config.json")
    del meta["model"]["norm"]
    write_json(tmp_path / "model_config.json", meta)
    loaded, _ = load_graph_model(tmp_path)
    assert loaded.cfg.norm == "sym" and loaded.graphs["text"].norm == "sym"


def test_recomputed_graph_stacks_run_twice_and_give_the_same_gradients():
    """recompute_graphs: each stack's forward runs again in the backward, with the same dropout masks."""
    batch = collate_dialogues(_dialogues())
    cfg = GraphModelConfig(input_dims={"text": 6, "visual": 4, "audio": 3}, num_classes=4, hidden_dim=8,
                           layers=[2, 1, 1], win_p=1, win_f=1, shift_win=3, dropout=0.5)
    grads, calls = {}, {}
    for recompute in (False, True):
        torch.manual_seed(0)
        model = GraphSmile(cfg).train()
        model.recompute_graphs = recompute
        calls[recompute] = []
        for key, stack in model.graphs.items():
            stack.register_forward_pre_hook(lambda mod, inp, key=key: calls[recompute].append(key))
        torch.manual_seed(1)
        out = model(batch)
        (out.emotion_logits.square().sum() + out.sentiment_logits.square().sum() + out.shift_logits.sum()).backward()
        grads[recompute] = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert sorted(calls[False]) == sorted(model.graphs) and sorted(calls[True]) == sorted(list(model.graphs) * 2)
    assert grads[True].keys() == grads[False].keys() and len(grads[False]) == len(list(model.parameters()))
    for name, g in grads[False].items():
        assert torch.equal(grads[True][name], g), name
