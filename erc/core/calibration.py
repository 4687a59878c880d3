"""Calibration of a classifier's probabilities: metrics, reliability diagram, temperature scaling.

Notation: ``n`` labelled examples, ``C`` classes, predicted distribution
``p_i`` (row of ``probs``), label ``y_i``, confidence ``c_i = max_k p_ik``,
prediction ``yhat_i = argmax_k p_ik``.

* Expected calibration error (Guo et al., 2017) over ``M`` equal-width bins
  ``B_b = {i : c_i in (b/M, (b+1)/M]}`` (bin 0 also takes ``c_i = 0``)::

      ECE = sum_b |B_b| / n * | acc(B_b) - conf(B_b) |
      acc(B_b)  = 1/|B_b| sum_{i in B_b} [yhat_i == y_i]
      conf(B_b) = 1/|B_b| sum_{i in B_b} c_i

* Maximum calibration error: ``MCE = max_{b : |B_b| > 0} |acc(B_b) - conf(B_b)|``.
* Negative log-likelihood: ``NLL = -1/n sum_i log p_{i, y_i}`` (probabilities
  clipped at 1e-12).
* Multi-class Brier score (Brier, 1950): ``BS = 1/n sum_i sum_k (p_ik - [k == y_i])^2``,
  in [0, 2].
* Temperature scaling: one scalar ``T > 0`` fitted on the validation split
  logits ``z`` by minimising ``NLL(softmax(z / T))`` over ``log T`` with
  L-BFGS; NLL is convex in ``1/T``, so the 1-D problem has one minimum. The
  fitted ``T`` is then applied to the test logits; argmax (hence accuracy
  and F1) does not change, only the confidences. ``T`` is kept in [0.01, 100];
  when the validation split is classified perfectly the NLL has no interior
  minimum (it falls as ``T -> 0``): the fit stops at a small ``T`` and a
  warning is logged.

Labels ``-1`` (unlabelled) are dropped before every metric.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from erc.core.io import write_json
from erc.core.plotting import pyplot, save_png

N_BINS = 15
_EPS = 1e-12


def _as_numpy(x: Any, dtype=np.float64) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def _check(probs: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate shapes, drop unlabelled rows; returns ``(probs (n, C), labels (n,))``."""
    p = _as_numpy(probs)
    y = _as_numpy(labels, dtype=np.int64).reshape(-1)
    if p.ndim != 2:
        raise ValueError(f"probs: expected a 2-D array (n, C), got shape {p.shape}")
    if p.shape[0] != y.shape[0]:
        raise ValueError(f"probs has {p.shape[0]} rows but labels has {y.shape[0]} entries")
    keep = y >= 0
    p, y = p[keep], y[keep]
    if y.size and y.max() >= p.shape[1]:
        raise ValueError(f"labels: expected class indices < {p.shape[1]}, got {int(y.max())}")
    return p, y


def softmax(logits: Any) -> np.ndarray:
    """Row-wise softmax in float64. Shapes: (n, C) -> (n, C)."""
    z = _as_numpy(logits)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@dataclass
class ReliabilityBins:
    """Per-bin statistics of :func:`reliability_bins` (arrays of length ``n_bins``)."""

    edges: np.ndarray        # (M + 1,) bin edges 0, 1/M, ..., 1
    count: np.ndarray        # (M,) examples per bin
    accuracy: np.ndarray     # (M,) acc(B_b), NaN for empty bins
    confidence: np.ndarray   # (M,) conf(B_b), NaN for empty bins
    n: int                   # labelled examples


def reliability_bins(probs: Any, labels: Any, n_bins: int = N_BINS) -> ReliabilityBins:
    """Bin examples by confidence into ``n_bins`` equal-width bins ``(b/M, (b+1)/M]``.

    Shapes: probs (n, C), labels (n,).
    """
    p, y = _check(probs, labels)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    count = np.zeros(n_bins, dtype=np.int64)
    acc = np.full(n_bins, np.nan)
    conf = np.full(n_bins, np.nan)
    if y.size:
        c = p.max(axis=1)
        correct = (p.argmax(axis=1) == y).astype(np.float64)
        # bin b holds (edges[b], edges[b+1]]; confidence 0 goes to bin 0
        # (same comparisons against the edges as the reference `lower < c <= upper`)
        idx = np.clip(np.searchsorted(edges, c, side="left") - 1, 0, n_bins - 1)
        count = np.bincount(idx, minlength=n_bins)
        nz = count > 0
        acc[nz] = np.bincount(idx, weights=correct, minlength=n_bins)[nz] / count[nz]
        conf[nz] = np.bincount(idx, weights=c, minlength=n_bins)[nz] / count[nz]
    return ReliabilityBins(edges=edges, count=count, accuracy=acc, confidence=conf, n=int(y.size))


def expected_calibration_error(probs: Any, labels: Any, n_bins: int = N_BINS) -> float:
    """ECE = sum_b |B_b|/n |acc(B_b) - conf(B_b)|. Shapes: probs (n, C), labels (n,)."""
    rb = reliability_bins(probs, labels, n_bins)
    if rb.n == 0:
        return float("nan")
    nz = rb.count > 0
    return float(np.sum(rb.count[nz] / rb.n * np.abs(rb.accuracy[nz] - rb.confidence[nz])))


def maximum_calibration_error(probs: Any, labels: Any, n_bins: int = N_BINS) -> float:
    """MCE = max over non-empty bins of |acc(B_b) - conf(B_b)|."""
    rb = reliability_bins(probs, labels, n_bins)
    nz = rb.count > 0
    if not nz.any():
        return float("nan")
    return float(np.max(np.abs(rb.accuracy[nz] - rb.confidence[nz])))


def negative_log_likelihood(probs: Any, labels: Any) -> float:
    """NLL = -mean_i log p_{i, y_i}."""
    p, y = _check(probs, labels)
    if y.size == 0:
        return float("nan")
    return float(-np.mean(np.log(np.clip(p[np.arange(y.size), y], _EPS, 1.0))))


def brier_score(probs: Any, labels: Any) -> float:
    """Multi-class Brier score: mean_i sum_k (p_ik - onehot(y_i)_k)^2, in [0, 2]."""
    p, y = _check(probs, labels)
    if y.size == 0:
        return float("nan")
    onehot = np.zeros_like(p)
    onehot[np.arange(y.size), y] = 1.0
    return float(np.mean(np.sum((p - onehot) ** 2, axis=1)))


def calibration_metrics(probs: Any, labels: Any, n_bins: int = N_BINS) -> dict[str, float]:
    """``{ece, mce, nll, brier, accuracy, confidence}`` for predicted probabilities.

    Shapes: probs (n, C) rows summing to 1, labels (n,) with -1 = unlabelled (dropped).
    """
    p, y = _check(probs, labels)
    return {
        "ece": expected_calibration_error(p, y, n_bins),
        "mce": maximum_calibration_error(p, y, n_bins),
        "nll": negative_log_likelihood(p, y),
        "brier": brier_score(p, y),
        "accuracy": float(np.mean(p.argmax(axis=1) == y)) if y.size else float("nan"),
        "confidence": float(np.mean(p.max(axis=1))) if y.size else float("nan"),
    }


def calibration_metrics_from_logits(logits: Any, labels: Any, temperature: float = 1.0,
                                    n_bins: int = N_BINS) -> dict[str, float]:
    """:func:`calibration_metrics` of ``softmax(logits / temperature)``."""
    return calibration_metrics(softmax(_as_numpy(logits) / float(temperature)), labels, n_bins)


def plot_reliability_diagram(probs: Any, labels: Any, path: str | Path, n_bins: int = N_BINS,
                             title: str | None = None) -> Path:
    """Write a reliability diagram PNG (accuracy per confidence bin vs the diagonal), atomically.

    Bars: acc(B_b) per bin; red gap bars: conf(B_b) - acc(B_b); lower panel:
    examples per bin. The title carries ECE and MCE.
    """
    plt = pyplot()
    rb = reliability_bins(probs, labels, n_bins)
    m = calibration_metrics(probs, labels, n_bins)
    centers = (rb.edges[:-1] + rb.edges[1:]) / 2
    width = 1.0 / n_bins
    acc = np.nan_to_num(rb.accuracy)
    conf = np.where(rb.count > 0, rb.confidence, centers)
    fig, (ax, axc) = plt.subplots(2, 1, figsize=(5, 6), sharex=True,
                                  gridspec_kw={"height_ratios": [3, 1]})
    ax.bar(centers, acc, width=width, edgecolor="black", color="#4c72b0", label="accuracy")
    gap = np.where(rb.count > 0, conf - acc, 0.0)
    ax.bar(centers, gap, bottom=acc, width=width, edgecolor="#c44e52", color="#c44e52",
           alpha=0.35, hatch="//", label="gap to confidence")
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.legend(loc="upper left", fontsize=8)
    head = f"{title}\n" if title else ""
    ax.set_title(f"{head}ECE {m['ece']:.4f}  MCE {m['mce']:.4f}  (n={rb.n}, {n_bins} bins)", fontsize=9)
    axc.bar(centers, rb.count, width=width, edgecolor="black", color="#8c8c8c")
    axc.set_xlabel("confidence (max probability)")
    axc.set_ylabel("count")
    fig.tight_layout()
    return save_png(fig, path, dpi=120, tight=False)


def fit_temperature(logits: Any, labels: Any, max_iter: int = 200,
                    bounds: tuple[float, float] = (1e-2, 1e2)) -> float:
    """Temperature ``T`` minimising validation NLL of ``softmax(logits / T)``.

    Optimises ``log T`` (starting at T = 1) with L-BFGS and a strong-Wolfe
    line search in float64; the result is clipped to ``bounds``.
    Shapes: logits (n, C), labels (n,) (-1 dropped).
    """
    z = torch.as_tensor(_as_numpy(logits), dtype=torch.float64)
    y = torch.as_tensor(_as_numpy(labels, dtype=np.int64).reshape(-1))
    if z.ndim != 2 or z.shape[0] != y.shape[0]:
        raise ValueError(f"fit_temperature: logits {tuple(z.shape)} and labels {tuple(y.shape)} disagree")
    keep = y >= 0
    z, y = z[keep], y[keep]
    if y.numel() == 0:
        raise ValueError("fit_temperature: no labelled examples to fit the temperature on")
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-10, tolerance_change=1e-12)
    lo, hi = math.log(bounds[0]), math.log(bounds[1])

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(z / log_t.clamp(lo, hi).exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    t = float(log_t.detach().clamp(lo, hi).exp())
    if not math.isfinite(t):
        raise FloatingPointError("fit_temperature: optimisation diverged")
    all_correct = bool((z.argmax(dim=1) == y).all())
    if all_correct or t <= bounds[0] * 1.001 or t >= bounds[1] / 1.001:
        # every validation example classified correctly: NLL keeps falling as T -> 0, no interior minimum
        logging.getLogger(__name__).warning(
            "fit_temperature: T=%.4g (bounds %s, validation all correct: %s): validation NLL has no interior "
            "minimum; the temperature-scaled test figures are not trustworthy", t, bounds, all_correct)
    return t


def temperature_scaling_report(val_logits: Any, val_labels: Any, test_logits: Any | None = None,
                               test_labels: Any | None = None, n_bins: int = N_BINS) -> dict[str, Any]:
    """Fit ``T`` on validation, report calibration before/after on validation (and test).

    Returns ``{"temperature": T, "val_before": {...}, "val_after": {...},
    "test_before": {...}, "test_after": {...}}`` (test keys only when test
    logits are given); each inner dict is :func:`calibration_metrics`.
    """
    t = fit_temperature(val_logits, val_labels)
    out: dict[str, Any] = {
        "temperature": t,
        "val_before": calibration_metrics_from_logits(val_logits, val_labels, 1.0, n_bins),
        "val_after": calibration_metrics_from_logits(val_logits, val_labels, t, n_bins),
    }
    if test_logits is not None:
        out["test_before"] = calibration_metrics_from_logits(test_logits, test_labels, 1.0, n_bins)
        out["test_after"] = calibration_metrics_from_logits(test_logits, test_labels, t, n_bins)
    return out


def flatten_report(report: dict[str, Any], sep: str = "_") -> dict[str, float]:
    """``{"val_before": {"ece": x}}`` -> ``{"val_before_ece": x}`` (for CSV rows / trackers)."""
    flat: dict[str, float] = {}
    for k, v in report.items():
        if isinstance(v, dict):
            for kk, vv in v.items():
                flat[f"{k}{sep}{kk}"] = vv
        else:
            flat[k] = v
    return flat


def calibration_from_records(records: Any, logits_key: str = "logits", label_key: str = "label",
                             n_bins: int = N_BINS) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """Stack per-dialogue evaluation records (``erc.data.dialogues.split_by_dialogue``) and measure calibration.

    Returns ``(logits (N, C), labels (N,), calibration_metrics(softmax(logits), labels))``
    so the trainer can keep the logits for temperature scaling and the diagram.
    """
    records = list(records)
    if not records:
        raise ValueError("calibration_from_records: no records")
    logits = np.concatenate([np.asarray(r[logits_key], dtype=np.float64) for r in records])
    labels = np.concatenate([np.asarray(r[label_key], dtype=np.int64) for r in records])
    return logits, labels, calibration_metrics(softmax(logits), labels, n_bins)


CALIBRATION_KEYS = ("ece", "mce", "nll", "brier")


def best_epoch_calibration(valid_logits: Any, valid_labels: Any, test_logits: Any, test_labels: Any,
                           out_dir: str | Path | None = None, n_bins: int = N_BINS) -> dict[str, Any]:
    """Calibration at the best validation epoch: test metrics, temperature scaling, diagrams.

    Fits ``T`` on the validation logits, reports validation and test
    calibration before/after, and (with ``out_dir``) writes
    ``calibration.json`` plus ``reliability_test.png`` (raw) and
    ``reliability_test_ts.png`` (temperature-scaled) there. Returns a flat
    dict: ``temperature``, ``test_{ece,mce,nll,brier}``,
    ``test_ts_{ece,mce,nll,brier}``, ``valid_ts_nll`` ...
    """
    rep = temperature_scaling_report(valid_logits, valid_labels, test_logits, test_labels, n_bins)
    flat: dict[str, Any] = {"temperature": rep["temperature"]}
    for split, before, after in (("test", "test_before", "test_after"), ("valid", "val_before", "val_after")):
        for k in CALIBRATION_KEYS:
            flat[f"{split}_{k}"] = rep[before][k]
            flat[f"{split}_ts_{k}"] = rep[after][k]
    if out_dir is not None:
        out_dir = Path(out_dir)
        write_json(out_dir / "calibration.json", {**rep, "n_bins": n_bins})
        t = rep["temperature"]
        plot_reliability_diagram(softmax(test_logits), test_labels, out_dir / "reliability_test.png", n_bins,
                                 title="test, best validation epoch")
        plot_reliability_diagram(softmax(_as_numpy(test_logits) / t), test_labels,
                                 out_dir / "reliability_test_ts.png", n_bins,
                                 title=f"test, temperature-scaled (T={t:.3f}, fitted on validation)")
    return flat
