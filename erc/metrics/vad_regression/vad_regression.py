"""V/A/D regression metrics as a Hugging Face ``evaluate`` module: MSE, RMSE, MAE, Pearson r and CCC.

Load it by path, no Hub needed::

    import evaluate
    vad = evaluate.load("erc/metrics/vad_regression")   # the folder holding this file
    vad.compute(predictions=[[3.1, 2.0, 2.9], ...], references=[[3.0, 2.5, 3.0], ...])

The folder is self-contained (this file and ``vad_regression_scores.py``, which holds the
computation; numpy, datasets, evaluate): copy the folder anywhere, or push it to the Hub as a
metric Space. ``erc.core.metrics.regression_metrics`` calls the same computation directly.
"""
from __future__ import annotations

from typing import Sequence

import datasets
import evaluate
import numpy as np

from .vad_regression_scores import VAD_NAMES, regression_metrics

_DESCRIPTION = """\
Regression metrics for dimensional emotion (Valence, Arousal, Dominance or any set of columns).
For every column: mean squared error (MSE), its root (RMSE), mean absolute error (MAE), Pearson's r
and Lin's concordance correlation coefficient
CCC = 2 cov(p, t) / (var(p) + var(t) + (mean(p) - mean(t))^2) (population moments).
Overall MSE/RMSE/MAE pool all cells; overall Pearson r and CCC are the mean of the per-column values
(columns where they are undefined, e.g. a constant column, are left out of the mean).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: one row per example: a list of K floats (or one float when K = 1).
    references: the gold values, same shape as predictions.
    names: the K column names (default: valence, arousal, dominance; K = 1 defaults to "value").
Returns:
    A flat dict of floats: ``mse, rmse, mae, pearson, ccc`` and ``{name}_{mse,rmse,mae,pearson,ccc}``
    per column. Pearson r and CCC are NaN where undefined (fewer than 2 rows, or zero variance).
Examples:
    >>> vad = evaluate.load("erc/metrics/vad_regression")
    >>> r = vad.compute(predictions=[[1.0, 2.0, 3.0], [2.0, 3.0, 4.0]], references=[[1.0, 2.0, 3.0], [2.0, 4.0, 4.0]])
    >>> r["arousal_mse"], r["mse"]
    (0.5, 0.16666666666666666)
"""

_CITATION = """\
@article{lin1989concordance,
  title={A concordance correlation coefficient to evaluate reproducibility},
  author={Lin, Lawrence I-Kuei},
  journal={Biometrics}, volume={45}, number={1}, pages={255--268}, year={1989}
}
"""

@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class VadRegression(evaluate.Metric):
    """Per-column MSE, RMSE, MAE, Pearson r and CCC (see the module docstring)."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            # float64 end to end: the arrow round trip must not round the inputs
            features=[
                datasets.Features({"predictions": datasets.Sequence(datasets.Value("float64")),
                                   "references": datasets.Sequence(datasets.Value("float64"))}),
                datasets.Features({"predictions": datasets.Value("float64"),
                                   "references": datasets.Value("float64")}),
            ],
            reference_urls=["https://en.wikipedia.org/wiki/Concordance_correlation_coefficient"],
        )

    def _compute(self, predictions, references, names: Sequence[str] | None = None) -> dict[str, float]:
        pred = np.asarray(predictions, dtype=np.float64)
        if names is None:
            names = ["value"] if pred.ndim == 1 or pred.shape[1] == 1 else list(VAD_NAMES)
        return regression_metrics(pred, np.asarray(references, dtype=np.float64), names)
