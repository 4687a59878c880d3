"""DialogueGCN's edge attention (Ghosal et al., EMNLP 2019, Sec. 3.3.2) on torch_geometric.

* :class:`EdgeAttention`: a weight per edge ``j -> i`` of the window graph,
  ``alpha_ij = softmax_{j in window(i)}(g_i^T W_e g_j)``, the softmax taken over each target's
  incoming edges (``torch_geometric.utils.softmax``, a scatter over edges: O(E)).
* :class:`EdgeWeightedRGCNConv`: torch_geometric's ``RGCNConv`` whose messages are scaled by those
  weights, ``h_i = sum_r sum_{j in N_r(i)} alpha_ij / c_{i,r} W_r g_j + alpha_ii W_0 g_i + b``
  (``c_{i,r} = |N_r(i)|``: RGCNConv's own per-relation mean). Its parameters, their names and
  initialisation are RGCNConv's; with every weight 1 it computes what RGCNConv computes, in one
  gather / scatter over all edges instead of RGCNConv's loop of one ``propagate`` per relation
  (DialogueGCN uses it with and without edge attention).

The original code (declare-lab/conv-emotion, ``MaskedEdgeAttention``) scores the window with a
linear map to ``max_seq_len`` positions and hands the weights to a torch_geometric 1.x ``RGCNConv``
as ``edge_norm`` with ``add`` aggregation and an unweighted root term; this is the paper's formula.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_geometric.nn import RGCNConv
from torch_geometric.typing import OptTensor
from torch_geometric.utils import softmax


class EdgeAttention(nn.Module):
    r"""Edge weights ``alpha_ij = softmax_j(g_i^T W_e g_j)`` over the incoming edges ``j -> i`` of each node.

    Args:
        channels: size of the node features ``g`` (the sequential encoder's output).

    Shapes:
        **input:** ``x`` (N, channels), ``edge_index`` (2, E) (row 0 = source ``j``, row 1 = target ``i``)
        **output:** (E,) weights, summing to 1 over the incoming edges of every node that has any.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.lin = nn.Linear(channels, channels, bias=False)      # W_e
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.lin.reset_parameters()

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        src, dst = edge_index[0], edge_index[1]
        scores = (x[dst] * self.lin(x)[src]).sum(-1)               # g_i . (W_e g_j), one per edge
        return softmax(scores, dst, num_nodes=x.size(0))


class EdgeWeightedRGCNConv(RGCNConv):
    r"""``RGCNConv`` with a weight per edge and, optionally, per node on the root (self) term, in one pass.

    .. math::
        h_i = \sum_r \frac{1}{|N_r(i)|} \sum_{j \in N_r(i)} w_{ji} W_r x_j + s_i W_0 x_i + b

    ``edge_weight`` None means every ``w = 1`` and ``root_weight`` None every ``s = 1``: RGCNConv's own
    function (tested), with RGCNConv's parameters, names and initialisation. RGCNConv's forward loops
    over the relation types, one ``propagate`` each: 162 of them for MELD's 9 speaker slots. This one
    is a single gather / scatter over all edges: ``1 / |N_r(i)|`` from one ``bincount`` of the
    (target, relation) pairs, each node transformed once, and each edge's message picked from it:

    * with a basis decomposition of fewer bases than relations (``W_r = sum_b a_rb V_b``), each node
      is transformed by the ``B`` bases and each edge mixes its source's ``B`` rows with its
      relation's coefficients (``N x C_in x B x C_out`` + ``E x B x C_out`` multiply-adds);
    * otherwise the ``R`` relation matrices are composed (or taken) and each edge gathers its
      source's row of its relation (``N x C_in x R x C_out``).

    It needs float features, a ``Tensor`` ``edge_index`` and no block decomposition (what DialogueGCN
    uses).

    Shapes:
        **input:** ``x`` (N, C_in), ``edge_index`` (2, E), ``edge_type`` (E,), ``edge_weight`` (E,) or None,
        ``root_weight`` (N,) or None
        **output:** (N, C_out)
    """

    def forward(self, x: Tensor, edge_index: Tensor, edge_type: OptTensor = None,  # type: ignore[override]
                edge_weight: OptTensor = None, root_weight: OptTensor = None) -> Tensor:
        if self.num_blocks is not None or not isinstance(edge_index, Tensor) or not torch.is_floating_point(x):
            raise ValueError("EdgeWeightedRGCNConv: edge weights need float node features, a Tensor edge_index "
                             "and no block decomposition")
        if edge_type is None:
            raise ValueError("EdgeWeightedRGCNConv: edge_type is required")
        n, num_rel = x.size(0), self.num_relations
        c_in, c_out = self.in_channels_l, self.out_channels
        src, dst = edge_index[0], edge_index[1]
        key = dst * num_rel + edge_type                              # (target, relation) of each edge
        coef = torch.bincount(key, minlength=n * num_rel)[key].reciprocal().to(x.dtype)   # 1 / |N_r(i)|
        if edge_weight is not None:
            coef = coef * edge_weight
        if self.num_bases is not None and self.num_bases < num_rel:
            b = self.num_bases
            xv = (x @ self.weight.permute(1, 0, 2).reshape(c_in, b * c_out)).view(n, b, c_out)
            mix = self.comp[edge_type] * coef[:, None]                                   # (E, B)
            msg = torch.bmm(mix[:, None, :], xv[src]).squeeze(1)                         # (E, C_out)
        else:
            weight = self.weight
            if self.num_bases is not None:       # basis decomposition, as RGCNConv composes it
                weight = (self.comp @ weight.view(self.num_bases, -1)).view(num_rel, c_in, c_out)
            xw = (x @ weight.permute(1, 0, 2).reshape(c_in, num_rel * c_out)).view(n, num_rel, c_out)
            msg = xw[src, edge_type] * coef[:, None]
        out = msg.new_zeros(n, c_out).index_add_(0, dst, msg)
        if self.root is not None:
            root = x @ self.root
            out = out + (root if root_weight is None else root * root_weight[:, None])
        if self.bias is not None:
            out = out + self.bias
        return out


def self_loop_weight(edge_weight: Tensor, edge_index: Tensor, num_nodes: int) -> Tensor:
    """``(N,)``: the weight of each node's self-loop edge ``i -> i`` (0 for a node without one)."""
    loop = edge_index[0] == edge_index[1]
    return edge_weight.new_zeros(num_nodes).index_put_((edge_index[1][loop],), edge_weight[loop])
