"""Emotion (or any single-label) classification metrics as a Hugging Face ``evaluate`` module.

Accuracy, weighted and macro F1, per-class F1 and the confusion matrix, computed by
scikit-learn. Load it by path, no Hub needed::

    import evaluate
    emo = evaluate.load("erc/metrics/emotion")   # the folder holding this file
    emo.compute(predictions=[0, 1, 1], references=[0, 0, 1], label_names=["neutral", "happy"])

The file is self-contained (numpy, scikit-learn, datasets, evaluate).
``erc.core.metrics.classification_metrics`` computes through it.
"""
from __future__ import annotations

from typing import Sequence

import datasets
import evaluate
import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

_DESCRIPTION = """\
Single-label classification metrics over a fixed list of classes (every class counts, also one
that is never predicted or never present): accuracy, F1 averaged by class support (weighted) and
unweighted (macro), F1 per class (0 where undefined), and the confusion matrix (rows = true class,
columns = predicted class).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: predicted class ids (ints in [0, K)).
    references: true class ids.
    label_names: the K class names, in id order (default: "0".."K-1" with K = 1 + the largest id seen).
Returns:
    ``accuracy``, ``weighted_f1``, ``macro_f1`` (floats), ``per_class_f1`` ({name: float}),
    ``confusion_matrix`` (K x K list of ints), ``labels`` (the names) and ``n`` (number of examples).
Examples:
    >>> emo = evaluate.load("erc/metrics/emotion")
    >>> r = emo.compute(predictions=[0, 1, 1, 2], references=[0, 0, 1, 2], label_names=["a", "b", "c"])
    >>> r["accuracy"], r["confusion_matrix"]
    (0.75, [[1, 1, 0], [0, 1, 0], [0, 0, 1]])
"""

_CITATION = """\
@article{scikit-learn,
  title={Scikit-learn: Machine Learning in {P}ython},
  author={Pedregosa, F. and others},
  journal={Journal of Machine Learning Research}, volume={12}, pages={2825--2830}, year={2011}
}
"""


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


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Emotion(evaluate.Metric):
    """Accuracy, weighted/macro/per-class F1 and the confusion matrix (see the module docstring)."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("int64"),
                                        "references": datasets.Value("int64")}),
            reference_urls=["https://scikit-learn.org/stable/modules/model_evaluation.html"],
        )

    def _compute(self, predictions, references, label_names: Sequence[str] | None = None) -> dict:
        if label_names is None:
            k = 1 + max([int(v) for v in [*predictions, *references]], default=-1)
            label_names = [str(i) for i in range(k)]
        return classification_metrics(references, predictions, list(label_names))
