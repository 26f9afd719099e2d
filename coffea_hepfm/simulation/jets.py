"""Particle-level jets with their constituents, ghost-associated flavour, PF energy fractions and jet ID.

Jets are anti-kT R = 0.4 (FastJet, EPJC 72 (2012) 1896) over *all* visible final-state particles above
particle-flow thresholds, leptons and photons included, as CMS clusters every PF candidate: an isolated
electron or photon therefore also makes a jet, which the jet ID (lepton / EM energy fractions) and the
analysis's Delta R cleaning remove, as in CMS NanoAOD.

Flavour follows CMS's ghost association (``JetFlavourClustering``, CMS-BTV-16-002 Sec. 3.1): B/C hadrons
enter the clustering with their momenta scaled by 1e-15, so they never change a jet, and ``hadronFlavour``
is 5 if a jet collected a B hadron, else 4 if a C hadron, else 0. ``partonFlavour`` is the hardest b
(else c, else any) of the shower's final partons (Pythia status -71..-73, pT > 1 GeV) within Delta R 0.4,
set to the hardest light parton (or 0) when the hadron flavour is light, and to the heavy quark of the
jet's B (C) hadron when a b (c) jet has no such parton.

Energy fractions are those NanoAOD stores (``chHEF``, ``neHEF``, ``chEmEF``, ``neEmEF``, ``muEF``):
charged particles are tracked up to |eta| 2.5 and with an efficiency falling linearly to 0 at |eta| 3.0
(``PF_TRACKING_ETA``; CMS PF jets keep a median charged hadron fraction of 0.56-0.66 at 2.5 < |eta| < 2.7,
0.09 at 2.7-2.85 and 0.02 at 2.85-3.0, ``nano_tt_v12.root``), their untracked part counting as neutral
hadronic; photons beyond the tracker also count as neutral hadronic, as the CMS PUPPI jets there show
(``neEmEF`` median 0 from |eta| 2.5); muons beyond |eta| 2.4 are not identified and count as neutral
hadronic deposits.

Jet ID (``Jet_jetId``, bit 1 = tight, bit 2 = tightLepVeto) applies the Run 3 (2022) criteria for AK4
PUPPI jets of CMS JME (twiki JetID13p6TeV) as :func:`coffea_hepfm.cms.objects.jet_id_run3` encodes them
(the graph stage reads the same definitions). Its forward requirement of two neutral particles is given
the HF tower count, not our particle count (a 15 GeV particle jet beyond |eta| 3 often has one or two
particles where CMS has several towers, and none of the 124 CMS jets beyond |eta| 3 in
``nano_tt_v12.root`` fails the ID): forward jets get at least two.

NanoAOD v12 computed the PUPPI jet ID with a known defect beyond |eta| 2.7 (JME coordination issue 117;
the graph stage applies JME's fix) that leaves the tightLepVeto bit set without the tight bit
(``jetId == 4``), mostly on soft jets. The share of such jets is emulated as measured in CMS
Run3Summer22 ttbar (``nano_tt_v12.root``): 2.7 < |eta| < 3.0: 20 of 44 jets below 30 GeV, 1 of 25 above;
beyond 3.0: 12 of 83 below, 1 of 41 above (``V12_LOST_TIGHT``).

Examples
--------
>>> import numpy as np
>>> f = {k: np.array([0.0, 0.0]) for k in ("chHEF", "neHEF", "chEmEF", "neEmEF", "muEF")}
>>> f["chHEF"][:] = [0.6, 0.05]; f["chEmEF"][:] = [0.1, 0.95]   # a hadronic jet, an electron jet
>>> f["nConstituents"] = np.array([12, 3]); f["chMult"] = np.array([8, 2]); f["neMult"] = np.array([4, 1])
>>> jet_id(f, np.array([0.5, 0.5])).tolist()   # tight + lepton veto; tight only
[6, 2]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from coffea_hepfm.cms.objects import jet_id_run3
from coffea_hepfm.simulation.flat import FlatEvents, delta_r2, event_pairs, offsets_of

GHOST_SCALE = 1e-15
PF_TRACKING_ETA = (2.5, 3.0)
HF_ETA = 3.0
# Fraction of jets whose tight bit NanoAOD v12 lost, by |eta| region, below / above pT 30 GeV (module notes).
V12_LOST_TIGHT = {(2.7, 3.0): (20 / 44, 1 / 25), (3.0, 5.0): (12 / 83, 1 / 41)}
V12_LOST_TIGHT_PT = 30.0
_CHARGE = {11: -1, 13: -1, 211: 1, 321: 1, 2212: 1, 3112: -1, 3222: 1, 3312: -1, 3334: -1}
_CHARGE_TABLE = np.zeros(3400, np.int8)
for _pid, _q in _CHARGE.items():
    _CHARGE_TABLE[_pid] = _q


def charge(pid: np.ndarray) -> np.ndarray:
    """Electric charge of stable particles (those Pythia leaves with ``tau0Max = 10 mm``); 0 otherwise."""
    aid = np.abs(pid)
    q = np.where(aid < len(_CHARGE_TABLE), _CHARGE_TABLE[np.minimum(aid, len(_CHARGE_TABLE) - 1)], 0)
    return (q * np.sign(pid)).astype(np.int8)


@dataclass
class Jets:
    """Particle-level jets of a batch, event-sorted and pT-ordered, with their constituents."""

    evt: np.ndarray
    px: np.ndarray
    py: np.ndarray
    pz: np.ndarray
    e: np.ndarray
    hadron_flavour: np.ndarray  # uint8
    parton_flavour: np.ndarray  # int16
    const_jet: np.ndarray  # jet index (in this ordering) of each real constituent
    const_idx: np.ndarray  # global particle index of each real constituent

    @property
    def pt(self) -> np.ndarray:
        return np.hypot(self.px, self.py)


def _ghosts(fe: FlatEvents) -> tuple[np.ndarray, np.ndarray]:
    """Global indices of ghost heavy hadrons, and a kind code (1 b, 2 c)."""
    idx = np.flatnonzero(fe.hadron_flavour >= 4)
    return idx, np.where(fe.hadron_flavour[idx] == 5, 1, 2).astype(np.int8)


def _parton_matches(fe: FlatEvents, evt, px, py, pz, min_jet_pt: float) -> tuple[np.ndarray, np.ndarray]:
    """(jet, parton) pairs with Delta R < 0.4: the shower's final partons (Pythia status -71..-73) above
    1 GeV, for jets above ``min_jet_pt`` (softer ones keep parton flavour 0). A Delta R match stands in for
    parton ghosts, which would add ~60 FastJet inputs per ttbar event (+45 %) for the same answer up to
    the jet boundary."""
    aid = np.abs(fe.pid)
    ast = np.abs(fe.status)
    partons = np.flatnonzero(((aid <= 5) | (aid == 21)) & (ast >= 71) & (ast <= 73) & (fe.pt > 1.0))
    peta, pphi = fe.eta_phi(partons)
    pt = np.hypot(px, py)
    jets = np.flatnonzero(pt > min_jet_pt)
    jeta = np.arcsinh(pz[jets] / pt[jets])
    jphi = np.arctan2(py[jets], px[jets])
    ij, ip = event_pairs(evt[jets], offsets_of(fe.evt[partons], fe.n))
    near = delta_r2(jeta[ij], jphi[ij], peta[ip], pphi[ip]) < 0.16
    return jets[ij[near]], partons[ip[near]]


def cluster(fe: FlatEvents, inputs: np.ndarray, min_pt: float = 5.0) -> Jets:
    """Anti-kT R = 0.4 over ``inputs`` (global indices) plus flavour ghosts, for the whole batch at once.

    Calls the multi-event C++ entry point behind ``fastjet.ClusterSequence(awkward_array, jetdef)`` with
    flat numpy arrays, which skips building and unpacking awkward records.
    """
    import fastjet

    try:  # FastJet's banner on first use would garble CLI output
        fastjet._swig.ClusterSequence.set_fastjet_banner_stream(None)
    except (AttributeError, TypeError):
        pass
    gidx, gkind = _ghosts(fe)
    idx = np.concatenate([inputs, gidx])
    kind = np.concatenate([np.zeros(len(inputs), np.int8), gkind])
    order = np.argsort(fe.evt[idx], kind="stable")
    idx, kind = idx[order], kind[order]
    scale = np.where(kind == 0, 1.0, GHOST_SCALE)
    counts = np.bincount(fe.evt[idx], minlength=fe.n)
    stops = np.cumsum(counts)
    starts = stops - counts
    cols = [np.ascontiguousarray(a[idx] * scale, dtype=np.float64) for a in (fe.px, fe.py, fe.pz, fe.e)]
    jetdef = fastjet.JetDefinition(fastjet.antikt_algorithm, 0.4)
    res = fastjet._ext.interfacemulti(*cols, starts, stops, jetdef)
    px, py, pz, e, jet_offsets = (np.asarray(a) for a in res.to_numpy(min_pt))
    coff, cloc, _ = (np.asarray(a) for a in res.to_numpy_with_constituents(min_pt))
    cloc = cloc[: coff[-1]]  # the buffer is longer than the constituents it holds
    njet = np.diff(jet_offsets)
    evt = np.repeat(np.arange(fe.n), njet)
    # constituents: local (per-event input) index -> position in idx
    per_jet = np.diff(coff)
    cjet = np.repeat(np.arange(len(px)), per_jet)
    cpos = cloc.astype(np.int64) + starts[evt[cjet]]
    ckind = kind[cpos]

    sort = np.lexsort((-np.hypot(px, py), evt))
    rank = np.empty(len(sort), np.int64)
    rank[sort] = np.arange(len(sort))
    cjet = rank[cjet]
    pj, pidx = _parton_matches(fe, evt[sort], px[sort], py[sort], pz[sort], min_jet_pt=10.0)
    ghost = ckind > 0
    hflav, pflav = _flavours(
        fe,
        len(px),
        np.r_[cjet[ghost], pj],
        np.r_[idx[cpos[ghost]], pidx],
        np.r_[ckind[ghost], np.full(len(pj), 3, np.int8)],
    )
    real = ckind == 0
    return Jets(
        evt=evt[sort],
        px=px[sort],
        py=py[sort],
        pz=pz[sort],
        e=e[sort],
        hadron_flavour=hflav,
        parton_flavour=pflav,
        const_jet=cjet[real],
        const_idx=idx[cpos[real]],
    )


def _flavours(fe: FlatEvents, n: int, gjet: np.ndarray, gidx: np.ndarray, gkind: np.ndarray):
    """Hadron and parton flavour from the ghosts each jet collected (CMS JetFlavourClustering rules)."""
    hflav = np.zeros(n, np.uint8)
    hflav[gjet[gkind == 2]] = 4
    hflav[gjet[gkind == 1]] = 5
    pid_all = fe.pid[gidx].astype(np.int64)
    pt_all = fe.pt[gidx]

    def hardest(sel):
        """Per jet, pdgId of the hardest selected ghost (0 if none)."""
        out = np.zeros(n, np.int64)
        j, p, t = gjet[sel], pid_all[sel], pt_all[sel]
        o = np.lexsort((t, j))  # last entry of each jet = hardest
        j, p = j[o], p[o]
        last = np.r_[j[1:] != j[:-1], True] if len(j) else np.zeros(0, bool)
        out[j[last]] = p[last]
        return out

    part = gkind == 3
    apid = np.abs(pid_all)
    any_p, l_p = hardest(part), hardest(part & ((apid <= 3) | (apid == 21)))
    b_p, c_p = hardest(part & (apid == 5)), hardest(part & (apid == 4))
    pflav = np.where(b_p != 0, b_p, np.where(c_p != 0, c_p, any_p))
    pflav = np.where((hflav == 0) & np.isin(np.abs(pflav), (4, 5)), l_p, pflav)
    # a b (c) jet without a b (c) ghost parton takes the heavy quark of its hardest B (C) hadron: CMS ttbar
    # has |partonFlavour| = 5 for every jet of hadronFlavour 5 (nano_tt_v12.root)
    for q, kind in ((5, 1), (4, 2)):
        h = hardest(gkind == kind)
        # B mesons of positive code hold a b-bar, D mesons a c; baryons of positive code the quark
        meson_sign = -1 if q == 5 else 1
        quark = q * np.sign(h) * np.where(np.abs(h) > 1000, 1, meson_sign)
        pflav = np.where((hflav == q) & (np.abs(pflav) != q), quark, pflav)
    return hflav, pflav.astype(np.int16)


def constituent_sums(fe: FlatEvents, jets: Jets) -> dict[str, np.ndarray]:
    """Per-jet PF energy fractions, multiplicities and the lepton momentum inside each jet."""
    n = len(jets.evt)
    ci = jets.const_idx
    j = jets.const_jet
    aid = np.abs(fe.pid[ci])
    aeta = np.abs(fe.eta[ci])
    e = fe.e[ci]
    q = charge(fe.pid[ci]) != 0
    lo, hi = PF_TRACKING_ETA
    tracked = np.clip((hi - aeta) / (hi - lo), 0.0, 1.0)  # tracking efficiency (energy share)
    muon = (aid == 13) & (aeta < 2.4)
    charged = q & ~muon
    ele = charged & (aid == 11)
    ch_had = charged & (aid != 11)
    photon = (aid == 22) & (aeta < lo)
    w_ch = np.where(charged, tracked, 0.0)  # energy share reconstructed as a charged candidate

    def esum(mask, weight=None):
        w = e[mask] if weight is None else e[mask] * weight[mask]
        return np.bincount(j[mask], weights=w, minlength=n)

    etot = np.maximum(np.bincount(j, weights=e, minlength=n), 1e-9)
    ch_e, ch_h, mu_e, pho_e = esum(ele, w_ch), esum(ch_had, w_ch), esum(muon), esum(photon)
    lep = muon | ele
    tracked_ch = charged & (tracked >= 0.5)
    return {
        "chHEF": ch_h / etot,
        "neHEF": np.maximum(etot - ch_e - ch_h - mu_e - pho_e, 0.0) / etot,
        "chEmEF": ch_e / etot,
        "neEmEF": pho_e / etot,
        "muEF": mu_e / etot,
        "nConstituents": np.bincount(j, minlength=n),
        "chMult": np.bincount(j[tracked_ch | muon], minlength=n),
        "neMult": np.bincount(j[~(tracked_ch | muon)], minlength=n),
        "lep_px": np.bincount(j[lep], weights=fe.px[ci][lep], minlength=n),
        "lep_py": np.bincount(j[lep], weights=fe.py[ci][lep], minlength=n),
    }


def jet_id(
    f: dict[str, np.ndarray],
    eta: np.ndarray,
    rng: np.random.Generator | None = None,
    pt: np.ndarray | None = None,
) -> np.ndarray:
    """``Jet_jetId`` (uint8: 2 tight, 4 tightLepVeto) from energy fractions; see the module notes.

    With ``rng`` and ``pt``, the NanoAOD v12 forward defect is emulated (tight bit lost,
    ``V12_LOST_TIGHT``).
    """
    aeta = np.abs(eta)
    ne_mult = np.where(aeta > HF_ETA, np.maximum(f["neMult"], 2), f["neMult"])
    args = (aeta, f["neHEF"], f["neEmEF"], f["chHEF"], f["chEmEF"], f["muEF"], f["chMult"], ne_mult)
    tight = jet_id_run3(*args, "tight")
    veto = jet_id_run3(*args, "tightLepVeto")
    bits = tight.astype(np.uint8) * 2 + veto.astype(np.uint8) * 4
    if rng is not None and pt is not None:
        lost = np.zeros(len(aeta), bool)
        u = rng.random(len(aeta))
        for (lo, hi), (soft, hard) in V12_LOST_TIGHT.items():
            lost |= (aeta > lo) & (aeta <= hi) & (u < np.where(pt < V12_LOST_TIGHT_PT, soft, hard))
        bits = np.where(lost & tight, bits & ~np.uint8(2), bits).astype(np.uint8)
    return bits
