"""A *dense* padded version of the served network, for the ``bench triton`` comparison only.

coffea's ``triton_wrapper`` expects a dense model: fixed-shape inputs that the user builds in the
processor. For our graph network the equivalent dense model takes padded nodes, padded edges
``[B, max_nodes, max_nodes, Fe]`` (built by the client) and a node count, and runs the same weights
on all ``max_nodes^2`` node pairs with masks, which gives the same outputs as the sparse model.
That is what a coffea user would serve without our un-padding model (:mod:`coffea_hepfm.triton.padded`).

It reuses the submodules of a ``coffea_hepfm.model.ScoringModule`` (same weights, same first-layer
factorisation as :mod:`coffea_hepfm.model.layers`); the benchmark asserts equal outputs before timing.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["DENSE_INPUTS", "DenseScoringModule", "dense_config", "dense_edges"]

DENSE_INPUTS = ("NODES__0", "N_NODES__1", "EDGES__2", "GLOBALS__3")


def dense_edges(x: np.ndarray, counts: np.ndarray, max_nodes: int) -> np.ndarray:
    """Client-side edges ``[B, max_nodes, max_nodes, 4]`` (source, target), zero where no edge.

    Uses :func:`coffea_hepfm.graph.edges.edge_attr` / ``edge_index``, vectorised (no per-event loop).
    """
    from coffea_hepfm.graph.edges import edge_attr, edge_counts, edge_index

    counts = np.asarray(counts, dtype=np.int64)
    attr = edge_attr(x, counts)
    src, dst = edge_index(counts)
    start = np.cumsum(counts) - counts
    event = np.repeat(np.arange(len(counts)), edge_counts(counts))
    out = np.zeros((len(counts), max_nodes, max_nodes, attr.shape[1]), dtype=np.float32)
    out[event, src - start[event], dst - start[event]] = attr
    return out


class DenseScoringModule(nn.Module):
    """``(nodes [B, N, F], n_nodes [B, 1], edges [B, N, N, Fe], u [B, G]) -> (probs, embedding)``."""

    def __init__(self, scoring: nn.Module):
        super().__init__()
        net = scoring.classifier.backbone
        self.node_encoder = net.node_encoder
        self.edge_encoder = net.edge_encoder
        self.global_encoder = net.global_encoder
        # First layers of the edge and node blocks (factorised as in coffea_hepfm.model.layers) and
        # their tails; held directly so TorchScript calls them as this module's own submodules.
        eb, nb = net.edge_block, net.node_block
        self.e_src, self.e_dst, self.e_glob, self.e_edge, self.e_tail = (
            eb.lin_src, eb.lin_dst, eb.lin_glob, eb.lin_edge, eb.tail,
        )  # fmt: skip
        self.n_node, self.n_aggr, self.n_glob, self.n_tail = nb.lin_node, nb.lin_aggr, nb.lin_glob, nb.tail
        self.global_block = net.global_block
        self.decoder = net.decoder
        self.head = scoring.classifier.head
        self.n_steps = int(net.n_proc_steps)
        self.mean = bool(net.aggr == "mean")
        self.sigmoid = bool(scoring.sigmoid)

    def forward(self, nodes: Tensor, n_nodes: Tensor, edges: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
        n = nodes.size(1)
        slots = torch.arange(n, device=nodes.device)
        nm = (slots.unsqueeze(0) < n_nodes.reshape(-1, 1)).to(nodes.dtype)  # [B, N]
        not_self = (slots.unsqueeze(0) != slots.unsqueeze(1)).to(nodes.dtype)
        em = nm.unsqueeze(2) * nm.unsqueeze(1) * not_self.unsqueeze(0)  # [B, src, dst]
        if self.mean:
            inv_degree = 1.0 / em.sum(1).clamp(min=1.0).unsqueeze(2)  # incoming edges per node
            inv_nodes = 1.0 / nm.sum(1, keepdim=True).clamp(min=1.0)
            inv_edges = 1.0 / em.sum((1, 2)).unsqueeze(1).clamp(min=1.0)
        else:
            inv_degree = torch.ones_like(nm).unsqueeze(2)
            inv_nodes = torch.ones_like(nm[:, :1])
            inv_edges = torch.ones_like(nm[:, :1])
        h = self.node_encoder(nodes)
        e = self.edge_encoder(edges)
        g = self.global_encoder(u)
        for _ in range(self.n_steps):
            node_src = self.e_src(h) + self.e_glob(g).unsqueeze(1) + self.e_edge.bias
            node_dst = self.e_dst(h)
            pre = torch.matmul(e, self.e_edge.weight.t()) + node_src.unsqueeze(2) + node_dst.unsqueeze(1)
            e = e + self.e_tail(pre)
            edge_sum = (e * em.unsqueeze(3)).sum(1)  # [B, dst, H]
            aggr = edge_sum * inv_degree
            out = self.n_node(h) + torch.matmul(aggr, self.n_aggr.weight.t()) + self.n_glob(g).unsqueeze(1)
            h = h + self.n_tail(out)
            node_pool = (h * nm.unsqueeze(2)).sum(1) * inv_nodes
            edge_pool = edge_sum.sum(1) * inv_edges
            g = g + self.global_block(g, node_pool, edge_pool)
        emb = self.decoder(g)
        logits = self.head(emb).float()
        probs = torch.sigmoid(logits) if self.sigmoid else torch.softmax(logits, dim=1)
        return probs, emb


def dense_config(
    name: str, spec, n_classes: int, hidden: int, max_batch_size: int, threads: int, compute_batch: int = 512
) -> str:
    """``config.pbtxt`` of the dense model (python backend, same outputs as the padded one)."""
    n, f, fe, g = spec.max_nodes, spec.n_node_features, spec.n_edge_features, spec.n_global_features
    return f"""name: "{name}"
backend: "python"
max_batch_size: {max_batch_size}
input [
  {{ name: "NODES__0" data_type: TYPE_FP32 dims: [ {n}, {f} ] }},
  {{ name: "N_NODES__1" data_type: TYPE_INT64 dims: [ 1 ] }},
  {{ name: "EDGES__2" data_type: TYPE_FP32 dims: [ {n}, {n}, {fe} ] }},
  {{ name: "GLOBALS__3" data_type: TYPE_FP32 dims: [ {g} ] }}
]
output [
  {{ name: "PROBS__0" data_type: TYPE_FP32 dims: [ {n_classes} ] }},
  {{ name: "EMBEDDING__1" data_type: TYPE_FP32 dims: [ {hidden} ] }}
]
dynamic_batching {{ max_queue_delay_microseconds: 2000 }}
instance_group [ {{ kind: KIND_CPU count: 1 }} ]
parameters {{ key: "hepfm_threads" value {{ string_value: "{threads}" }} }}
parameters {{ key: "hepfm_compute_batch" value {{ string_value: "{compute_batch}" }} }}
"""
