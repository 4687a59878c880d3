"""Graph layers: relation-weighted, symmetrically normalised stacked graph convolutions."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.nn import GCNConv
from torch_geometric.nn.conv.gcn_conv import gcn_norm


def normalized_edge_weight(edge_index: torch.Tensor, edge_weight: torch.Tensor, num_nodes: int,
                           ) -> torch.Tensor:
    """Symmetric normalisation ``D^-1/2 A D^-1/2`` by scatter over edges (no self loops added).

    ``A[t, s] = w`` for each edge ``s -> t``; ``D`` = weighted in-degree. O(E).
    """
    _, w = gcn_norm(edge_index, edge_weight, num_nodes=num_nodes, add_self_loops=False)
    return w


class RelationalGraphStack(nn.Module):
    r"""GraphSmile's heterogeneous graph convolution with relation-typed edge weights.

    .. math::
        w_e = \mathrm{softplus}(\theta_{r(e)}),\quad
        \hat A = D^{-1/2} A_w D^{-1/2},\quad
        H^{(0)} = X,\quad H^{(l)} = \hat A H^{(l-1)} W^{(l)} + b^{(l)},\quad
        \mathrm{out} = X + \sum_{l=1}^{L} \mathrm{Dropout}(\mathrm{LeakyReLU}(H^{(l)} U^{(l)} + c^{(l)}))

    One learnable scalar per relation ``r`` (direction x clipped distance), kept
    positive by softplus so degrees stay positive; initialised to weight 1.

    Args:
        channels: node feature size (in = out).
        num_layers: number of stacked convolutions ``L``.
        num_relations: number of edge relations.
        dropout: dropout of each branch.

    Shapes:
        - x: ``(num_nodes, channels)``; edge_index: ``(2, E)``; relation: ``(E,)``
        - output: ``(num_nodes, channels)``
    """

    def __init__(self, channels: int, num_layers: int, num_relations: int, dropout: float = 0.0):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.channels, self.num_layers, self.num_relations = channels, num_layers, num_relations
        self.relation_weight = nn.Parameter(torch.empty(num_relations))
        self.convs = nn.ModuleList(GCNConv(channels, channels, normalize=False, add_self_loops=False)
                                   for _ in range(num_layers))
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

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, relation: torch.Tensor) -> torch.Tensor:
        norm = normalized_edge_weight(edge_index, self.edge_weight(relation), x.size(0))
        h, out = x, x
        for conv, branch in zip(self.convs, self.branches):
            h = conv(h, edge_index, norm)
            out = out + self.dropout(F.leaky_relu(branch(h)))
        return out

    def extra_repr(self) -> str:
        return f"channels={self.channels}, num_layers={self.num_layers}, num_relations={self.num_relations}"
