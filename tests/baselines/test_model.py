"""DialogueRNN one step against the GRU equations by hand; causality of the causal variants; shapes."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_geometric.nn import RGCNConv

from erc.baselines.model import (BaselineModelConfig, DialogueRNNCell, build_model, load_baseline_model,
                                 reverse_padded, save_baseline_model)
from erc.data.batch import Dialogue, collate_dialogues


def gru_by_hand(cell: torch.nn.GRUCell, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """r = s(W_ir x + b_ir + W_hr h + b_hr); z = s(W_iz x + b_iz + W_hz h + b_hz);
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn)); h' = (1 - z) * n + z * h."""
    w_ir, w_iz, w_in = cell.weight_ih.chunk(3, 0)
    w_hr, w_hz, w_hn = cell.weight_hh.chunk(3, 0)
    b_ir, b_iz, b_in = cell.bias_ih.chunk(3, 0)
    b_hr, b_hz, b_hn = cell.bias_hh.chunk(3, 0)
    r = torch.sigmoid(x @ w_ir.T + b_ir + h @ w_hr.T + b_hr)
    z = torch.sigmoid(x @ w_iz.T + b_iz + h @ w_hz.T + b_hz)
    n = torch.tanh(x @ w_in.T + b_in + r * (h @ w_hn.T + b_hn))
    return (1 - z) * n + z * h


def _step_inputs():
    g = torch.Generator().manual_seed(0)
    u = torch.randn(1, 3, generator=g)
    g_hist = torch.randn(1, 2, 4, generator=g)            # two earlier global states
    q = torch.randn(1, 2, 5, generator=g)                 # parties 0 and 1
    e = torch.randn(1, 2, generator=g)
    return u, g_hist, q, e


@pytest.mark.parametrize("listener_update", [False, True])
def test_dialoguernn_step_matches_the_equations(listener_update):
    torch.manual_seed(0)
    cell = DialogueRNNCell(d_m=3, d_g=4, d_p=5, d_e=2, listener_update=listener_update,
                           context_attention="general").eval()
    u, g_hist, q, e = _step_inputs()
    speaker = torch.tensor([1])
    with torch.no_grad():
        g_new, q_new, e_new = cell(u, speaker, g_hist, q, e)
        # global state: GRU_G([u ; q_speaker], g_{t-1})
        g_want = gru_by_hand(cell.g_cell, torch.cat([u, q[:, 1]], -1), g_hist[:, -1])
        # context: softmax_k(g_k . W u) over the earlier global states
        scores = torch.stack([g_hist[0, k] @ (cell.attn.weight @ u[0]) for k in range(2)])
        alpha = torch.exp(scores) / torch.exp(scores).sum()
        c = (alpha[:, None] * g_hist[0]).sum(0, keepdim=True)
        q1_want = gru_by_hand(cell.p_cell, torch.cat([u, c], -1), q[:, 1])
        e_want = gru_by_hand(cell.e_cell, q1_want, e)
    torch.testing.assert_close(g_new, g_want)
    torch.testing.assert_close(q_new[:, 1], q1_want)                # the speaker's state changes ...
    assert not torch.allclose(q_new[:, 1], q[:, 1])
    torch.testing.assert_close(e_new, e_want)
    if listener_update:                                              # ... the listener's by GRU_L([u ; q_s'])
        q0_want = gru_by_hand(cell.l_cell, torch.cat([u, q1_want], -1), q[:, 0])
        torch.testing.assert_close(q_new[:, 0], q0_want)
        assert not torch.allclose(q_new[:, 0], q[:, 0])
    else:                                                            # ... the listener's does not
        assert torch.equal(q_new[:, 0], q[:, 0])


def test_first_turn_has_zero_context_and_zero_global_history():
    torch.manual_seed(0)
    cell = DialogueRNNCell(3, 4, 5, 2).eval()
    u, _, q, e = _step_inputs()
    with torch.no_grad():
        g_new, q_new, _ = cell(u, torch.tensor([0]), None, q, e)
        g_want = gru_by_hand(cell.g_cell, torch.cat([u, q[:, 0]], -1), torch.zeros(1, 4))
        q0_want = gru_by_hand(cell.p_cell, torch.cat([u, torch.zeros(1, 4)], -1), q[:, 0])
    torch.testing.assert_close(g_new, g_want)
    torch.testing.assert_close(q_new[:, 0], q0_want)


def _dialogues(seed: int = 0, change_last: bool = False):
    rng = np.random.default_rng(seed)
    out = []
    for k, n in enumerate((5, 3)):
        x = rng.normal(size=(n, 6)).astype(np.float32)
        if change_last:
            x[-1] += 3.0
        out.append(Dialogue(f"d{k}", {"text": x}, labels=np.zeros(n, np.int64),
                            speakers=np.array([0, 1, 0, 0, 1][:n], np.int64)))
    return out


def _cfg(method: str, **kw) -> BaselineModelConfig:
    fields = dict(global_dim=8, party_dim=8, emotion_dim=8, hidden_dim=8, encoder_dim=8, graph_dim=8, num_bases=0,
                  win_p=2, win_f=1, mlp_dims=[8])
    return BaselineModelConfig(method=method, input_dim=6, num_classes=4, **{**fields, **kw})


@pytest.mark.parametrize("method,kw,causal", [
    ("dialoguernn", dict(bidirectional=False), True),
    ("dialoguernn", dict(bidirectional=True), False),
    ("dialoguegcn", dict(bidirectional=False, win_f=0), True),
    ("dialoguegcn", dict(bidirectional=False, win_f=0, edge_attention=True), True),
    ("dialoguegcn", dict(bidirectional=True), False),
    ("mlp", {}, True)])
def test_causal_models_never_read_a_later_turn(method, kw, causal):
    torch.manual_seed(0)
    cfg = _cfg(method, **kw)
    assert cfg.causal is causal
    model = build_model(cfg).eval()
    with torch.no_grad():
        a = model(collate_dialogues(_dialogues()))
        b = model(collate_dialogues(_dialogues(change_last=True)))       # only each dialogue's last turn differs
    assert a.shape == (8, 4)
    torch.testing.assert_close(a.exp().sum(-1), torch.ones(8))
    earlier = torch.tensor([1, 1, 1, 1, 0, 1, 1, 0], dtype=torch.bool)   # not the last turn of its dialogue
    if causal:
        torch.testing.assert_close(a[earlier], b[earlier])
    else:
        assert not torch.allclose(a[earlier], b[earlier])


def test_reverse_padded_reverses_each_dialogue_within_its_length():
    x = torch.tensor([[1, 2, 3], [4, 5, 0]])[:, :, None]
    r = reverse_padded(x, torch.tensor([3, 2]))
    assert r[:, :, 0].tolist() == [[3, 2, 1], [5, 4, 0]]
    assert torch.equal(reverse_padded(r, torch.tensor([3, 2])), x)


def test_save_and_load_give_the_same_outputs(tmp_path):
    torch.manual_seed(0)
    model = build_model(_cfg("dialoguegcn", bidirectional=True)).eval()
    save_baseline_model(model, tmp_path / "m", extra={"epoch": 3})
    loaded, meta = load_baseline_model(tmp_path / "m")
    batch = collate_dialogues(_dialogues())
    with torch.no_grad():
        torch.testing.assert_close(model(batch), loaded(batch))
    assert meta["epoch"] == 3 and meta["causal"] is False and meta["model"]["method"] == "dialoguegcn"


@pytest.mark.parametrize("method", ["dialoguernn", "dialoguegcn", "mlp"])
def test_padding_is_never_read_a_dialogue_alone_equals_it_in_a_batch(method):
    torch.manual_seed(0)
    model = build_model(_cfg(method, bidirectional=True)).eval()
    d = _dialogues()                                    # 5 and 3 turns: the short one is padded in the batch
    with torch.no_grad():
        both = model(collate_dialogues(d))
        alone = torch.cat([model(collate_dialogues([d[0]])), model(collate_dialogues([d[1]]))])
    torch.testing.assert_close(both, alone)


def test_edge_attention_off_builds_the_model_as_before_on_adds_only_w_e():
    torch.manual_seed(0)
    off = build_model(_cfg("dialoguegcn", bidirectional=True))
    torch.manual_seed(0)
    on = build_model(_cfg("dialoguegcn", bidirectional=True, edge_attention=True))
    assert off.edge_att is None and isinstance(off.rgcn, RGCNConv)
    extra = set(on.state_dict()) - set(off.state_dict())
    assert extra == {"edge_att.lin.weight"} and set(off.state_dict()) <= set(on.state_dict())
    for k, v in off.state_dict().items():         # W_e is built last: the shared parameters start the same
        torch.testing.assert_close(on.state_dict()[k], v)
    with torch.no_grad():
        batch = collate_dialogues(_dialogues())
        assert not torch.allclose(off.eval()(batch), on.eval()(batch))


def test_without_edge_attention_the_model_computes_what_torch_geometric_rgcnconv_does():
    """The single-pass relational conv in the model is a drop-in for PyG's RGCNConv (same state dict)."""
    torch.manual_seed(0)
    model = build_model(_cfg("dialoguegcn", bidirectional=True)).eval()
    batch = collate_dialogues(_dialogues())
    with torch.no_grad():
        fast = model(batch)
        plain = RGCNConv(model.rgcn.in_channels, model.rgcn.out_channels, model.rgcn.num_relations,
                         num_bases=model.rgcn.num_bases)
        plain.load_state_dict(model.rgcn.state_dict())
        model.rgcn = plain
        torch.testing.assert_close(model(batch), fast)
