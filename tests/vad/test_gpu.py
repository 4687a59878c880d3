"""The V/A/D model's training step on a CUDA device, in float32 and under bfloat16 autocast.

Marked ``gpu``: deselected by default, skipped without CUDA (``python -m pytest -m gpu`` on a
GPU machine). The bf16 step is compared with the float32 step on the same batch and weights.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from tests.graph.test_gpu import check_bf16_step

pytestmark = pytest.mark.gpu
DIMS = ("valence", "arousal", "dominance")


def vad_step_bf16_vs_fp32(device: torch.device, encoder_dir, corpus) -> dict:
    """One forward/backward of a VADRegressor on the tiny encoder, float32 and bf16 autocast; then
    5 bf16 AdamW steps."""
    from erc.vad.model import VADRegressor

    torch.manual_seed(0)
    model = VADRegressor.from_encoder_name(str(encoder_dir), pooling="mean", dropout=0.0)
    rows = corpus.utterances.iloc[:16]
    targets = rows[list(DIMS)].to_numpy(np.float64)
    model.fit_scaler(corpus.utterances[list(DIMS)].to_numpy(np.float64))
    model.to(device).train()
    enc = model.tokenizer(rows["text"].tolist(), padding=True, return_tensors="pt").to(device)
    labels = torch.tensor(targets, dtype=torch.float32, device=device)
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]

    def step(bf16: bool):
        model.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = model(enc["input_ids"], enc["attention_mask"], labels=labels)["loss"]
        loss.backward()
        return float(loss.detach()), {n: p.grad.detach().float().clone() for n, p in params if p.grad is not None}

    loss32, grad32 = step(False)
    loss16, grad16 = step(True)
    # embedding rows of tokens absent from the batch get no gradient in either precision
    used = {n for n, g in grad32.items() if float(g.abs().max()) > 0}
    before = {n: p.detach().clone() for n, p in params}
    opt = torch.optim.AdamW([p for _, p in params], lr=3e-3, weight_decay=0.0)
    losses = []
    for _ in range(5):
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            loss = model(enc["input_ids"], enc["attention_mask"], labels=labels)["loss"]
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    moved = [n for n, p in params if n in used and not torch.equal(p.detach(), before[n])]
    return dict(names=sorted(used), loss32=loss32, loss16=loss16,
                grad32={n: grad32[n] for n in used}, grad16={n: grad16[n] for n in used if n in grad16},
                losses=losses, moved=moved, dtypes={p.dtype for _, p in params},
                device=next(model.parameters()).device)


def test_vad_step_under_bf16_autocast_on_cuda(tiny_encoder_dir, synthetic_corpus):
    r = vad_step_bf16_vs_fp32(torch.device("cuda"), tiny_encoder_dir, synthetic_corpus)
    assert r["device"].type == "cuda" and "head.weight" in r["names"]
    check_bf16_step(r)


def test_finetune_bf16_on_cuda(tmp_path, tiny_encoder_dir):
    """``finetune --mixed-precision bf16`` through Accelerate on the GPU: the loss falls and the test
    CCC (from the prediction file) is well above the mean predictor's 0."""
    from erc.core.config import resolve_config
    from erc.vad.config import FinetuneConfig
    from erc.vad.train import run_finetune

    torch.cuda.reset_peak_memory_stats()
    out = tmp_path / "bf16"
    run_finetune(resolve_config(FinetuneConfig, dict(
        data="synthetic", synthetic_dialogues=40, model=str(tiny_encoder_dir), epochs=6, batch_size=16,
        learning_rate=3.0e-3, plots=False, mixed_precision="bf16", output_dir=str(out))))
    assert torch.cuda.max_memory_allocated() > 0
    log = pd.read_csv(out / "train_log.csv")
    assert log.train_loss.iloc[-1] < 0.5 * log.train_loss.iloc[0]
    pred = pd.read_csv(out / "test_predictions.csv")
    for d in DIMS:
        p, t = pred[f"pred_{d}"].to_numpy(), pred[f"true_{d}"].to_numpy()
        ccc = 2 * np.cov(p, t, bias=True)[0, 1] / (p.var() + t.var() + (p.mean() - t.mean()) ** 2)
        assert ccc > 0.5, (d, ccc)
