"""Metrics shared by every stage.

Regression (V/A/D): MSE, RMSE, MAE, Pearson r and Lin's concordance
correlation coefficient (CCC), overall and per dimension. Classification
(emotion, sentiment): accuracy, weighted/macro F1, per-class F1 and the
confusion matrix, all computed by scikit-learn.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score



def pearson_r(pred: np.ndarray, true: np.ndarray) -> float:
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


def regression_metrics(pred: np.ndarray, true: np.ndarray, names: Sequence[str]) -> dict[str, float]:
    """Flat dict: ``mse, rmse, mae`` overall and ``{name}_{metric}`` per column (``names``, one per
    column, e.g. :data:`erc.data.registry.VAD_NAMES`).

    Overall Pearson and CCC are the mean of the per-dimension values.
    """
    pred = np.asarray(pred, dtype=np.float64).reshape(len(pred), -1)
    true = np.asarray(true, dtype=np.float64).reshape(len(true), -1)
    if pred.shape != true.shape:
        raise ValueError(f"prediction shape {pred.shape} != target shape {true.shape}")
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


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int],
                           label_names: Sequence[str]) -> dict:
    """Accuracy, weighted and macro F1, per-class F1 and the confusion matrix (rows = true)."""
    labels = list(range(len(label_names)))
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    per_class = f1_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "weighted_f1": float(f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "per_class_f1": {name: float(v) for name, v in zip(label_names, per_class)},
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "labels": list(label_names),
        "n": int(len(y_true)),
    }
