"""Detector response parametrisations: efficiencies, resolutions, identification, b-tagging, pileup.

Numbers are CMS Run-2-like (order of magnitude of published performance), not a fit to any result.

Resolutions (relative Gaussian on pT):

* electrons, photons: sigma/pT = 0.1/sqrt(pT) (+) 0.01 barrel, 0.15/sqrt(pT) (+) 0.02 endcap
* muons: sigma/pT = 0.01 + 1e-4 pT barrel (|eta| < 1.2), 0.02 + 2e-4 pT endcap
* jets: sigma/pT = N/pT (+) S/sqrt(pT) (+) C with N = 2.5 (+) 0.25 nPU GeV, S = 1.0 (1.3 beyond
  |eta| 3), C = 0.05 (+) is a quadrature sum.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(1)
>>> d = btag(np.array([5] * 10000), np.zeros(10000), rng)
>>> 0.72 < (d > 0.2783).mean() < 0.82          # medium working point, b jets
True
>>> efficiency("Muon", np.array([1.0]), np.array([0.0]))   # below threshold: 0
array([0.])
"""

from __future__ import annotations

import numpy as np

# DeepJet 2018 UL working points: loose, medium, tight.
BTAG_WP = {"loose": 0.0490, "medium": 0.2783, "tight": 0.7100}
# Discriminant value -> probability to be above it, per hadron flavour (monotone; linear in between).
_BTAG_X = np.array([0.0, 0.0490, 0.2783, 0.7100, 0.9000, 0.9800, 1.0])
BTAG_TABLE = {
    5: np.array([1.0, 0.93, 0.77, 0.61, 0.45, 0.20, 0.0]),
    4: np.array([1.0, 0.42, 0.15, 0.035, 0.010, 0.002, 0.0]),
    0: np.array([1.0, 0.10, 0.011, 0.0015, 0.0004, 0.0001, 0.0]),
}


def _turn_on(pt, threshold, width):
    return np.clip(1.0 - np.exp(-(pt - threshold) / width), 0.0, 1.0)


def efficiency(kind: str, pt: np.ndarray, eta: np.ndarray) -> np.ndarray:
    """Reconstruction x identification efficiency for ``kind`` in Electron, Muon, Photon, Jet."""
    barrel = np.abs(eta) < 1.479
    if kind == "Electron":
        return np.where(barrel, 0.93, 0.85) * _turn_on(pt, 5.0, 6.0)
    if kind == "Muon":
        return 0.97 * _turn_on(pt, 3.0, 3.0)
    if kind == "Photon":
        return np.where(barrel, 0.92, 0.85) * _turn_on(pt, 10.0, 8.0)
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
        noise = np.hypot(2.5, 0.25 * npu)
        stoch = np.where(aeta < 3.0, 1.0, 1.3)
        return np.sqrt((noise / pt) ** 2 + stoch**2 / pt + 0.05**2)
    raise ValueError(f"no resolution for {kind!r}")


def smear_factor(kind, pt, eta, npu, rng: np.random.Generator) -> np.ndarray:
    """Multiplicative pT (and energy) smearing factor, truncated at 0.1 to stay physical."""
    sigma = relative_resolution(kind, pt, eta, npu)
    return np.maximum(1.0 + sigma * rng.standard_normal(len(pt)), 0.1)


def identification(kind: str, iso: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """NanoAOD ID fields: isolation-driven levels with a few percent random ID inefficiency per level."""
    loss = rng.random(len(iso))
    if kind == "Electron":
        level = np.select([iso < 0.06, iso < 0.10, iso < 0.15, iso < 0.30], [4, 3, 2, 1], 0)
        level = level - (loss < 0.05) * (level > 0)  # ID inefficiency drops one level
        return {"cutBased": level.astype(np.uint8)}
    if kind == "Photon":
        level = np.select([iso < 0.05, iso < 0.10, iso < 0.20], [3, 2, 1], 0)
        level = level - (loss < 0.05) * (level > 0)
        return {"cutBased": level.astype(np.uint8)}
    if kind == "Muon":
        medium = loss < 0.985
        return {"mediumId": medium, "tightId": medium & (rng.random(len(iso)) < 0.975)}
    raise ValueError(f"no identification for {kind!r}")


def btag(flavour: np.ndarray, eta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``Jet_btagDeepFlavB`` drawn by inverse CDF of the per-flavour table; no tracker beyond |eta| 2.5
    so forward jets are drawn as light jets."""
    flav = np.where(np.abs(eta) < 2.5, flavour, 0)
    u = rng.random(len(flav))
    out = np.empty(len(flav))
    for f, surv in BTAG_TABLE.items():
        sel = flav == f
        out[sel] = np.interp(u[sel], surv[::-1], _BTAG_X[::-1])
    return out.astype(np.float32)


def jet_id(n: int, rng: np.random.Generator) -> np.ndarray:
    """``Jet_jetId`` bits (2 = tight, 4 = tightLepVeto): 6 for ~98% of jets."""
    u = rng.random(n)
    return np.select([u < 0.98, u < 0.995], [6, 2], 0).astype(np.uint8)


def pileup_profile(n: int, rng: np.random.Generator) -> np.ndarray:
    """``Pileup_nTrueInt``: a Gamma(k=8, theta=4) profile (mean 32, sd 11), like 2018 data."""
    return np.clip(rng.gamma(8.0, 4.0, n), 0.0, 99.0).astype(np.float32)
