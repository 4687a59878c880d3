"""The graph model's training step on a CUDA device, in float32 and under bfloat16 autocast.

Marked ``gpu``: deselected by default, skipped without CUDA (``python -m pytest -m gpu`` on a
GPU machine). The bf16 step is compared with the float32 step on the same batch and weights.
"""
from __future__ import annotations

import pandas as pd
import pytest
import torch

pytestmark = pytest.mark.gpu


def graph_step_bf16_vs_fp32(device: torch.device) -> dict:
    """One forward/backward of a small GraphSmile, float32 and bf16 autocast; then 5 bf16 AdamW steps."""
    from erc.data.config import DataConfig
    from erc.data.dialogues import load_splits, make_loader
    from erc.graph.losses import LossCombiner, task_losses
    from erc.graph.model import GraphModelConfig, GraphSmile

    torch.manual_seed(0)
    splits = load_splits(DataConfig(dataset="synthetic", synthetic_dialogues=12))
    mods = ("text", "audio", "visual")
    model = GraphSmile(GraphModelConfig(
        input_dims={m: int(splits.dims[m]) for m in mods}, num_classes=6, num_sentiments=3, hidden_dim=32,
        layers=[2, 2, 2], win_p=2, win_f=2, shift_win=3, dropout=0.0, batchnorm_modalities=["text"])).to(device)
    batch = next(iter(make_loader(splits.train, batch_size=4))).to(device)
    combiner = LossCombiner("emo_sen_sft")

    def step(bf16: bool):
        model.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = combiner(task_losses(model(batch), batch))
        loss.backward()
        return float(loss.detach()), {n: p.grad.detach().float().clone() for n, p in model.named_parameters()
                             if p.grad is not None}

    loss32, grad32 = step(False)
    loss16, grad16 = step(True)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(5):
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            loss = combiner(task_losses(model(batch), batch))
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    moved = [n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])]
    return dict(names=[n for n, _ in model.named_parameters()], loss32=loss32, loss16=loss16,
                grad32=grad32, grad16=grad16, losses=losses, moved=moved,
                dtypes={p.dtype for p in model.parameters()}, device=next(model.parameters()).device)


def check_bf16_step(r: dict) -> None:
    """bf16 agrees with float32 to bf16 precision; every parameter gets a finite gradient and moves."""
    assert set(r["grad32"]) == set(r["grad16"]) == set(r["names"])
    assert r["loss16"] == pytest.approx(r["loss32"], rel=2e-2)
    g32 = torch.cat([g.reshape(-1) for g in r["grad32"].values()])
    g16 = torch.cat([r["grad16"][n].reshape(-1) for n in r["grad32"]])
    assert torch.isfinite(g16).all()
    assert float(torch.nn.functional.cosine_similarity(g32, g16, dim=0)) > 0.99
    top = max(float(g.norm()) for g in r["grad32"].values())
    for n, g in r["grad32"].items():   # per tensor; bf16 keeps ~3 digits (CPU autocast: >= 0.977)
        if float(g.norm()) > 1e-3 * top:
            assert float(torch.nn.functional.cosine_similarity(g.reshape(-1), r["grad16"][n].reshape(-1),
                                                               dim=0)) > 0.95, n
    assert r["dtypes"] == {torch.float32}                   # autocast leaves the weights in float32
    assert r["losses"][-1] < r["losses"][0]
    assert sorted(r["moved"]) == sorted(r["names"])


def test_graph_step_under_bf16_autocast_on_cuda():
    r = graph_step_bf16_vs_fp32(torch.device("cuda"))
    assert r["device"].type == "cuda"
    check_bf16_step(r)


def test_train_graph_bf16_on_cuda(tmp_path):
    """``train-graph --mixed-precision bf16`` through Accelerate on the GPU: the loss falls, metrics are finite."""
    from erc.graph.config import GraphTrainConfig
    from erc.graph.train import run_train_graph

    torch.cuda.reset_peak_memory_stats()
    out = tmp_path / "bf16"
    res = run_train_graph(GraphTrainConfig(
        dataset="synthetic", synthetic_dialogues=40, hidden_dim=16, layers=[1, 1, 1], win_p=2, win_f=2,
        shift_win=3, batch_size=4, eval_batch_size=8, lr=1.0e-2, epochs=4, progress=False, valid_ratio=0.2,
        checkpoint=False, mixed_precision="bf16", output_dir=str(out)))
    assert torch.cuda.max_memory_allocated() > 0              # the run used the GPU
    hist = pd.read_csv(out / "epochs.csv")
    assert hist.loss.notna().all() and hist.loss.iloc[-1] < 0.7 * hist.loss.iloc[0]
    assert 0.0 <= res["test_weighted_f1_mean"] <= 1.0 and res["valid_weighted_f1_mean"] > 0.4
