"""Lepton and photon identification as NanoAOD v12 stores it, for real and fake candidates.

Every candidate has a latent ID quality ``u`` ~ U(0, 1) shared by its working points, so the working
points are nested and the cut-based and MVA decisions of one object are correlated. A working point
passes when ``u`` is below the non-isolation efficiency of the candidate's class (real or fake) *and*,
where CMS's definition includes isolation, the candidate's isolation passes that working point's cut.

Electrons (``Electron_cutBased`` 0-4 = fail/veto/loose/medium/tight, ``Electron_mvaIso_WP90/WP80``)
    The cut-based IDs include PF relative isolation with effective-area pileup correction; the cuts are
    those of the Run 3 IDs (RunIIIWinter22 V1, CMS EGM twiki "Cut-based electron ID for Run 3"): barrel
    ``c + 0.535/pT`` with c = 0.406 / 0.194 / 0.0837 / 0.0388, endcap ``c + 0.519/pT`` with
    c = 0.342 / 0.184 / 0.0741 / 0.0544 for veto / loose / medium / tight. They bound the isolation of
    the electrons of each level in ``nano_tt_v12.root`` (decoded from ``vidNestedWPBitmap``). The non-isolation
    efficiencies (``ELECTRON_ID``) are set so that prompt electrons of Z -> ee with pT > 25 GeV pass
    veto / loose / medium / tight with ~95 / 90 / 80 / 70 % as the working points were tuned (CMS
    EGM-17-001, JINST 16 (2021) P05014, Sec. 7), falling at low pT as in its efficiency-vs-pT figures.
    The MVA WPs are 90 % and 80 % efficient by definition (EGM-17-001); isolation enters them like the
    loose and medium cut-based WPs.
Muons (``Muon_looseId``, ``Muon_mediumId``, ``Muon_tightId``; no isolation inside)
    Real muons: loose 99.7 %, medium 99.0 %, tight 97.5 % (CMS MUO-16-001, JINST 13 (2018) P06015,
    Sec. 6: > 99 %, ~99 %, 96-99 % for prompt muons above 20 GeV).
Photons (``Photon_cutBased`` 0-3 = fail/loose/medium/tight, ``Photon_mvaID_WP90/WP80``)
    Fall17 V2 WPs tuned for 90 / 80 / 70 % prompt efficiency (EGM-17-001). Their separate charged,
    neutral and photon isolation cuts are approximated by one cut on the absolute PF isolation per WP
    (``PHOTON_ISO``, their sum). In ttH(gamma gamma) events this gives the prompt photons above 25 GeV
    loose / medium / tight efficiencies of 0.84 / 0.70 / 0.58 (busier than the photon+jet events
    the WPs were tuned on).
Fakes
    Jets faking electrons, non-prompt muons from pion/kaon decays in flight and punch-through, and
    photons from pi0 decays in jets are *candidates* with their own ID efficiencies (``*_FAKE``),
    calibrated so that CMS Run3Summer22 ttbar (``nano_tt_v12.root``) is reproduced: its unmatched
    electrons (``genPartFlav`` 0, 167 in 200 events) are 90 % cutBased 0 and 4 % medium or tighter, none
    pass WP90; its unmatched muons (70) pass loose / medium / tight with 43 / 24 / 13 %.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> pt, eta, iso = np.full(4, 40.0), np.zeros(4), np.array([0.0, 0.0, 0.06, 0.5])
>>> ids = electron_id(pt, eta, iso, np.array([True, False, True, True]), rng)
>>> ids["cutBased"].dtype, int(ids["cutBased"][3])     # relIso 0.5 fails every working point
(dtype('uint8'), 0)
"""

from __future__ import annotations

import numpy as np

# Non-isolation ID efficiency plateaus, real (prompt or from decays) candidates: veto, loose, medium, tight.
ELECTRON_ID = (0.99, 0.975, 0.95, 0.90)
ELECTRON_MVA = {"WP90": 0.95, "WP80": 0.87}
ELECTRON_ID_FAKE = (0.16, 0.09, 0.07, 0.045)
ELECTRON_MVA_FAKE = {"WP90": 0.01, "WP80": 0.005}
# RunIIIWinter22 V1 isolation cuts: (constant, 1/pT coefficient) barrel and endcap, veto..tight.
ELECTRON_ISO = {
    "barrel": ((0.406, 0.535), (0.194, 0.535), (0.0837, 0.535), (0.0388, 0.535)),
    "endcap": ((0.342, 0.519), (0.184, 0.519), (0.0741, 0.519), (0.0544, 0.519)),
}
MUON_ID = {"looseId": 0.997, "mediumId": 0.990, "tightId": 0.975}
MUON_ID_FAKE = {"looseId": 0.43, "mediumId": 0.24, "tightId": 0.13}
PHOTON_ID = (0.95, 0.90, 0.82)
PHOTON_ID_FAKE = (0.35, 0.22, 0.12)
PHOTON_MVA = {"WP90": 0.95, "WP80": 0.88}
PHOTON_MVA_FAKE = {"WP90": 0.3, "WP80": 0.15}
# Absolute isolation cut (GeV) a + b pT for loose, medium, tight: the sum of the Fall17 V2 barrel cuts on
# charged, neutral and photon isolation (e.g. medium 1.141 + (1.189 + 0.01512 pT) + (2.08 + 0.004017 pT)),
# linearised, as one cut on our total isolation.
PHOTON_ISO = ((10.0, 0.03), (4.4, 0.02), (3.0, 0.02))
BARREL_EDGE = 1.479


def _turn_on(pt: np.ndarray, scale: float) -> np.ndarray:
    """Relative efficiency at low pT: 1 - 0.5 exp(-(pT - 5) / scale), 0.5 at 5 GeV."""
    return 1.0 - 0.5 * np.exp(-np.maximum(pt - 5.0, 0.0) / scale)


def electron_iso_cut(level: int, pt: np.ndarray, eta: np.ndarray) -> np.ndarray:
    """RunIIIWinter22 V1 relIso cut of cut-based level 1-4 (veto..tight)."""
    cb, ce = ELECTRON_ISO["barrel"][level - 1], ELECTRON_ISO["endcap"][level - 1]
    barrel = np.abs(eta) < BARREL_EDGE
    return np.where(barrel, cb[0] + cb[1] / pt, ce[0] + ce[1] / pt)


def _nested_level(passes: list[np.ndarray]) -> np.ndarray:
    """Highest level k such that levels 1..k all pass."""
    level = np.zeros(len(passes[0]), np.uint8)
    ok = np.ones(len(passes[0]), bool)
    for k, p in enumerate(passes, start=1):
        ok &= p
        level[ok] = k
    return level


def electron_id(
    pt: np.ndarray, eta: np.ndarray, iso: np.ndarray, real: np.ndarray, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """``cutBased`` (uint8), ``mvaIso_WP90``, ``mvaIso_WP80`` (bool) for electron candidates."""
    u = rng.random(len(pt))
    turn = _turn_on(pt, 10.0)
    passes = []
    for k in range(4):
        eff = np.where(real, ELECTRON_ID[k] * turn, ELECTRON_ID_FAKE[k])
        passes.append((u < eff) & (iso < electron_iso_cut(k + 1, pt, eta)))
    out = {"cutBased": _nested_level(passes)}
    for wp, level in (("WP90", 2), ("WP80", 3)):
        eff = np.where(real, ELECTRON_MVA[wp] * turn, ELECTRON_MVA_FAKE[wp])
        out[f"mvaIso_{wp}"] = (u < eff) & (iso < electron_iso_cut(level, pt, eta))
    return out


def muon_id(pt: np.ndarray, real: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """``looseId``, ``mediumId``, ``tightId`` (bool, nested) for muon candidates."""
    u = rng.random(len(pt))
    turn = _turn_on(pt, 3.0)
    return {k: u < np.where(real, MUON_ID[k] * turn, MUON_ID_FAKE[k]) for k in MUON_ID}


def photon_id(
    pt: np.ndarray, iso_abs: np.ndarray, real: np.ndarray, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """``cutBased`` (uint8 0-3), ``mvaID_WP90``, ``mvaID_WP80`` (bool) for photon candidates."""
    u = rng.random(len(pt))
    turn = _turn_on(pt, 10.0)
    passes = []
    for k in range(3):
        eff = np.where(real, PHOTON_ID[k] * turn, PHOTON_ID_FAKE[k])
        a, b = PHOTON_ISO[k]
        passes.append((u < eff) & (iso_abs < a + b * pt))
    out = {"cutBased": _nested_level(passes)}
    for wp, level in (("WP90", 0), ("WP80", 1)):
        eff = np.where(real, PHOTON_MVA[wp] * turn, PHOTON_MVA_FAKE[wp])
        a, b = PHOTON_ISO[level]
        out[f"mvaID_{wp}"] = (u < eff) & (iso_abs < a + b * pt)
    return out


# Decays in flight: a charged pion or kaon that decays to a muon before the calorimeter (r ~ 1.3 m) is
# reconstructed as a muon. Probability 1 - exp(-L m / (p c tau)) x BR(-> mu nu) (PDG: pi c tau 7.80 m,
# BR 99.99 %; K c tau 3.71 m, BR 63.6 %), plus hadron punch-through into the muon stations
# (``PUNCH_THROUGH``, per hadron, calibrated with the decays to the CMS file's unmatched muon count).
DECAY_LENGTH_M = 1.3
_DIF = {211: (0.13957, 7.80, 0.9999), 321: (0.49368, 3.71, 0.636)}
PUNCH_THROUGH = 0.018


def muon_fake_probability(pid: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Probability that a charged hadron of momentum ``p`` (GeV) gives a muon candidate."""
    aid = np.abs(pid)
    prob = np.full(len(aid), PUNCH_THROUGH)
    for code, (mass, ctau, br) in _DIF.items():
        sel = aid == code
        prob[sel] += br * -np.expm1(-DECAY_LENGTH_M * mass / (np.maximum(p[sel], 1e-3) * ctau))
    return prob
