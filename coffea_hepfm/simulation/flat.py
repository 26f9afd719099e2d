"""Flat (structure-of-arrays) views of Pythia event records, and ragged pairing helpers.

The detector and GenPart code work on flat numpy arrays over all particles of a batch plus an event index,
which keeps every step a handful of vectorised numpy calls.

Examples
--------
>>> import numpy as np
>>> from coffea_hepfm.simulation.flat import event_pairs
>>> ia, ib = event_pairs(np.array([0, 1, 1]), np.array([0, 2, 3]))   # A items in events 0,1,1; B: 2 in ev0, 1 in ev1
>>> ia.tolist(), ib.tolist()
([0, 0, 1, 2], [0, 1, 2, 2])
>>> event_pairs(np.array([], dtype=np.int64), np.array([0, 0]))[0].size   # no A items: no pairs
0
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import awkward as ak
import numpy as np


@dataclass
class FlatEvents:
    """All particles of ``n`` events, flattened. Indices into these arrays are "global" indices."""

    n: int
    offsets: np.ndarray  # [n + 1] start of each event
    evt: np.ndarray  # event index of each particle
    local: np.ndarray  # index of the particle inside its event's record (Pythia numbering)
    pid: np.ndarray
    status: np.ndarray
    mother1: np.ndarray  # global index, or -1 for the event's system entry
    daughter1_local: np.ndarray  # Pythia's own (in-event) daughter indices; see ``daughters``
    daughter2_local: np.ndarray
    px: np.ndarray
    py: np.ndarray
    pz: np.ndarray
    e: np.ndarray
    m: np.ndarray
    pt: np.ndarray
    eta: np.ndarray  # only where final state or pT > 5 GeV (NaN elsewhere); see ``eta_phi``
    phi: np.ndarray

    @cached_property
    def hadron_flavour(self) -> np.ndarray:
        """Per particle: 0 not a hadron, 1 light hadron, 4 charm hadron, 5 bottom hadron (computed once)."""
        aid = np.abs(self.pid)
        hadron = is_hadron(self.pid)
        d2, d3 = (aid // 100) % 10, (aid // 1000) % 10
        return np.select(
            [hadron & ((d2 == 5) | (d3 == 5)), hadron & ((d2 == 4) | (d3 == 4)), hadron], [5, 4, 1], 0
        ).astype(np.int8)

    def daughters(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Global indices (or -1) of the first and last daughter of the particles ``index``."""
        base = self.offsets[self.evt[index]]
        d1, d2 = self.daughter1_local[index], self.daughter2_local[index]
        return np.where(d1 > 0, d1 + base, -1), np.where(d2 > 0, d2 + base, -1)

    def eta_phi(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pseudorapidity and azimuth of any particles (beam-axis partons get |eta| = 1e4)."""
        pt = self.pt[index]
        eta = np.where(
            pt > 0, np.arcsinh(self.pz[index] / np.maximum(pt, 1e-12)), np.sign(self.pz[index]) * 1e4
        )
        return eta, np.arctan2(self.py[index], self.px[index])

    @classmethod
    def from_pythia(cls, prt: ak.Array) -> FlatEvents:
        # Zero-copy views of the layout nextBatch built (no awkward-level flattening).
        layout = ak.to_layout(prt)
        if not isinstance(layout, ak.contents.ListOffsetArray):
            layout = layout.to_ListOffsetArray64(True)
        raw_offsets = np.asarray(layout.offsets.data, dtype=np.int64)
        lo, hi = raw_offsets[0], raw_offsets[-1]
        rec = layout.content

        def col(*path):
            node = rec
            for name in path:
                node = node[name]
            return np.asarray(node.data)[lo:hi]

        offsets = raw_offsets - lo
        counts = np.diff(offsets)
        evt = np.repeat(np.arange(len(counts)), counts)
        base = offsets[evt]
        local = np.arange(offsets[-1]) - base
        px, py, pz, e = (col("p", c) for c in ("px", "py", "pz", "e"))
        pt = np.hypot(px, py)
        status = col("status")
        # Angles only where the detector needs them: final state and hard objects (B hadrons, ...).
        need = np.flatnonzero((status > 0) | (pt > 5.0))
        eta = np.full(len(pt), np.nan)
        phi = np.full(len(pt), np.nan)
        eta[need] = np.arcsinh(pz[need] / np.maximum(pt[need], 1e-9))
        phi[need] = np.arctan2(py[need], px[need])
        mother1 = col("mother1").astype(np.int64)

        return cls(
            n=len(counts),
            offsets=offsets,
            evt=evt,
            local=local,
            pid=col("id"),
            status=status,
            mother1=np.where(mother1 > 0, mother1 + base, -1),
            daughter1_local=col("daughter1"),
            daughter2_local=col("daughter2"),
            px=px,
            py=py,
            pz=pz,
            e=e,
            m=col("m"),
            pt=pt,
            eta=eta,
            phi=phi,
        )


def offsets_of(evt: np.ndarray, n: int) -> np.ndarray:
    """Per-event start offsets ``[n + 1]`` of an event-sorted index array."""
    return np.searchsorted(evt, np.arange(n + 1))


def event_pairs(evt_a: np.ndarray, offsets_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All (a, b) pairs of items in the same event.

    ``evt_a`` is the event of each A item; B items are event-sorted with per-event ``offsets_b``.
    Returns index arrays into A and into B.
    """
    starts = offsets_b[evt_a]
    nb = offsets_b[evt_a + 1] - starts
    ia = np.repeat(np.arange(len(evt_a)), nb)
    first = np.cumsum(nb) - nb
    ib = np.arange(nb.sum()) - np.repeat(first - starts, nb)
    return ia, ib


def delta_r2(eta1, phi1, eta2, phi2) -> np.ndarray:
    """Squared Delta R with the phi difference wrapped into [-pi, pi]."""
    dphi = (phi1 - phi2 + np.pi) % (2 * np.pi) - np.pi
    return (eta1 - eta2) ** 2 + dphi**2


def is_hadron(pid: np.ndarray) -> np.ndarray:
    """PDG hadron codes (mesons and baryons; not quarks, leptons, bosons, diquarks or BSM states)."""
    aid = np.abs(pid)
    return (aid > 100) & (aid < 1_000_000) & ((aid // 10) % 10 != 0)


def has_quark(pid: np.ndarray, q: int) -> np.ndarray:
    """Hadrons containing quark ``q`` (5 = b, 4 = c) in their PDG code."""
    aid = np.abs(pid)
    return is_hadron(pid) & (((aid // 100) % 10 == q) | ((aid // 1000) % 10 == q))
