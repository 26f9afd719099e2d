"""coffea_hepfm.graph on real CMS NanoAOD, simulated NanoAOD and small hand-made events."""

from __future__ import annotations

import json
import warnings

import awkward as ak
import dask_awkward as dak
import numpy as np
import pytest
import uproot
import vector
from graph_helpers import check_batch, expect_v2_warnings, make_events, opened

from coffea_hepfm.graph import (
    GraphBatch,
    GraphSpec,
    GraphSpecMismatch,
    MissingBranchError,
    MissingCollectionWarning,
    NonFiniteInput,
    NonFiniteWarning,
    UnsupportedGraphSpec,
    build_graphs,
    build_node_record,
    iter_graph_batches,
    resolve,
)
from coffea_hepfm.nanoaod import open_events

NO_PHOTON = GraphSpec(max_photons=0)


def test_spec_roundtrip_and_mismatch():
    spec = GraphSpec(max_jets=6, taggers=["btagPNetB"])
    d = json.loads(json.dumps(spec.to_dict()))
    assert GraphSpec.from_dict(d) == spec and hash(GraphSpec.from_dict(d)) == hash(spec)
    assert (spec.n_node_features, spec.n_edge_features, spec.n_global_features) == (15, 4, 7)
    assert "btag" not in d and d["version"] == 2 and d["taggers"] == ["btagPNetB"]
    spec.check_compatible(
        spec.replace(missing="error", nonfinite="raise", era="2018")
    )  # policy: not compared
    with pytest.raises(GraphSpecMismatch, match="max_jets: expected 6, got 10") as err:
        spec.check_compatible(GraphSpec(taggers=spec.taggers).to_dict())
    assert set(err.value.differences) == {"max_jets"}
    with pytest.raises(GraphSpecMismatch) as err:
        spec.check_compatible(GraphSpec(met=False, jet_id="tightLepVeto"))
    assert set(err.value.differences) == {"max_jets", "taggers", "met", "jet_id"}
    with pytest.raises(GraphSpecMismatch, match="version: expected 2, got 1"):
        GraphSpec().check_compatible(GraphSpec(version=1))
    with pytest.raises(UnsupportedGraphSpec, match=r"unknown field\(s\) \['max_taus'\]"):
        GraphSpec.from_dict({**d, "max_taus": 2})
    with pytest.raises(UnsupportedGraphSpec, match="version 3 is not supported.*upgrade coffea-hepfm"):
        GraphSpec.from_dict({**d, "version": 3})
    with pytest.raises(UnsupportedGraphSpec, match=r"\['btag'\] exist only in graph spec version 1"):
        GraphSpec(btag=[["btagDeepFlavB", 0.3]])
    with pytest.raises(UnsupportedGraphSpec, match=r"\['taggers'\] exist only in graph spec version 2"):
        GraphSpec.from_dict({**GraphSpec(version=1).to_dict(), "taggers": ["btagPNetB"]})
    with pytest.raises(ValueError, match="max_muons"):
        GraphSpec(max_muons=-1)
    with pytest.raises(ValueError, match="unknown b-tag branch"):
        GraphSpec(taggers=["btagFoo"])
    with pytest.raises(ValueError, match="GraphSpec.era must be 'auto' or one of"):
        GraphSpec(era="2019")
    with pytest.raises(ValueError, match="electron_id must be one of"):
        GraphSpec(electron_id="wp80")
    # v1 and v2 put the kinematic columns the edge features read at the same positions.
    v1, v2 = GraphSpec(version=1).node_features, GraphSpec().node_features
    assert all(v1.index(k) == v2.index(k) for k in ("log_pt", "eta", "sin_phi", "cos_phi", "log_mass"))


V15 = {
    *(f"Jet_{f}" for f in ("pt", "eta", "phi", "mass", "btagUParTAK4B", "btagPNetB", "neHEF", "neEmEF", "chHEF")),
    *(f"Jet_{f}" for f in ("chEmEF", "muEF", "chMultiplicity", "neMultiplicity")),
    *(f"Electron_{f}" for f in ("pt", "eta", "phi", "charge", "cutBased", "mvaIso_WP80", "mvaIso_WP90")),
    *(f"Muon_{f}" for f in ("pt", "eta", "phi", "charge", "tightId", "pfRelIso04_all")),
    "nJet", "nElectron", "nMuon", "PuppiMET_pt", "PuppiMET_phi", "PFMET_pt", "PFMET_phi", "run", "genWeight",
}  # fmt: skip


def test_required_branches_resolve_versions():
    """NanoAOD v15-like branch list: no Jet_jetId, PuppiMET and PFMET only, UParT, no Photon."""
    spec = GraphSpec()
    plan = resolve(spec, V15)
    assert plan.met_source == "PuppiMET" and plan.taggers == ("btagUParTAK4B", "btagPNetB")
    assert plan.absent == ("Photon_pt",) and plan.is_mc and not plan.read_run
    assert plan.describe()["jet_id"].startswith("Run 3 recipe from energy fractions")
    assert set(spec.required_branches(V15)) <= V15
    assert "Jet_chEmEF" not in spec.required_branches(V15)  # tight needs no lepton-veto fractions
    assert "Jet_chEmEF" in spec.replace(jet_id="tightLepVeto").required_branches(V15)
    assert resolve(spec.replace(met_sources=("MET", "PFMET")), V15).met_source == "PFMET"
    with pytest.raises(MissingBranchError, match=r"no MET found.*GraphSpec.met_sources") as err:
        resolve(spec.replace(met_sources=("MET",)), V15)
    assert err.value.branch == "MET_pt"
    with pytest.raises(MissingBranchError, match=r"Photon_pt not found.*max_photons=0"):
        resolve(spec.replace(missing="error"), V15)
    with pytest.raises(MissingBranchError, match="Electron_charge not found"):
        resolve(spec, V15 - {"Electron_charge"})
    with pytest.raises(MissingBranchError, match="no b-tag branch"):
        resolve(spec, V15 - {"Jet_btagUParTAK4B", "Jet_btagPNetB"})
    assert resolve(GraphSpec(max_jets=0), V15 - {"Jet_btagUParTAK4B", "Jet_btagPNetB"}).taggers == ()
    # Data (no genWeight) read the run number for the b-tag era; an explicit era does not.
    assert "run" in spec.required_branches(V15 - {"genWeight"})
    assert "run" not in spec.replace(era="2024").required_branches(V15 - {"genWeight"})
    v1 = resolve(GraphSpec(version=1), V15)
    assert v1.met_source == "PuppiMET" and v1.btag_branch == "btagPNetB"  # v1 order: DeepJet, PNet, ...


# -- real CMS files: eager == virtual == dask, pruning, shapes ---------------------------------------
def test_cms_file_eager_virtual_dask(cms_file):
    spec = GraphSpec()
    with expect_v2_warnings(cms_file):  # the package warnings this file gives (no Photon, placeholder tagger)
        eager = opened(cms_file, "eager")
        rec = build_node_record(eager, spec)
        assert len(rec) == len(eager)
        assert str(rec.type.content) == "{nodes: var * 15 * float32, globals: 7 * float32}"
        assert ak.array_equal(rec, build_node_record(opened(cms_file), spec))
        devents = open_events(cms_file, mode="dask")
        drec = build_node_record(devents, spec)
        assert isinstance(drec, dak.Array)
        # Column pruning: exactly the branches the spec may need for this file, nothing else.
        (cols,) = dak.necessary_columns(drec).values()
        assert set(cols) == set(spec.required_branches(devents))
        assert ak.array_equal(rec, drec.compute())

        # Entry ranges and selected (sliced) events, as processors pass them, give the same rows.
        part = build_node_record(open_events(cms_file, mode="virtual", entry_start=3, entry_stop=9), spec)
        assert ak.array_equal(part, rec[3:9])
        mask = ak.num(eager.Jet) >= 2
        assert ak.array_equal(build_node_record(eager[mask], spec), rec[mask])

        g = build_graphs(opened(cms_file), NO_PHOTON)
        check_batch(g, NO_PHOTON)
        assert len(g) == len(eager)
        ref = GraphBatch.from_record(build_node_record(eager, NO_PHOTON), NO_PHOTON)
        for a in ("x", "edge_index", "edge_attr", "u", "batch", "node_counts"):
            assert np.array_equal(getattr(g, a), getattr(ref, a)), a


def test_column_pruning_follows_spec(shared_nanoaod):
    spec = GraphSpec(max_electrons=0, max_muons=0, max_photons=0, met=False)
    devents = open_events(shared_nanoaod / "nano_dy.root", mode="dask")
    (cols,) = dak.necessary_columns(build_node_record(devents, spec)).values()
    # Every b-tag branch of spec.taggers in the file may be needed: the choice is made per chunk.
    taggers = {"Jet_btagDeepFlavB", "Jet_btagDeepB", "Jet_btagCSVV2"}
    assert set(cols) == {"nJet", "Jet_pt", "Jet_eta", "Jet_phi", "Jet_mass", "Jet_jetId"} | taggers
    assert set(cols) == set(spec.required_branches(devents))

    # A partition function built on build_graphs (as a scorer would be) prunes the same way.
    def n_nodes(events):
        g = build_graphs(events, spec)
        out = ak.Array(g.node_counts)
        if ak.backend(events) == "typetracer":
            return ak.Array(out.layout.to_typetracer(forget_length=True))
        return out

    counts = dak.map_partitions(n_nodes, devents)
    (cols2,) = dak.necessary_columns(counts).values()
    assert cols2 == cols
    jets = opened(shared_nanoaod / "nano_dy.root").Jet
    aeta = abs(jets.eta)
    accepted = ((jets.pt > 25) & (aeta < 2.5)) | ((jets.pt > 30) & (aeta < 4.7))
    n_jets = ak.sum(accepted & ((jets.jetId & 2) > 0), axis=1)
    assert counts.compute().tolist() == ak.to_list(np.minimum(n_jets, 10))


def test_features_against_vector(shared_nanoaod):
    """Node and edge features of real jets/leptons recomputed independently with `vector` (v1 selection:
    every object above threshold; the v2 selection is checked in test_graph_v2.py)."""
    spec = GraphSpec(version=1)
    tree = uproot.open(shared_nanoaod / "nano_dy.root")["Events"]
    raw = tree.arrays(["Jet_pt", "Jet_eta", "Jet_phi", "Jet_mass", "Muon_pt", "Muon_eta", "Muon_phi"])
    raw = ak.values_astype(raw, np.float64)
    g = build_graphs(opened(shared_nanoaod / "nano_dy.root"), spec)
    jets = vector.zip({"pt": raw.Jet_pt, "eta": raw.Jet_eta, "phi": raw.Jet_phi, "mass": raw.Jet_mass})
    jets = jets[jets.pt >= spec.min_pt_jet]
    mu = vector.zip({"pt": raw.Muon_pt, "eta": raw.Muon_eta, "phi": raw.Muon_phi, "mass": 0.1056584})
    mu = mu[mu.pt >= spec.min_pt_muon]
    ev = int(np.flatnonzero((ak.num(jets) >= 2) & (ak.num(mu) >= 1))[0])
    j0, j1, m0 = jets[ev, 0], jets[ev, 1], mu[ev, 0]
    n0 = g.node_offsets[ev]
    n_j = min(len(jets[ev]), spec.max_jets)
    n_e = int(np.round(np.expm1(g.u[ev, 2])))
    mu_node = n0 + n_j + min(n_e, spec.max_electrons)
    x = g.x[n0]
    np.testing.assert_allclose(
        x[:6],
        [np.log1p(j0.pt), j0.eta, np.sin(j0.phi), np.cos(j0.phi), np.log1p(j0.E), np.log1p(j0.mass)],
        rtol=1e-5,
        atol=1e-6,
    )
    assert g.x[mu_node, spec.node_features.index("is_muon")] == 1
    for (a, b), (va, vb) in {(n0, n0 + 1): (j0, j1), (n0 + 1, mu_node): (j1, m0)}.items():
        k = np.flatnonzero((g.edge_index[0] == a) & (g.edge_index[1] == b))
        assert len(k) == 1
        deta, dphi, dr, lm = g.edge_attr[k[0]]
        np.testing.assert_allclose(deta, vb.eta - va.eta, atol=1e-5)
        np.testing.assert_allclose(dphi, vb.deltaphi(va), atol=1e-5)  # vector: a.deltaphi(b) = phi_a - phi_b
        np.testing.assert_allclose(dr, va.deltaR(vb), atol=1e-5)
        # Pair mass from float32-stored node features: ~1e-6 relative precision (stable formula).
        np.testing.assert_allclose(lm, np.log1p((va + vb).mass), rtol=2e-5)


def test_edges_hand_case():
    """Every edge of one hand-made event against `vector` (float64): boundary-crossing phi, a heavy jet,
    a nearly collinear massless photon pair, the MET node."""
    spec = GraphSpec()
    jets = [
        [
            {"pt": 100.0, "eta": 0.5, "phi": 3.0, "mass": 10.0},
            {"pt": 50.0, "eta": -1.2, "phi": -3.0, "mass": 5.0},
        ]
    ]
    ele = [[{"pt": 30.0, "eta": 0.1, "phi": 0.2, "charge": -1}]]
    pho = [[{"pt": 30.0, "eta": 1.0, "phi": 1.0}, {"pt": 25.0, "eta": 1.001, "phi": 1.001}]]
    events = make_events(jets, electrons=ele, photons=pho, met=[{"pt": 40.0, "phi": -1.0}])
    g = build_graphs(events, spec)
    check_batch(g, spec)
    objs = [o for o in jets[0]] + [{**ele[0][0], "mass": 0.000511}]
    objs += [{**p, "mass": 0.0} for p in pho[0]] + [{"pt": 40.0, "eta": 0.0, "phi": -1.0, "mass": 0.0}]
    vecs = [vector.obj(pt=o["pt"], eta=o["eta"], phi=o["phi"], mass=o["mass"]) for o in objs]
    assert g.node_counts.tolist() == [len(vecs)] and g.num_edges == len(vecs) * (len(vecs) - 1)
    for k, (s, t) in enumerate(g.edge_index.T):
        a, b = vecs[s], vecs[t]
        deta, dphi, dr, lm = g.edge_attr[k]
        assert deta == pytest.approx(b.eta - a.eta, abs=2e-6)
        assert dphi == pytest.approx(b.deltaphi(a), abs=2e-6)
        assert dr == pytest.approx(b.deltaR(a), abs=2e-6)
        rtol = 1e-3 if {s, t} == {3, 4} else 1e-5  # collinear pair: limited by float32-stored eta/phi
        assert np.expm1(lm) == pytest.approx((a + b).mass, rel=rtol), (s, t)
    assert g.edge_attr[0, 1] == pytest.approx(2 * np.pi - 6.0, abs=1e-6)  # -3 - 3 wraps to 2 pi - 6


def test_empty_file(empty_file):
    spec = GraphSpec()
    rec = build_node_record(opened(empty_file, "eager"), spec)
    assert len(rec) == 0 and str(rec.type.content) == "{nodes: var * 15 * float32, globals: 7 * float32}"
    g = GraphBatch.from_record(rec, spec)
    check_batch(g, spec)
    assert len(g) == 0 and g.x.shape == (0, 15) and g.edge_attr.shape == (0, 4) and g.u.shape == (0, 7)
    assert list(g.iter_batches(8)) == []
    drec = build_node_record(open_events(empty_file, mode="dask"), spec).compute()
    assert len(drec) == 0 and drec.type.content == rec.type.content


def test_missing_photon_collection(shared_nanoaod):
    path = shared_nanoaod / "nano_tt_v12.root"  # slimmed v12: no Photon
    with pytest.warns(MissingCollectionWarning, match="Photon_pt not found"):
        rec = build_node_record(opened(path), GraphSpec())
    assert ak.sum(rec.nodes[:, :, GraphSpec().node_features.index("is_photon")]) == 0
    with pytest.raises(MissingBranchError, match=r"Photon_pt not found \(looks like NanoAOD v12"):
        build_node_record(opened(path), GraphSpec(missing="error"))
    with pytest.raises(MissingBranchError, match="Photon_pt"):
        build_node_record(open_events(path, mode="dask"), GraphSpec(missing="error"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ak.array_equal(build_node_record(opened(path), NO_PHOTON), rec)


# -- hand-made events ---------------------------------------------------------------------------------
def test_sorting_caps_counts_and_empty_events():
    spec = GraphSpec(max_jets=2)
    jets = [
        [{"pt": 30.0, "btagDeepFlavB": 0.9}, {"pt": 80.0, "btagDeepFlavB": -1.0}, {"pt": 50.0}, {"pt": 5.0}],
        [],
    ]
    muons = [
        [{"pt": 25.0, "charge": -1, "eta": 1.5, "phi": 2.0}],
        [],
    ]  # away from the jets (Delta-R cleaning)
    events = make_events(jets, muons=muons, met=[{"pt": 40.0, "phi": 1.0}] * 2)
    g = GraphBatch.from_record(build_node_record(events, spec), spec)
    check_batch(g, spec)
    assert g.node_counts.tolist() == [4, 1]  # 2 capped jets + muon + MET ; MET only
    np.testing.assert_allclose(np.expm1(g.x[:2, 0]), [80.0, 50.0], rtol=1e-6)
    assert g.x[0, spec.node_features.index("btag_loose")] == 0.0  # a tagger's -1 default: not b-tagged
    assert g.x[2, spec.node_features.index("charge")] == -1
    assert g.x[4, spec.node_features.index("is_met")] == 1
    u = np.expm1(g.u)
    np.testing.assert_allclose(u[0, :5], [3, 1, 0, 1, 0], atol=1e-5)  # 3 jets above 25 GeV, 1 b-tagged
    np.testing.assert_allclose(u[0, 5:], [160.0, 40.0], rtol=1e-6)
    np.testing.assert_allclose(u[1], [0, 0, 0, 0, 0, 0, 40.0], rtol=1e-6, atol=1e-6)
    g0 = build_graphs(events, spec.replace(met=False))
    assert g0.node_counts.tolist() == [3, 0] and g0.num_edges == 6 and np.expm1(g0.u[1, 6]) == 0


@pytest.mark.parametrize("rule", ["drop", "zero", "raise"])
def test_nonfinite(rule):
    spec = GraphSpec(nonfinite=rule)
    jets = [
        [{"pt": 50.0}, {"pt": float("nan"), "eta": 1.0}, {"pt": 40.0, "eta": float("inf")}],
        [{"pt": 30.0}],
    ]
    events = make_events(jets, met=[{"pt": 10.0, "phi": 0.0}, {"pt": 10.0, "phi": float("nan")}])
    if rule == "raise":
        with pytest.raises(
            NonFiniteInput, match=r"2 jet object.*Jet_pt \(1, e.g. nan\), Jet_eta \(1, e.g. inf\)"
        ):
            build_node_record(events, spec)
        return
    with pytest.warns(NonFiniteWarning, match="jet: 2, met: 1"):
        g = build_graphs(events, spec)
    check_batch(g, spec)
    if rule == "drop":
        assert g.node_counts.tolist() == [2, 1]  # 1 good jet + MET ; 1 jet, MET dropped
        np.testing.assert_allclose(np.expm1(g.u[:, 0]), [1, 1], atol=1e-6)
    else:  # zeroed: NaN-pt jet falls below threshold, inf-eta jet kept with eta 0
        assert g.node_counts.tolist() == [3, 2]
        assert g.x[1, spec.node_features.index("eta")] == 0.0


def test_torch_pyg_slices(shared_nanoaod):
    torch = pytest.importorskip("torch")
    from torch_geometric.data import Batch

    spec = GraphSpec()
    rec = build_node_record(opened(shared_nanoaod / "nano_dy.root"), spec)
    g = GraphBatch.from_record(rec, spec)
    tensors = g.to_torch("cpu")
    assert [t.dtype for t in tensors] == [
        torch.float32,
        torch.int64,
        torch.float32,
        torch.float32,
        torch.int64,
    ]
    pyg = g.to_pyg()
    assert pyg.num_graphs == len(g)
    rebuilt = Batch.from_data_list(pyg.to_data_list())
    for k in ("x", "edge_index", "edge_attr", "u", "batch", "ptr"):
        assert torch.equal(rebuilt[k], pyg[k]), k
    ex = pyg.get_example(3)
    assert ex.u.shape == (1, 7) and ex.num_nodes == g.node_counts[3]
    # Sub-batches (batched inference) equal the full batch.
    parts = list(g.iter_batches(7))
    assert [len(p) for p in parts] == [7] * 5 + [5]
    assert np.array_equal(np.concatenate([p.edge_attr for p in parts]), g.edge_attr)
    assert np.array_equal(
        np.concatenate([p.edge_index + p0 for p, p0 in zip(parts, g.node_offsets[::7], strict=True)], 1),
        g.edge_index,
    )
    lazy = list(iter_graph_batches(rec, 7, spec))
    assert all(
        np.array_equal(a.edge_attr, b.edge_attr) and np.array_equal(a.x, b.x)
        for a, b in zip(lazy, parts, strict=True)
    )


def test_parquet_roundtrip(tmp_path, shared_nanoaod):
    spec = GraphSpec()
    with expect_v2_warnings("nano_tree.root"):
        rec = build_node_record(opened(shared_nanoaod / "nano_tree.root"), spec)
    ak.to_parquet(rec, tmp_path / "g.parquet")
    back = ak.from_parquet(tmp_path / "g.parquet")
    a, b = GraphBatch.from_record(rec, spec), GraphBatch.from_record(back, spec)
    assert np.array_equal(a.x, b.x) and np.array_equal(a.edge_attr, b.edge_attr) and np.array_equal(a.u, b.u)
    narrow = ak.zip({"nodes": rec.nodes[:, :, :14], "globals": rec.globals}, depth_limit=1)
    with pytest.raises(ValueError, match="14 node / 7 global features, spec hepfm-graph v2 expects 15 / 7"):
        GraphBatch.from_record(narrow, spec)


def test_bench_smoke(shared_nanoaod, tmp_path):
    from coffea_hepfm.graph.bench import bench_graph

    files = [shared_nanoaod / f for f in ("nano_dy.root", "nano_tt_v12.root", "nano_dimuon.root")]
    # The skim keeps the branches every file has: no Photon (nano_tt_v12 has none).
    with pytest.warns(MissingCollectionWarning, match="Photon_pt not found"):
        r = bench_graph(files, GraphSpec(), n_events=3000, batch_size=1000, workdir=tmp_path, chunk_size=1000)
    assert r["n_events"] == 3000 and r["n_edges"] > 0 and r["chunk_size"] == 1000
    assert [p.rsplit("/", 1)[-1] for p in r["files"]] == [
        "nano_dy.root",
        "nano_tt_v12.root",
        "nano_dimuon.root",
    ]
    assert all(r[f"events_per_s_{s}_cpu"] > 0 for s in ("read", "record", "batches"))
    assert r["graph_ev_per_cpu_s"] == r["events_per_s_record_cpu"] and r["spec_version"] == 2


# -- simulated files -----------------------------------------------------------------------------------
def test_simulated_files(sim_files):
    spec = GraphSpec()
    for process, files in sim_files.items():
        assert files, process
        path = files[0]
        eager = build_node_record(open_events(path), spec)
        assert ak.array_equal(eager, build_node_record(open_events(path, mode="virtual"), spec))
        devents = open_events(files, mode="dask")
        drec = build_node_record(devents, spec)
        (cols,) = dak.necessary_columns(drec).values()
        assert set(cols) == set(spec.required_branches(devents))
        computed = drec.compute()
        assert ak.array_equal(eager, computed[: len(eager)])
        check_batch(GraphBatch.from_record(computed, spec), spec)


def test_docstring_examples():
    import doctest

    from coffea_hepfm.graph import btagging, columns, edges, nodes, sources, spec, validity
    from coffea_hepfm.nanoaod import versions

    for module in (spec, columns, nodes, edges, versions, sources, btagging, validity):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0, module.__name__
