"""coffea_hepfm.graph on real CMS NanoAOD, simulated NanoAOD and small hand-made events."""

from __future__ import annotations

import functools
import json
import warnings

import awkward as ak
import dask_awkward as dak
import numpy as np
import pytest
import uproot
import vector

from coffea_hepfm.graph import (
    GraphBatch,
    GraphSpec,
    GraphSpecMismatch,
    MissingBranchError,
    MissingCollectionWarning,
    NonFiniteInput,
    NonFiniteWarning,
    build_graphs,
    build_node_record,
    iter_graph_batches,
    resolve,
)
from coffea_hepfm.nanoaod import open_events

NO_PHOTON = GraphSpec(max_photons=0)


@functools.cache
def opened(path, mode="virtual"):
    """NanoEvents opened once per test session (eager opening reads every branch: slow on 1500-branch
    files). Builders never modify events, so sharing them between tests is safe."""
    return open_events(path, mode=mode)


def quiet_record(events, spec=None):
    """``build_node_record``, asserting the documented warning on files without Photon (slimmed v12)."""
    if "Photon" in events.fields or (spec is not None and spec.max_photons == 0):
        return build_node_record(events, spec)
    with pytest.warns(MissingCollectionWarning, match="Photon_pt not found"):
        return build_node_record(events, spec)


def make_events(jets, electrons=None, muons=None, photons=None, met=None):
    """Hand-made events with the NanoEvents field layout the builder reads (one list per event)."""
    n = len(jets)
    empty = [[] for _ in range(n)]

    def coll(rows, fields):
        rows = empty if rows is None else rows
        counts = [len(ev) for ev in rows]
        return ak.zip(
            {
                f: ak.unflatten(np.array([o.get(f, 0.0) for ev in rows for o in ev], np.float32), counts)
                for f in fields
            }
        )

    return ak.Array(
        {
            "Jet": coll(jets, ("pt", "eta", "phi", "mass", "btagDeepFlavB")),
            "Electron": coll(electrons, ("pt", "eta", "phi", "charge")),
            "Muon": coll(muons, ("pt", "eta", "phi", "charge")),
            "Photon": coll(photons, ("pt", "eta", "phi")),
            "MET": ak.Array(met if met is not None else [{"pt": 0.0, "phi": 0.0}] * n),
        }
    )


def check_batch(g: GraphBatch, spec: GraphSpec) -> None:
    n = g.node_counts
    assert g.x.dtype == np.float32 and g.x.shape == (n.sum(), spec.n_node_features)
    assert g.u.dtype == np.float32 and g.u.shape == (len(n), spec.n_global_features)
    assert g.edge_index.dtype == np.int64 and g.edge_index.shape == (2, int((n * (n - 1)).sum()))
    assert g.edge_attr.dtype == np.float32 and g.edge_attr.shape == (g.num_edges, spec.n_edge_features)
    assert np.array_equal(g.batch, np.repeat(np.arange(len(n)), n))
    src, dst = g.edge_index
    assert np.all(src != dst), "self loop"
    assert np.array_equal(g.batch[src], g.batch[dst]), "edge across events"
    key = src * max(g.num_nodes, 1) + dst
    assert np.all(np.diff(key) > 0), "edges not unique / not source-major ordered"
    assert np.isfinite(g.x).all() and np.isfinite(g.u).all() and np.isfinite(g.edge_attr).all()
    assert np.all(np.abs(g.edge_attr[:, 1]) <= np.float32(np.pi))


# -- spec --------------------------------------------------------------------------------------------
def test_spec_roundtrip_and_mismatch():
    spec = GraphSpec(max_jets=6, btag=[["btagPNetB", 0.245]])
    d = json.loads(json.dumps(spec.to_dict()))
    assert GraphSpec.from_dict(d) == spec and hash(GraphSpec.from_dict(d)) == hash(spec)
    assert (spec.n_node_features, spec.n_edge_features, spec.n_global_features) == (13, 4, 7)
    spec.check_compatible(spec.replace(missing="error", nonfinite="raise"))  # policy: not compared
    with pytest.raises(GraphSpecMismatch, match="max_jets: expected 6, got 10") as err:
        spec.check_compatible(GraphSpec(btag=spec.btag).to_dict())
    assert set(err.value.differences) == {"max_jets"}
    with pytest.raises(GraphSpecMismatch) as err:
        spec.check_compatible(GraphSpec(met=False))
    assert set(err.value.differences) == {"max_jets", "btag", "met"}
    with pytest.raises(ValueError, match="unknown field"):
        GraphSpec.from_dict({**d, "max_taus": 2})
    with pytest.raises(ValueError, match="version 2 is not supported"):
        GraphSpec.from_dict({**d, "version": 2})
    with pytest.raises(ValueError, match="max_muons"):
        GraphSpec(max_muons=-1)


def test_required_branches_resolve_versions():
    spec = GraphSpec()
    # NanoAOD v15-like branch list: PuppiMET only, UParT b-tag, no Photon.
    v15 = {"nJet", "Jet_pt", "Jet_eta", "Jet_phi", "Jet_mass", "Jet_btagUParTAK4B", "PuppiMET_pt"}
    v15 |= {"PuppiMET_phi", "nElectron", "Electron_pt", "Electron_eta", "Electron_phi", "Electron_charge"}
    v15 |= {"nMuon", "Muon_pt", "Muon_eta", "Muon_phi", "Muon_charge"}
    plan = resolve(spec, v15)
    assert plan.met_source == "PuppiMET" and plan.btag_branch == "btagUParTAK4B"
    assert plan.absent == ("Photon_pt",)
    assert set(spec.required_branches(v15)) <= v15
    with pytest.raises(MissingBranchError, match=r"no MET found.*NanoAOD v15") as err:
        resolve(spec.replace(met_sources=("MET",)), v15)
    assert err.value.branch == "MET_pt"
    with pytest.raises(MissingBranchError, match=r"Photon_pt not found.*max_photons=0"):
        resolve(spec.replace(missing="error"), v15)
    with pytest.raises(MissingBranchError, match="Electron_charge not found"):
        resolve(spec, v15 - {"Electron_charge"})
    with pytest.raises(MissingBranchError, match="no b-tag branch"):
        resolve(spec, v15 - {"Jet_btagUParTAK4B"})
    assert resolve(GraphSpec(max_jets=0), v15 - {"Jet_btagUParTAK4B"}).btag_branch is None


# -- real CMS files: eager == virtual == dask, pruning, shapes ---------------------------------------
def test_cms_file_eager_virtual_dask(cms_file):
    spec = GraphSpec()
    eager = opened(cms_file, "eager")
    rec = quiet_record(eager, spec)
    assert len(rec) == len(eager)
    assert str(rec.type.content) == "{nodes: var * 13 * float32, globals: 7 * float32}"
    assert ak.array_equal(rec, quiet_record(opened(cms_file), spec))
    devents = open_events(cms_file, mode="dask")
    drec = quiet_record(devents, spec)
    assert isinstance(drec, dak.Array)
    # Column pruning: exactly the branches the spec needs for this file, nothing else.
    (cols,) = dak.necessary_columns(drec).values()
    assert set(cols) == set(spec.required_branches(devents))
    assert ak.array_equal(rec, drec.compute())

    # Entry ranges and selected (sliced) events, as processors pass them, give the same rows.
    part = quiet_record(open_events(cms_file, mode="virtual", entry_start=3, entry_stop=9), spec)
    assert ak.array_equal(part, rec[3:9])
    mask = ak.num(eager.Jet) >= 2
    assert ak.array_equal(quiet_record(eager[mask], spec), rec[mask])

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
    assert set(cols) == {"nJet", "Jet_pt", "Jet_eta", "Jet_phi", "Jet_mass", "Jet_btagDeepFlavB"}
    assert set(cols) == set(spec.required_branches())

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
    assert counts.compute().tolist() == ak.to_list(np.minimum(ak.sum(jets.pt >= 20, axis=1), 10))


def test_features_against_vector(shared_nanoaod):
    """Node and edge features of real jets/leptons recomputed independently with `vector`."""
    spec = GraphSpec()
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
    assert len(rec) == 0 and str(rec.type.content) == "{nodes: var * 13 * float32, globals: 7 * float32}"
    g = GraphBatch.from_record(rec, spec)
    check_batch(g, spec)
    assert len(g) == 0 and g.x.shape == (0, 13) and g.edge_attr.shape == (0, 4) and g.u.shape == (0, 7)
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
    events = make_events(jets, muons=[[{"pt": 25.0, "charge": -1}], []], met=[{"pt": 40.0, "phi": 1.0}] * 2)
    g = GraphBatch.from_record(build_node_record(events, spec), spec)
    check_batch(g, spec)
    assert g.node_counts.tolist() == [4, 1]  # 2 capped jets + muon + MET ; MET only
    np.testing.assert_allclose(np.expm1(g.x[:2, 0]), [80.0, 50.0], rtol=1e-6)
    assert g.x[0, spec.node_features.index("btag")] == 0.0  # -1 default clipped to 0
    assert g.x[2, spec.node_features.index("charge")] == -1
    assert g.x[4, spec.node_features.index("is_met")] == 1
    u = np.expm1(g.u)
    np.testing.assert_allclose(u[0, :5], [3, 1, 0, 1, 0], atol=1e-5)  # 3 jets above 20 GeV, 1 b-tagged
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
        with pytest.raises(NonFiniteInput, match="2 jet object.*Jet_pt, Jet_eta"):
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
    rec = build_node_record(opened(shared_nanoaod / "nano_tree.root"), spec)
    ak.to_parquet(rec, tmp_path / "g.parquet")
    back = ak.from_parquet(tmp_path / "g.parquet")
    a, b = GraphBatch.from_record(rec, spec), GraphBatch.from_record(back, spec)
    assert np.array_equal(a.x, b.x) and np.array_equal(a.edge_attr, b.edge_attr) and np.array_equal(a.u, b.u)
    narrow = ak.zip({"nodes": rec.nodes[:, :, :12], "globals": rec.globals}, depth_limit=1)
    with pytest.raises(ValueError, match="12 node / 7 global features, spec hepfm-graph v1 expects 13 / 7"):
        GraphBatch.from_record(narrow, spec)


def test_bench_smoke(shared_nanoaod, tmp_path):
    from coffea_hepfm.graph.bench import bench_graph

    files = [shared_nanoaod / f for f in ("nano_dy.root", "nano_tt_v12.root", "nano_dimuon.root")]
    r = bench_graph(files, GraphSpec(), n_events=3000, batch_size=1000, workdir=tmp_path)
    assert r["n_events"] == 3000 and r["n_edges"] > 0
    assert len(r["files"]) == 2  # nano_tt_v12 (no Photon) resolves differently and is left out
    assert all(r[f"events_per_s_{s}_cpu"] > 0 for s in ("read", "record", "batches"))


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

    from coffea_hepfm.graph import columns, edges, nodes, spec
    from coffea_hepfm.nanoaod import versions

    for module in (spec, columns, nodes, edges, versions):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0, module.__name__
