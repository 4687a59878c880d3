"""Metrics shared by every stage: one implementation, also shipped as Hugging Face ``evaluate`` modules.

Two ``evaluate`` modules live inside the package (``erc/metrics/<name>/<name>.py``) and load by
path with ``evaluate.load`` (no Hub):

* ``vad_regression``: MSE, RMSE, MAE, Pearson r and Lin's concordance correlation
  coefficient (CCC), overall and per dimension;
* ``emotion``: accuracy, weighted/macro F1, per-class F1 and the confusion matrix
  (scikit-learn underneath).

Each module's computation sits in a sibling file (``<name>_scores.py``) that the module imports
relatively. The functions below call those same files directly, so the training loops, the
comparison and ``evaluate.load(str(metric_path("emotion")))`` give identical numbers, and a
training process does not import ``evaluate``: its import pulls in ``transformers.pipelines``
(about 100 MiB of resident memory and several seconds per process, measured for the graph
stage). :func:`load_metric` imports ``evaluate`` when someone asks for a module.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from erc.metrics.emotion.emotion_scores import classification_metrics as _classification_scores
from erc.metrics.vad_regression.vad_regression_scores import regression_metrics as _regression_scores

if TYPE_CHECKING:
    import evaluate

METRICS_DIR = Path(__file__).resolve().parents[1] / "metrics"
MODULES = ("vad_regression", "emotion")


def metric_path(name: str) -> Path:
    """Folder of one of this package's evaluate modules (``evaluate.load(str(path))`` loads it)."""
    if name not in MODULES:
        raise ValueError(f"unknown metric module {name!r}; expected one of {MODULES}")
    path = METRICS_DIR / name
    if not (path / f"{name}.py").is_file():
        raise FileNotFoundError(f"{path / (name + '.py')}: metric module missing from the installed package "
                                "(reinstall erc-toolkit; the modules are package data)")
    return path


@functools.cache
def load_metric(name: str) -> "evaluate.EvaluationModule":
    """The evaluate module ``name`` of this package, loaded by path once per process, in memory."""
    import evaluate   # imported here, not at module level: see the module docstring

    return evaluate.load(str(metric_path(name)), keep_in_memory=True)


def _columns(a) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return a.reshape(len(a), -1)


def regression_metrics(pred: np.ndarray, true: np.ndarray, names: Sequence[str]) -> dict[str, float]:
    """Flat dict: ``mse, rmse, mae`` overall and ``{name}_{metric}`` per column.

    Overall Pearson and CCC are the mean of the per-dimension values.
    """
    pred, true = _columns(pred), _columns(true)
    if pred.shape != true.shape:
        raise ValueError(f"prediction shape {pred.shape} != target shape {true.shape}")
    return _regression_scores(pred, true, list(names))


def pearson_r(pred: np.ndarray, true: np.ndarray) -> float:
    """Pearson's r of two 1-D arrays; NaN for fewer than 2 values or a constant array."""
    return regression_metrics(np.ravel(pred), np.ravel(true), names=["x"])["x_pearson"]


def ccc(pred: np.ndarray, true: np.ndarray) -> float:
    """Lin's concordance correlation: 2 cov / (var_p + var_t + (mean_p - mean_t)^2)."""
    return regression_metrics(np.ravel(pred), np.ravel(true), names=["x"])["x_ccc"]


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int],
                           label_names: Sequence[str]) -> dict:
    """Accuracy, weighted and macro F1, per-class F1 and the confusion matrix (rows = true)."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{len(y_true)} true labels but {len(y_pred)} predictions")
    return _classification_scores(y_true, y_pred, list(label_names))
