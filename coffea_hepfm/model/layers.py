r"""Graph-network blocks (Battaglia et al., arXiv:1806.01261) written in the torch_geometric style.

One processing step updates edges, then nodes, then the per-event global vector::

    e'_k = phi_e(e_k, x_src(k), x_dst(k), u_g(k))
    x'_i = phi_x(x_i, rho_{e->x}({e'_k : dst(k) = i}), u_g(i))
    u'_g = phi_u(u_g, rho_{x->u}({x'_i : g(i) = g}), rho_{e->u}({e'_k : g(k) = g}))

Every ``phi`` is an MLP ``Linear -> ReLU -> Linear -> ReLU -> LayerNorm``. The first ``Linear`` of the
edge (and node) MLP is *factorised*: a weight matrix acting on a concatenation splits into blocks,

.. math::
    W [e \Vert x_s \Vert x_d \Vert u] = W_e e + (W_s x)_{s} + (W_d x)_{d} + (W_u u)_{g},

so the node and global projections are computed once per node / event and gathered per edge. It is the
same function as the concatenation form (``tests/test_model.py`` checks it numerically) for a fraction
of the FLOPs: fully connected graphs have ``n (n - 1)`` edges for ``n`` nodes.

Aggregations are scatter sums (:func:`scatter_sum`), so every block is ``torch.jit.script``-able and
exports to ONNX with dynamic numbers of nodes, edges and events, with either exporter (``dynamo=True``,
which needs ``onnxscript``, or the TorchScript-based ``dynamo=False``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["EdgeBlock", "GlobalBlock", "NodeBlock", "mlp", "scatter_sum"]


def scatter_sum(src: Tensor, index: Tensor, dim_size: int) -> Tensor:
    """Sum the rows of ``src`` into ``dim_size`` buckets given by ``index``.

    Parameters
    ----------
    src : Tensor
        ``[M, F]`` rows to sum.
    index : Tensor
        ``[M]`` int64 bucket of each row, ``0 <= index < dim_size``.
    dim_size : int
        Number of buckets; buckets that receive no row are zero.

    Returns
    -------
    Tensor
        ``[dim_size, F]``.

    Examples
    --------
    >>> scatter_sum(torch.ones(3, 1), torch.tensor([0, 0, 2]), 4).flatten().tolist()
    [2.0, 0.0, 1.0, 0.0]
    >>> scatter_sum(torch.ones(0, 2), torch.zeros(0, dtype=torch.long), 2).tolist()  # no rows
    [[0.0, 0.0], [0.0, 0.0]]
    """
    out = torch.zeros((dim_size, src.size(1)), dtype=src.dtype, device=src.device)
    if not torch.jit.is_scripting():  # (TorchScript compiles only the scatter_add_ path)
        # The torch.export-based ONNX exporter gets index_put_: ScatterND(add) is ~40x faster in
        # onnxruntime than ScatterElements(add). The TorchScript-based exporter (it traces) translates
        # index_put_/index_add_ wrongly, and eager torch runs scatter_add_ 2x faster, so they keep it.
        if torch.onnx.is_in_onnx_export() and not torch.jit.is_tracing():
            return out.index_put_((index,), src, accumulate=True)
    return out.scatter_add_(0, index.unsqueeze(1).expand(-1, src.size(1)), src)


def mlp(in_channels: int, hidden: int, n_layers: int = 2, first: bool = True) -> nn.Sequential:
    """``Linear -> ReLU`` repeated ``n_layers`` times, then ``LayerNorm``.

    With ``first=False`` the first ``Linear`` is left out (the caller computes it, factorised), so the
    sequence starts with its ``ReLU``.
    """
    layers: list[nn.Module] = []
    for i in range(n_layers):
        if i > 0 or first:
            layers.append(nn.Linear(in_channels if i == 0 else hidden, hidden))
        # In place: saves a pass over the (edge-sized) tensor; no backward needs the pre-ReLU values.
        layers.append(nn.ReLU(inplace=True))
    layers.append(nn.LayerNorm(hidden))
    return nn.Sequential(*layers)


def _reset_block_linear(parts: list[nn.Linear], fan_in: int) -> None:
    # Same distribution as nn.Linear(fan_in, out) would give the concatenated weight.
    bound = 1.0 / math.sqrt(fan_in)
    for lin in parts:
        nn.init.uniform_(lin.weight, -bound, bound)
        if lin.bias is not None:
            nn.init.uniform_(lin.bias, -bound, bound)


def _reset_tail(tail: nn.Sequential) -> None:
    for m in tail:
        if isinstance(m, (nn.Linear, nn.LayerNorm)):
            m.reset_parameters()


class EdgeBlock(nn.Module):
    r"""Edge update :math:`e'_k = \phi_e(e_k \Vert x_{s(k)} \Vert x_{d(k)} \Vert u_{g(s(k))})`.

    .. math::
        e'_k = \mathrm{MLP}\big(W_e e_k + (W_s x)_{s(k)} + (W_d x)_{d(k)} + (W_u u)_{g(s(k))} + b\big)

    where the bracket is the first, factorised layer (see the module docstring).

    Args:
        channels (int): latent size of edges, nodes and globals.
        n_layers (int): Linear layers in the MLP. (default: :obj:`2`)

    Shapes:
        - **input:** edge features :math:`(|\mathcal{E}|, C)`, node features :math:`(|\mathcal{V}|, C)`,
          global features :math:`(B, C)`, edge indices :math:`(2, |\mathcal{E}|)`,
          batch vector :math:`(|\mathcal{V}|)`
        - **output:** edge features :math:`(|\mathcal{E}|, C)`
    """

    def __init__(self, channels: int, n_layers: int = 2):
        super().__init__()
        self.channels = channels
        self.lin_edge = nn.Linear(channels, channels)
        self.lin_src = nn.Linear(channels, channels, bias=False)
        self.lin_dst = nn.Linear(channels, channels, bias=False)
        self.lin_glob = nn.Linear(channels, channels, bias=False)
        self.tail = mlp(channels, channels, n_layers, first=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _reset_block_linear([self.lin_edge, self.lin_src, self.lin_dst, self.lin_glob], 4 * self.channels)
        _reset_tail(self.tail)

    def concat_weight(self) -> tuple[Tensor, Tensor]:
        """The first layer as one ``Linear`` on ``[e, x_src, x_dst, u]``: ``(weight [C, 4C], bias [C])``."""
        w = torch.cat(
            [self.lin_edge.weight, self.lin_src.weight, self.lin_dst.weight, self.lin_glob.weight], 1
        )
        return w, self.lin_edge.bias

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor, u: Tensor, batch: Tensor) -> Tensor:
        # Per-node terms (bias included): the global projection is gathered once per node, not per edge.
        node_src = self.lin_src(x) + self.lin_glob(u).index_select(0, batch) + self.lin_edge.bias
        node_dst = self.lin_dst(x)
        return self.message(
            node_src.index_select(0, edge_index[0]), node_dst.index_select(0, edge_index[1]), edge_attr
        )

    def message(self, src_j: Tensor, dst_i: Tensor, edge_attr: Tensor) -> Tensor:
        # src_j is a fresh gather: accumulate the edge term into it in place (one pass fewer per edge).
        return self.tail(src_j.addmm_(edge_attr, self.lin_edge.weight.t()).add_(dst_i))

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.channels})"


class NodeBlock(nn.Module):
    r"""Node update from the aggregated incoming edges.

    .. math::
        x'_i = \mathrm{MLP}\big(W_x x_i + W_a \, \rho(\{e'_k : d(k) = i\}) + (W_u u)_{g(i)} + b\big)

    with :math:`\rho` the sum, or the mean (divided by ``max(in_degree, 1)``).

    Args:
        channels (int): latent size.
        n_layers (int): Linear layers in the MLP. (default: :obj:`2`)

    Shapes:
        - **input:** node features :math:`(|\mathcal{V}|, C)`, aggregated edges :math:`(|\mathcal{V}|, C)`
          (see :meth:`aggregate`), globals :math:`(B, C)`, batch :math:`(|\mathcal{V}|)`
        - **output:** node features :math:`(|\mathcal{V}|, C)`
    """

    def __init__(self, channels: int, n_layers: int = 2):
        super().__init__()
        self.channels = channels
        self.lin_node = nn.Linear(channels, channels)
        self.lin_aggr = nn.Linear(channels, channels, bias=False)
        self.lin_glob = nn.Linear(channels, channels, bias=False)
        self.tail = mlp(channels, channels, n_layers, first=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _reset_block_linear([self.lin_node, self.lin_aggr, self.lin_glob], 3 * self.channels)
        _reset_tail(self.tail)

    def concat_weight(self) -> tuple[Tensor, Tensor]:
        """The first layer as one ``Linear`` on ``[x, aggr, u]``: ``(weight [C, 3C], bias [C])``."""
        w = torch.cat([self.lin_node.weight, self.lin_aggr.weight, self.lin_glob.weight], 1)
        return w, self.lin_node.bias

    @staticmethod
    def aggregate(edge_attr: Tensor, dst: Tensor, n_nodes: int, inv_degree: Tensor | None) -> Tensor:
        """Sum (``inv_degree=None``) or mean of the edges arriving at each node; zero for none."""
        agg = scatter_sum(edge_attr, dst, n_nodes)
        if inv_degree is not None:
            agg = agg * inv_degree
        return agg

    def forward(self, x: Tensor, aggr: Tensor, u: Tensor, batch: Tensor) -> Tensor:
        out = self.lin_node(x).addmm_(aggr, self.lin_aggr.weight.t())
        return self.tail(out.add_(self.lin_glob(u).index_select(0, batch)))

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.channels})"


class GlobalBlock(nn.Module):
    r"""Global update from the pooled nodes and edges of each event.

    .. math::
        u'_g = \mathrm{MLP}\big(u_g \Vert \rho(\{x'_i : g(i) = g\}) \Vert \rho(\{e'_k : g(k) = g\})\big)

    One row per event, so the first layer is an ordinary concatenation. Events with no nodes pool to zero.

    Args:
        channels (int): latent size.
        n_layers (int): Linear layers in the MLP. (default: :obj:`2`)

    Shapes:
        - **input:** globals :math:`(B, C)`, pooled nodes :math:`(B, C)`, pooled edges :math:`(B, C)`
        - **output:** globals :math:`(B, C)`
    """

    def __init__(self, channels: int, n_layers: int = 2):
        super().__init__()
        self.channels = channels
        self.mlp = mlp(3 * channels, channels, n_layers)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _reset_tail(self.mlp)

    def forward(self, u: Tensor, node_pool: Tensor, edge_pool: Tensor) -> Tensor:
        return self.mlp(torch.cat([u, node_pool, edge_pool], dim=1))

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.channels})"
