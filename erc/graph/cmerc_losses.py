"""CMERC auxiliary losses: confidence ranking and hybrid supervised contrastive learning.

All three are model-agnostic: they take logits and representations, never a model.

Confidence ranking loss (rank)
    With ``c_i = max_k softmax(z_i)_k`` and ``S+`` / ``S-`` the labelled
    examples the model currently classifies correctly / wrongly::

        L_rank = 1 / (|S+| |S-|) * sum_{i in S+} sum_{j in S-} max(0, m - (c_i - c_j))

    zero exactly when every correct example is at least ``m`` more confident
    than every wrong one (and when either set is empty). Correctness is read
    off the argmax (no gradient); the gradient flows through the confidences.

Supervised contrastive loss (Khosla et al., 2020, "L_out")
    With L2-normalised ``u_i``, anchors ``i`` that have positives ``P(i)``
    (same label, ``p != i``) and ``A(i) = {a != i}``::

        L = 1/|I| sum_{i in I} -1/|P(i)| sum_{p in P(i)}
                log( exp(u_i.u_p / tau) / sum_{a in A(i)} exp(u_i.u_a / tau) )

    Its infimum is ``mean_i log |P(i)|`` (all positives identical, negatives
    infinitely far); with exactly one positive per anchor that is 0.

Modality-level (mscl)
    The ``M`` modality representations of the ``N`` utterances stacked into
    ``M N`` vectors labelled by utterance: positives of (m, i) are (m', i),
    m' != m. One positive per anchor with M = 2 (minimum 0), M - 1 with M = 3
    (minimum log 2).

Context-level (cscl)
    SupCon over the utterances of the batch labelled by emotion (label -1
    excluded): utterances with the same emotion pull together across
    dialogues of the batch.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F

from erc.graph.cmerc_config import CMERCConfig


def confidence_ranking_loss(logits: torch.Tensor, labels: torch.Tensor, margin: float = 0.1) -> torch.Tensor:
    """Pairwise margin ranking of correct over wrong examples' max-softmax confidence.

    Shapes: logits (N, C), labels (N,) with -1 ignored -> scalar.
    """
    if logits.ndim != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(f"confidence_ranking_loss: logits {tuple(logits.shape)} and labels "
                         f"{tuple(labels.shape)} disagree (expected (N, C) and (N,))")
    keep = labels >= 0
    z, y = logits[keep], labels[keep]
    conf = z.float().softmax(dim=-1).max(dim=-1).values
    correct = z.argmax(dim=-1) == y
    c_pos, c_neg = conf[correct], conf[~correct]
    if c_pos.numel() == 0 or c_neg.numel() == 0:
        return logits.sum() * 0.0  # keeps the graph (and DDP) happy, value 0
    diff = c_pos[:, None] - c_neg[None, :]                       # (|S+|, |S-|)
    return F.relu(margin - diff).mean()


def supervised_contrastive_loss(features: torch.Tensor, labels: torch.Tensor,
                                temperature: float = 0.1) -> torch.Tensor:
    """SupCon ("L_out") over ``features`` grouped by ``labels`` (-1 = excluded).

    Shapes: features (N, d), labels (N,) -> scalar. Anchors without a
    positive are skipped; with no anchor at all the loss is 0 (graph kept).
    """
    if features.ndim != 2 or labels.shape != features.shape[:1]:
        raise ValueError(f"supervised_contrastive_loss: features {tuple(features.shape)} and labels "
                         f"{tuple(labels.shape)} disagree (expected (N, d) and (N,))")
    keep = labels >= 0
    u = F.normalize(features[keep].float(), dim=-1)
    y = labels[keep]
    n = y.numel()
    if n < 2:
        return features.sum() * 0.0
    sim = u @ u.T / temperature                                   # (n, n)
    self_mask = torch.eye(n, dtype=torch.bool, device=u.device)
    sim = sim.masked_fill(self_mask, float("-inf"))               # A(i) = all a != i
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    pos = (y[:, None] == y[None, :]) & ~self_mask                 # P(i)
    n_pos = pos.sum(dim=1)
    anchors = n_pos > 0
    if not anchors.any():
        return features.sum() * 0.0
    pos_log_prob = log_prob.masked_fill(~pos, 0.0).sum(dim=1)     # -inf only on the diagonal, masked
    return -(pos_log_prob[anchors] / n_pos[anchors]).mean()


def modality_contrastive_loss(modality_reps: Mapping[str, torch.Tensor] | Sequence[torch.Tensor],
                              temperature: float = 0.1, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Modality-level SupCon: positives are the other modalities of the same utterance.

    Shapes: ``M`` tensors (N, d) (same d) -> scalar; ``mask`` (N,) bool keeps
    utterances (e.g. real nodes only). Needs M >= 2.
    """
    reps = list(modality_reps.values()) if isinstance(modality_reps, Mapping) else list(modality_reps)
    if len(reps) < 2:
        raise ValueError(f"modality_contrastive_loss: needs >= 2 modality representations, got {len(reps)}")
    n, d = reps[0].shape
    for r in reps:
        if r.shape != (n, d):
            raise ValueError("modality_contrastive_loss: every modality representation must be (N, d) "
                             f"with the same N, d; got {[tuple(r.shape) for r in reps]}")
    utt = torch.arange(n, device=reps[0].device)
    if mask is not None:
        utt = torch.where(mask, utt, torch.full_like(utt, -1))
    return supervised_contrastive_loss(torch.cat(reps, dim=0), utt.repeat(len(reps)), temperature)


def context_contrastive_loss(reps: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Context-level SupCon: positives are other utterances of the batch with the same emotion.

    Shapes: reps (N, d), labels (N,) with -1 ignored -> scalar.
    """
    return supervised_contrastive_loss(reps, labels, temperature)


@dataclass
class CMERCLoss:
    """Weighted sum of the enabled CMERC terms and each unweighted term (floats, for logging)."""

    total: torch.Tensor
    parts: dict[str, float] = field(default_factory=dict)


def cmerc_extra_loss(cfg: CMERCConfig | Any, logits: torch.Tensor, labels: torch.Tensor,
                     modality_reps: Mapping[str, torch.Tensor] | None = None,
                     fused: torch.Tensor | None = None) -> CMERCLoss:
    """``rank_coef * L_rank + mscl_coef * L_mscl + cscl_coef * L_cscl`` for one batch.

    Add ``.total`` to the task loss. Terms whose coefficient is 0 are not
    computed. Shapes: logits (N, C) emotion logits, labels (N,) (-1 =
    unlabelled), modality_reps ``{modality: (N, d)}`` per-modality node
    representations of the same N utterances, fused (N, d') the
    representation the emotion head reads (context-level loss; falls back to
    the mean of the modality representations).

    With one modality, ``mscl`` is skipped (logged as absent) rather than
    failing, so text-only runs accept the same flags.
    """
    cfg = cfg if isinstance(cfg, CMERCConfig) else CMERCConfig.from_any(cfg)
    total = logits.sum() * 0.0
    parts: dict[str, float] = {}
    if cfg.rank_coef > 0:
        l_rank = confidence_ranking_loss(logits, labels, cfg.rank_margin)
        total = total + cfg.rank_coef * l_rank
        parts["loss_rank"] = float(l_rank.detach())
    if cfg.mscl_coef > 0 and modality_reps is not None and len(modality_reps) >= 2:
        l_m = modality_contrastive_loss(modality_reps, cfg.cl_temperature)
        total = total + cfg.mscl_coef * l_m
        parts["loss_mscl"] = float(l_m.detach())
    if cfg.cscl_coef > 0:
        rep = fused
        if rep is None:
            if not modality_reps:
                raise ValueError("cmerc_extra_loss: cscl_coef > 0 needs `fused` or `modality_reps`")
            rep = torch.stack(list(modality_reps.values())).mean(0)
        l_c = context_contrastive_loss(rep, labels, cfg.cl_temperature)
        total = total + cfg.cscl_coef * l_c
        parts["loss_cscl"] = float(l_c.detach())
    return CMERCLoss(total=total, parts=parts)


def cmerc_loss_for_batch(outputs: Any, batch: Any, cfg: CMERCConfig | Any) -> CMERCLoss:
    """:func:`cmerc_extra_loss` reading a model output and a :class:`erc.data.batch.DialogueBatch`.

    ``outputs`` needs ``emotion_logits`` (N, C) and optionally ``modality_reps``
    ``{name: (N, d)}`` and ``fused`` (N, d) (GraphSmile's ``GraphOutput`` has all
    three; its ``modality_reps`` are the per-pair directional views, each a view
    of the same utterance, so mscl pulls all views of an utterance together).
    """
    return cmerc_extra_loss(cfg, outputs.emotion_logits, batch.labels,
                            getattr(outputs, "modality_reps", None), getattr(outputs, "fused", None))


def make_cmerc_loss_hook(cfg: CMERCConfig | Any):
    """A ``train-graph`` loss hook ``hook(out, batch, epoch) -> (Tensor, parts)``, or None when all coefs are 0."""
    cfg = cfg if isinstance(cfg, CMERCConfig) else CMERCConfig.from_any(cfg)
    if not cfg.any_loss:
        return None

    def cmerc_hook(out: Any, batch: Any, epoch: int):
        res = cmerc_loss_for_batch(out, batch, cfg)
        return res.total, res.parts

    return cmerc_hook
