"""Task losses of the graph model and the three ways GraphSmile combines them.

* ``emo_sen_sft``: ``lambda_emo * L_emo + lambda_sen * L_sen + lambda_shift * L_shift``.
* ``epoch``: with ``a = (epoch + 1) / epochs``, ``lambda_emo * L_emo * a +
  (lambda_sen * L_sen + lambda_shift * L_shift) * (1 - a)``: the weight moves
  from the auxiliary tasks to emotion over training.
* ``auto``: learned uncertainty weighting (Kendall et al., 2018, in the
  reference's form) ``sum_k 0.5 / s_k^2 * L_k + log(1 + s_k^2)``; the ``s_k`` are
  parameters of :class:`LossCombiner` (optimised and checkpointed with it).

Targets ``< 0`` are ignored. A loss over zero valid targets is an exact 0
that still touches the head (so multi-process gradient sync sees every parameter).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from erc.graph.edges import shift_labels

LOSS_MODES = ("emo_sen_sft", "epoch", "auto")
TASKS = ("emo", "sen", "sft")


def masked_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over targets >= 0 (0 when there are none)."""
    valid = target >= 0
    ce = F.cross_entropy(logits, target.clamp(min=0), reduction="none")
    return (ce * valid).sum() / valid.sum().clamp(min=1)


def task_losses(out, batch) -> dict[str, torch.Tensor]:
    """``{'emo', 'sen', 'sft'}`` losses of a :class:`erc.graph.model.GraphOutput` on its batch."""
    return {
        "emo": masked_cross_entropy(out.emotion_logits, batch.labels),
        "sen": masked_cross_entropy(out.sentiment_logits, batch.sentiments),
        "sft": masked_cross_entropy(out.shift_logits, shift_labels(batch.sentiments, out.shift_pairs)),
    }


class LossCombiner(nn.Module):
    """Combine the task losses by ``mode`` (see module docstring)."""

    def __init__(self, mode: str = "emo_sen_sft", lambdas: tuple[float, float, float] = (1.0, 1.0, 1.0),
                 epochs: int = 1):
        super().__init__()
        if mode not in LOSS_MODES:
            raise ValueError(f"loss mode: expected one of {LOSS_MODES}, got {mode!r}")
        self.mode, self.lambdas, self.epochs = mode, tuple(float(x) for x in lambdas), max(int(epochs), 1)
        if mode == "auto":
            self.sigma = nn.Parameter(torch.ones(len(TASKS)))

    def emotion_share(self, epoch: int) -> float:
        return min(max((epoch + 1) / self.epochs, 0.0), 1.0)

    def forward(self, losses: dict[str, torch.Tensor], epoch: int = 0) -> torch.Tensor:
        le, ls, lf = self.lambdas
        if self.mode == "emo_sen_sft":
            return le * losses["emo"] + ls * losses["sen"] + lf * losses["sft"]
        if self.mode == "epoch":
            a = self.emotion_share(epoch)
            return le * losses["emo"] * a + (ls * losses["sen"] + lf * losses["sft"]) * (1.0 - a)
        total = losses["emo"].new_zeros(())
        for k, name in enumerate(TASKS):
            s2 = self.sigma[k] ** 2
            total = total + 0.5 / s2 * losses[name] + torch.log1p(s2)
        return total
