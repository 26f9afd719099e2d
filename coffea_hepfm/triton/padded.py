"""The served model: :class:`PaddedScoringModule` takes the wire format of :mod:`coffea_hepfm.triton.wire`
(padded nodes, node counts, globals), un-pads the nodes, rebuilds the fully connected edges with
:class:`EdgeFeatures` and runs the scoring module. ``export-triton`` scripts it to ``model.pt``.

Examples
--------
>>> served = torch.jit.script(PaddedScoringModule(loaded.scoring_module(), spec.max_nodes))  # doctest: +SKIP
>>> probs, emb = served(nodes, n_nodes, u)   # [B, 23, 13] f32, [B, 1] i64, [B, 7] f32   # doctest: +SKIP
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from coffea_hepfm.triton.wire import INPUTS, OUTPUTS, pad_nodes  # noqa: F401  (re-exported)

__all__ = ["INPUTS", "OUTPUTS", "EdgeFeatures", "PaddedScoringModule", "pad_nodes"]


class EdgeFeatures(nn.Module):
    """Torch twin of :func:`coffea_hepfm.graph.edges.edge_attr`: ``(x [N, F], src [E], dst [E])`` ->
    float32 ``[E, 4]`` (delta_eta, delta_phi, delta_r, log_mass_pair), same formulas in the same
    precision (per-node kinematics in float64 rounded to float32, per-edge arithmetic in float32,
    the cancellation-free pair mass)::

        m^2 = m_a^2 + m_b^2 + 2 [2 (mT_a mT_b sinh^2(dy/2) + pT_a pT_b sin^2(dphi/2))
                                 + pT_a d_b + d_a pT_b + d_a d_b],   d = m^2 / (mT + pT)

    Directed edges are computed directly; the numpy version computes ``i < j`` and negates the deltas
    for ``j -> i``, which is the same in IEEE arithmetic (differences negate exactly).

    The node-feature columns are looked up by name in ``node_features`` (default
    ``coffea_hepfm.graph.spec.NODE_FEATURES``) and stored as attributes, so the scripted file is
    self-contained. ``onnx_compatible=True`` writes ``expm1``, ``log1p``, ``sinh``, ``asinh`` and
    ``hypot`` through ``exp``/``log``/``sqrt`` (the legacy ONNX exporter has none of them) and takes
    ``atan2`` in float32 anyway; differences are at float32 rounding level.
    """

    def __init__(self, node_features: tuple[str, ...] | None = None, onnx_compatible: bool = False):
        super().__init__()
        if node_features is None:
            from coffea_hepfm.graph.spec import NODE_FEATURES as node_features
        col = {name: i for i, name in enumerate(node_features)}
        self.log_pt = col["log_pt"]
        self.eta = col["eta"]
        self.sin_phi = col["sin_phi"]
        self.cos_phi = col["cos_phi"]
        self.log_mass = col["log_mass"]
        self.onnx_compatible = bool(onnx_compatible)

    def _expm1(self, x: Tensor) -> Tensor:
        return torch.exp(x) - 1.0 if self.onnx_compatible else torch.expm1(x)

    def _log1p(self, x: Tensor) -> Tensor:
        return torch.log(x + 1.0) if self.onnx_compatible else torch.log1p(x)

    def _sinh(self, x: Tensor) -> Tensor:
        return 0.5 * (torch.exp(x) - torch.exp(-x)) if self.onnx_compatible else torch.sinh(x)

    def _asinh(self, x: Tensor) -> Tensor:
        if self.onnx_compatible:
            a = torch.abs(x)
            return torch.sign(x) * torch.log(a + torch.sqrt(a * a + 1.0))
        return torch.asinh(x)

    def _hypot(self, a: Tensor, b: Tensor) -> Tensor:
        return torch.sqrt(a * a + b * b) if self.onnx_compatible else torch.hypot(a, b)

    def forward(self, x: Tensor, src: Tensor, dst: Tensor) -> Tensor:
        # Per-node kinematics: float64, then float32 (as graph.edges._node_kinematics).
        x64 = x.to(torch.float64)
        pt = self._expm1(x64[:, self.log_pt])
        eta = x64[:, self.eta]
        m = self._expm1(x64[:, self.log_mass])
        mt = self._hypot(pt, m)
        positive = mt > 0
        safe = torch.where(positive, mt, torch.ones_like(mt))
        y = torch.where(positive, self._asinh(pt * self._sinh(eta) / safe), eta)
        d = torch.where(positive, m * m / (safe + pt), torch.zeros_like(mt))
        if self.onnx_compatible:  # onnxruntime has no float64 Atan
            phi = torch.atan2(x[:, self.sin_phi].float(), x[:, self.cos_phi].float())
        else:  # float64 rounded to float32 matches numpy's float32 arctan2 more often than torch's
            phi = torch.atan2(x64[:, self.sin_phi], x64[:, self.cos_phi]).float()
        eta, y, mt, pt, d, m2 = (t.float() for t in (eta, y, mt, pt, d, m * m))
        # Per-edge arithmetic in float32, a = source, b = target.
        two_pi = torch.tensor(2 * math.pi, dtype=torch.float32)
        pi = torch.tensor(math.pi, dtype=torch.float32)
        deta = eta[dst] - eta[src]
        dphi = phi[dst] - phi[src]
        dphi = dphi - two_pi * (dphi >= pi).float()
        dphi = dphi + two_pi * (dphi < -pi).float()
        dr = self._hypot(deta, dphi)
        sh = self._sinh(0.5 * (y[dst] - y[src]))
        sn = torch.sin(0.5 * dphi)
        pa, pb, da, db = pt[src], pt[dst], d[src], d[dst]
        mass2 = mt[src] * mt[dst] * sh * sh
        mass2 = mass2 + pa * pb * sn * sn
        mass2 = mass2 * 2
        mass2 = mass2 + (pa * db + da * pb + da * db)
        mass2 = mass2 * 2
        mass2 = mass2 + (m2[src] + m2[dst])
        log_m = self._log1p(torch.sqrt(mass2))
        return torch.stack([deta, dphi, dr, log_m], dim=1)


class PaddedScoringModule(nn.Module):
    """Serve a scoring module (``(x, edge_index, edge_attr, u, batch) -> (probs, embedding)``) on the
    padded wire format: un-pad the nodes, rebuild the fully connected edges in the order of
    :func:`coffea_hepfm.graph.edges.edge_index` (event by event, source-major), score.

    ``torch.jit.script``-able; the exported ``model.pt`` is this module scripted.

    Parameters
    ----------
    scoring : nn.Module
        E.g. ``coffea_hepfm.model.ScoringModule`` (already scripted or not).
    max_nodes : int
        ``GraphSpec.max_nodes``.
    onnx_compatible : bool
        Passed to :class:`EdgeFeatures` (for ``torch.onnx.export``).
    """

    def __init__(self, scoring: nn.Module, max_nodes: int, onnx_compatible: bool = False):
        super().__init__()
        self.scoring = scoring
        self.edges = EdgeFeatures(onnx_compatible=onnx_compatible)
        self.max_nodes = int(max_nodes)

    def forward(self, nodes: Tensor, n_nodes: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
        counts = n_nodes.reshape(-1)
        if not torch.jit.is_tracing():
            if nodes.dim() != 3 or nodes.size(1) != self.max_nodes:
                raise ValueError("NODES must be [B, max_nodes, F]")
            if counts.numel() > 0 and (bool((counts < 0).any()) or bool((counts > self.max_nodes).any())):
                raise ValueError("N_NODES must be in [0, max_nodes]")
        slots = torch.arange(self.max_nodes, device=nodes.device)
        node_mask = slots.unsqueeze(0) < counts.unsqueeze(1)  # [B, max_nodes]
        where = node_mask.nonzero()  # row-major: event by event, node order kept
        batch = where[:, 0]
        x = nodes[batch, where[:, 1]]
        # Pairs (event, source, target) with both real and source != target, in lexicographic order.
        not_self = slots.unsqueeze(0) != slots.unsqueeze(1)
        pair_mask = node_mask.unsqueeze(2) & node_mask.unsqueeze(1) & not_self.unsqueeze(0)
        pairs = pair_mask.nonzero()
        start = torch.cumsum(counts, 0) - counts
        offset = start[pairs[:, 0]]
        src = offset + pairs[:, 1]
        dst = offset + pairs[:, 2]
        edge_attr = self.edges(x, src, dst)
        edge_index = torch.stack([src, dst], dim=0)
        return self.scoring(x, edge_index, edge_attr, u, batch)
