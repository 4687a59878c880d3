"""Vectorised graph construction for batches of dialogues (no Python loops over utterances).

All builders take the batch offsets ``ptr`` (``(B + 1,)``, dialogue ``b`` owns
utterances ``ptr[b]:ptr[b+1]``) and return index tensors; no edge ever joins
two dialogues because candidate neighbours are masked by dialogue membership.

Window convention (GraphSmile): utterance ``i`` is linked to utterances ``j``
with ``i - win_p <= j <= i + win_f`` (``j = i`` included); ``-1`` on a side
means "to the dialogue's edge" on that side.

Relations: every edge carries a relation id = (direction, relative distance
``j - i`` clipped to ``[-P, F]``), where ``P``/``F`` are the window sides (or
``max_distance`` for an unbounded side). A learnable weight is indexed by the
relation id, so the same kind of edge has the same weight in every batch.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


def _sides(win_p: int, win_f: int, max_len: int, max_distance: int) -> tuple[int, int, int, int]:
    """(reach_p, reach_f) = how far candidates go; (clip_p, clip_f) = distance buckets."""
    for name, v in (("win_p", win_p), ("win_f", win_f)):
        if v < -1:
            raise ValueError(f"{name} must be -1 (whole dialogue) or >= 0, got {v}")
    reach_p = max_len - 1 if win_p < 0 else win_p
    reach_f = max_len - 1 if win_f < 0 else win_f
    clip_p = max_distance if win_p < 0 else win_p
    clip_f = max_distance if win_f < 0 else win_f
    return reach_p, reach_f, clip_p, clip_f


def num_distance_buckets(win_p: int, win_f: int, max_distance: int) -> int:
    """Number of relative-distance buckets ``P + F + 1`` for a window."""
    _, _, cp, cf = _sides(win_p, win_f, 1, max_distance)
    return cp + cf + 1


def window_pairs(ptr: torch.Tensor, win_p: int, win_f: int, max_distance: int = 32,
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All utterance pairs ``(i, j)`` of the same dialogue with ``j - i`` in the window.

    Returns ``(i, j, bucket)``: global utterance indices (``E``,) each, and the
    distance bucket ``clip(j - i, -P, F) + P`` in ``[0, P + F]``. Sorted by ``i`` then ``j``.
    """
    ptr = ptr.long()
    lengths = ptr[1:] - ptr[:-1]
    n = int(ptr[-1])
    max_len = int(lengths.max()) if lengths.numel() else 0
    reach_p, reach_f, clip_p, clip_f = _sides(win_p, win_f, max(max_len, 1), max_distance)
    device = ptr.device
    batch = torch.repeat_interleave(torch.arange(lengths.numel(), device=device), lengths)
    i = torch.arange(n, device=device)
    offsets = torch.arange(-reach_p, reach_f + 1, device=device)
    j = i[:, None] + offsets[None, :]                                   # (N, W) candidates
    lo, hi = ptr[batch][:, None], ptr[batch + 1][:, None]
    valid = (j >= lo) & (j < hi)                                        # same dialogue only
    ii = i[:, None].expand_as(j)[valid]
    jj = j[valid]
    bucket = (jj - ii).clamp(-clip_p, clip_f) + clip_p
    return ii, jj, bucket


@dataclass
class RelGraph:
    """``edge_index`` (2, E) as (source, target) and the relation id of each edge."""

    edge_index: torch.Tensor
    relation: torch.Tensor
    num_nodes: int
    num_relations: int


def cross_modal_graph(ptr: torch.Tensor, win_p: int, win_f: int, max_distance: int = 32) -> RelGraph:
    """Bipartite graph between two modalities' utterance nodes of each dialogue.

    Node numbering: modality 0's utterance ``n`` is node ``n``; modality 1's is
    node ``N + n`` (``N`` utterances in the batch). Node ``(a, i)`` receives a
    message from ``(b, j)`` for every ``j`` in ``i``'s window, for both
    directions ``a -> b``; the relation is ``direction * (P+F+1) + bucket(j - i)``
    with direction 0 = modality 0 receives, 1 = modality 1 receives.
    """
    n = int(ptr[-1])
    i, j, bucket = window_pairs(ptr, win_p, win_f, max_distance)
    nb = num_distance_buckets(win_p, win_f, max_distance)
    # direction 0: target (mod 0, i) <- source (mod 1, j); direction 1: target (mod 1, i) <- source (mod 0, j)
    src = torch.cat([j + n, j])
    dst = torch.cat([i, i + n])
    rel = torch.cat([bucket, bucket + nb])
    return RelGraph(torch.stack([src, dst]), rel, 2 * n, 2 * nb)


def temporal_graph(ptr: torch.Tensor, win_p: int, win_f: int, max_distance: int = 32) -> RelGraph:
    """Single-modality graph: utterance ``i`` receives from every ``j`` in its window (self loop included)."""
    n = int(ptr[-1])
    i, j, bucket = window_pairs(ptr, win_p, win_f, max_distance)
    return RelGraph(torch.stack([j, i]), bucket, n, num_distance_buckets(win_p, win_f, max_distance))


def shift_pairs(ptr: torch.Tensor, position: torch.Tensor, shift_win: int) -> torch.Tensor:
    """Ordered pairs ``(i, j)``, ``i != j``, of utterances in the same block of ``shift_win``.

    Each dialogue is cut into consecutive blocks of ``shift_win`` utterances
    (positions ``0..w-1``, ``w..2w-1``, ...; the last block may be shorter);
    every ordered pair of distinct utterances inside one block is returned,
    as a ``(2, P)`` tensor of global indices sorted by ``i`` then ``j``.
    """
    if shift_win < 1:
        raise ValueError(f"shift_win must be >= 1, got {shift_win}")
    i, j, _ = window_pairs(ptr, shift_win - 1, shift_win - 1, max_distance=shift_win)
    pos_i = position[i]
    pos_j = position[j]
    keep = (pos_i // shift_win == pos_j // shift_win) & (i != j)
    return torch.stack([i[keep], j[keep]])


def shift_labels(sentiments: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """1 where the pair's sentiments differ, 0 where equal, -1 where either is unknown (< 0)."""
    a, b = sentiments[pairs[0]], sentiments[pairs[1]]
    lab = (a != b).long()
    return torch.where((a < 0) | (b < 0), torch.full_like(lab, -1), lab)
