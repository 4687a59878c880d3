"""The masked negative log-likelihood the DialogueRNN / DialogueGCN framework trains with.

``L = - sum_i m_i w_{y_i} log p_i(y_i) / sum_i m_i w_{y_i}``: the (class-weighted) mean over the
utterances that are not padding, ``m_i = 1``. Without weights it is the plain mean over those
utterances. Padding and unlabelled utterances (target ``< 0``) take no part: not in the sum, not in
the denominator. A batch without one labelled utterance gives an exact 0 that still touches the
model's output (so multi-process gradient sync sees every parameter).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


def masked_nll(log_probs: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None,
               weight: torch.Tensor | None = None) -> torch.Tensor:
    """Class-weighted mean NLL over the positions with ``mask`` true and ``target >= 0``.

    Shapes: ``log_probs`` (..., C) log-probabilities; ``target`` (...) class index, ``< 0`` =
    ignore; ``mask`` (...) bool/0-1, None = every position with a target; ``weight`` (C,) or None.
    """
    c = log_probs.shape[-1]
    lp = log_probs.reshape(-1, c)
    y = target.reshape(-1).long()
    keep = y >= 0
    if mask is not None:
        keep = keep & mask.reshape(-1).bool()
    y0 = y.clamp(min=0)
    picked = -lp.gather(1, y0[:, None])[:, 0]                       # -log p_i(y_i)
    w = weight.to(lp.dtype)[y0] if weight is not None else torch.ones_like(picked)
    w = w * keep.to(lp.dtype)
    total = (picked * w).sum()
    denom = w.sum()
    if float(denom) == 0.0:
        return total * 0.0
    return total / denom


def inverse_frequency_weights(labels: Sequence[np.ndarray], num_classes: int) -> list[float]:
    """``1 / frequency`` of each class among the labelled training utterances (an absent class gets the
    largest weight of the present ones). Only the ratios matter: the loss is a weighted mean."""
    y = np.concatenate([np.asarray(a) for a in labels]) if len(labels) else np.zeros(0, np.int64)
    y = y[y >= 0]
    counts = np.bincount(y, minlength=num_classes)[:num_classes].astype(np.float64)
    if counts.sum() == 0:
        return [1.0] * num_classes
    freq = counts / counts.sum()
    w = np.where(freq > 0, 1.0 / np.maximum(freq, 1e-12), 0.0)
    w[freq == 0] = w.max() if (freq > 0).any() else 1.0
    return [float(v) for v in w]


__all__ = ["masked_nll", "inverse_frequency_weights"]
