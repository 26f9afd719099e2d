"""Pileup: the interaction profile, vertices, rho, pileup jets and the pileup terms of isolation and MET.

The simulation emulates CMS Run 3 2022 (Run3Summer22 MC, NanoAOD v12, PUPPI jets and MET). Where the
numbers come from:

* ``Pileup_nTrueInt``: Gamma(k = 17.8, theta = 2.04), mean 36.3, sd 8.6, matching ``Pileup_nTrueInt`` in
  CMS Run3Summer22 ttbar (``shared/data/nanoaod/nano_tt_v12.root``: mean 36.3, 5-95 % 22.3-50.5);
  ``Pileup_nPU`` ~ Poisson(nTrueInt) as in CMS's mixing.
* ``PV_npvs`` ~ Binomial(nPU + 1, 0.80), ``PV_npvsGood`` ~ Binomial(npvs, 0.92): the vertex
  reconstruction efficiency for pileup interactions (CMS tracking paper, JINST 9 (2014) P10009, Sec. 5:
  low-multiplicity interactions are lost) set to reproduce the CMS file (means 29.8 and 27.4 at
  nTrueInt 36.3).
* ``PV_x``, ``PV_y``, ``PV_z`` (cm): the hard vertex spread like the Run3Summer22 beam spot (Gaussian means
  0.1006, -0.0150, 1.25 and widths 0.0012, 0.0013, 3.59, the CMS file's primary vertices); coffea's
  ``events.PV`` needs them.
* ``Rho_fixedGridRhoFastjetAll`` = 0.586 nPU + 3.97 GeV, Gaussian spread 4.66 GeV: a fit to the CMS file.
* Pileup jets: PUPPI (CMS JME-18-001, JINST 15 (2020) P09018) removes most of them, and what survives
  grows with the number of interactions. Jets without a GenJet in the CMS file: 0.39, 0.91 and 1.06 per
  event for nPU < 30, 30-40 and > 40. ``PU_JETS_PER_INTERACTION`` and ``PU_JETS_OFFSET`` give
  lambda = 0.028 (nPU - 10) (the rest of CMS's unmatched jets are soft hard-scatter jets whose GenJet is
  below NanoAOD's 10 GeV, which the detector produces itself); their |eta| and pT spectra are the CMS
  file's unmatched jets (``PU_ETA_BINS``/``PU_ETA_WEIGHTS``, ``PU_PT_BINS``/``PU_PT_WEIGHTS``), peaked at
  the endcap-forward transition 2.7 < |eta| < 3.0. They are light-flavour, ``genJetIdx`` = -1, and pass
  the jet ID as often as the CMS file's unmatched jets do (41 of 42 central ones are tight): their
  energy fractions are those of an average hadronic jet.
* Isolation: charged pileup is removed by vertex association; neutral pileup in a cone is a compound
  Poisson sum (PF clusters of mean pT 2 GeV; charged pileup tracks of 0.7 GeV) of mean ``EA * rho`` (electron/photon effective areas, EGM
  Fall17 V2: 0.14 barrel, 0.11 endcap, cone 0.3, scaled by area for 0.4), and CMS subtracts EA * rho
  (electrons, photons) or 0.5 x the charged pileup in the cone (muons, Delta-beta, CMS MUO-16-001
  Sec. 6): :func:`neutral_pileup`.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(1)
>>> n_true = pileup_profile(20000, rng)
>>> bool(35 < n_true.mean() < 38)
True
>>> pu = pileup_jets(np.array([0, 10, 60]), rng)   # nPU <= 10: no pileup jets
>>> bool(np.all(pu["evt"] == 2))
True
"""

from __future__ import annotations

import numpy as np

TRUE_INT_SHAPE, TRUE_INT_SCALE = 17.8, 2.04
VERTEX_EFF, GOOD_VERTEX_EFF = 0.80, 0.92
BEAM_SPOT = {"x": (0.1006, 0.0012), "y": (-0.0150, 0.0013), "z": (1.25, 3.59)}
RHO_SLOPE, RHO_OFFSET, RHO_SPREAD = 0.586, 3.97, 4.66
PU_JETS_PER_INTERACTION, PU_JETS_OFFSET = 0.028, 10.0
PU_ETA_BINS = np.array([0.0, 1.5, 2.5, 2.7, 3.0, 3.5, 4.0, 4.7])
PU_ETA_WEIGHTS = np.array([23, 19, 11, 45, 29, 22, 12], float)
PU_PT_BINS = np.array([15.0, 17.5, 20.0, 25.0, 30.0, 40.0, 60.0, 100.0])
PU_PT_WEIGHTS = np.array([70, 26, 27, 20, 16, 6, 2], float)
EFFECTIVE_AREA = {"barrel": 0.14, "endcap": 0.11}  # cone 0.3, |eta| < 1.479 / beyond
PU_PARTICLE_PT = 2.0  # GeV, mean pT of a pileup PF cluster (particles come in clumps: pi0s, minijets)
# Charged pileup tracks PUPPI keeps in jets (not associated with any vertex, close in z to the leading one;
# JME-18-001 Sec. 4): per jet inside the tracker, Poisson mean PU_CHARGED_IN_JET * nPU, mean pT 0.7 GeV.
PU_CHARGED_IN_JET, PU_CHARGED_PT = 0.03, 0.7


def pileup_profile(n: int, rng: np.random.Generator) -> np.ndarray:
    """``Pileup_nTrueInt`` (float32) for ``n`` events."""
    return np.clip(rng.gamma(TRUE_INT_SHAPE, TRUE_INT_SCALE, n), 0.0, 99.0).astype(np.float32)


def vertices(npu: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """``PV_npvs``, ``PV_npvsGood`` (uint8: reconstructed vertices, pileup plus the hard one) and the hard
    vertex position ``PV_x``, ``PV_y``, ``PV_z`` (float32, cm)."""
    n = len(npu)
    npvs = np.maximum(rng.binomial(npu + 1, VERTEX_EFF), 1)
    good = np.maximum(rng.binomial(npvs, GOOD_VERTEX_EFF), 1)
    out = {
        "PV_npvs": np.minimum(npvs, 255).astype(np.uint8),
        "PV_npvsGood": np.minimum(good, 255).astype(np.uint8),
    }
    for axis, (mean, width) in BEAM_SPOT.items():
        out[f"PV_{axis}"] = (mean + width * rng.standard_normal(n)).astype(np.float32)
    return out


def rho(npu: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``Rho_fixedGridRhoFastjetAll`` (GeV per unit area)."""
    r = RHO_OFFSET + RHO_SLOPE * npu + RHO_SPREAD * rng.standard_normal(len(npu))
    return np.maximum(r, 0.0)


def _from_histogram(bins: np.ndarray, weights: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    k = rng.choice(len(weights), size=n, p=weights / weights.sum())
    return bins[k] + rng.random(n) * (bins[k + 1] - bins[k])


def pileup_jets(npu: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Pileup jets surviving PUPPI: event index (sorted), pT, eta, phi, mass (flat arrays)."""
    lam = PU_JETS_PER_INTERACTION * np.maximum(npu - PU_JETS_OFFSET, 0.0)
    count = rng.poisson(lam)
    evt = np.repeat(np.arange(len(npu)), count)
    n = len(evt)
    pt = _from_histogram(PU_PT_BINS, PU_PT_WEIGHTS, n, rng)
    eta = _from_histogram(PU_ETA_BINS, PU_ETA_WEIGHTS, n, rng) * rng.choice([-1.0, 1.0], n)
    phi = rng.uniform(-np.pi, np.pi, n)
    mass = pt * rng.uniform(0.05, 0.2, n)  # soft jets of a few constituents
    return {"evt": evt, "pt": pt, "eta": eta, "phi": phi, "mass": mass}


def pileup_jet_fractions(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Energy fractions of pileup jets: an average hadronic jet (they pass the jet ID, as in CMS)."""
    ch = rng.uniform(0.3, 0.7, n)
    ne_em = rng.uniform(0.1, 0.4, n) * (1 - ch)
    return {
        "chHEF": ch,
        "neHEF": 1.0 - ch - ne_em,
        "chEmEF": np.zeros(n),
        "neEmEF": ne_em,
        "muEF": np.zeros(n),
        "nConstituents": rng.integers(4, 12, n),
        "chMult": rng.integers(2, 6, n),
        "neMult": rng.integers(3, 8, n),
    }


def charged_in_jets(
    eta: np.ndarray, npu: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Charged pileup kept in each jet by PUPPI: (pT sum, number of tracks); none beyond the tracker."""
    k = rng.poisson(PU_CHARGED_IN_JET * npu * (np.abs(eta) < 2.5))
    return rng.gamma(k, PU_CHARGED_PT), k


def _compound_poisson(mean: np.ndarray, rng: np.random.Generator, unit: float) -> np.ndarray:
    k = rng.poisson(np.maximum(mean, 0.0) / unit)
    return rng.gamma(k, unit)  # a sum of k exponentials of mean ``unit``; 0 for k = 0


def neutral_pileup(
    kind: str, eta: np.ndarray, event_rho: np.ndarray, rng: np.random.Generator, cone: float = 0.3
) -> np.ndarray:
    """Neutral pileup pT in a cone minus CMS's correction (can be negative; the caller clips the sum).

    ``kind`` "ea" (electrons, photons: subtract EA * rho) or "dbeta" (muons: subtract half the charged
    pileup pT in the cone, itself twice the neutral on average).
    """
    ea = np.where(np.abs(eta) < 1.479, EFFECTIVE_AREA["barrel"], EFFECTIVE_AREA["endcap"]) * (cone / 0.3) ** 2
    mean = ea * event_rho
    neutral = _compound_poisson(mean, rng, PU_PARTICLE_PT)
    if kind == "ea":
        return neutral - mean
    if kind == "dbeta":
        return neutral - 0.5 * _compound_poisson(2.0 * mean, rng, PU_CHARGED_PT)  # tracks, not clusters
    raise ValueError(f"unknown pileup correction {kind!r}")
