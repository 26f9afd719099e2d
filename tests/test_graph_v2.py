"""Graph spec v2 on real CMS NanoAOD: object definitions against an independent awkward selection, every
NanoAOD-version fallback, placeholder b-tag scores, eras, unphysical inputs (issue 9 part 1, issue 10
items 1 and 4). Modified files are copies of shared files written with uproot into ``tmp_path``."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
from graph_helpers import check_batch, expect_v2_warnings, opened, set_value, write_copy

from coffea_hepfm.cms import BTAG_ETA_MAX, working_points
from coffea_hepfm.graph import (
    EraWarning,
    GraphSpec,
    MissingBranchError,
    MissingCollectionWarning,
    NonFiniteInput,
    NonFiniteWarning,
    NoValidTagger,
    TaggerFallbackWarning,
    build_graphs,
    build_node_record,
    resolve,
)
from coffea_hepfm.nanoaod import open_events

SPEC = GraphSpec()
F = {name: i for i, name in enumerate(SPEC.node_features)}
G = {name: i for i, name in enumerate(SPEC.global_features)}


def counts_of(g):
    """Per-event number of nodes of each type, and of jets in each b-tag category, from a GraphBatch."""
    ev = np.repeat(np.arange(len(g)), g.node_counts)
    cols = [f"is_{t}" for t in ("jet", "electron", "muon", "photon", "met")]
    cols += ["btag_loose", "btag_medium", "btag_tight"]
    return {c.removeprefix("is_"): np.bincount(ev, weights=g.x[:, F[c]], minlength=len(g)) for c in cols}


def _etaphi(*colls):
    """Directions of the objects of several collections, concatenated per event."""
    return ak.concatenate([ak.zip({"eta": c.eta, "phi": c.phi}) for c in colls], axis=1)


def _delta_r_clean(objs, others, dr=0.4):
    """Objects farther than ``dr`` from every one of ``others`` (plain awkward, nested cartesian pairs)."""
    if others is None:
        return objs
    a, b = ak.unzip(ak.cartesian([_etaphi(objs), others], nested=True))
    dphi = (a.phi - b.phi + np.pi) % (2 * np.pi) - np.pi
    near = ak.any((a.eta - b.eta) ** 2 + dphi**2 < dr**2, axis=2)
    return objs[~near]


def reference_selection(events, jet_id, photon_bits, tagger, era):
    """The v2 object definitions written independently, with awkward + coffea behaviours, the way an
    analyst would (CMS recommendations cited in coffea_hepfm.cms.objects)."""
    ele = events.Electron
    ele = ele[(ele.pt > 10) & (abs(ele.eta) < 2.5) & (ele.cutBased >= 3)]
    mu = events.Muon
    mu = mu[(mu.pt > 10) & (abs(mu.eta) < 2.4) & mu.tightId & (mu.pfRelIso04_all < 0.15)]
    leptons = _etaphi(ele, mu)
    pho = None
    if "Photon" in events.fields:
        p = events.Photon
        ok = ((p.cutBasedBitmap & 2) > 0) if photon_bits else (p.cutBased >= 2)
        pho = _delta_r_clean(p[(p.pt > 20) & (abs(p.eta) < 2.5) & ok], leptons)
    j = events.Jet
    aeta = abs(j.eta)
    tight = (j.jetId & 2) > 0
    if jet_id == "v12fix":  # JME fix for NanoAOD v12 (coordination issue 117)
        tight = tight & ak.where(aeta <= 2.7, True, ak.where(aeta <= 3.0, j.neHEF < 0.99, j.neEmEF < 0.4))
    acc = ((j.pt > 25) & (aeta < 2.5)) | ((j.pt > 30) & (aeta < 4.7))
    j = _delta_r_clean(j[tight & acc], leptons)
    if pho is not None:
        j = _delta_r_clean(j, _etaphi(pho))
    wp = working_points(tagger, era)
    score = j[tagger]
    inside = abs(j.eta) < BTAG_ETA_MAX[era]  # 2.4 before the 2017 pixel upgrade, then 2.5
    out = {
        "jet": ak.num(j),
        "electron": ak.num(ele),
        "muon": ak.num(mu),
        "photon": ak.num(pho) if pho is not None else ak.zeros_like(ak.num(ele)),
        "ht": ak.sum(j.pt, axis=1),
    }
    for name, cut in zip(("btag_loose", "btag_medium", "btag_tight"), wp.cuts, strict=True):
        out[name] = ak.sum((score > cut) & inside, axis=1)
    return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}


@pytest.mark.parametrize(
    "name, jet_id, photon_bits, tagger, era",
    [
        ("nano_tt_v12.root", "v12fix", None, "btagPNetB", "2022"),  # Run 3 MC: PNet, 2022 reference era
        ("nano_dy.root", "bits", True, "btagDeepFlavB", "2018"),  # Run 2 MC: DeepJet, photon bitmap
        ("nano_dimuon.root", "bits", True, "btagDeepFlavB", "2018"),  # 2018 collision data: era from run
        (
            "nano_tree.root",
            "bits",
            False,
            "btagDeepB",
            "2018",
        ),  # DeepJet placeholder -> DeepCSV; int photon ID
    ],
)
def test_objects_match_independent_selection(shared_nanoaod, name, jet_id, photon_bits, tagger, era):
    events = opened(shared_nanoaod / name)
    with expect_v2_warnings(name):
        g = build_graphs(events, SPEC)
    check_batch(g, SPEC)
    ref = reference_selection(events, jet_id, photon_bits, tagger, era)
    got = counts_of(g)
    u = np.expm1(g.u.astype(np.float64))
    for t in ("jet", "electron", "muon", "photon"):
        np.testing.assert_allclose(u[:, G[f"log_n_{t}s"]], ref[t], atol=1e-3, err_msg=t)
        np.testing.assert_array_equal(got[t], np.minimum(ref[t], SPEC.cap(t)), err_msg=t)
    for c in ("btag_loose", "btag_medium", "btag_tight"):
        np.testing.assert_array_equal(got[c], ref[c], err_msg=c)  # every jet is kept (<= 10 per event)
    np.testing.assert_allclose(u[:, G["log_n_bjets"]], ref["btag_medium"], atol=1e-3)
    np.testing.assert_allclose(u[:, G["log_ht"]], ref["ht"], rtol=1e-5)
    assert got["met"].tolist() == [1] * len(g)
    assert resolve(SPEC, events).met_source == "PuppiMET"
    assert ref["jet"].sum() > 0 and (name == "nano_dy.root" or ref["btag_medium"].sum() > 0)


def test_rntuple_and_parquet_match_root(shared_nanoaod):
    """The same events stored as RNTuple (and parquet, where open_events reads it) give the same graphs."""
    root = build_graphs(opened(shared_nanoaod / "nano_dy.root"), SPEC)
    rnt = build_graphs(opened(shared_nanoaod / "nano_dy_rntuple.root"), SPEC)
    for a in ("x", "u", "node_counts", "edge_attr"):
        assert np.array_equal(getattr(root, a), getattr(rnt, a)), a
    if "parquet" not in (open_events.__doc__ or "").lower():
        pytest.skip("open_events does not read parquet NanoAOD in this version (nanoaod/reader.py)")
    pq = build_graphs(open_events(shared_nanoaod / "nano_dimuon.parquet", mode="virtual"), SPEC)
    ref = build_graphs(opened(shared_nanoaod / "nano_dimuon.root"), SPEC)
    assert np.array_equal(pq.x, ref.x) and np.array_equal(pq.u, ref.u)


# -- b-tag placeholders and eras (issue 9; issue 10 item 1) -----------------------------------------
def _placeholder_copy(shared_nanoaod, tmp_path, csv_valid=True, run=None):
    """Collision data with DeepJet -3000 and DeepCSV -1 for every jet, as the 2015 CMS open-data NanoAOD
    has; ``run`` moves the events to another run (era)."""

    def edit(cols):
        cols["Jet_btagDeepFlavB"] = ak.full_like(cols["Jet_btagDeepFlavB"], -3000.0)
        cols["Jet_btagDeepB"] = ak.full_like(cols["Jet_btagDeepB"], -1.0)
        if not csv_valid:
            cols["Jet_btagCSVV2"] = ak.full_like(cols["Jet_btagCSVV2"], -10.0)
        if run is not None:
            cols["run"] = ak.full_like(cols["run"], run)

    return write_copy(shared_nanoaod / "nano_dimuon.root", tmp_path / "nano_placeholder.root", edit)


def test_placeholder_tagger_falls_back_to_csvv2(shared_nanoaod, tmp_path):
    """Placeholder DeepJet and DeepCSV in 2015 data: CSVv2 working-point categories (2015 points), with a
    warning naming both branches and the file; placeholders never read as "not b"."""
    path = _placeholder_copy(shared_nanoaod, tmp_path, run=259000)  # Run2015D
    events = open_events(path, mode="virtual")
    with pytest.warns(
        TaggerFallbackWarning, match=r"nano_placeholder.root falls back to Jet_btagCSVV2"
    ) as rec:
        g = build_graphs(events, SPEC)
    text = str(rec[0].message)
    assert "Jet_btagDeepFlavB: placeholder scores (values [-3000.0] for every jet in |eta| < 2.5)" in text
    assert "Jet_btagDeepB: placeholder scores (values [-1.0]" in text
    ref = reference_selection(events, "bits", True, "btagCSVV2", "2015")
    got = counts_of(g)
    assert ref["btag_medium"].sum() > 0
    for c in ("btag_loose", "btag_medium", "btag_tight"):
        np.testing.assert_array_equal(got[c], ref[c], err_msg=c)
    np.testing.assert_allclose(np.expm1(g.u[:, G["log_n_bjets"]]), ref["btag_medium"], atol=1e-3)


def test_no_valid_tagger_raises(shared_nanoaod, tmp_path):
    """Every tagger unusable: a clear error listing why each was refused (placeholder, or no working
    points for the data's era: CSVv2 has none for 2018)."""
    path = _placeholder_copy(shared_nanoaod, tmp_path)  # 2018 data
    with pytest.raises(NoValidTagger, match=r"no usable b-tag branch in .*nano_placeholder.root") as err:
        build_graphs(open_events(path, mode="virtual"), SPEC)
    assert "Jet_btagDeepFlavB: placeholder scores" in str(err.value)
    assert "Jet_btagCSVV2: no working points for era 2018" in str(err.value)
    path = _placeholder_copy(shared_nanoaod, tmp_path, csv_valid=False, run=259000)
    with pytest.raises(NoValidTagger, match=r"Jet_btagCSVV2: placeholder scores \(values \[-10.0\]"):
        build_graphs(open_events(path, mode="virtual"), SPEC)


def test_data_era_from_run_and_unknown_runs(shared_nanoaod, tmp_path):
    """Collision data take the working points of the era of their run (2018 here); an explicit era wins;
    runs in no known era warn and use the tagger's reference era."""
    src = shared_nanoaod / "nano_dimuon.root"
    events = opened(src)
    assert "genWeight" not in events.fields and "run" in resolve(SPEC, events).branches()
    got = counts_of(build_graphs(events, SPEC))["btag_medium"]
    np.testing.assert_array_equal(
        got, reference_selection(events, "bits", True, "btagDeepFlavB", "2018")["btag_medium"]
    )
    explicit = counts_of(build_graphs(events, SPEC.replace(era="2016preVFP")))["btag_medium"]
    ref16 = reference_selection(events, "bits", True, "btagDeepFlavB", "2016preVFP")["btag_medium"]
    np.testing.assert_array_equal(explicit, ref16)
    assert explicit.sum() != got.sum()  # the era matters: 0.2598 vs 0.2783
    path = write_copy(
        src, tmp_path / "nano_oddrun.root", lambda c: c.update(run=ak.full_like(c["run"], 200000))
    )
    with pytest.warns(
        EraWarning, match=r"40 event\(s\) in .*nano_oddrun.root have run numbers outside every known era"
    ):
        odd = counts_of(build_graphs(open_events(path, mode="virtual"), SPEC))["btag_medium"]
    np.testing.assert_array_equal(odd, got)  # DeepJet's reference era for a Run 2 file: 2018


# -- NanoAOD version fallbacks ----------------------------------------------------------------------
def test_v15_like_file(shared_nanoaod, tmp_path):
    """v15-style copy of the v12 ttbar file: no Jet_jetId (the Run 3 recipe from energy fractions and
    multiplicities), no MET (PuppiMET), no Electron_cutBased (MVA WP80)."""
    src = shared_nanoaod / "nano_tt_v12.root"

    def edit(cols):
        n = cols["Jet_nConstituents"]
        cols["Jet_chMultiplicity"] = ak.values_astype(
            (n + 1) // 2, np.uint8
        )  # plausible split of nConstituents
        cols["Jet_neMultiplicity"] = ak.values_astype(n // 2, np.uint8)

    path = write_copy(
        src, tmp_path / "nano_v15like.root", edit, drop=("Jet_jetId", "MET_*", "Electron_cutBased")
    )
    events = open_events(path, mode="virtual")
    plan = resolve(SPEC, events)
    assert plan.describe()["jet_id"].startswith("Run 3 recipe from energy fractions")
    assert plan.describe()["electron_id"] == "Electron_mvaIso_WP80 (fallback for cut-based medium)"
    assert plan.met_source == "PuppiMET"
    with pytest.warns(MissingCollectionWarning, match="Photon_pt not found"):
        g = build_graphs(events, SPEC)
    check_batch(g, SPEC)
    j, e = events.Jet, events.Electron
    aeta, ch, ne = abs(j.eta), j.chMultiplicity, j.neMultiplicity
    tight = ak.where(  # JetID13p6TeV, written out again
        aeta <= 2.6,
        (j.neHEF < 0.99) & (j.neEmEF < 0.9) & (ch + ne > 1) & (j.chHEF > 0.01) & (ch > 0),
        ak.where(aeta <= 2.7, (j.neHEF < 0.9) & (j.neEmEF < 0.99),
                 ak.where(aeta <= 3.0, j.neHEF < 0.99, (ne >= 2) & (j.neEmEF < 0.4))),
    )  # fmt: skip
    ele = e[(e.pt > 10) & (abs(e.eta) < 2.5) & e.mvaIso_WP80]
    mu = events.Muon
    mu = mu[(mu.pt > 10) & (abs(mu.eta) < 2.4) & mu.tightId & (mu.pfRelIso04_all < 0.15)]
    jets = _delta_r_clean(j[tight & (((j.pt > 25) & (aeta < 2.5)) | ((j.pt > 30) & (aeta < 4.7)))],
                          _etaphi(ele, mu))  # fmt: skip
    u = np.expm1(g.u.astype(np.float64))
    np.testing.assert_allclose(u[:, G["log_n_jets"]], ak.to_numpy(ak.num(jets)), atol=1e-3)
    np.testing.assert_allclose(u[:, G["log_n_electrons"]], ak.to_numpy(ak.num(ele)), atol=1e-3)
    # Without Jet_jetId and without the fractions, jets are never taken unidentified: a clear error.
    names = set(resolve(SPEC, events).branches()) - {"Jet_chMultiplicity"}
    with pytest.raises(
        MissingBranchError, match=r"Jet_jetId not found.*lacks Jet_chMultiplicity.*never taken"
    ):
        resolve(SPEC, names)


def test_photon_id_int_equals_bitmap(shared_nanoaod, tmp_path):
    """NanoAOD v5-v8 ``Photon_cutBasedBitmap`` and the v9+ int ``Photon_cutBased`` select the same photons:
    a copy with the bitmap rewritten as the int gives identical graphs."""
    src = shared_nanoaod / "nano_dy.root"

    def edit(cols):
        bits = cols.pop("Photon_cutBasedBitmap")
        level = ak.where((bits & 4) > 0, 3, ak.where((bits & 2) > 0, 2, ak.where((bits & 1) > 0, 1, 0)))
        cols["Photon_cutBased"] = ak.values_astype(level, np.int32)

    events = open_events(write_copy(src, tmp_path / "nano_photon_int.root", edit), mode="virtual")
    assert resolve(SPEC, events).describe()["photon_id"] == "Photon_cutBased >= 2 (medium)"
    assert resolve(SPEC, opened(src)).describe()["photon_id"].startswith("Photon_cutBasedBitmap bit 2")
    g, ref = build_graphs(events, SPEC), build_graphs(opened(src), SPEC)
    assert counts_of(ref)["photon"].sum() > 0
    for a in ("x", "u", "node_counts"):
        assert np.array_equal(getattr(g, a), getattr(ref, a)), a


def test_run2_fallbacks(shared_nanoaod, tmp_path):
    """Older NanoAOD: no PuppiMET (MET), no Electron_cutBased (mvaFall17V2Iso_WP80), no
    Muon_pfRelIso04_all (Muon_pfIsoId); with nothing left, a clear error."""
    src = shared_nanoaod / "nano_dy.root"
    drop = ("PuppiMET_*", "Electron_cutBased", "Muon_pfRelIso04_all")
    events = open_events(write_copy(src, tmp_path / "nano_old.root", drop=drop), mode="virtual")
    plan = resolve(SPEC, events)
    assert plan.met_source == "MET"
    assert plan.describe()["electron_id"] == "Electron_mvaFall17V2Iso_WP80 (fallback for cut-based medium)"
    assert plan.describe()["muon_id"] == "Muon_tightId and Muon_pfIsoId >= 4 (fallback)"
    g = build_graphs(events, SPEC)
    ref = opened(src)
    e, m = ref.Electron, ref.Muon
    n_ele = ak.sum((e.pt > 10) & (abs(e.eta) < 2.5) & e.mvaFall17V2Iso_WP80, axis=1)
    n_mu = ak.sum((m.pt > 10) & (abs(m.eta) < 2.4) & m.tightId & (m.pfIsoId >= 4), axis=1)
    np.testing.assert_allclose(np.expm1(g.u[:, G["log_n_electrons"]]), ak.to_numpy(n_ele), atol=1e-3)
    np.testing.assert_allclose(np.expm1(g.u[:, G["log_n_muons"]]), ak.to_numpy(n_mu), atol=1e-3)
    np.testing.assert_allclose(np.expm1(g.u[:, G["log_met"]]), ak.to_numpy(ref.MET.pt), rtol=1e-5)
    # Nothing left to identify electrons or photons with: a clear error, never "every object passes".
    names = set(plan.branches()) - {"Electron_mvaFall17V2Iso_WP80"} | {"genWeight"}
    with pytest.raises(MissingBranchError, match=r"Electron_cutBased not found.*no MVA fallback") as err:
        resolve(SPEC, names)
    assert err.value.branch == "Electron_cutBased"
    photons = {"nPhoton", "Photon_pt", "Photon_eta", "Photon_phi"}
    with pytest.raises(MissingBranchError, match=r"Photon_cutBased not found.*no fallback either"):
        resolve(GraphSpec(max_jets=0, max_electrons=0, max_muons=0, met=False), photons)
    with pytest.raises(MissingBranchError, match=r"Muon_pfRelIso04_all not found.*no Muon_pfIsoId"):
        resolve(SPEC, names - {"Muon_pfIsoId"} | {"Electron_cutBased"})


# -- unphysical values (issue 10 item 4) -------------------------------------------------------------
# (branch, value); case k sits in event k of one modified copy of nano_tt_v12 (jets: a selected jet).
BAD = [
    ("Jet_pt", -50.0),
    ("Jet_pt", 1e30),
    ("Jet_pt", 1e20),  # overflowed the float32 edge features before, ending as NonFiniteScore
    ("Jet_eta", 15.0),
    ("Jet_phi", 1e30),
    ("Jet_mass", -500.0),
    ("PuppiMET_pt", -50.0),
    ("PuppiMET_pt", -1e30),
]


@pytest.fixture(scope="module")
def bad_file(shared_nanoaod, tmp_path_factory):
    src = shared_nanoaod / "nano_tt_v12.root"
    with pytest.warns(MissingCollectionWarning):
        ref = build_graphs(opened(src), SPEC)
    jet_pt = opened(src).Jet.pt

    def edit(cols):
        for k, (branch, value) in enumerate(BAD):
            # the jet behind the event's leading jet node (not always jet 0: the lepton's own jet is cleaned)
            lead = np.expm1(ref.x[ref.node_offsets[k], F["log_pt"]])
            index = int(np.argmin(np.abs(ak.to_numpy(jet_pt[k]) - lead)))
            cols[branch] = set_value(cols[branch], k, value, index)

    return write_copy(src, tmp_path_factory.mktemp("bad") / "nano_bad.root", edit), ref


def test_unphysical_values_dropped_with_warning(bad_file):
    """Default ``nonfinite="drop"``: exactly the object carrying the bad value is dropped (a bad MET drops
    the MET node and sets log_met = 0), with a warning naming each branch and the file."""
    path, ref = bad_file
    with (
        pytest.warns(NonFiniteWarning, match=r"in .*nano_bad.root") as rec,
        pytest.warns(MissingCollectionWarning),
    ):
        g = build_graphs(open_events(path, mode="virtual"), SPEC)
    text = " ".join(str(w.message) for w in rec if issubclass(w.category, NonFiniteWarning))
    for branch in ("Jet_pt: 3", "Jet_eta: 1", "Jet_phi: 1", "Jet_mass: 1", "PuppiMET_pt: 2"):
        assert branch in text, branch
    check_batch(g, SPEC)  # finite everywhere, edges included (pT 1e20 no longer overflows)
    r, n = counts_of(ref), counts_of(g)
    for k, (branch, _) in enumerate(BAD):
        if branch.startswith("Jet"):
            assert n["jet"][k] == r["jet"][k] - 1 and n["met"][k] == 1, (k, branch)
        else:
            assert n["met"][k] == 0 and g.u[k, G["log_met"]] == 0 and n["jet"][k] == r["jet"][k], (k, branch)
    rest = slice(len(BAD), None)
    assert np.array_equal(g.u[rest], ref.u[rest]) and np.array_equal(
        g.node_counts[rest], ref.node_counts[rest]
    )


def test_unphysical_values_raise(bad_file):
    """``nonfinite="raise"``: a negative jet pT (dropped silently before, even here) raises, naming the
    branch, the value and the file; so does a negative MET."""
    path, _ = bad_file
    events = open_events(path, mode="virtual")
    with pytest.raises(
        NonFiniteInput, match=r"nano_bad.root: 6 jet object\(s\) .* in Jet_pt \(3, e.g. -50\)"
    ):
        with pytest.warns(MissingCollectionWarning):
            build_node_record(events, SPEC.replace(nonfinite="raise"))
    with pytest.raises(
        NonFiniteInput, match=r"nano_bad.root: 2 MET object\(s\) .* in PuppiMET_pt \(2, e.g. -50\)"
    ):
        with pytest.warns(MissingCollectionWarning):
            build_node_record(events, SPEC.replace(nonfinite="raise", max_jets=0))


def test_graph_info_cli_shows_the_choices(shared_nanoaod):
    """`coffea-hepfm graph-info FILE` makes every resolved choice visible (ID recipes, b-tag, era, MET)."""
    from typer.testing import CliRunner

    from coffea_hepfm.cli import app

    res = CliRunner().invoke(
        app, ["graph-info", str(shared_nanoaod / "nano_dimuon.root")], terminal_width=200
    )
    assert res.exit_code == 0, res.output
    for text in ("Jet_jetId bit 2 (tight)", "Photon_cutBasedBitmap bit 2", "from the run number", "PuppiMET"):
        assert text in res.output, text
    res = CliRunner().invoke(app, ["graph-info", "/nowhere.root"])
    assert res.exit_code == 2 and "error:" in res.output and "Traceback" not in res.output


def test_object_dropout_keeps_bjet_count():
    """Contrastive augmentation (training) drops objects; with v2 the b-jet count follows the dropped jets."""
    from graph_helpers import make_events

    from coffea_hepfm.training.augment import Augmenter

    jets = [[{"pt": 60.0, "eta": 0.1, "btagDeepFlavB": 0.9}, {"pt": 40.0, "eta": -1.0, "phi": 2.0}]]
    g = build_graphs(make_events(jets), SPEC)
    assert np.expm1(g.u[0, G["log_n_bjets"]]) == pytest.approx(1)
    x, counts, u = Augmenter(SPEC, ops=("drop_objects",), drop_prob=1.0)(
        g.x, g.node_counts, g.u, np.random.default_rng(0)
    )
    assert counts.tolist() == [1] and x[0, F["is_met"]] == 1  # only the MET node is left
    assert u[0, G["log_n_bjets"]] == 0 and u[0, G["log_n_jets"]] == 0
