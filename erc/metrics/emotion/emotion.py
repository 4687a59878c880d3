"""Emotion (or any single-label) classification metrics as a Hugging Face ``evaluate`` module.

Accuracy, weighted and macro F1, per-class F1 and the confusion matrix, computed by
scikit-learn. Load it by path, no Hub needed::

    import evaluate
    emo = evaluate.load("erc/metrics/emotion")   # the folder holding this file
    emo.compute(predictions=[0, 1, 1], references=[0, 0, 1], label_names=["neutral", "happy"])

The folder is self-contained (this file and ``emotion_scores.py``, which holds the computation;
numpy, scikit-learn, datasets, evaluate). ``erc.core.metrics.classification_metrics`` calls the
same computation directly.
"""
from __future__ import annotations

from typing import Sequence

import datasets
import evaluate

from .emotion_scores import classification_metrics

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
