"""Physics augmentations for contrastive pretraining, vectorised on flat node arrays.

Every augmentation takes and returns ``(x, counts, u)``: ``x [N, F]`` node features (columns named by
``GraphSpec.node_features``), ``counts [B]`` nodes per event and ``u [B, G]`` global features, and draws
its randomness from a ``numpy.random.Generator``. Inputs are never modified in place. Edge features are
not touched here: the batch builder recomputes them from the augmented nodes.

==================  =========================================================  ===========================
augmentation        what it does                                               keeps
==================  =========================================================  ===========================
``rotate_phi``      one random azimuthal rotation per event                    delta-phi, delta-eta, masses
``reflect_eta``     eta -> -eta for a random half of the events                |delta-eta|, delta-R, masses
``boost_z``         longitudinal boost: eta += y per event (not MET), E redone  delta-eta (massless: masses)
``smear``           per-object pT, E, m scaled by 1 + sigma * N(0, 1)           directions
``drop_objects``    each non-MET object dropped with probability p             the MET node
==================  =========================================================  ===========================

Globals follow the nodes where they can (HT and counts after smearing/dropout, MET after smearing).

Examples
--------
>>> aug = Augmenter(GraphSpec())                         # doctest: +SKIP
>>> x2, counts2, u2 = aug(x, counts, u, np.random.default_rng(0))  # doctest: +SKIP
>>> aug = Augmenter(GraphSpec(), ops=("rotate_phi",))    # one augmentation only  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

ALL_OPS = ("rotate_phi", "reflect_eta", "boost_z", "smear", "drop_objects")


class Augmenter:
    """Compose the augmentations ``ops`` (in that order).

    Parameters
    ----------
    spec
        The :class:`coffea_hepfm.graph.GraphSpec` whose feature names locate the columns.
    ops
        Names from :data:`ALL_OPS`.
    max_boost
        Rapidity shifts are uniform in ``[-max_boost, max_boost]``.
    smear_sigma
        Relative resolution of the per-object energy smearing.
    drop_prob
        Per-object dropout probability (MET is never dropped).
    """

    def __init__(
        self,
        spec,
        ops: Sequence[str] = ALL_OPS,
        max_boost: float = 0.5,
        smear_sigma: float = 0.05,
        drop_prob: float = 0.1,
    ):
        self.spec = spec
        self.ops = tuple(ops)
        self.max_boost = max_boost
        self.smear_sigma = smear_sigma
        self.drop_prob = drop_prob
        unknown = sorted(set(self.ops) - set(ALL_OPS))
        if unknown:
            raise ValueError(f"unknown augmentation(s) {unknown}; known: {ALL_OPS}")

    def _col(self, name: str) -> int:
        return self.spec.node_features.index(name)

    def _gcol(self, name: str) -> int:
        return self.spec.global_features.index(name)

    def __call__(self, x: np.ndarray, counts: np.ndarray, u: np.ndarray, rng: np.random.Generator):
        x, counts, u = x.copy(), np.asarray(counts).copy(), u.copy()
        for op in self.ops:
            x, counts, u = getattr(self, op)(x, counts, u, rng)
        return x, counts, u

    # -- individual augmentations (each also usable on its own) --------------------------------------
    def rotate_phi(self, x, counts, u, rng):
        angle = np.repeat(rng.uniform(-np.pi, np.pi, len(counts)), counts).astype(np.float32)
        s, c = self._col("sin_phi"), self._col("cos_phi")
        sin, cos = x[:, s].copy(), x[:, c].copy()
        ca, sa = np.cos(angle), np.sin(angle)
        x[:, s] = sin * ca + cos * sa
        x[:, c] = cos * ca - sin * sa
        return x, counts, u

    def reflect_eta(self, x, counts, u, rng):
        flip = np.repeat(rng.random(len(counts)) < 0.5, counts)
        e = self._col("eta")
        x[flip, e] = -x[flip, e]
        return x, counts, u

    def boost_z(self, x, counts, u, rng):
        shift = np.repeat(rng.uniform(-self.max_boost, self.max_boost, len(counts)), counts).astype(
            np.float32
        )
        not_met = x[:, self._col("is_met")] < 0.5
        e = self._col("eta")
        x[not_met, e] += shift[not_met]
        # The energy follows the new eta at fixed pT and mass: E = sqrt(m^2 + (pT cosh eta)^2).
        pt = np.expm1(x[:, self._col("log_pt")])
        m = np.expm1(x[:, self._col("log_mass")])
        energy = np.sqrt(m**2 + (pt * np.cosh(x[:, e])) ** 2)
        le = self._col("log_energy")
        x[not_met, le] = np.log1p(energy[not_met]).astype(np.float32)
        return x, counts, u

    def smear(self, x, counts, u, rng):
        scale = np.clip(1.0 + self.smear_sigma * rng.standard_normal(len(x)), 0.5, 1.5).astype(np.float32)
        pt_col = self._col("log_pt")
        old_pt = np.expm1(x[:, pt_col])
        for name in ("log_pt", "log_energy", "log_mass"):
            k = self._col(name)
            x[:, k] = np.log1p(np.expm1(x[:, k]) * scale)
        new_pt = np.expm1(x[:, pt_col])
        self._update_globals(x, counts, u, old_pt, new_pt, np.ones(len(x), bool))
        return x, counts, u

    def drop_objects(self, x, counts, u, rng):
        is_met = x[:, self._col("is_met")] > 0.5
        keep = is_met | (rng.random(len(x)) >= self.drop_prob)
        pt = np.expm1(x[:, self._col("log_pt")])
        self._update_globals(x, counts, u, pt, np.where(keep, pt, 0.0), keep)
        event = np.repeat(np.arange(len(counts)), counts)
        new_counts = np.bincount(event[keep], minlength=len(counts)).astype(counts.dtype)
        return x[keep], new_counts, u

    def _update_globals(self, x, counts, u, old_pt, new_pt, keep) -> None:
        """Keep HT, MET and object counts consistent with smeared / dropped nodes (in place on ``u``)."""
        event = np.repeat(np.arange(len(counts)), counts)
        n = len(counts)
        is_jet = x[:, self._col("is_jet")] > 0.5
        ht = np.expm1(u[:, self._gcol("log_ht")])
        delta_ht = np.bincount(event[is_jet], weights=(new_pt - old_pt)[is_jet], minlength=n)
        u[:, self._gcol("log_ht")] = np.log1p(np.maximum(ht + delta_ht, 0.0))
        is_met = x[:, self._col("is_met")] > 0.5
        met = np.zeros(n)
        met[event[is_met]] = new_pt[is_met]
        has_met = np.zeros(n, bool)
        has_met[event[is_met]] = True
        u[has_met, self._gcol("log_met")] = np.log1p(met[has_met])
        dropped = ~keep
        if dropped.any():
            for obj, gname in (
                ("jet", "log_n_jets"),
                ("electron", "log_n_electrons"),
                ("muon", "log_n_muons"),
                ("photon", "log_n_photons"),
            ):
                sel = dropped & (x[:, self._col(f"is_{obj}")] > 0.5)
                lost = np.bincount(event[sel], minlength=n)
                g = self._gcol(gname)
                u[:, g] = np.log1p(np.maximum(np.rint(np.expm1(u[:, g])) - lost, 0))
            if "btag_medium" in self.spec.node_features:  # graph spec v2: b-tag categories are node features
                sel = dropped & (x[:, self._col("btag_medium")] > 0.5)
                lost = np.bincount(event[sel], minlength=n)
                g = self._gcol("log_n_bjets")
                u[:, g] = np.log1p(np.maximum(np.rint(np.expm1(u[:, g])) - lost, 0))
