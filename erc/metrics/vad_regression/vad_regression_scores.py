"""V/A/D regression scores (numpy only): the computation behind the ``vad_regression`` evaluate module.

``vad_regression.py`` (the evaluate module, loaded by path) imports this file relatively, so
``evaluate.load`` copies it along; :mod:`erc.core.metrics` imports it directly, so training
processes compute the same numbers without importing ``evaluate`` (whose import pulls in
``transformers.pipelines``: about 100 MiB and several seconds per process).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

VAD_NAMES = ("valence", "arousal", "dominance")


def pearson_r(pred: np.ndarray, true: np.ndarray) -> float:
    """Pearson's r of two 1-D arrays; NaN for fewer than 2 values or a constant array."""
    pred, true = np.asarray(pred, dtype=np.float64), np.asarray(true, dtype=np.float64)
    if pred.size < 2 or pred.std() == 0 or true.std() == 0:
        return float("nan")
    return float(np.corrcoef(pred, true)[0, 1])


def ccc(pred: np.ndarray, true: np.ndarray) -> float:
    """Lin's concordance correlation: 2 cov / (var_p + var_t + (mean_p - mean_t)^2)."""
    pred, true = np.asarray(pred, dtype=np.float64), np.asarray(true, dtype=np.float64)
    if pred.size < 2:
        return float("nan")
    mp, mt = pred.mean(), true.mean()
    cov = ((pred - mp) * (true - mt)).mean()
    denom = pred.var() + true.var() + (mp - mt) ** 2
    return float(2 * cov / denom) if denom > 0 else float("nan")


def regression_metrics(pred: np.ndarray, true: np.ndarray, names: Sequence[str] = VAD_NAMES) -> dict[str, float]:
    """The flat dict described in ``_KWARGS_DESCRIPTION`` for ``(n, K)`` arrays."""
    pred = np.asarray(pred, dtype=np.float64).reshape(len(pred), -1)
    true = np.asarray(true, dtype=np.float64).reshape(len(true), -1)
    if pred.shape != true.shape:
        raise ValueError(f"prediction shape {pred.shape} != target shape {true.shape}")
    names = list(names)
    if len(names) != pred.shape[1]:
        raise ValueError(f"names: {len(names)} name(s) {names} for {pred.shape[1]} column(s)")
    err = pred - true
    out: dict[str, float] = {
        "mse": float((err ** 2).mean()),
        "rmse": float(np.sqrt((err ** 2).mean())),
        "mae": float(np.abs(err).mean()),
    }
    rs, cs = [], []
    for j, name in enumerate(names):
        e = err[:, j]
        out[f"{name}_mse"] = float((e ** 2).mean())
        out[f"{name}_rmse"] = float(np.sqrt((e ** 2).mean()))
        out[f"{name}_mae"] = float(np.abs(e).mean())
        out[f"{name}_pearson"] = r = pearson_r(pred[:, j], true[:, j])
        out[f"{name}_ccc"] = c = ccc(pred[:, j], true[:, j])
        rs.append(r)
        cs.append(c)
    out["pearson"] = float(np.nanmean(rs)) if not all(np.isnan(rs)) else float("nan")
    out["ccc"] = float(np.nanmean(cs)) if not all(np.isnan(cs)) else float("nan")
    return out
