"""A parametrised, vectorised CMS Run 3 (2022, NanoAOD v12) detector on top of Pythia's final state.

Per batch of events (numpy over flattened particles, FastJet over the whole batch at once; no per-event
Python loop):

1. Pileup (:mod:`~coffea_hepfm.simulation.pileup`): ``Pileup_nTrueInt``/``nPU``, ``PV_npvs(Good)``,
   ``Rho_fixedGridRhoFastjetAll``.
2. Candidates: real electrons (pT > 5, |eta| < 2.5), muons (pT > 3, |eta| < 2.4) and photons (pT > 10,
   |eta| < 2.5) from the final state. Fake electrons: photon conversions in the tracker material
   (probability 1 - exp(-7/9 X/X0), ``TRACKER_X0`` read from the CMS tracker material-budget figure,
   JINST 3 (2008) S08004 Sec. 3.1, times ``CONVERSION_TO_ELECTRON`` for the conversions that make an
   electron candidate) and charged hadrons misidentified (``HADRON_TO_ELECTRON`` per hadron above
   5 GeV); both calibrated to the unmatched electrons of CMS ttbar (``nano_tt_v12.root``: 0.83 per
   event, median pT 12 GeV). Fake muons: pion and kaon decays in flight and punch-through
   (``identification.muon_fake_probability``). Photons from pi0 decays in jets are real photon
   candidates that the ID's isolation rejects.
3. Isolation: charged and neutral PF sums of the other visible particles (pT > 0.5 GeV) in cones 0.3 and
   0.4, plus the pileup term after CMS's correction
   (:func:`pileup.neutral_pileup`), clipped at 0 as CMS does: ``pfRelIso03_all`` (electrons, muons,
   photons), ``pfRelIso04_all`` (muons). Photons near an electron or photon belong to
   its supercluster (|Delta eta| < 0.05, |Delta phi| < 0.3, a mustache-like window: bremsstrahlung, FSR,
   the partner photon of a merged pi0, the pi0s of a jet faking an electron): their pT is added to the
   object and left out of its isolation.
4. Identification (:mod:`~coffea_hepfm.simulation.identification`): ``Electron_cutBased``,
   ``mvaIso_WP90/80``, ``Muon_looseId/mediumId/tightId``, ``Photon_cutBased``, ``mvaID_WP90/80``;
   ``genPartFlav`` and ``genPartIdx`` (-1 for fakes and non-prompt photons, as CMS's pruned record).
5. Jets (:mod:`~coffea_hepfm.simulation.jets`): anti-kT 0.4 over every visible particle above PF
   thresholds (``PF_PT_MIN``), leptons and photons included as in CMS PF; ghost-associated flavours;
   energy fractions and the Run 3 jet ID. GenJets are the particle jets (stored from 10 GeV, as NanoAOD);
   reco jets are the smeared particle jets from 5 GeV (so a reco jet whose GenJet is below 10 GeV has
   ``genJetIdx`` = -1, as in CMS) with pT > 15 GeV and |eta| < 4.7, plus pileup jets.
6. b-tagging (:mod:`~coffea_hepfm.simulation.taggers`): every tagger branch, one latent b-ness per jet.
7. MET: minus the visible generator-level momentum sum, shifted by the smearing of every reconstructed
   jet (its hadronic part) and isolated lepton/photon, minus the pileup jets, plus a Gaussian
   soft/pileup term; PuppiMET has its own, smaller pileup term. ``sumEt`` adds the pileup energy.
"""

from __future__ import annotations

import awkward as ak
import numpy as np

from coffea_hepfm.simulation import identification, pileup, response, taggers
from coffea_hepfm.simulation import jets as jetmod
from coffea_hepfm.simulation.flat import FlatEvents, delta_r2, event_pairs, offsets_of
from coffea_hepfm.simulation.genpart import gen_flavour, select_genparts

# Particle-flow thresholds (GeV) for jet inputs, CMS-like: tracks (charged) 0.3, ECAL photons 0.5,
# HCAL neutral hadrons 1.0. They also cut the FastJet input to about half of the visible particles.
PF_PT_MIN = {"charged": 0.3, "photon": 0.5, "neutral_hadron": 1.0}
_MASS = {11: 0.000511, 13: 0.10566}
# Tracker material budget (radiation lengths) vs |eta|, and the conversion/fake calibration.
TRACKER_X0 = (np.array([0.0, 0.5, 1.0, 1.5, 2.0, 2.5]), np.array([0.4, 0.6, 1.2, 1.8, 1.2, 1.0]))
CONVERSION_TO_ELECTRON = 0.15
HADRON_TO_ELECTRON = 0.04
# Candidates treated as isolated for the MET correction (their own smearing replaces the jet's).
_MET_ISO = 0.3


def _kinematics(px, py, pz, e):
    pt = np.hypot(px, py)
    eta = np.arcsinh(pz / np.maximum(pt, 1e-9))
    mass = np.sqrt(np.maximum(e**2 - px**2 - py**2 - pz**2, 0.0))
    return pt, eta, np.arctan2(py, px), mass


def _in_supercluster(fe: FlatEvents, seed: np.ndarray, other: np.ndarray) -> np.ndarray:
    """``other`` lies in ``seed``'s supercluster: |Delta eta| < 0.05, |Delta phi| < 0.3 (a band in phi,
    as bremsstrahlung spreads in the magnetic field; CMS's mustache clustering)."""
    dphi = np.abs((fe.phi[seed] - fe.phi[other] + np.pi) % (2 * np.pi) - np.pi)
    return (np.abs(fe.eta[seed] - fe.eta[other]) < 0.05) & (dphi < 0.3)


def _isolation(fe: FlatEvents, cand: np.ndarray, vis: np.ndarray, charged: np.ndarray, supercluster: bool):
    """Charged and neutral pT sums in cones 0.3 and 0.4 around ``cand``; with ``supercluster``, the pT of
    the photons in its supercluster (``core``) instead of in the isolation."""
    src = vis[fe.pt[vis] > 0.5]
    ia, ib = event_pairs(fe.evt[cand], offsets_of(fe.evt[src], fe.n))
    a, b = cand[ia], src[ib]
    dr2 = delta_r2(fe.eta[a], fe.phi[a], fe.eta[b], fe.phi[b])
    ok = (a != b) & (dr2 < 0.16)
    ia, a, b, dr2 = ia[ok], a[ok], b[ok], dr2[ok]
    ch = charged[b]
    # photons in the electron/photon supercluster are part of the object, not of its isolation
    core = _in_supercluster(fe, a, b) & (fe.pid[b] == 22) if supercluster else np.zeros(len(b), bool)
    out = {"core": np.bincount(ia[core], weights=fe.pt[b[core]], minlength=len(cand))}
    ia, b, dr2, ch = ia[~core], b[~core], dr2[~core], ch[~core]
    for cone, r2 in (("03", 0.09), ("04", 0.16)):
        inside = dr2 < r2
        for name, sel in (("ch", ch), ("ne", ~ch)):
            m = inside & sel
            out[f"{name}{cone}"] = np.bincount(ia[m], weights=fe.pt[b[m]], minlength=len(cand))
    return out


def _candidates(fe, vis, aid, charged, rng):
    """Global source indices and a real/fake flag per kind."""
    pt, aeta = fe.pt[vis], np.abs(fe.eta[vis])
    hadron = charged[vis] & (aid[vis] != 11) & (aid[vis] != 13)
    e_fake = vis[hadron & (pt > 5.0) & (aeta < 2.5)]
    e_fake = e_fake[rng.random(len(e_fake)) < HADRON_TO_ELECTRON]
    gam = vis[(aid[vis] == 22) & (pt > 5.0) & (aeta < 2.5)]
    p_conv = -np.expm1(-7.0 / 9.0 * np.interp(np.abs(fe.eta[gam]), *TRACKER_X0)) * CONVERSION_TO_ELECTRON
    e_fake = np.r_[e_fake, gam[rng.random(len(gam)) < p_conv]]
    mu_pool = vis[hadron & (pt > 3.0) & (aeta < 2.4)]
    p = np.sqrt(fe.px[mu_pool] ** 2 + fe.py[mu_pool] ** 2 + fe.pz[mu_pool] ** 2)
    mu_fake = mu_pool[rng.random(len(mu_pool)) < identification.muon_fake_probability(fe.pid[mu_pool], p)]
    e_real = vis[(aid[vis] == 11) & (pt > 5.0) & (aeta < 2.5)]
    mu_real = vis[(aid[vis] == 13) & (pt > 3.0) & (aeta < 2.4)]
    pho = vis[(aid[vis] == 22) & (pt > 10.0) & (aeta < 2.5)]
    # one photon object per supercluster: a photon inside a harder one's supercluster band is part of it
    ia, ib = event_pairs(fe.evt[pho], offsets_of(fe.evt[pho], fe.n))
    a, b = pho[ia], pho[ib]
    softer = _in_supercluster(fe, b, a) & (fe.pt[a] < fe.pt[b])
    pho = np.delete(pho, np.unique(ia[softer]))
    return {
        "Electron": (np.r_[e_real, e_fake], np.r_[np.ones(len(e_real), bool), np.zeros(len(e_fake), bool)]),
        "Muon": (np.r_[mu_real, mu_fake], np.r_[np.ones(len(mu_real), bool), np.zeros(len(mu_fake), bool)]),
        "Photon": (pho, np.ones(len(pho), bool)),
    }


def _objects(fe, rng, kind, src, real, vis, charged, npu, ev_rho):
    """Efficiency, smearing, isolation and ID for one kind; returns flat fields, event-sorted, pT-ordered."""
    evt = fe.evt[src]
    eta = fe.eta[src]
    iso = _isolation(fe, src, vis, charged, supercluster=kind != "Muon")
    # electrons and photons: the supercluster collects the photons around them (bremsstrahlung, FSR,
    # the pi0 photons of a fake); they are part of the object, not of its isolation
    gpt = fe.pt[src] + iso["core"]
    keep = np.where(real, rng.random(len(src)) < response.efficiency(kind, gpt, eta), True)
    scale = response.smear_factor(kind, gpt, eta, npu[evt], rng)
    if kind != "Photon":  # a decay-in-flight muon or a conversion leg carries part of its parent's momentum
        scale = np.where(real, scale, scale * rng.uniform(0.5 if kind == "Electron" else 0.6, 1.0, len(src)))
    pt = gpt * scale
    keep &= pt > {"Electron": 5.0, "Muon": 3.0, "Photon": 10.0}[kind]
    src, real, pt, gpt, evt, eta = src[keep], real[keep], pt[keep], gpt[keep], evt[keep], eta[keep]
    iso = {k: v[keep] for k, v in iso.items()}
    if kind == "Muon":
        pu03 = pileup.neutral_pileup("dbeta", eta, ev_rho[evt], rng, cone=0.3)
        pu04 = pileup.neutral_pileup("dbeta", eta, ev_rho[evt], rng, cone=0.4)
        rel03 = (iso["ch03"] + np.maximum(iso["ne03"] + pu03, 0.0)) / pt
        rel04 = (iso["ch04"] + np.maximum(iso["ne04"] + pu04, 0.0)) / pt
    else:
        pu03 = pileup.neutral_pileup("ea", eta, ev_rho[evt], rng, cone=0.3)
        rel03 = (iso["ch03"] + np.maximum(iso["ne03"] + pu03, 0.0)) / pt
    order = np.lexsort((-pt, evt))
    src, real, pt, gpt, evt, eta, rel03 = (x[order] for x in (src, real, pt, gpt, evt, eta, rel03))
    out = {
        "src": src,
        "real": real,
        "evt": evt,
        "gen_pt": gpt,
        "pt": pt,
        "eta": eta + rng.normal(0.0, 0.001, len(src)),
        "phi": fe.phi[src],
        "pfRelIso03_all": rel03,
    }
    if kind == "Electron":
        out.update(identification.electron_id(pt, eta, rel03, real, rng))
    elif kind == "Muon":
        out["pfRelIso04_all"] = rel04[order]
        out.update(identification.muon_id(pt, real, rng))
    else:
        out.update(identification.photon_id(pt, rel03 * pt, real, rng))
    if kind != "Photon":
        q = jetmod.charge(fe.pid[src]).astype(np.int32)
        q = np.where(q == 0, rng.choice(np.array([-1, 1], np.int32), len(q)), q)  # conversion legs
        pdg = 11 if kind == "Electron" else 13
        out["charge"] = q
        out["pdgId"] = -pdg * q
        out["mass"] = np.full(len(src), _MASS[pdg])
    # photons get no mass branch: coffea's NanoAOD schema adds a zero mass (and warns if one exists)
    return out


def _vec_sum(evt, px, py, n):
    return np.bincount(evt, weights=px, minlength=n), np.bincount(evt, weights=py, minlength=n)


def _reco_jets(fe, vis, aid, charged, npu, rng):
    """Particle jets -> (GenJet fields, reco jet fields, MET shift of the jets)."""
    avis = aid[vis]
    pf_min = np.where(
        avis == 22,
        PF_PT_MIN["photon"],
        np.where(charged[vis], PF_PT_MIN["charged"], PF_PT_MIN["neutral_hadron"]),
    )
    pj = jetmod.cluster(fe, vis[fe.pt[vis] > pf_min], min_pt=5.0)
    frac = jetmod.constituent_sums(fe, pj)
    gpt, geta, gphi, gmass = _kinematics(pj.px, pj.py, pj.pz, pj.e)
    stored = gpt > 10.0
    gen_index = np.cumsum(stored) - 1 - offsets_of(pj.evt[stored], fe.n)[pj.evt]
    gen_index = np.where(stored, gen_index, -1)
    genjets = {
        "evt": pj.evt[stored],
        "pt": gpt[stored],
        "eta": geta[stored],
        "phi": gphi[stored],
        "mass": gmass[stored],
        "hadronFlavour": pj.hadron_flavour[stored],
        "partonFlavour": pj.parton_flavour[stored],
    }
    scale = response.smear_factor("Jet", gpt, geta, npu[pj.evt], rng)
    eff = response.efficiency("Jet", gpt * scale, geta)
    keep = np.flatnonzero((rng.random(len(gpt)) < eff) & (gpt * scale > 15.0) & (np.abs(geta) < 4.7))
    s = scale[keep]
    frac = {k: v[keep] for k, v in frac.items()}
    _add_charged_pileup(frac, pj.e[keep], geta[keep], npu[pj.evt[keep]], rng)
    reco = {
        "evt": pj.evt[keep],
        "pt": gpt[keep] * s,
        "eta": geta[keep] + rng.normal(0.0, 0.01, len(keep)),
        "phi": (gphi[keep] + rng.normal(0.0, 0.01, len(keep)) + np.pi) % (2 * np.pi) - np.pi,
        "mass": gmass[keep] * s,
        "hadronFlavour": pj.hadron_flavour[keep],
        "partonFlavour": pj.parton_flavour[keep],
        "genJetIdx": gen_index[keep],
        **{k: v for k, v in frac.items() if not k.startswith("lep_")},
    }
    # MET: only the hadronic part of a jet is smeared as a jet (leptons have their own resolution)
    hx, hy = pj.px[keep] - frac["lep_px"], pj.py[keep] - frac["lep_py"]
    shift = _vec_sum(reco["evt"], hx * (s - 1.0), hy * (s - 1.0), fe.n)
    return genjets, reco, shift


def _add_charged_pileup(frac: dict, energy: np.ndarray, eta: np.ndarray, npu: np.ndarray, rng) -> None:
    """Charged pileup tracks PUPPI keeps in jets: they change the fractions and multiplicities (the
    pileup offset of the jet energy is part of the calibrated response)."""
    pt_pu, k = pileup.charged_in_jets(eta, npu, rng)
    e_pu = pt_pu * np.cosh(eta)
    keep = energy / (energy + e_pu)
    for name in ("chHEF", "neHEF", "chEmEF", "neEmEF", "muEF"):
        frac[name] = frac[name] * keep
    frac["chHEF"] = frac["chHEF"] + (1.0 - keep)
    frac["nConstituents"] = frac["nConstituents"] + k
    frac["chMult"] = frac["chMult"] + k


def _with_pileup_jets(reco: dict, npu: np.ndarray, rng: np.random.Generator) -> tuple[dict, np.ndarray]:
    pu = pileup.pileup_jets(npu, rng)
    m = len(pu["evt"])
    extra = {
        **pu,
        "hadronFlavour": np.zeros(m, np.uint8),
        "partonFlavour": np.zeros(m, np.int16),
        "genJetIdx": np.full(m, -1),
        **pileup.pileup_jet_fractions(m, rng),
    }
    merged = {k: np.concatenate([reco[k], extra[k]]) for k in reco}
    order = np.lexsort((-merged["pt"], merged["evt"]))
    is_pu = np.r_[np.zeros(len(reco["evt"]), bool), np.ones(m, bool)][order]
    return {k: v[order] for k, v in merged.items()}, is_pu


def _met(fe, vis, npu, jets_shift, objects, pu_jets, rng):
    n = fe.n
    vx, vy = _vec_sum(fe.evt[vis], fe.px[vis], fe.py[vis], n)
    dx, dy, jet_evt, jet_pt = jets_shift
    for obj in objects.values():
        dpt = np.where(obj["real"] & (obj["pfRelIso03_all"] < _MET_ISO), obj["pt"] - obj["gen_pt"], 0.0)
        ox, oy = _vec_sum(obj["evt"], dpt * np.cos(obj["phi"]), dpt * np.sin(obj["phi"]), n)
        dx, dy = dx + ox, dy + oy
    pu_pt, pu_phi = pu_jets["pt"], pu_jets["phi"]
    px_pu, py_pu = _vec_sum(pu_jets["evt"], pu_pt * np.cos(pu_phi), pu_pt * np.sin(pu_phi), n)
    sum_et = np.bincount(fe.evt[vis], weights=fe.pt[vis], minlength=n)
    soft_et = np.maximum(sum_et - np.bincount(jet_evt, weights=jet_pt, minlength=n), 0.0)
    met = {}
    for name, (a, b, et_pu) in {"MET": (0.5, 0.4, 40.0), "PuppiMET": (0.45, 0.15, 3.0)}.items():
        sigma = np.sqrt(a**2 * soft_et + (b * npu) ** 2)
        mx = -(vx + dx + px_pu) + rng.normal(0.0, 1.0, n) * sigma
        my = -(vy + dy + py_pu) + rng.normal(0.0, 1.0, n) * sigma
        met[f"{name}_pt"] = np.hypot(mx, my)
        met[f"{name}_phi"] = np.arctan2(my, mx)
        met[f"{name}_sumEt"] = (sum_et if name == "MET" else 0.6 * sum_et) + et_pu * npu
    return met


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
    charged = jetmod.charge(fe.pid) != 0
    n_true = pileup.pileup_profile(n, rng)
    npu = rng.poisson(n_true).astype(np.int32)
    pv = pileup.vertices(npu, rng)
    ev_rho = pileup.rho(npu, rng)

    objects = {
        kind: _objects(fe, rng, kind, src, real, vis, charged, npu, ev_rho)
        for kind, (src, real) in _candidates(fe, vis, aid, charged, rng).items()
    }
    genjets, reco, (sx, sy) = _reco_jets(fe, vis, aid, charged, npu, rng)
    jets, is_pu = _with_pileup_jets(reco, npu, rng)
    raw = jets["pt"] * np.clip(rng.normal(0.905, 0.05, len(jets["pt"])), 0.7, 1.0)
    jets["rawFactor"] = 1.0 - raw / jets["pt"]
    jets["jetId"] = jetmod.jet_id(jets, jets["eta"], rng, jets["pt"])
    flav = np.where(is_pu, 0, jets["hadronFlavour"])
    jets.update(taggers.scores(flav, jets["eta"], raw, jets["chMult"] > 0, rng))
    pu_jets = {k: jets[k][is_pu] for k in ("evt", "pt", "phi")}
    met = _met(fe, vis, npu, (sx, sy, reco["evt"], reco["pt"]), objects, pu_jets, rng)

    # Generator links: real leptons and prompt photons point into GenPart; fakes and photons from
    # hadron decays do not (CMS's pruned record drops them).
    real_src = [obj["src"][obj["real"]] for obj in objects.values()]
    flavours = np.split(gen_flavour(fe, np.concatenate(real_src)), np.cumsum([len(r) for r in real_src])[:-1])
    for (kind, obj), real_flavour in zip(objects.items(), flavours, strict=True):
        flavour = np.zeros(len(obj["src"]), np.uint8)
        flavour[obj["real"]] = real_flavour
        if kind == "Photon":
            obj["real"] &= flavour == 1
            flavour = np.where(obj["real"], 1, 0).astype(np.uint8)
        obj["genPartFlav"] = flavour
    must_keep = np.concatenate([o["src"][o["real"]] for o in objects.values()])
    gen = select_genparts(fe, must_keep)
    collections = {}
    for kind, obj in objects.items():
        obj["genPartIdx"] = np.where(obj["real"], gen["gen_local"][obj["src"]], -1)
        counts = np.bincount(obj.pop("evt"), minlength=n)
        for k in ("src", "real", "gen_pt"):
            obj.pop(k)
        collections[kind] = (counts, obj)
    jets.pop("chMult")
    jets.pop("neMult")
    collections["Jet"] = (np.bincount(jets.pop("evt"), minlength=n), jets)
    collections["GenJet"] = (np.bincount(genjets.pop("evt"), minlength=n), genjets)
    gen_counts = gen.pop("counts")
    for k in ("index", "gen_local"):
        gen.pop(k)
    collections["GenPart"] = (gen_counts, gen)
    scalars = {
        "Pileup_nTrueInt": n_true,
        "Pileup_nPU": npu,
        **pv,
        "Rho_fixedGridRhoFastjetAll": ev_rho,
        **met,
    }
    return {"scalars": scalars, "collections": collections}
