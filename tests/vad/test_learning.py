"""V/A/D fine-tuning learns: checked on the files a run writes (train_log.csv, test_predictions.csv,
metrics.json), not on internals.

Predictions are clipped into 1-5 and metrics are finite whether or not the model learned, so the
check is against baselines: the training loss must fall, and on the test split each dimension's
CCC (computed here from the prediction file) must be high and its MSE well below that of the
best constant predictor, the test split's own mean (whose CCC is 0).
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from erc.core.config import resolve_config
from erc.vad.config import FinetuneConfig

DIMS = ("valence", "arousal", "dominance")


def _lin_ccc(p: np.ndarray, t: np.ndarray) -> float:
    return 2 * np.cov(p, t, bias=True)[0, 1] / (p.var() + t.var() + (p.mean() - t.mean()) ** 2)


def test_finetune_lowers_the_loss_and_beats_the_mean_predictor(tmp_path, tiny_encoder_dir):
    from erc.vad.train import run_finetune

    out = tmp_path / "run"
    # 40 synthetic dialogues: sessions 1-3 train, 4 validation, 5 test; the tiny encoder from scratch
    cfg = resolve_config(FinetuneConfig, dict(
        path="synthetic", synthetic_dialogues=40, model=str(tiny_encoder_dir), epochs=6, batch_size=16,
        lr=3.0e-3, num_threads=1, plots=False, output_dir=str(out)))
    run_finetune(cfg)

    log = pd.read_csv(out / "train_log.csv")
    assert log.epoch.tolist() == [1, 2, 3, 4, 5, 6]
    assert log.train_loss.iloc[-1] < 0.5 * log.train_loss.iloc[0]
    assert log.val_loss.min() < 0.5 * log.val_loss.iloc[0]

    pred = pd.read_csv(out / "test_predictions.csv")
    assert len(pred) >= 100
    metrics = json.loads((out / "metrics.json").read_text())
    cccs = []
    for d in DIMS:
        p, t = pred[f"pred_{d}"].to_numpy(), pred[f"true_{d}"].to_numpy()
        ccc, mse = _lin_ccc(p, t), float(((p - t) ** 2).mean())
        mse_mean = float(((t - t.mean()) ** 2).mean())          # the best constant predictor
        assert ccc > 0.6, (d, ccc)
        assert mse < 0.6 * mse_mean, (d, mse, mse_mean)
        assert metrics["test"][f"{d}_ccc"] == pytest.approx(ccc, abs=1e-6)
        cccs.append(ccc)
    assert metrics["test"]["ccc"] == pytest.approx(np.mean(cccs), abs=1e-6)
