"""Graph layers: relation-weighted, symmetrically normalised stacked graph convolutions.

Propagation ``H <- A_hat (H W) + b`` has two implementations with the same parameters
(``RelationalGraphStack.propagation``):

* ``"csr"`` (default): the normalised operator ``A_hat`` is built once per stack call
  as a CSR sparse matrix over a :class:`CSRLayout` (index tensors built once per batch
  and shared by every stack on the same graph) and applied by one sparse-dense matmul
  per layer (:func:`csr_matmul`, O(E x C); its backward is one transposed spmm for the
  features and one sampled dense-dense product for the edge values, so gradients reach
  the relation weights without an E x C tensor).
* ``"edgewise"``: torch_geometric ``GCNConv``'s message passing with per-edge weights
  (message ``x_j * w`` then scatter: an E x C tensor per layer, kept for backward). The
  reference the equivalence test compares against.

torch_geometric is imported by the ``edgewise`` path only: its import brings in most of
``transformers`` (about 115 MiB of resident memory and two seconds per process, measured),
which the default path does not need. Each layer's parameters are therefore held by
:class:`GraphConvWeights`, which has ``GCNConv``'s parameter names, shapes and initialisation.

``"identity"`` skips message passing (``H <- H W + b``): the dense floor the speed bench
measures, not a model anyone trains.
"""
from __future__ import annotations

import functools
import sys
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

PROPAGATIONS = ("csr", "edgewise")                # user-facing choices; the first is the default
#: Edge normalisation of the operator: ``sym`` = D^-1/2 A D^-1/2 (GCN, GraphSmile), ``row`` = D^-1 A (the mean
#: over a node's in-neighbours). With a one-sided window (causal, ``win_f = 0``) ``sym`` weights a message by
#: the SOURCE's in-degree too, so the first turns of a dialogue (few past neighbours) speak up to
#: sqrt(win_p + 1) times louder than later ones; ``row`` depends on the target's own window only.
NORMS = ("sym", "row")
_ALL_PROPAGATIONS = PROPAGATIONS + ("identity",)  # + the bench's no-propagation floor


def normalized_edge_weight(edge_index: torch.Tensor, edge_weight: torch.Tensor, num_nodes: int,
                           norm: str = "sym") -> torch.Tensor:
    """Symmetric normalisation ``D^-1/2 A D^-1/2`` by scatter over edges (no self loops added).

    ``A[t, s] = w`` for each edge ``s -> t``; ``D`` = weighted in-degree (0 stays 0). O(E).
    torch_geometric's ``gcn_norm(..., add_self_loops=False)`` computes the same (tested), but
    importing it costs what the module docstring says.
    """
    src, dst = edge_index[0], edge_index[1]
    deg = torch.zeros(num_nodes, dtype=edge_weight.dtype, device=edge_weight.device).index_add_(0, dst, edge_weight)
    if norm == "row":                                   # D^-1 A: a weighted mean over each node's in-neighbours
        return edge_weight / deg[dst]
    if norm != "sym":
        raise ValueError(f"norm: expected one of {NORMS}, got {norm!r}")
    dis = deg.pow(-0.5).masked_fill_(deg == 0, 0.0)
    return dis[src] * edge_weight * dis[dst]


class GraphConvWeights(nn.Module):
    """One layer's ``W`` (``lin.weight``, ``(out, in)``) and ``b`` (``bias``).

    The parameter names, shapes and initialisation (glorot weight, zero bias) of torch_geometric's
    ``GCNConv(c, c)``, whose construction draws the weight twice (its ``Linear``, then itself):
    drawing the same numbers keeps seeded runs and saved models identical to a GCNConv-built
    stack (tested against ``GCNConv``).
    """

    def __init__(self, channels: int):
        super().__init__()
        self.lin = nn.utils.skip_init(nn.Linear, channels, channels, bias=False)   # drawn below, not by Linear
        self.bias = nn.Parameter(torch.empty(channels))
        self.reset_parameters()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.lin.weight)
        nn.init.zeros_(self.bias)


@functools.cache
def _gcn_message_passing():
    """A ``GCNConv`` used only for its ``propagate`` (message ``x_j * w``, sum at the target)."""
    from torch_geometric.nn import GCNConv   # the edgewise reference only (see the module docstring)

    with torch.random.fork_rng(devices=[]):   # its (unused) 1 x 1 weight must not move the seeded RNG
        return GCNConv(1, 1, normalize=False, add_self_loops=False)


def gcn_propagate(x: torch.Tensor, edge_index: torch.Tensor, edge_weight: torch.Tensor) -> torch.Tensor:
    """``GCNConv``'s message passing on ``x`` (already multiplied by ``W``): the edgewise reference."""
    return _gcn_message_passing().propagate(edge_index, x=x, edge_weight=edge_weight)


@dataclass(frozen=True)
class CSRLayout:
    """Index-only CSR view of a graph's edges: built once per batch, shared by every stack on that graph.

    Row ``t`` of the operator holds the edges arriving at node ``t`` (``A[t, s]``);
    ``order`` sorts the graph's edges into that row-major order, ``t_order`` sorts
    the CSR entries into the row-major order of the transpose (rows = sources).

    Shapes:
        - order, row, col, t_order, t_col: ``(E,)``; crow, t_crow: ``(num_nodes + 1,)``
    """

    num_nodes: int
    order: torch.Tensor      # graph edge position of each CSR entry
    crow: torch.Tensor       # CSR row pointers (rows = targets)
    row: torch.Tensor        # target of each CSR entry
    col: torch.Tensor        # source of each CSR entry
    t_order: torch.Tensor    # CSR entry of each entry of the transpose's CSR
    t_crow: torch.Tensor     # row pointers of the transpose (rows = sources)
    t_col: torch.Tensor      # target of each entry of the transpose

    @classmethod
    def from_edges(cls, edge_index: torch.Tensor, num_nodes: int) -> "CSRLayout":
        src, dst = edge_index[0].long(), edge_index[1].long()
        if src.numel() and bool(((edge_index < 0) | (edge_index >= num_nodes)).any()):
            raise ValueError(f"edge_index refers to nodes outside [0, {num_nodes}) "
                             f"(min {int(edge_index.min())}, max {int(edge_index.max())})")
        order = torch.argsort(dst * num_nodes + src, stable=True)
        row, col = dst[order], src[order]
        t_order = torch.argsort(col * num_nodes + row, stable=True)
        return cls(num_nodes, order, _row_pointers(row, num_nodes), row, col,
                   t_order, _row_pointers(col[t_order], num_nodes), row[t_order])

    @property
    def num_edges(self) -> int:
        return int(self.col.numel())

    def matrix(self, values: torch.Tensor) -> torch.Tensor:
        """The ``(num_nodes, num_nodes)`` CSR matrix with ``values`` (in CSR order)."""
        return _csr(self.crow, self.col, values, self.num_nodes)

    def transpose(self, values: torch.Tensor) -> torch.Tensor:
        """The transpose of :meth:`matrix` as a CSR matrix."""
        return _csr(self.t_crow, self.t_col, values[self.t_order], self.num_nodes)


def _row_pointers(rows: torch.Tensor, num_nodes: int) -> torch.Tensor:
    crow = torch.zeros(num_nodes + 1, dtype=torch.long, device=rows.device)
    crow[1:] = torch.cumsum(torch.bincount(rows, minlength=num_nodes), 0)
    return crow


def _csr(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, n: int) -> torch.Tensor:
    with warnings.catch_warnings():   # "Sparse CSR tensor support is in beta state", once per process
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, col, values, (n, n), check_invariants=False)


def autocast_dtype(device_type: str) -> torch.dtype | None:
    """The narrow dtype that autocast casts matrix products to on ``device_type``, or None when it is off."""
    return torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else None


class _CSRMatmul(torch.autograd.Function):
    """``y = A x`` with ``A`` given by a layout and its values; gradients to the values and to ``x``."""

    @staticmethod
    def forward(ctx, values: torch.Tensor, x: torch.Tensor, layout: CSRLayout) -> torch.Tensor:
        dtype = torch.promote_types(values.dtype, x.dtype)   # bf16/fp16 features: compute in fp32
        v = values.to(dtype)
        ctx.layout, ctx.x_dtype = layout, x.dtype
        ctx.save_for_backward(v, x)   # x as given (bf16 under autocast: half the bytes kept), widened in backward
        with torch.autocast(x.device.type, enabled=False):   # autocast would cast the spmm back to bf16
            return layout.matrix(v) @ x.to(dtype)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        v, x = ctx.saved_tensors
        x = x.to(v.dtype)
        layout: CSRLayout = ctx.layout
        g = grad_out.to(v.dtype).contiguous()
        grad_values = grad_x = None
        with torch.autocast(g.device.type, enabled=False):
            if ctx.needs_input_grad[0]:   # dL/dA[t, s] = <g[t], x[s]> on the edges only (SDDMM, no E x C tensor)
                grad_values = torch.sparse.sampled_addmm(layout.matrix(v), g, x.T, beta=0.0).values()
            if ctx.needs_input_grad[1]:   # dL/dx = A^T g
                grad_x = (layout.transpose(v) @ g).to(ctx.x_dtype)
        return grad_values, grad_x, None


def csr_matmul(values: torch.Tensor, x: torch.Tensor, layout: CSRLayout) -> torch.Tensor:
    """``A @ x`` for the sparse ``A`` with ``values`` (CSR order of ``layout``); differentiable in both.

    Shapes:
        - values: ``(E,)``; x: ``(num_nodes, C)``; output: ``(num_nodes, C)``
    """
    return _CSRMatmul.apply(values, x, layout)


#: dropout keeps an element when a uniform 16-bit integer is at least ``round(p * 2**16)`` (offset to int16)
_MASK_BITS = 16
#: which int16 chunks of an int64 hold its low 48 bits (uniform; the top chunk has 15 random bits only)
_LOW_CHUNKS = slice(0, 3) if sys.byteorder == "little" else slice(1, 4)


def dropout_keep_mask(like: torch.Tensor, p: float) -> torch.Tensor:
    """A bool mask of ``like``'s shape, each element True with probability ``1 - p`` (to 2**-16).

    One uniform int64 draw (63 random bits: two draws of the 32-bit generator) gives three 16-bit
    uniform integers, each compared with an integer threshold: on CPU 2.0 ms for a 1608 x 512 batch
    at 2 threads, against 3.8 ms for one 31-bit int32 draw per element (this function until
    session 7), 4.3 ms for ``torch.rand`` and 6.1-6.4 ms for ``bernoulli_`` on floats; 24 masks per
    training step of the published graph model. Draws from the default generator of ``like``'s
    device, so ``torch.manual_seed`` makes it reproducible.
    """
    if p >= 1.0:
        return torch.zeros(like.shape, dtype=torch.bool, device=like.device)
    n = like.numel()
    threshold = int(round(p * (1 << _MASK_BITS))) - (1 << (_MASK_BITS - 1))   # in int16's range
    r = torch.empty(((n + 2) // 3,), dtype=torch.int64, device=like.device).random_()
    chunks = r.view(torch.int16).view(-1, 4)[:, _LOW_CHUNKS]
    return (chunks >= threshold).reshape(-1)[:n].view(like.shape)


class _LeakyReLUDropout(torch.autograd.Function):
    """``dropout(leaky_relu(z))`` in training, saving two bool masks instead of two float tensors.

    Composed, autograd keeps ``leaky_relu(z)`` (4 bytes per element, for its backward) and
    dropout's float noise (4 bytes). Here the keep mask comes from :func:`dropout_keep_mask`
    (inverted dropout: kept elements scaled by ``1 / (1 - p)``) and the backward rebuilds the
    gradient from the two masks: 2 bytes per element kept.
    """

    @staticmethod
    def forward(ctx, z: torch.Tensor, p: float, slope: float) -> torch.Tensor:
        positive = z > 0                      # leaky_relu's backward: slope 1 where z > 0, else `slope`
        keep = dropout_keep_mask(z, p)
        ctx.slope, ctx.scale = slope, 1.0 / (1.0 - p)
        ctx.save_for_backward(positive, keep)
        ctx.mark_dirty(z)                     # z is a temporary (a Linear's output): overwritten in place
        return F.leaky_relu_(z, slope).mul_(keep).mul_(ctx.scale)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        positive, keep = ctx.saved_tensors
        g = grad.mul(keep).mul_(ctx.scale)                          # dropout's backward
        return torch.where(positive, g, g * ctx.slope), None, None


def leaky_relu_dropout(z: torch.Tensor, p: float, training: bool, slope: float = 0.01) -> torch.Tensor:
    """``F.dropout(F.leaky_relu(z, slope), p, training)`` in distribution, with less memory kept.

    In CPU training with ``p > 0`` a fused autograd function draws the keep mask with
    :func:`dropout_keep_mask` and keeps two bool masks for backward instead of the activation and
    the dropout noise (2 instead of 8 bytes per element at float32); the values are those of
    leaky ReLU then inverted dropout, with other random draws than ``F.dropout``'s. Otherwise
    (evaluation, ``p == 0``) it is ``leaky_relu_`` in place on ``z``, which must be a temporary
    (a Linear's output).

    Shapes:
        - z: any; output: same as ``z``
    """
    if training and p > 0 and torch.is_grad_enabled() and z.device.type == "cpu":
        return _LeakyReLUDropout.apply(z, p, slope)
    if training and p > 0:   # no autograd, or CUDA (whose F.dropout is a fused kernel with its own draws)
        return F.dropout(F.leaky_relu_(z, slope), p, True)
    return F.leaky_relu_(z, slope)


class RelationalGraphStack(nn.Module):
    r"""GraphSmile's heterogeneous graph convolution with relation-typed edge weights.

    .. math::
        w_e = \mathrm{softplus}(\theta_{r(e)}),\quad
        \hat A = D^{-1/2} A_w D^{-1/2}\ (\text{norm=sym})\ \text{or}\ D^{-1} A_w\ (\text{norm=row}),\quad
        H^{(0)} = X,\quad H^{(l)} = \hat A H^{(l-1)} W^{(l)} + b^{(l)},\quad
        \mathrm{out} = X + \sum_{l=1}^{L} \mathrm{Dropout}(\mathrm{LeakyReLU}(H^{(l)} U^{(l)} + c^{(l)}))

    One learnable scalar per relation ``r`` (direction x clipped distance), kept
    positive by softplus so degrees stay positive; initialised to weight 1.
    ``\hat A`` is built once per call and reused by all ``L`` layers; how it is
    applied is ``propagation`` (module docstring). ``W^{(l)}, b^{(l)}`` live in
    ``convs[l]`` (:class:`GraphConvWeights`) in every mode, so weights load in any mode.

    Args:
        channels: node feature size (in = out).
        num_layers: number of stacked convolutions ``L``.
        num_relations: number of edge relations.
        dropout: dropout of each branch.
        propagation: ``"csr"`` (default) or ``"edgewise"`` (the ``GCNConv`` reference).
        norm: ``"sym"`` (default, GraphSmile's) or ``"row"`` (see :data:`NORMS`).

    Shapes:
        - x: ``(num_nodes, channels)``; edge_index: ``(2, E)``; relation: ``(E,)``
        - layout: optional :class:`CSRLayout` of ``edge_index`` (built here when absent)
        - output: ``(num_nodes, channels)``
    """

    def __init__(self, channels: int, num_layers: int, num_relations: int, dropout: float = 0.0,
                 propagation: str = PROPAGATIONS[0], norm: str = NORMS[0]):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm: expected one of {NORMS}, got {norm!r}")
        self.norm = norm
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.channels, self.num_layers, self.num_relations = channels, num_layers, num_relations
        self.propagation = check_propagation(propagation, internal=True)
        self.relation_weight = nn.Parameter(torch.empty(num_relations))
        self.convs = nn.ModuleList(GraphConvWeights(channels) for _ in range(num_layers))
        self.branches = nn.ModuleList(nn.Linear(channels, channels) for _ in range(num_layers))
        self.dropout = nn.Dropout(dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # softplus(x) = 1  <=>  x = log(e - 1)
        nn.init.constant_(self.relation_weight, float(torch.log(torch.expm1(torch.tensor(1.0)))))
        for conv in self.convs:
            conv.reset_parameters()
        for lin in self.branches:
            lin.reset_parameters()

    def edge_weight(self, relation: torch.Tensor) -> torch.Tensor:
        return F.softplus(self.relation_weight)[relation]

    def operator(self, edge_index: torch.Tensor, relation: torch.Tensor, num_nodes: int) -> torch.Tensor:
        """Normalised weight of every edge (edge order): the values of ``\\hat A``. O(E)."""
        return normalized_edge_weight(edge_index, self.edge_weight(relation), num_nodes, self.norm)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, relation: torch.Tensor,
                layout: CSRLayout | None = None) -> torch.Tensor:
        n = x.size(0)
        if self.propagation == "csr":
            if layout is None:
                layout = CSRLayout.from_edges(edge_index, n)
            values = self.operator(edge_index, relation, n)[layout.order]
        elif self.propagation == "edgewise":
            norm = self.operator(edge_index, relation, n)
        narrow = autocast_dtype(x.device.type)
        h, out = x, x
        for i, (conv, branch) in enumerate(zip(self.convs, self.branches)):
            # In place where autograd allows (csr_matmul and Linear do not save their outputs) and
            # leaky_relu + dropout fused (two bool masks kept for backward, not two float tensors):
            # fewer N x C tensors per layer, less heap to hold.
            if self.propagation == "csr":
                h = csr_matmul(values, conv.lin(h), layout).add_(conv.bias)
            elif self.propagation == "edgewise":
                h = gcn_propagate(conv.lin(h), edge_index, norm) + conv.bias
            else:   # identity: the dense floor, no message passing
                h = conv.lin(h) + conv.bias
            if narrow is not None:
                # Under autocast both this layer's branch and the next layer's conv would cast h to the
                # narrow type, each on its own (autocast caches weights, not activations): cast once.
                h = h.to(narrow)
            branch_out = leaky_relu_dropout(branch(h), self.dropout.p, self.training)
            out = out + branch_out if i == 0 else out.add_(branch_out)
        return out

    def extra_repr(self) -> str:
        return (f"channels={self.channels}, num_layers={self.num_layers}, num_relations={self.num_relations}, "
                f"propagation={self.propagation}, norm={self.norm}")


def check_propagation(name: str, internal: bool = False) -> str:
    """``name`` if it is a propagation mode, else a ValueError listing them."""
    allowed = _ALL_PROPAGATIONS if internal else PROPAGATIONS
    if name not in allowed:
        raise ValueError(f"propagation: expected one of {allowed}, got {name!r}")
    return name
