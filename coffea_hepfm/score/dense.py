"""The baseline HEPFMScore is measured against: coffea's ``torch_wrapper`` with padded, dense input.

coffea's :class:`coffea.ml_tools.torch_wrapper` feeds a TorchScript file numpy arrays of fixed shape, so a
graph network has to see every event padded to ``max_nodes`` and all ``max_nodes**2`` node pairs.
:class:`DensePaddedScorer` computes *the same function* as a trained :class:`~coffea_hepfm.model.HEPFMNet`
(same weights, same features; ``tests/test_score_bench.py`` checks the probabilities agree) on
``nodes [B, max_nodes, F]``, ``n_nodes [B]`` and ``globals [B, G]``, with masks instead of edge lists, and
rebuilds the edge features inside the module. :class:`PaddedGraphTorchWrapper` is the ``torch_wrapper``
subclass a coffea user would write for it: build the node record, pad, call the scripted module.
"""

from __future__ import annotations

import math
import os

import awkward as ak
import numpy as np
import torch
from coffea.ml_tools.torch_wrapper import torch_wrapper
from torch import Tensor, nn

__all__ = ["DensePaddedScorer", "PaddedGraphTorchWrapper", "save_dense_torchscript"]


class DensePaddedScorer(nn.Module):
    """Dense, masked twin of ``ScoringModule(HEPFMClassifier)``: ``(nodes, n_nodes, u) -> probs [B, C]``.

    Parameters
    ----------
    classifier
        A loaded ``HEPFMClassifier`` (its sub-modules, and so its weights, are shared).
    node_features
        Names of the node-feature columns (``GraphSpec.node_features``), to find pt/eta/phi/E/m.
    sigmoid
        ``True`` for multilabel / single-output heads (as ``ScoringModule``), else softmax.
    """

    def __init__(self, classifier, node_features: tuple[str, ...], sigmoid: bool = False):
        super().__init__()
        net = classifier.backbone
        self.node_encoder = net.node_encoder
        self.edge_encoder = net.edge_encoder
        self.global_encoder = net.global_encoder
        self.edge_block = net.edge_block
        self.node_block = net.node_block
        self.global_block = net.global_block
        self.decoder = net.decoder
        self.head = classifier.head
        self.n_proc_steps: int = net.n_proc_steps
        self.mean: bool = net.aggr == "mean"
        self.sigmoid: bool = sigmoid
        col = {name: i for i, name in enumerate(node_features)}
        self.i_log_pt: int = col["log_pt"]
        self.i_eta: int = col["eta"]
        self.i_sin: int = col["sin_phi"]
        self.i_cos: int = col["cos_phi"]
        self.i_log_e: int = col["log_energy"]
        self.i_log_m: int = col["log_mass"]

    def edge_features(self, nodes: Tensor) -> Tensor:
        """``[B, M, M, 4]`` (source i, target j) features, as ``coffea_hepfm.graph.edges.edge_attr``."""
        x = nodes.to(torch.float64)
        pt = torch.expm1(x[..., self.i_log_pt])
        eta = x[..., self.i_eta]
        s = x[..., self.i_sin]
        c = x[..., self.i_cos]
        phi = torch.atan2(s, c)
        e = torch.expm1(x[..., self.i_log_e])
        m2 = torch.expm1(x[..., self.i_log_m]) ** 2
        px, py, pz = pt * c, pt * s, pt * torch.sinh(eta)
        deta = eta[:, None, :] - eta[:, :, None]
        dphi = torch.remainder(phi[:, None, :] - phi[:, :, None] + math.pi, 2 * math.pi) - math.pi
        dot = e[:, :, None] * e[:, None, :] - (
            px[:, :, None] * px[:, None, :]
            + py[:, :, None] * py[:, None, :]
            + pz[:, :, None] * pz[:, None, :]
        )
        mass2 = m2[:, :, None] + m2[:, None, :] + 2.0 * dot
        out = torch.stack(
            [deta, dphi, torch.hypot(deta, dphi), torch.log1p(torch.sqrt(torch.clamp(mass2, min=0.0)))],
            dim=-1,
        )
        return out.to(torch.float32)

    def forward(self, nodes: Tensor, n_nodes: Tensor, u: Tensor) -> Tensor:
        m = nodes.size(1)
        n = n_nodes.reshape(-1).to(torch.long)
        node_mask = (torch.arange(m, device=nodes.device)[None, :] < n[:, None]).to(nodes.dtype)  # [B, M]
        eye = torch.eye(m, dtype=nodes.dtype, device=nodes.device)
        edge_mask = node_mask[:, :, None] * node_mask[:, None, :] * (1.0 - eye)  # [B, M(src), M(dst)]
        degree = edge_mask.sum(1)  # incoming edges per target node [B, M]
        n_per_event = node_mask.sum(1, keepdim=True)
        e_per_event = degree.sum(1, keepdim=True)

        h = self.node_encoder(nodes)
        e = self.edge_encoder(self.edge_features(nodes))
        g = self.global_encoder(u)
        em = edge_mask[..., None]
        nm = node_mask[..., None]
        for _ in range(self.n_proc_steps):
            eb = self.edge_block
            src = eb.lin_src(h) + eb.lin_glob(g)[:, None, :]
            dst = eb.lin_dst(h)
            e = e + eb.tail(eb.lin_edge(e) + src[:, :, None, :] + dst[:, None, :, :])
            edge_sum = (e * em).sum(1)  # [B, M(dst), C]
            aggr = edge_sum / degree.clamp(min=1.0)[..., None] if self.mean else edge_sum
            nb = self.node_block
            h = h + nb.tail(nb.lin_node(h) + nb.lin_aggr(aggr) + nb.lin_glob(g)[:, None, :])
            node_pool = (h * nm).sum(1)
            edge_pool = edge_sum.sum(1)
            if self.mean:
                node_pool = node_pool / n_per_event.clamp(min=1.0)
                edge_pool = edge_pool / e_per_event.clamp(min=1.0)
            g = g + self.global_block(g, node_pool, edge_pool)
        logits = self.head(self.decoder(g)).float()
        return torch.sigmoid(logits) if self.sigmoid else torch.softmax(logits, dim=1)


def save_dense_torchscript(model: str | os.PathLike, out: str | os.PathLike) -> tuple[str, dict]:
    """Script :class:`DensePaddedScorer` for a model file and ``torch.jit.save`` it (what torch_wrapper loads).

    Returns ``(path, graph spec dict)``.
    """
    from coffea_hepfm.model.io import load_model

    loaded = load_model(model)
    spec = loaded.spec
    sigmoid = loaded.multilabel or loaded.module.n_outputs == 1
    scripted = torch.jit.script(DensePaddedScorer(loaded.module, spec.node_features, sigmoid).eval())
    torch.jit.save(scripted, os.fspath(out))
    return os.fspath(out), loaded.graph_spec


class PaddedGraphTorchWrapper(torch_wrapper):
    """coffea ``torch_wrapper`` on padded node arrays: ``(nodes [B, max_nodes, F], n_nodes [B], u [B, G])``.

    Parameters
    ----------
    torch_jit
        TorchScript file from :func:`save_dense_torchscript`.
    spec_dict
        The model's graph spec (``GraphSpec.to_dict()``); events with more nodes than
        ``spec.max_nodes`` cannot occur (the spec caps each object type).
    """

    def __init__(self, torch_jit: str, spec_dict: dict):
        super().__init__(torch_jit)
        self.spec_dict = spec_dict

    def prepare_awkward(self, events):
        from coffea_hepfm.graph import GraphSpec, build_node_record

        spec = GraphSpec.from_dict(self.spec_dict)
        record = build_node_record(events, spec)
        padded = ak.pad_none(record.nodes, spec.max_nodes, axis=1, clip=True)
        nodes = ak.fill_none(padded, np.zeros(spec.n_node_features, dtype=np.float32), axis=1)
        n_nodes = ak.values_astype(ak.num(record.nodes, axis=1), np.int64)
        return (nodes, n_nodes, record.globals), {}

    def validate_numpy_input(self, nodes: np.ndarray, n_nodes: np.ndarray, u: np.ndarray) -> None:
        if nodes.ndim != 3 or n_nodes.shape != (len(nodes),) or len(u) != len(nodes):
            raise ValueError(f"bad padded input shapes {nodes.shape}, {n_nodes.shape}, {u.shape}")
