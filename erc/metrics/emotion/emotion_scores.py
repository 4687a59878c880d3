"""Classification scores (numpy + scikit-learn): the computation behind the ``emotion`` evaluate module.

``emotion.py`` (the evaluate module, loaded by path) imports this file relatively, so
``evaluate.load`` copies it along; :mod:`erc.core.metrics` imports it directly, so training
processes compute the same numbers without importing ``evaluate``.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int], label_names: Sequence[str]) -> dict:
    """The dict described in ``_KWARGS_DESCRIPTION``."""
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
