"""``HEPFMNet``: the encode-process-decode graph network that produces one embedding per event.

Inputs are the five tensors of ``coffea_hepfm.graph.GraphBatch.to_torch()``: ``x [N, n_node]`` float32,
``edge_index [2, E]`` int64 (global node ids), ``edge_attr [E, n_edge]``, ``u [B, n_global]``,
``batch [N]`` int64. The number of events ``B`` is ``u.shape[0]``, so events with no nodes (and no edges)
still get an embedding from their global features.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from coffea_hepfm.model.layers import EdgeBlock, GlobalBlock, NodeBlock, mlp, scatter_sum

__all__ = ["HEPFMNet"]

AGGREGATIONS = ("mean", "sum")


class HEPFMNet(nn.Module):
    r"""Battaglia-style graph network with weights shared across processing steps.

    Encoders map nodes, edges and globals to ``hidden`` channels; ``n_proc_steps`` rounds of
    :class:`~coffea_hepfm.model.layers.EdgeBlock`, :class:`~coffea_hepfm.model.layers.NodeBlock` and
    :class:`~coffea_hepfm.model.layers.GlobalBlock` (the same three MLPs every round, each added as a
    residual) follow; a global decoder MLP gives the embedding ``[B, hidden]``.

    Parameters
    ----------
    n_node, n_edge, n_global : int
        Input feature counts (``GraphSpec.n_node_features`` etc.).
    hidden : int
        Latent size and embedding size.
    n_proc_steps : int
        Rounds of edge, node and global updates.
    aggr : {"mean", "sum"}
        How edges are pooled into nodes and nodes/edges into events. ``"mean"`` divides by
        ``max(count, 1)``, so empty events pool to zero either way.
    mlp_layers : int
        Linear layers per MLP (each followed by ReLU; the MLP ends in LayerNorm).

    Examples
    --------
    >>> net = HEPFMNet(n_node=13, n_edge=4, n_global=8)
    >>> net.embed(x, edge_index, edge_attr, u, batch).shape  # doctest: +SKIP
    torch.Size([B, 64])
    >>> len(net.layer_outputs(x, edge_index, edge_attr, u, batch))  # encoder, 4 steps, decoder  # doctest: +SKIP
    6
    """

    def __init__(
        self,
        n_node: int,
        n_edge: int,
        n_global: int,
        hidden: int = 64,
        n_proc_steps: int = 4,
        aggr: str = "mean",
        mlp_layers: int = 2,
    ):
        super().__init__()
        if aggr not in AGGREGATIONS:
            raise ValueError(f"aggr must be one of {AGGREGATIONS}, got {aggr!r}")
        for name, value in (("n_node", n_node), ("n_edge", n_edge), ("n_global", n_global)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if hidden < 1 or n_proc_steps < 0 or mlp_layers < 1:
            raise ValueError("hidden and mlp_layers must be >= 1 and n_proc_steps >= 0")
        self.n_node = n_node
        self.n_edge = n_edge
        self.n_global = n_global
        self.hidden = hidden
        self.n_proc_steps = n_proc_steps
        self.aggr = aggr
        self.mlp_layers = mlp_layers
        self._mean = aggr == "mean"

        self.node_encoder = mlp(n_node, hidden, mlp_layers)
        self.edge_encoder = mlp(n_edge, hidden, mlp_layers)
        self.global_encoder = mlp(n_global, hidden, mlp_layers)
        self.edge_block = EdgeBlock(hidden, mlp_layers)
        self.node_block = NodeBlock(hidden, mlp_layers)
        self.global_block = GlobalBlock(hidden, mlp_layers)
        self.decoder = mlp(hidden, hidden, mlp_layers)

    @classmethod
    def from_spec(cls, spec, **kwargs) -> HEPFMNet:
        """A network sized for graphs of ``spec`` (a ``coffea_hepfm.graph.GraphSpec``).

        >>> HEPFMNet.from_spec(GraphSpec(), hidden=32).n_node == GraphSpec().n_node_features  # doctest: +SKIP
        True
        """
        return cls(spec.n_node_features, spec.n_edge_features, spec.n_global_features, **kwargs)

    def get_config(self) -> dict:
        """Constructor arguments, as stored in model files (``HEPFMNet(**net.get_config())``)."""
        return {
            "n_node": self.n_node,
            "n_edge": self.n_edge,
            "n_global": self.n_global,
            "hidden": self.hidden,
            "n_proc_steps": self.n_proc_steps,
            "aggr": self.aggr,
            "mlp_layers": self.mlp_layers,
        }

    def reset_parameters(self) -> None:
        for m in self.modules():
            if m is not self and hasattr(m, "reset_parameters"):
                m.reset_parameters()

    def _check(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor, u: Tensor, batch: Tensor) -> None:
        if x.dim() != 2 or x.size(1) != self.n_node:
            raise ValueError(f"x must be [N, {self.n_node}], got {list(x.shape)}")
        if edge_attr.dim() != 2 or edge_attr.size(1) != self.n_edge:
            raise ValueError(f"edge_attr must be [E, {self.n_edge}], got {list(edge_attr.shape)}")
        if u.dim() != 2 or u.size(1) != self.n_global:
            raise ValueError(f"u must be [B, {self.n_global}], got {list(u.shape)}")
        if edge_index.dim() != 2 or edge_index.size(0) != 2 or edge_index.size(1) != edge_attr.size(0):
            raise ValueError(
                f"edge_index must be [2, E] with E = edge_attr.shape[0] = {edge_attr.size(0)}, "
                f"got {list(edge_index.shape)}"
            )
        if batch.dim() != 1 or batch.size(0) != x.size(0):
            raise ValueError(f"batch must be [N] with N = x.shape[0] = {x.size(0)}, got {list(batch.shape)}")

    def _run(
        self, x: Tensor, edge_index: Tensor, edge_attr: Tensor, u: Tensor, batch: Tensor, keep: bool
    ) -> list[Tensor]:
        if not torch.jit.is_tracing():
            self._check(x, edge_index, edge_attr, u, batch)
        n_events = u.size(0)
        n_nodes = x.size(0)
        dst = edge_index[1]

        inv_degree: Tensor | None = None
        inv_nodes: Tensor | None = None
        inv_edges: Tensor | None = None
        if self._mean:
            # Counts once per forward; max(count, 1) makes empty nodes/events pool to zero.
            degree = scatter_sum(torch.ones_like(edge_attr[:, :1]), dst, n_nodes)
            n_per_event = scatter_sum(torch.ones_like(x[:, :1]), batch, n_events)
            e_per_event = scatter_sum(degree, batch, n_events)
            inv_degree = 1.0 / degree.clamp(min=1.0)
            inv_nodes = 1.0 / n_per_event.clamp(min=1.0)
            inv_edges = 1.0 / e_per_event.clamp(min=1.0)

        h = self.node_encoder(x)
        e = self.edge_encoder(edge_attr)
        g = self.global_encoder(u)
        outputs: list[Tensor] = []
        if keep:
            outputs.append(g)
        for _ in range(self.n_proc_steps):
            e = e + self.edge_block(h, edge_index, e, g, batch)
            edge_sum = scatter_sum(e, dst, n_nodes)
            aggr = edge_sum if inv_degree is None else edge_sum * inv_degree
            h = h + self.node_block(h, aggr, g, batch)
            # Each edge has exactly one destination node in its own event: pooling the per-node edge
            # sums gives the per-event edge sum from N rows instead of E.
            node_pool = scatter_sum(h, batch, n_events)
            edge_pool = scatter_sum(edge_sum, batch, n_events)
            if inv_nodes is not None and inv_edges is not None:
                node_pool = node_pool * inv_nodes
                edge_pool = edge_pool * inv_edges
            g = g + self.global_block(g, node_pool, edge_pool)
            if keep:
                outputs.append(g)
        outputs.append(self.decoder(g))
        return outputs

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor, u: Tensor, batch: Tensor) -> Tensor:
        """The event embedding ``[B, hidden]`` (same as :meth:`embed`)."""
        return self._run(x, edge_index, edge_attr, u, batch, False)[-1]

    @torch.jit.export
    def embed(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor, u: Tensor, batch: Tensor) -> Tensor:
        """The event embedding ``[B, hidden]``."""
        return self._run(x, edge_index, edge_attr, u, batch, False)[-1]

    @torch.jit.export
    def layer_outputs(
        self, x: Tensor, edge_index: Tensor, edge_attr: Tensor, u: Tensor, batch: Tensor
    ) -> list[Tensor]:
        """Graph-level representations for CKA, each ``[B, hidden]``.

        ``n_proc_steps + 2`` entries: the encoded globals, the globals after each processing step, and
        the decoder output (the embedding).
        """
        return self._run(x, edge_index, edge_attr, u, batch, True)
