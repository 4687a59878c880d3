r"""Sentiment-laden semantic alignment: InfoNCE between two views of the nodes of each window.

For one window with valid slots ``k = 1..n`` and two views ``u`` and ``v`` of its
nodes (e.g. text nodes and label nodes), every node of either view is an anchor.
The positive of anchor ``u_k`` is ``v_k`` (the same utterance in the other view);
its negatives are all OTHER nodes of both views in that window::

    l(u_k) = -log  exp(cos(u_k, v_k) / t)
                   ---------------------------------------------------------------
                   sum_j exp(cos(u_k, v_j) / t) + sum_{j != k} exp(cos(u_k, u_j) / t)

and symmetrically ``l(v_k)``. The loss is the mean over all anchors of all
windows with at least two valid nodes (a single node has no negative, its
term would be an uninformative 0).

* primary alignment: the history slots of each window (the target excluded),
  each modality's nodes (before the GAT) against the label nodes;
* semantic alignment: every valid slot, each pair of modalities after the GAT.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

_MASKED = -1.0e4   # excluded pairs: exp() is exactly 0 in float32, and no row is all -inf (no NaN gradient)


def window_info_nce(u: torch.Tensor, v: torch.Tensor, valid: torch.Tensor, temperature: float = 1.0,
                    ) -> torch.Tensor:
    """Symmetric InfoNCE within each window (formula in the module docstring).

    Shapes: u, v ``(W, K, d)`` two views of the nodes of ``W`` windows; valid ``(W, K)`` bool.
    Returns a scalar (0, still attached to the graph, when no window has two valid nodes).
    """
    if u.shape != v.shape or u.shape[:2] != valid.shape:
        raise ValueError(f"window_info_nce: views {tuple(u.shape)} / {tuple(v.shape)} and mask "
                         f"{tuple(valid.shape)} disagree")
    keep = valid.sum(dim=1) >= 2
    if not bool(keep.any()):
        return (u.sum() + v.sum()) * 0.0
    u, v, valid = F.normalize(u[keep].float(), dim=-1), F.normalize(v[keep].float(), dim=-1), valid[keep]
    k = u.shape[1]
    eye = torch.eye(k, dtype=torch.bool, device=u.device)
    pair_ok = valid.unsqueeze(1) & valid.unsqueeze(2)                        # (W, K, K)
    total, count = u.new_zeros(()), 0
    for a, b in ((u, v), (v, u)):
        cross = torch.einsum("wid,wjd->wij", a, b) / temperature              # anchor i vs other view j
        same = torch.einsum("wid,wjd->wij", a, a) / temperature              # anchor i vs own view j
        cross = cross.masked_fill(~pair_ok, _MASKED)
        same = same.masked_fill(~pair_ok | eye, _MASKED)
        denom = torch.logsumexp(torch.cat([cross, same], dim=2), dim=2)      # (W, K)
        pos = torch.diagonal(cross, dim1=1, dim2=2)
        terms = (denom - pos)[valid]
        total = total + terms.sum()
        count += terms.numel()
    return total / count
