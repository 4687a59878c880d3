"""Hybrid relational graphs over each target's window, and the GAT that runs on them.

Windows. Target utterance ``n`` (at position ``p`` of its dialogue) has the
window of its ``min(p, W)`` previous turns and itself. :func:`window_grid`
lays the windows of all ``N`` utterances of a batch out as an ``(N, K)`` grid
(``K = W + 1``; slot ``K - 1`` is the target, slot ``K - 1 - d`` the turn ``d``
back); slots before the dialogue's start are invalid. The utterances are
encoded once; a window only indexes those encodings (``grid.node``), and its
graph is built on copies of them, so each window is its own small graph as in
the method (a node near a window's start sees nothing before the window).

Edges (directed, past -> present, inside one window; slot ``a`` -> slot ``b``):

* explicit (:func:`explicit_edges`): self loops ``a == b``; previous turn
  ``b - a == 1``; same speaker ``a < b`` and ``speaker[a] == speaker[b]``;
* implicit (:class:`ImplicitEdgeScorer`, one per modality): additive scores
  ``s_ab = v^T tanh(W_s x_a + W_r x_b)`` for every ``a < b``, normalised per
  source over its later nodes, ``alpha_ab = softmax_{b > a}(s_ab)``; an edge
  ``a -> b`` is kept when ``alpha_ab > 1 / |{b > a}|`` (above uniform) and it is
  not explicit. The kept edges carry ``alpha_ab`` as a SOFT edge weight: it is
  an input of the GAT's attention (edge feature), so the scorer receives
  gradient through it (the selection itself is a hard threshold).

Every edge has the feature vector ``[self, previous, same_speaker, implicit,
alpha]`` (:data:`EDGE_FEATURES`). :class:`GATBlock` is GATv2 (torch_geometric)
with that edge feature, a residual connection and RMSNorm.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch_geometric.nn import GATv2Conv

EDGE_FEATURES = ("self", "previous", "same_speaker", "implicit", "alpha")


@dataclass
class WindowGrid:
    """The windows of ``N`` targets as an ``(N, K)`` grid of slots (see module docstring)."""

    index: torch.Tensor     # (N, K) global utterance index of each slot (clamped to 0 where invalid)
    valid: torch.Tensor     # (N, K) bool
    flat: torch.Tensor      # (N, K) id of the slot among the window nodes, -1 where invalid
    node: torch.Tensor      # (Nw,) global utterance index of each window node (row-major over valid slots)
    window: torch.Tensor    # (Nw,) window (= target utterance) of each window node
    slot: torch.Tensor      # (Nw,) slot of each window node

    @property
    def size(self) -> int:
        return int(self.index.shape[1])

    @property
    def num_window_nodes(self) -> int:
        return int(self.node.numel())

    def to_grid(self, x_flat: torch.Tensor) -> torch.Tensor:
        """(Nw, d) window-node values -> (N, K, d), zeros in invalid slots."""
        out = x_flat.new_zeros(*self.index.shape, *x_flat.shape[1:])
        out[self.valid] = x_flat
        return out


def window_grid(position: torch.Tensor, window: int) -> WindowGrid:
    """Grid of every utterance's window of ``window`` previous turns (vectorised).

    Shapes: position ``(N,)`` (index of each utterance in its dialogue; utterances
    of a dialogue are consecutive, as in :class:`erc.data.batch.DialogueBatch`).
    """
    if window < 0:
        raise ValueError(f"window must be >= 0, got {window}")
    n, k = position.numel(), window + 1
    dev = position.device
    back = (k - 1) - torch.arange(k, device=dev)                      # turns back from the target
    valid = back.unsqueeze(0) <= position.unsqueeze(1)                 # never before the dialogue's start
    index = (torch.arange(n, device=dev).unsqueeze(1) - back.unsqueeze(0)).clamp(min=0)
    flat = torch.full((n, k), -1, dtype=torch.long, device=dev)
    flat[valid] = torch.arange(int(valid.sum()), device=dev)
    rows = torch.arange(n, device=dev).unsqueeze(1).expand(n, k)
    slots = torch.arange(k, device=dev).unsqueeze(0).expand(n, k)
    return WindowGrid(index=index, valid=valid, flat=flat, node=index[valid], window=rows[valid],
                      slot=slots[valid])


def pair_mask(grid: WindowGrid) -> torch.Tensor:
    """(N, K, K) bool: ``[n, a, b]`` is True for valid slots ``a < b`` (``a`` earlier)."""
    k = grid.size
    a = torch.arange(k, device=grid.valid.device)
    earlier = a.view(k, 1) < a.view(1, k)
    return grid.valid.unsqueeze(2) & grid.valid.unsqueeze(1) & earlier.unsqueeze(0)


def explicit_edges(grid: WindowGrid, speakers: torch.Tensor) -> torch.Tensor:
    """(N, K, K, 3) bool flags ``[self, previous, same_speaker]`` of the edge slot ``a`` -> slot ``b``.

    Shapes: speakers ``(N,)`` speaker index of each utterance.
    """
    k = grid.size
    a = torch.arange(k, device=grid.valid.device)
    both = grid.valid.unsqueeze(2) & grid.valid.unsqueeze(1)
    self_loop = both & (a.view(k, 1) == a.view(1, k)).unsqueeze(0)
    previous = both & (a.view(1, k) - a.view(k, 1) == 1).unsqueeze(0)
    spk = speakers[grid.index]                                          # (N, K)
    same = pair_mask(grid) & (spk.unsqueeze(2) == spk.unsqueeze(1))
    return torch.stack([self_loop, previous, same], dim=-1)


class ImplicitEdgeScorer(nn.Module):
    r"""Additive scores between the nodes of a window, normalised over each node's later nodes.

    .. math::
        s_{ab} = v^\top \tanh(W_s x_a + W_r x_b),\qquad
        \alpha_{ab} = \frac{\exp s_{ab}}{\sum_{b' > a} \exp s_{ab'}}\quad (a < b)

    Args:
        channels: node feature size ``d``.
        hidden: projection size of ``W_s``, ``W_r``.

    Shapes:
        - x: ``(N, K, d)`` window grid; pairs: ``(N, K, K)`` bool (``a < b``, both valid)
        - output: ``(N, K, K)`` ``alpha[n, a, b]``, 0 where ``pairs`` is False
    """

    def __init__(self, channels: int, hidden: int = 64):
        super().__init__()
        self.source = nn.Linear(channels, hidden, bias=False)
        self.receiver = nn.Linear(channels, hidden, bias=True)
        self.v = nn.Linear(hidden, 1, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for lin in (self.source, self.receiver, self.v):
            lin.reset_parameters()

    def forward(self, x: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
        s = self.v(torch.tanh(self.source(x).unsqueeze(2) + self.receiver(x).unsqueeze(1))).squeeze(-1)
        s = s.masked_fill(~pairs, float("-inf"))
        has_later = pairs.any(dim=2, keepdim=True)
        alpha = torch.softmax(torch.where(has_later, s, torch.zeros_like(s)), dim=2)
        return alpha * pairs


def implicit_selection(alpha: torch.Tensor, pairs: torch.Tensor, explicit: torch.Tensor) -> torch.Tensor:
    """(N, K, K) bool: pairs above the uniform weight ``1 / |later nodes|`` that are not explicit edges."""
    n_later = pairs.sum(dim=2, keepdim=True).clamp(min=1)
    return pairs & (alpha > 1.0 / n_later) & ~explicit.any(dim=-1)


@dataclass
class WindowEdges:
    """Edges of all windows of a batch on the flat window-node list."""

    edge_index: torch.Tensor     # (2, E) flat window-node ids, source -> target
    edge_attr: torch.Tensor      # (E, 5) [self, previous, same_speaker, implicit, alpha]
    alpha: torch.Tensor | None   # (N, K, K) implicit weights (None without implicit edges)


def build_edges(grid: WindowGrid, explicit: torch.Tensor, alpha: torch.Tensor | None = None,
                mode: str = "hybrid") -> WindowEdges:
    """Edge list of every window. ``mode``: hybrid (explicit + implicit), explicit, or self (loops only)."""
    if mode not in ("hybrid", "explicit", "self"):
        raise ValueError(f"graph edge mode must be hybrid, explicit or self, got {mode!r}")
    flags = explicit.clone()
    if mode == "self":
        flags[..., 1:] = False
    implicit = torch.zeros_like(flags[..., 0])
    if mode == "hybrid" and alpha is not None:
        implicit = implicit_selection(alpha, pair_mask(grid), explicit)
    keep = flags.any(dim=-1) | implicit
    n, a, b = keep.nonzero(as_tuple=True)
    weight = alpha[n, a, b] if (mode == "hybrid" and alpha is not None) else flags.new_zeros(n.shape, dtype=torch.float)
    imp = implicit[n, a, b]
    attr = torch.cat([flags[n, a, b].float(), imp.float().unsqueeze(1), (weight * imp).unsqueeze(1)], dim=1)
    edge_index = torch.stack([grid.flat[n, a], grid.flat[n, b]])
    return WindowEdges(edge_index=edge_index, edge_attr=attr, alpha=alpha if mode == "hybrid" else None)


class GATBlock(nn.Module):
    r"""One GAT layer with residual connection and RMSNorm.

    .. math::
        h_i = \Vert_{k=1}^{H} \sum_{j \in \mathcal N(i)} a^k_{ij} W^k x_j,\qquad
        a^k_{ij} = \mathrm{softmax}_j\big(c_k^\top \mathrm{LeakyReLU}(W^k x_i + W^k x_j + U^k e_{ij})\big),\qquad
        x_i' = \mathrm{RMSNorm}(x_i + \mathrm{Dropout}(W_o h_i))

    (GATv2, torch_geometric; ``e_ij`` is the edge feature of :data:`EDGE_FEATURES`.)

    Args:
        channels: node size ``d`` (in = out).
        heads, head_dim: ``H`` heads of ``head_dim`` channels, concatenated then projected back to ``d``.
        dropout: dropout on the attention coefficients and the branch.

    Shapes:
        - x: ``(num_nodes, d)``; edge_index: ``(2, E)``; edge_attr: ``(E, 5)``
        - output: ``(num_nodes, d)``
    """

    def __init__(self, channels: int, heads: int = 12, head_dim: int = 64, dropout: float = 0.0):
        super().__init__()
        self.conv = GATv2Conv(channels, head_dim, heads=heads, concat=True, edge_dim=len(EDGE_FEATURES),
                              add_self_loops=False, dropout=dropout)
        self.out = nn.Linear(heads * head_dim, channels)
        self.norm = nn.RMSNorm(channels)
        self.dropout = nn.Dropout(dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.conv.reset_parameters()
        self.out.reset_parameters()
        self.norm.reset_parameters()

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor) -> torch.Tensor:
        return self.norm(x + self.dropout(self.out(self.conv(x, edge_index, edge_attr))))


class HybridRelationalGraph(nn.Module):
    """One modality's graph: implicit scorer + ``num_layers`` :class:`GATBlock`.

    Shapes:
        - x_grid: ``(N, K, d)`` the modality's nodes in window-grid form
        - output: ``(N, K, d)`` after the GAT (zeros in invalid slots), and the :class:`WindowEdges`
    """

    def __init__(self, channels: int, num_layers: int = 1, heads: int = 12, head_dim: int = 64,
                 scorer_dim: int = 64, dropout: float = 0.0):
        super().__init__()
        self.scorer = ImplicitEdgeScorer(channels, scorer_dim)
        self.layers = nn.ModuleList(GATBlock(channels, heads, head_dim, dropout) for _ in range(num_layers))

    def forward(self, x_grid: torch.Tensor, grid: WindowGrid, explicit: torch.Tensor,
                mode: str = "hybrid") -> tuple[torch.Tensor, WindowEdges]:
        alpha = self.scorer(x_grid, pair_mask(grid)) if mode == "hybrid" else None
        edges = build_edges(grid, explicit, alpha, mode)
        h = x_grid[grid.valid]
        for layer in self.layers:
            h = layer(h, edges.edge_index, edges.edge_attr.to(h.dtype))
        return grid.to_grid(h), edges
