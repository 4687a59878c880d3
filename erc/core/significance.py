"""Paired bootstrap over test dialogues: is method A's weighted F1 really above method B's?

The unit that is resampled is the **dialogue** (utterances of one dialogue are not independent:
they share speakers, topic and context), and the two methods are **paired**: each resample draws
one multiset of test dialogues and scores both methods on it. Several training seeds of a method
are **pooled**: a method's score on a resample is the weighted F1 of all its seeds' predictions on
the resampled dialogues, concatenated (so seed noise is part of what is compared, not averaged
away before the test).

With ``B`` resamples ``δ*_1 .. δ*_B`` of ``δ = wF1(A) - wF1(B)`` and the observed ``δ̂``:

* the 95 % interval is the 2.5th and 97.5th percentile of ``δ*`` (percentile bootstrap);
* the two-sided p-value is ``(1 + #{b : |δ*_b - δ̂| >= |δ̂|}) / (B + 1)``: the bootstrap
  distribution shifted to mean zero stands in for the null "no difference" (Efron & Tibshirani
  1993, §16.4; Berg-Kirkpatrick et al. 2012). Identical predictions give ``δ* = δ̂ = 0`` and
  p = 1; a difference that no resample comes near zero of gives p = 1 / (B + 1).

Each resample's F1 is computed from summed per-dialogue confusion matrices (one matrix product
for all resamples), which equals scikit-learn's ``f1_score(average="weighted")`` on the
concatenated utterances (a test checks it); the observed ``δ̂`` is scikit-learn's own.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

import numpy as np
from sklearn.metrics import f1_score


@dataclass
class Predictions:
    """One method's test predictions, seeds pooled: per utterance its dialogue, gold label and prediction.

    Rows of several seeds repeat the same utterances; ``dialogue`` is any hashable id.
    """

    dialogue: np.ndarray
    label: np.ndarray
    pred: np.ndarray

    @classmethod
    def from_rows(cls, dialogue: Sequence, label: Sequence[int], pred: Sequence[int]) -> "Predictions":
        d, y, p = np.asarray(dialogue).astype(str), np.asarray(label, dtype=np.int64), np.asarray(pred, dtype=np.int64)
        if not (len(d) == len(y) == len(p)):
            raise ValueError(f"predictions: {len(d)} dialogue ids, {len(y)} labels, {len(p)} predictions")
        return cls(d, y, p)

    def weighted_f1(self) -> float:
        return float(f1_score(self.label, self.pred, average="weighted", zero_division=0))


@dataclass
class BootstrapResult:
    """``delta`` = wF1(A) - wF1(B) on the test set; ``ci`` its 95 % percentile interval; ``p`` two-sided."""

    delta: float
    ci_low: float
    ci_high: float
    p_value: float
    resamples: int
    seed: int
    dialogues: int
    score_a: float
    score_b: float

    def to_dict(self) -> dict:
        return asdict(self)


def dialogue_confusions(pred: Predictions, dialogues: Sequence[str], num_classes: int) -> np.ndarray:
    """``(D, K*K)`` counts: row d is the flattened confusion matrix (true x predicted) of dialogue ``dialogues[d]``."""
    index = {d: i for i, d in enumerate(dialogues)}
    rows = np.array([index[d] for d in pred.dialogue], dtype=np.int64)
    cells = pred.label * num_classes + pred.pred
    out = np.zeros((len(dialogues), num_classes * num_classes), dtype=np.float64)
    np.add.at(out, (rows, cells), 1.0)
    return out


def weighted_f1_from_confusions(conf: np.ndarray, num_classes: int) -> np.ndarray:
    """Weighted F1 of each row of ``conf`` (``(..., K*K)`` flattened confusion matrices, rows = true).

    Per class ``F1_k = 2 TP_k / (support_k + predicted_k)`` (0 when both are 0), weighted by support:
    scikit-learn's ``average="weighted"`` with ``zero_division=0``.
    """
    c = conf.reshape(*conf.shape[:-1], num_classes, num_classes)
    tp = np.diagonal(c, axis1=-2, axis2=-1)
    support, predicted = c.sum(-1), c.sum(-2)
    denom = support + predicted
    f1 = np.divide(2.0 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    total = support.sum(-1)
    return np.divide((f1 * support).sum(-1), total, out=np.zeros_like(total), where=total > 0)


def _check_same_dialogues(a: Predictions, b: Predictions) -> list[str]:
    da, db = set(a.dialogue.tolist()), set(b.dialogue.tolist())
    if da != db:
        only_a, only_b = sorted(da - db)[:3], sorted(db - da)[:3]
        raise ValueError(f"paired bootstrap: the two methods were tested on different dialogues "
                         f"(only in A: {only_a}, only in B: {only_b}); pair runs on the same split")
    return sorted(da)


def paired_bootstrap(a: Predictions, b: Predictions, resamples: int = 10000, seed: int = 0,
                     num_classes: int | None = None, chunk: int = 2000) -> BootstrapResult:
    """Paired bootstrap over test dialogues of ``wF1(a) - wF1(b)``, seeds pooled (module docstring)."""
    if resamples < 1:
        raise ValueError(f"resamples: expected >= 1, got {resamples}")
    dialogues = _check_same_dialogues(a, b)
    k = int(num_classes or 1 + max(a.label.max(), a.pred.max(), b.label.max(), b.pred.max()))
    ca, cb = dialogue_confusions(a, dialogues, k), dialogue_confusions(b, dialogues, k)
    observed = a.weighted_f1() - b.weighted_f1()
    rng = np.random.default_rng(seed)
    n = len(dialogues)
    deltas = np.empty(resamples, dtype=np.float64)
    for start in range(0, resamples, chunk):
        m = min(chunk, resamples - start)
        picks = rng.integers(0, n, size=(m, n))
        counts = np.zeros((m, n), dtype=np.float64)       # how often each dialogue is drawn in each resample
        np.add.at(counts, (np.repeat(np.arange(m), n), picks.ravel()), 1.0)
        deltas[start:start + m] = (weighted_f1_from_confusions(counts @ ca, k)
                                   - weighted_f1_from_confusions(counts @ cb, k))
    lo, hi = np.percentile(deltas, [2.5, 97.5])
    # exact ties (identical predictions: every |δ* - δ̂| = 0 = |δ̂|) must count; float noise must not decide them
    extreme = np.abs(deltas - observed) >= abs(observed) - 1e-12
    p = (1.0 + float(extreme.sum())) / (resamples + 1.0)
    return BootstrapResult(delta=float(observed), ci_low=float(lo), ci_high=float(hi), p_value=min(p, 1.0),
                           resamples=int(resamples), seed=int(seed), dialogues=n,
                           score_a=a.weighted_f1(), score_b=b.weighted_f1())


def pooled_predictions(frames: Sequence[Mapping[str, Sequence]]) -> Predictions:
    """Concatenate per-seed prediction tables (``dialogue_id``, ``label``, ``pred`` columns) into one."""
    d, y, p = [], [], []
    for f in frames:
        d.extend(str(x) for x in f["dialogue_id"])
        y.extend(int(x) for x in f["label"])
        p.extend(int(x) for x in f["pred"])
    return Predictions.from_rows(d, y, p)
