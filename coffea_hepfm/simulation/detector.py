"""A parametrised, vectorised CMS-like detector on top of Pythia's final state.

Per batch of events (all numpy over flattened particles, FastJet over the whole batch at once):

1. Lepton and photon candidates (e: pT > 5, |eta| < 2.5; mu: pT > 3, |eta| < 2.4; gamma: pT > 10,
   |eta| < 2.5) get a relative isolation ``pfRelIso03_all``: the pT sum of other visible final-state
   particles (pT > 0.5 GeV) within Delta R < 0.3, divided by the candidate pT.
2. Isolated candidates (e < 0.2, mu < 0.25, gamma < 0.15 relIso, pT > 10 GeV) are removed from the jet
   inputs; jets are anti-kT R = 0.4 (FastJet) over the remaining visible particles (|eta| < 5, above
   particle-flow thresholds: ``PF_PT_MIN``).
   GenJets (pT > 10) are these particle-level jets; reco jets are the smeared GenJets (pT > 15,
   |eta| < 4.7), so ``Jet_genJetIdx`` is exact. Note: CMS GenJets keep the isolated leptons; ours do not.
3. pT-dependent efficiencies and Gaussian resolutions (see :mod:`coffea_hepfm.simulation.response`),
   a pileup-dependent noise term for jets and MET; ``Pileup_nTrueInt`` from a 2018-like Gamma profile.
4. ``Jet_hadronFlavour`` from Delta R < 0.4 matching to B then C hadrons, ``Jet_btagDeepFlavB`` drawn from
   per-flavour distributions that reproduce DeepJet 2018 working points (see ``response.BTAG_TABLE``).
5. MET: minus the visible generator-level momentum sum, shifted by the smearing of every reconstructed
   jet and isolated lepton/photon, plus a Gaussian soft/pileup term; PuppiMET has its own soft term.
"""

from __future__ import annotations

import awkward as ak
import numpy as np

from coffea_hepfm.simulation import response
from coffea_hepfm.simulation.flat import FlatEvents, delta_r2, event_pairs, has_quark, offsets_of
from coffea_hepfm.simulation.genpart import select_genparts

# Particle-flow thresholds (GeV) for jet inputs, CMS-like: tracks (charged) 0.3, ECAL photons 0.5,
# HCAL neutral hadrons 1.0. They also cut the FastJet input to about half of the visible particles.
PF_PT_MIN = {"charged": 0.3, "photon": 0.5, "neutral_hadron": 1.0}
# Stable neutral hadrons in Pythia's final state with ParticleDecays:tau0Max = 10 mm.
_NEUTRAL_HADRONS = (130, 310, 2112, 3122, 3212, 3322)
_MASS = {11: 0.000511, 13: 0.10566, 22: 0.0}
# (pdg, pT min, |eta| max, relIso cut for removal from jets)
_CANDIDATES = {"Electron": (11, 5.0, 2.5, 0.2), "Muon": (13, 3.0, 2.4, 0.25), "Photon": (22, 10.0, 2.5, 0.15)}


def _isolation(fe: FlatEvents, cand: np.ndarray, vis: np.ndarray) -> np.ndarray:
    """Relative isolation in a cone of 0.3 for global indices ``cand`` against visible particles ``vis``."""
    iso_src = vis[fe.pt[vis] > 0.5]
    ia, ib = event_pairs(fe.evt[cand], offsets_of(fe.evt[iso_src], fe.n))
    a, b = cand[ia], iso_src[ib]
    inside = (delta_r2(fe.eta[a], fe.phi[a], fe.eta[b], fe.phi[b]) < 0.09) & (a != b)
    ptsum = np.bincount(ia[inside], weights=fe.pt[b[inside]], minlength=len(cand))
    return ptsum / fe.pt[cand]


def _sort_in_events(evt: np.ndarray, pt: np.ndarray) -> np.ndarray:
    """Order grouping by event, pT descending inside each event."""
    return np.lexsort((-pt, evt))


def _quiet_fastjet(fastjet) -> None:
    """FastJet prints a banner to stdout on first use, which garbles CLI output. (Please cite FastJet:
    EPJC 72 (2012) 1896.)"""
    try:
        fastjet._swig.ClusterSequence.set_fastjet_banner_stream(None)
    except (AttributeError, TypeError):
        pass


def _cluster(fe: FlatEvents, inputs: np.ndarray):
    """Anti-kT R=0.4 over the whole batch; returns flat jet (evt, px, py, pz, e), event-sorted, pT-ordered.

    Calls the multi-event C++ entry point behind ``fastjet.ClusterSequence(awkward_array, jetdef)``
    with the flat numpy arrays directly, which skips building and unpacking awkward records.
    """
    import fastjet

    _quiet_fastjet(fastjet)
    counts = np.bincount(fe.evt[inputs], minlength=fe.n)
    stops = np.cumsum(counts)
    starts = stops - counts
    jetdef = fastjet.JetDefinition(fastjet.antikt_algorithm, 0.4)
    cols = [np.ascontiguousarray(a[inputs], dtype=np.float64) for a in (fe.px, fe.py, fe.pz, fe.e)]
    try:
        result = fastjet._ext.interfacemulti(*cols, starts, stops, jetdef)
        px, py, pz, e, jet_offsets = result.to_numpy(10.0)
        njet = np.diff(np.asarray(jet_offsets))
    except AttributeError:  # the private entry point moved: use the public awkward interface
        parts = ak.unflatten(
            ak.zip(dict(zip(("px", "py", "pz", "E"), cols, strict=True)), with_name="Momentum4D"), counts
        )
        jets = fastjet.ClusterSequence(parts, jetdef).inclusive_jets(min_pt=10.0)
        njet = ak.to_numpy(ak.num(jets, axis=1))
        flat = ak.flatten(jets, axis=1)
        px, py, pz, e = (ak.to_numpy(flat[c]) for c in ("px", "py", "pz", "E"))
    px, py, pz, e = (np.asarray(a, dtype=np.float64) for a in (px, py, pz, e))
    evt = np.repeat(np.arange(fe.n), njet)
    order = _sort_in_events(evt, np.hypot(px, py))
    return evt[order], px[order], py[order], pz[order], e[order]


def _kinematics(px, py, pz, e):
    pt = np.hypot(px, py)
    eta = np.arcsinh(pz / np.maximum(pt, 1e-9))
    mass = np.sqrt(np.maximum(e**2 - px**2 - py**2 - pz**2, 0.0))
    return pt, eta, np.arctan2(py, px), mass


def _jet_flavour(fe: FlatEvents, jevt, jeta, jphi) -> np.ndarray:
    """Hadron flavour 5/4/0 by Delta R < 0.4 to any B (then C) hadron with pT > 5 GeV."""
    flav = np.zeros(len(jevt), np.uint8)
    hard = np.flatnonzero(fe.pt > 5.0)
    for q in (4, 5):  # b overrides c
        had = hard[has_quark(fe.pid[hard], q)]
        ia, ib = event_pairs(jevt, offsets_of(fe.evt[had], fe.n))
        h = had[ib]
        near = delta_r2(jeta[ia], jphi[ia], fe.eta[h], fe.phi[h]) < 0.16
        flav[np.unique(ia[near])] = q
    return flav


def _objects(fe, rng, kind, cand, iso, npu):
    """Efficiency + smearing for one lepton/photon kind; returns flat fields, event-sorted, pT-ordered."""
    pdg, _, _, _ = _CANDIDATES[kind]
    eff = response.efficiency(kind, fe.pt[cand], fe.eta[cand])
    keep = rng.random(len(cand)) < eff
    scale = response.smear_factor(kind, fe.pt[cand], fe.eta[cand], npu[fe.evt[cand]], rng)
    pt = fe.pt[cand] * scale
    keep &= pt > _CANDIDATES[kind][1]
    if kind == "Photon":
        keep &= iso < 0.5  # loose photon preselection (H/E, shower shape) stand-in
    src, pt, iso = cand[keep], pt[keep], iso[keep]
    order = _sort_in_events(fe.evt[src], pt)
    src, pt, iso = src[order], pt[order], iso[order]
    out = {
        "src": src,
        "evt": fe.evt[src],
        "pt": pt,
        "eta": fe.eta[src],
        "phi": fe.phi[src],
        "mass": np.full(len(src), _MASS[pdg]),
        "pfRelIso03_all": iso,
    }
    out.update(response.identification(kind, iso, rng))
    if kind != "Photon":
        out["pdgId"] = fe.pid[src]
        out["charge"] = -np.sign(fe.pid[src])
    return out


def _vec_sum(evt, px, py, n):
    return np.bincount(evt, weights=px, minlength=n), np.bincount(evt, weights=py, minlength=n)


def reconstruct(prt: ak.Array, rng: np.random.Generator) -> dict:
    """Detector response for one batch of Pythia events (``events.prt`` from ``nextBatch``).

    Returns ``{"scalars": {branch: array}, "collections": {name: (counts, {field: flat array})}}`` with
    NanoAOD field names and dtypes; see :mod:`coffea_hepfm.simulation.writer`.
    """
    fe = FlatEvents.from_pythia(prt)
    n = fe.n
    aid = np.abs(fe.pid)
    final = fe.status > 0
    invisible = (aid == 12) | (aid == 14) | (aid == 16) | (aid > 1_000_000)  # neutrinos, BSM neutral stable
    vis = np.flatnonzero(final & ~invisible & (np.abs(fe.eta) < 5.0))
    n_true = response.pileup_profile(n, rng)
    npu = rng.poisson(n_true).astype(np.int32)

    objects, removed = {}, []
    for kind, (pdg, ptmin, etamax, isocut) in _CANDIDATES.items():
        cand = vis[(aid[vis] == pdg) & (fe.pt[vis] > ptmin) & (np.abs(fe.eta[vis]) < etamax)]
        iso = _isolation(fe, cand, vis)
        removed.append(cand[(iso < isocut) & (fe.pt[cand] > 10.0)])
        objects[kind] = _objects(fe, rng, kind, cand, iso, npu)
    removed = np.concatenate(removed)
    avis = aid[vis]
    pf_min = np.where(
        avis == 22,
        PF_PT_MIN["photon"],
        np.where(np.isin(avis, _NEUTRAL_HADRONS), PF_PT_MIN["neutral_hadron"], PF_PT_MIN["charged"]),
    )
    jet_inputs = np.setdiff1d(vis[fe.pt[vis] > pf_min], removed, assume_unique=True)

    gevt, gpx, gpy, gpz, ge = _cluster(fe, jet_inputs)
    gpt, geta, gphi, gmass = _kinematics(gpx, gpy, gpz, ge)
    goff = offsets_of(gevt, n)
    gflav = _jet_flavour(fe, gevt, geta, gphi)

    # Reco jets: smeared GenJets.
    scale = response.smear_factor("Jet", gpt, geta, npu[gevt], rng)
    jeff = response.efficiency("Jet", gpt * scale, geta)
    jkeep = (rng.random(len(gpt)) < jeff) & (gpt * scale > 15.0) & (np.abs(geta) < 4.7)
    jsrc = np.flatnonzero(jkeep)
    jsrc = jsrc[_sort_in_events(gevt[jsrc], gpt[jsrc] * scale[jsrc])]
    jevt, jscale = gevt[jsrc], scale[jsrc]
    jets = {
        "pt": gpt[jsrc] * jscale,
        "eta": geta[jsrc] + rng.normal(0.0, 0.01, len(jsrc)),
        "phi": (gphi[jsrc] + rng.normal(0.0, 0.01, len(jsrc)) + np.pi) % (2 * np.pi) - np.pi,
        "mass": gmass[jsrc] * jscale,
        "hadronFlavour": gflav[jsrc],
        "genJetIdx": (jsrc - goff[jevt]).astype(np.int16),
    }
    jets["btagDeepFlavB"] = response.btag(gflav[jsrc], geta[jsrc], rng)
    jets["jetId"] = response.jet_id(len(jsrc), rng)

    # MET: generator visible sum, corrected by every reconstructed object's smearing, plus soft terms.
    vx, vy = _vec_sum(fe.evt[vis], fe.px[vis], fe.py[vis], n)
    dx, dy = _vec_sum(jevt, gpx[jsrc] * (jscale - 1), gpy[jsrc] * (jscale - 1), n)
    for kind, obj in objects.items():
        src = obj["src"]
        iso_ok = obj["pfRelIso03_all"] < _CANDIDATES[kind][3]
        f = np.where(iso_ok, obj["pt"] / fe.pt[src] - 1.0, 0.0)
        ox, oy = _vec_sum(obj["evt"], fe.px[src] * f, fe.py[src] * f, n)
        dx, dy = dx + ox, dy + oy
    sum_et = np.bincount(fe.evt[vis], weights=fe.pt[vis], minlength=n)
    soft_et = np.maximum(sum_et - np.bincount(jevt, weights=gpt[jsrc], minlength=n), 0.0)
    met = {}
    for name, (a, b) in {"MET": (0.5, 0.4), "PuppiMET": (0.45, 0.15)}.items():
        sigma = np.sqrt(a**2 * soft_et + (b * npu) ** 2)
        mx = -(vx + dx) + rng.normal(0.0, 1.0, n) * sigma
        my = -(vy + dy) + rng.normal(0.0, 1.0, n) * sigma
        met[f"{name}_pt"] = np.hypot(mx, my)
        met[f"{name}_phi"] = np.arctan2(my, mx)
        met[f"{name}_sumEt"] = sum_et + 8.0 * npu

    must_keep = np.concatenate([objects[k]["src"] for k in objects])
    gen = select_genparts(fe, must_keep)
    collections = {}
    for kind, obj in objects.items():
        obj["genPartIdx"] = gen["gen_local"][obj["src"]].astype(np.int16)
        counts = np.bincount(obj.pop("evt"), minlength=n)
        obj.pop("src")
        collections[kind] = (counts, obj)
    collections["Jet"] = (np.bincount(jevt, minlength=n), jets)
    collections["GenJet"] = (
        np.bincount(gevt, minlength=n),
        {"pt": gpt, "eta": geta, "phi": gphi, "mass": gmass, "hadronFlavour": gflav},
    )
    gen_counts = gen.pop("counts")
    for k in ("index", "gen_local"):
        gen.pop(k)
    collections["GenPart"] = (gen_counts, gen)
    scalars = {
        "Pileup_nTrueInt": n_true,
        "Pileup_nPU": npu,
        **met,
    }
    return {"scalars": scalars, "collections": collections}
