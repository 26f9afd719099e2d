"""Detector response parametrisations: reconstruction efficiencies and resolutions.

Identification is in :mod:`~coffea_hepfm.simulation.identification`, b-tagging in
:mod:`~coffea_hepfm.simulation.taggers`, pileup in :mod:`~coffea_hepfm.simulation.pileup`.

Reconstruction efficiencies (before any ID): electrons 97 % barrel / 94 % endcap above ~20 GeV (CMS
EGM-17-001, JINST 16 (2021) P05014: GSF electron reconstruction > 95 %), muons 99 % (CMS MUO-16-001,
JINST 13 (2018) P06015: tracking and muon reconstruction > 99 %), photons 97 / 94 %, jets 99 % inside the
tracker, 95 % outside; each with a turn-on near threshold.

Resolutions (relative Gaussian on pT), CMS Run-2-like orders of magnitude:

* electrons, photons: sigma/pT = 0.1/sqrt(pT) (+) 0.01 barrel, 0.15/sqrt(pT) (+) 0.02 endcap
* muons: sigma/pT = 0.01 + 1e-4 pT barrel (|eta| < 1.2), 0.02 + 2e-4 pT endcap
* jets: sigma/pT = N/pT (+) S/sqrt(E) (+) C with N = 2.0 (+) 0.08 nPU GeV (PUPPI removes most of the
  pileup offset; CMS JME-18-001), S = 1.0, and beyond |eta| 3 S = 2.0 (the forward calorimeter's
  198 %/sqrt(E) for hadrons, CMS detector paper JINST 3 (2008) S08004 Sec. 5.7), in terms of the jet
  energy E = pT cosh(eta), as a calorimeter's stochastic term is, C = 0.05; (+) is a quadrature sum.
  Against ``nano_tt_v12.root`` (half-width of the 16-84 % reco/GenJet band, GenJet pT 30-50 GeV):
  |eta| < 1.3 0.167 in CMS, 0.18 here; |eta| > 3 0.14 in CMS (14 jets), 0.11-0.13 here (0.23 with the
  earlier S/sqrt(pT)). The
  jet scale is ``JET_RESPONSE`` = 1.02: CMS Run3Summer22 NanoAOD v12 PUPPI jets sit at a median 1.041 of
  their GenJet pT (pT > 30 GeV, |eta| < 2.5, ``nano_tt_v12.root``), ours at 1.022 from resolution
  migration alone.

Examples
--------
>>> import numpy as np
>>> efficiency("Muon", np.array([1.0]), np.array([0.0]))   # below threshold: 0
array([0.])
>>> float(relative_resolution("Jet", np.array([100.0]), np.array([0.0]), np.array([30]))[0]) < 0.12
True
"""

from __future__ import annotations

import numpy as np


def _turn_on(pt, threshold, width):
    return np.clip(1.0 - np.exp(-(pt - threshold) / width), 0.0, 1.0)


def efficiency(kind: str, pt: np.ndarray, eta: np.ndarray) -> np.ndarray:
    """Reconstruction efficiency for ``kind`` in Electron, Muon, Photon, Jet."""
    barrel = np.abs(eta) < 1.479
    if kind == "Electron":
        return np.where(barrel, 0.97, 0.94) * _turn_on(pt, 3.0, 2.0)
    if kind == "Muon":
        return 0.99 * _turn_on(pt, 2.5, 2.0)
    if kind == "Photon":
        return np.where(barrel, 0.97, 0.94) * _turn_on(pt, 8.0, 4.0)
    if kind == "Jet":
        return np.where(np.abs(eta) < 2.5, 0.99, 0.95) * _turn_on(pt, 10.0, 8.0)
    raise ValueError(f"no efficiency for {kind!r}")


def relative_resolution(kind: str, pt: np.ndarray, eta: np.ndarray, npu: np.ndarray) -> np.ndarray:
    """sigma(pT)/pT for ``kind``."""
    pt = np.maximum(pt, 1e-3)
    aeta = np.abs(eta)
    if kind in ("Electron", "Photon"):
        s, c = np.where(aeta < 1.479, 0.10, 0.15), np.where(aeta < 1.479, 0.01, 0.02)
        return np.hypot(s / np.sqrt(pt), c)
    if kind == "Muon":
        return np.where(aeta < 1.2, 0.01 + 1e-4 * pt, 0.02 + 2e-4 * pt)
    if kind == "Jet":
        noise = np.hypot(2.0, 0.08 * npu)
        stoch = np.where(aeta < 3.0, 1.0, 2.0)
        energy = pt * np.cosh(np.minimum(aeta, 5.0))
        return np.sqrt((noise / pt) ** 2 + stoch**2 / energy + 0.05**2)
    raise ValueError(f"no resolution for {kind!r}")


JET_RESPONSE = 1.02


def smear_factor(kind, pt, eta, npu, rng: np.random.Generator) -> np.ndarray:
    """Multiplicative pT (and energy) smearing factor, truncated at 0.1 to stay physical."""
    sigma = relative_resolution(kind, pt, eta, npu)
    scale = JET_RESPONSE if kind == "Jet" else 1.0
    return np.maximum(scale * (1.0 + sigma * rng.standard_normal(len(pt))), 0.1)
