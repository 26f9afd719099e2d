"""Training ntuples from NanoAOD: correctionlib weights, NtupleProcessor on every executor, bad input."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import warnings
from pathlib import Path

import awkward as ak
import correctionlib
import numpy as np
import pytest

from coffea_hepfm.graph import GraphSpec
from coffea_hepfm.nanoaod import open_events
from coffea_hepfm.processors import (
    CorrectionKeyError,
    EmptySelectionWarning,
    FilesetError,
    NotMCError,
    NtupleConfigMismatch,
    PileupCorrection,
    Selection,
    default_corrections,
    event_weights,
    load_correction,
    make_ntuples,
    read_manifest,
    read_ntuples,
    simulated_fileset,
    sum_genweights,
)
from coffea_hepfm.processors.split import validation_mask
from coffea_hepfm.processors.weights import Normalisation
from coffea_hepfm.processors.writer import ntuple_files

LABELS = {"tth": "signal", "ttbar": "background"}
WEIGHTS = ["weight", "weight_pu_up", "weight_pu_down", "weight_muon_up", "weight_muon_down"]


def by_event_id(arr: ak.Array) -> ak.Array:
    order = np.lexsort((arr.event.to_numpy(), arr.luminosityBlock.to_numpy(), arr.run.to_numpy()))
    return arr[order]


@pytest.fixture(scope="module")
def corrections(corrections_dir):
    return default_corrections(corrections_dir)


@pytest.fixture(scope="module")
def sim_fileset(sim_dir):
    return simulated_fileset(sim_dir, LABELS)


# --- weights -------------------------------------------------------------------------------------------
def _expected_weights(events, xsec, lumi, sumw, cdir):
    """Independent evaluation with correctionlib on flat numpy (tight muons, pt > 10, |eta| < 2.4)."""
    pu = correctionlib.CorrectionSet.from_file(str(cdir / "puWeights_2018_UL.json"))
    pu = pu["Collisions18_UltraLegacy_goldenJSON"]
    mu = correctionlib.CorrectionSet.from_file(str(cdir / "muon_Z_2018_UL.json.gz"))[
        "NUM_TightID_DEN_TrackerMuons"
    ]
    ntrue = events.Pileup.nTrueInt.to_numpy().astype(np.float64)
    m = events.Muon
    m = m[(m.pt > 10) & (abs(m.eta) < 2.4) & m.tightId]
    counts = ak.num(m).to_numpy()
    pt = np.maximum(ak.flatten(m.pt).to_numpy().astype(np.float64), 15.0)
    abseta = np.minimum(np.abs(ak.flatten(m.eta).to_numpy().astype(np.float64)), np.nextafter(2.4, 0))
    owner = np.repeat(np.arange(len(counts)), counts)
    sf = {}
    for v in ("sf", "systup", "systdown"):
        prod = np.ones(len(counts))
        np.multiply.at(prod, owner, mu.evaluate("2018_UL", abseta, pt, v))
        sf[v] = prod
    base = events.genWeight.to_numpy().astype(np.float64) * xsec * lumi / sumw
    p = {v: pu.evaluate(ntrue, v) for v in ("nominal", "up", "down")}
    return {
        "weight": base * p["nominal"] * sf["sf"],
        "weight_pu_up": base * p["up"] * sf["sf"],
        "weight_pu_down": base * p["down"] * sf["sf"],
        "weight_muon_up": base * p["nominal"] * sf["systup"],
        "weight_muon_down": base * p["nominal"] * sf["systdown"],
    }, counts


def test_weights_on_cms_nanoaod(shared_nanoaod, corrections, corrections_dir):
    path = shared_nanoaod / "nano_dy.root"
    events = open_events(path)
    sumw = sum_genweights([path])
    assert sumw == pytest.approx(float(np.sum(events.genWeight.to_numpy(), dtype=np.float64)))
    norm = Normalisation(xsec=6077.2, sumw=sumw, lumi=59830.0)
    got = event_weights(events, norm, corrections, Selection().muons(events))
    want, n_muons = _expected_weights(events, 6077.2, 59830.0, sumw, corrections_dir)
    assert list(got) == WEIGHTS
    for k in WEIGHTS:
        assert got[k].type.content == ak.types.NumpyType("float32")
        np.testing.assert_allclose(got[k].to_numpy(), want[k], rtol=1e-6)
    # the file has events with and without selected muons; the muon variations move only the former
    assert (n_muons > 0).any() and (n_muons == 0).any()
    w = {k: v.to_numpy() for k, v in got.items()}
    assert np.array_equal(w["weight_muon_up"][n_muons == 0], w["weight"][n_muons == 0])
    assert (w["weight_muon_up"][n_muons > 0] != w["weight_muon_down"][n_muons > 0]).all()
    assert (w["weight_pu_up"] != w["weight_pu_down"]).mean() > 0.9


def test_weights_on_simulated_nanoaod(sim_files, corrections, corrections_dir):
    files = sim_files["zjets"]
    events = open_events(files[0])
    norm = Normalisation(xsec=6000.0, sumw=sum_genweights(files))
    got = event_weights(events, norm, corrections, Selection().muons(events))
    want, _ = _expected_weights(events, 6000.0, norm.lumi, norm.sumw, corrections_dir)
    for k, v in got.items():
        v = v.to_numpy()
        assert np.isfinite(v).all() and (v >= 0).all(), k
        np.testing.assert_allclose(v, want[k], rtol=1e-6, err_msg=k)  # the values, not only their sign
    assert (got["weight_pu_up"].to_numpy() != got["weight"].to_numpy()).any()
    n_mu = ak.num(Selection().muons(events)).to_numpy()
    assert (n_mu > 0).any()  # Z -> mumu events do get the scale factor
    assert (got["weight_muon_up"].to_numpy()[n_mu > 0] > got["weight"].to_numpy()[n_mu > 0]).all()


def test_muon_sf_is_clamped_into_the_domain(corrections):
    loaded = load_correction(corrections[1])
    assert loaded.domain == {"abseta": (0.0, 2.4), "pt": (15.0, float("inf"))}
    pt = ak.Array([[10.0, 15.0, 3000.0]])
    eta = ak.Array([[2.45, -2.39, 0.5]])
    muons = ak.zip({"pt": pt, "eta": eta})
    from coffea_hepfm.processors.corrections import muon_factors

    got = muon_factors(muons, corrections[1])["nominal"].tolist()[0]
    ev = loaded.evaluator
    want = ev.evaluate("2018_UL", np.nextafter(2.4, 0), 15.0, "sf")  # 10 GeV muon -> 15 GeV bin
    want *= ev.evaluate("2018_UL", 2.39, 15.0, "sf") * ev.evaluate("2018_UL", 0.5, 3000.0, "sf")
    assert got == pytest.approx(want, rel=1e-12)


def test_correction_key_and_variation_errors(corrections_dir):
    bad = PileupCorrection(str(corrections_dir / "puWeights_2018_UL.json"), key="Collisions17_goldenJSON")
    with pytest.raises(
        CorrectionKeyError, match="Collisions17_goldenJSON.*available.*Collisions18_UltraLegacy"
    ):
        load_correction(bad)
    mu = default_corrections(corrections_dir)[1]
    with pytest.raises(ValueError, match="rejects variation 'nominal'"):
        load_correction(dataclasses.replace(mu, variations=("nominal", "up", "down")))
    with pytest.raises(FileNotFoundError):
        load_correction(PileupCorrection(str(corrections_dir / "nope.json")))


# --- NtupleProcessor: identical output on every executor -------------------------------------------------
@pytest.fixture(scope="module")
def runs(tmp_path_factory, sim_fileset, corrections):
    """The same fileset through eager (chunks of 100), dask-awkward (70) and a 2-worker LocalCluster (70)."""
    from distributed import Client, LocalCluster

    base = tmp_path_factory.mktemp("ntuples")
    kw = dict(corrections=corrections, classes=["background", "signal"])
    out = {
        "eager": make_ntuples(sim_fileset, base / "eager", chunksize=100, **kw),
        "dask": make_ntuples(sim_fileset, base / "dask", executor="dask", chunksize=70, **kw),
    }
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        out["cluster"] = make_ntuples(
            sim_fileset, base / "cluster", executor="dask", client=client, chunksize=70, **kw
        )
    return base, out


def test_ntuples_identical_across_executors(runs, sim_fileset):
    base, counts = runs
    arrays = {k: by_event_id(read_ntuples(base / k)) for k in ("eager", "dask", "cluster")}
    assert counts["eager"]["tth"]["chunks_written"] == 2 and counts["dask"]["tth"]["chunks_written"] == 3
    assert len(ntuple_files(base / "cluster", ["tth"])) == 3
    ref = arrays["eager"]
    assert len(ref) == sum(c["selected"] for c in counts["eager"].values()) > 300
    for name in ("dask", "cluster"):
        assert ref.fields == arrays[name].fields
        for field in ref.fields:
            assert ak.array_equal(ref[field], arrays[name][field]), (name, field)
    assert ref.fields == ["nodes", "globals", "label", *WEIGHTS, "run", "luminosityBlock", "event"]
    assert str(ref.nodes.type.content) == f"var * {GraphSpec().n_node_features} * float32"
    manifest = read_manifest(base / "eager")
    assert manifest["classes"] == ["background", "signal"]
    assert GraphSpec.from_dict(manifest["graph_spec"]) == GraphSpec()
    # labels follow the datasets (simulation has run 1 everywhere, so count them); weights are cross-section
    # normalised
    n_signal = int(ak.sum(ref.label == 1))
    assert n_signal == counts["eager"]["tth"]["selected"] > 0
    assert len(ref) - n_signal == counts["eager"]["ttbar"]["selected"] > 0
    for label, ds in ((1, "tth"), (0, "ttbar")):
        meta = manifest["datasets"][ds]
        w = ref.weight[ref.label == label].to_numpy()
        assert np.isfinite(w).all() and (w > 0).all()
        assert meta["sumw"] == 200.0  # genWeight is 1 in simulation
        assert meta["xsec"] == pytest.approx(sim_fileset[ds]["metadata"]["xsec"])
    # the validation split depends on the event ID only, not on chunking or executor
    masks = [validation_mask(a.run, a.luminosityBlock, a.event, 0.25) for a in arrays.values()]
    assert all(np.array_equal(masks[0], m) for m in masks[1:]) and 0.1 < masks[0].mean() < 0.4


def test_second_run_in_one_process_uses_its_own_metadata(shared_nanoaod, tmp_path):
    """Two runs in one process, same dataset name and file, other label and cross section: the second
    must not inherit the first's metadata. (coffea's Runner keeps a process-wide metadata cache keyed by
    dataset, file and tree; taking it made the eager ntuples of test_ntuples_identical_across_executors
    carry the label and weights of an earlier test's run over the same simulated file.)"""
    path = str(shared_nanoaod / "nano_dy.root")
    runs = {"first": ("a", 1.0), "second": ("b", 2.0)}
    weights = {}
    for name, (label, xsec) in runs.items():
        fs = {"dy": {"files": [path], "metadata": {"label": label, "xsec": xsec}}}
        make_ntuples(fs, tmp_path / name, classes=["a", "b"], chunksize=1000)  # coffea Runner (iterative)
        arr = read_ntuples(tmp_path / name)
        assert set(arr.label.to_numpy().tolist()) == {["a", "b"].index(label)}, name
        weights[name] = arr.weight.to_numpy()
    np.testing.assert_allclose(weights["second"], 2.0 * weights["first"], rtol=1e-6)


def test_rerun_after_killed_worker(runs, sim_fileset, corrections, tmp_path):
    base, _ = runs
    out = tmp_path / "killed"
    shutil.copytree(base / "dask", out)
    files = ntuple_files(out)
    lost = files[1]
    lost.unlink()  # the chunk a killed worker never finished ...
    stale = lost.with_name(f".{lost.name}.tmp-deadbeef")
    stale.write_bytes(b"PAR1 half a parquet file")  # ... and its half-written temp file
    before = {f: f.stat().st_mtime_ns for f in files if f != lost}
    # the rerun may use another executor: chunk boundaries do not depend on it
    counts = make_ntuples(
        sim_fileset, out, chunksize=70, corrections=corrections, classes=["background", "signal"]
    )
    assert sum(c["chunks_written"] for c in counts.values()) == 1
    assert not stale.exists() and lost.exists()
    assert {f: f.stat().st_mtime_ns for f in before} == before  # complete chunks were not rewritten
    assert ak.array_equal(by_event_id(read_ntuples(out)), by_event_id(read_ntuples(base / "dask")))


def test_launch_finetune_reports_weighted_metrics_for_lhe_weighted_classes(
    sim_files, tiny_model_file, tmp_path
):
    """CP-even and CP-odd from the *same* ttH events, weighted by LHEReweightingWeight (alpha 0 vs 90):
    the unweighted AUC is 0.5 by construction; the reported one (and the early stopping) is weighted by
    the ntuples' ``weight``, exactly scikit-learn's ``roc_auc_score(..., sample_weight=...)``."""
    from sklearn.metrics import roc_auc_score

    from coffea_hepfm.model import load_model
    from coffea_hepfm.processors import launch_finetune
    from coffea_hepfm.training.evaluate import signal_scores
    from coffea_hepfm.training.ntuples import load_ntuple_tables

    files = [str(f) for f in sim_files["tth"]]
    meta = {"xsec": 0.5, "sumw": 200.0}
    fileset = {
        "even": {"files": files, "metadata": {**meta, "label": "CP_even", "lhe_weight": "lhe:alpha=0"}},
        "odd": {"files": files, "metadata": {**meta, "label": "CP_odd", "lhe_weight": "lhe:alpha=90"}},
    }
    nt = tmp_path / "nt"
    make_ntuples(fileset, nt, classes=["CP_odd", "CP_even"], chunksize=1000)
    out = tmp_path / "cp.safetensors"
    m = launch_finetune(nt, tiny_model_file, out, signal="CP_odd", max_epochs=2, seed=0, device="cpu")[
        "metrics"
    ]
    for key in ("auc", "val_auc"):  # same events in both classes, so the same scores
        assert m["unweighted"][key] == pytest.approx(0.5, abs=1e-12)
    tables, _, _, _ = load_ntuple_tables(nt, signal="CP_odd")
    saved = load_model(out)
    for split, key in (("test", "auc"), ("val", "val_auc")):
        t = tables[split]
        want = roc_auc_score(t.y == 0, signal_scores(saved.module, t, saved.spec), sample_weight=t.weight)
        assert m[key] == pytest.approx(want, abs=1e-6), split
        assert abs(want - 0.5) > 1e-4, split  # the weights carry the CP information
    assert m["n_signal"] == m["n_background"]  # each event once per class


def test_rerun_leaves_the_temp_file_of_a_live_writer(runs, sim_fileset, corrections, tmp_path):
    """Two runs into one folder: the rerun's cleanup removes only temp files whose writer died (their lock
    is free); a temp file locked by a live writer (another process) stays, and goes once that one dies."""
    import subprocess
    import sys

    from coffea_hepfm.processors.writer import remove_stale_temps

    base, _ = runs
    out = tmp_path / "shared"
    shutil.copytree(base / "dask", out)
    lost = ntuple_files(out)[1]
    lost.unlink()
    writer = (
        "import sys\nfrom coffea_hepfm.atomic import atomic_output\n"
        "with atomic_output(sys.argv[1]) as (tmp, f):\n    print(tmp, flush=True)\n    sys.stdin.read()\n"
    )
    live = subprocess.Popen(
        [sys.executable, "-c", writer, str(lost)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        live_tmp = Path(live.stdout.readline().strip())
        assert live_tmp.exists() and live_tmp.name.startswith(f".{lost.name}.tmp-")
        stale = lost.with_name(f".{lost.name}.tmp-deadbeef")
        stale.write_bytes(b"PAR1 half a parquet file")  # its writer died: nobody holds its lock
        counts = make_ntuples(
            sim_fileset, out, chunksize=70, corrections=corrections, classes=["background", "signal"]
        )
        assert sum(c["chunks_written"] for c in counts.values()) == 1 and lost.exists()
        assert not stale.exists() and live_tmp.exists()  # the live writer's temp file was left alone
    finally:
        live.kill()  # SIGKILL: no cleanup of its own; the kernel drops its lock
        live.wait()
    assert remove_stale_temps(out) == [live_tmp] and not live_tmp.exists()
    # atomic outputs get a plain file's permissions (0666 less the umask), not mkstemp's 0600
    (tmp_path / "plain").write_text("x")
    assert lost.stat().st_mode == (tmp_path / "plain").stat().st_mode
    assert (out / "ntuple.json").stat().st_mode == (tmp_path / "plain").stat().st_mode


# --- bad input: clear error, nothing written ------------------------------------------------------------
def test_data_file_refused(shared_nanoaod, tmp_path):
    fs = {
        "dimuon": {
            "files": [str(shared_nanoaod / "nano_dimuon.root")],
            "metadata": {"label": "b", "xsec": 1.0},
        }
    }
    with pytest.raises(NotMCError, match="nano_dimuon.root.*no genWeight"):
        make_ntuples(fs, tmp_path / "out")
    fs["dimuon"]["metadata"]["is_mc"] = False
    with pytest.raises(NotMCError, match="is data"):
        make_ntuples(fs, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    # explicitly allowed: data gets unit weights and no corrections
    make_ntuples(fs, tmp_path / "data", require_mc=False)
    arr = read_ntuples(tmp_path / "data")
    assert len(arr) > 0 and (arr.weight.to_numpy() == 1.0).all()


@pytest.mark.parametrize(
    ("metadata", "classes", "match"),
    [
        ({"xsec": 1.0}, None, "no label"),
        ({"label": "higgs", "xsec": 1.0}, ["signal", "background"], "not among the task's classes"),
        ({"label": "signal"}, None, "needs metadata 'xsec'"),
    ],
)
def test_bad_fileset_refused(shared_nanoaod, tmp_path, metadata, classes, match):
    fs = {"dy": {"files": [str(shared_nanoaod / "nano_dy.root")], "metadata": metadata}}
    with pytest.raises(FilesetError, match=match):
        make_ntuples(fs, tmp_path / "out", classes=classes)
    assert not (tmp_path / "out").exists()


def test_empty_selection_gives_valid_empty_ntuple(shared_nanoaod, tmp_path, corrections):
    fs = {"dy": {"files": [str(shared_nanoaod / "nano_dy.root")], "metadata": {"label": "bkg", "xsec": 1.0}}}
    with pytest.warns(EmptySelectionWarning, match="no event passed the selection"):
        counts = make_ntuples(fs, tmp_path / "out", selection=Selection(min_jets=99), corrections=corrections)
    assert counts["dy"] == {
        "chunks_written": 1,
        "chunks_skipped": 0,
        "events": 40,
        "selected": 0,
        "empty_chunks": 1,
    }
    arr = read_ntuples(tmp_path / "out")
    assert (
        len(arr) == 0 and arr.fields[:3] == ["nodes", "globals", "label"] and "weight_muon_down" in arr.fields
    )


def test_other_spec_in_output_refused(shared_nanoaod, tmp_path):
    fs = {"dy": {"files": [str(shared_nanoaod / "nano_dy.root")], "metadata": {"label": "bkg", "xsec": 1.0}}}
    make_ntuples(fs, tmp_path / "out")
    before = sorted(p.name for p in (tmp_path / "out" / "dy").iterdir())
    manifest = (tmp_path / "out" / "ntuple.json").read_text()
    with pytest.raises(NtupleConfigMismatch, match="graph_spec.*refusing to mix"):
        make_ntuples(fs, tmp_path / "out", GraphSpec(max_jets=4))
    with pytest.raises(NtupleConfigMismatch, match="chunksize.*refusing to mix"):
        make_ntuples(fs, tmp_path / "out", chunksize=10)  # same events under other chunk names
    assert (tmp_path / "out" / "ntuple.json").read_text() == manifest
    assert sorted(p.name for p in (tmp_path / "out" / "dy").iterdir()) == before
    # the same spec again is a no-op rerun
    with warnings.catch_warnings():
        warnings.simplefilter("error", EmptySelectionWarning)
        counts = make_ntuples(fs, tmp_path / "out")
    assert counts["dy"]["chunks_skipped"] == 1 and counts["dy"]["chunks_written"] == 0


def test_cli_ntuples(runs, sim_fileset, corrections_dir, tmp_path):
    from typer.testing import CliRunner

    from coffea_hepfm.cli import app

    base, _ = runs
    fileset = tmp_path / "fileset.json"
    fileset.write_text(json.dumps(sim_fileset))
    out = tmp_path / "out"
    shutil.copytree(base / "eager", out)
    args = [
        "ntuples",
        str(fileset),
        "--out",
        str(out),
        "--chunksize",
        "100",
        "--corrections",
        str(corrections_dir),
    ]
    before = {f: f.stat().st_mtime_ns for f in ntuple_files(out)}
    res = CliRunner().invoke(app, [*args, "--task-classes", "background,signal"])
    assert res.exit_code == 0, res.output
    assert {f: f.stat().st_mtime_ns for f in ntuple_files(out)} == before  # all there: nothing recomputed
    res = CliRunner().invoke(app, [*args, "--task-classes", "signal,background"])
    assert res.exit_code == 2 and "classes" in res.output and "refusing to mix" in res.output
    broken = {k: {**v, "metadata": {"xsec": 1.0}} for k, v in sim_fileset.items()}
    fileset.write_text(json.dumps(broken))
    res = CliRunner().invoke(app, ["ntuples", str(fileset), "--out", str(tmp_path / "new")])
    assert res.exit_code == 2 and "no label" in res.output
    assert not os.path.exists(tmp_path / "new")


# --- fine-tuning from ntuples ----------------------------------------------------------------------------
def test_launch_finetune_on_dask_worker(runs, tiny_model_file, sim_files, tmp_path):
    """Fine-tune the (tiny) pretrained backbone from the ntuples on a Dask worker; HEPFMScore loads it."""
    from distributed import Client, LocalCluster

    from coffea_hepfm.processors import launch_finetune
    from coffea_hepfm.score import HEPFMScore
    from coffea_hepfm.training.ntuples import load_ntuple_tables

    base, _ = runs
    out = tmp_path / "tth_ntuples.safetensors"
    with (
        LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        future = launch_finetune(base / "cluster", tiny_model_file, out, max_epochs=3, client=client, seed=1)
        summary = future.result()
    assert summary["class_names"] == ["signal", "background"]
    m = summary["metrics"]
    for p in summary["plots"]:
        assert os.path.getsize(p) > 1000
    assert json.loads((tmp_path / "tth_ntuples_metrics.json").read_text())["model"] == str(out)
    # the split is by event ID: the same ntuples made by another executor give the same tables
    a, _, _, _ = load_ntuple_tables(base / "eager")
    b, _, _, _ = load_ntuple_tables(base / "cluster")
    for k in ("train", "val", "test"):
        assert len(a[k]) == len(b[k]) == summary["data"][f"n_{k}"]
        assert np.array_equal(np.sort(a[k].weight), np.sort(b[k].weight))
    # the reported metrics are those of the saved model on the recorded test and validation splits
    from sklearn.metrics import roc_auc_score

    from coffea_hepfm.model import load_model
    from coffea_hepfm.training.evaluate import signal_scores

    saved = load_model(out)
    for split, key in (("test", "auc"), ("val", "val_auc")):
        t = b[split]
        scores = signal_scores(saved.module, t, saved.spec)
        assert m[key] == pytest.approx(roc_auc_score(t.y == 0, scores, sample_weight=t.weight), abs=1e-6)
        assert m["unweighted"][key] == pytest.approx(roc_auc_score(t.y == 0, scores), abs=1e-6), split
    assert m["weighted_by"].startswith("weight,")
    test_y = b["test"].y
    assert (m["n_signal"], m["n_background"]) == (int((test_y == 0).sum()), int((test_y == 1).sum()))
    # class-balanced loss weights: both classes carry the same total weight
    w, y = a["train"].weight, a["train"].y
    assert w[y == 0].sum() == pytest.approx(w[y == 1].sum(), rel=1e-5)
    # the analysis scores its events with the new model
    events = open_events(sim_files["tth"][0])
    scored = HEPFMScore(out, device="cpu")(events)
    assert scored.fields == ["signal", "background"] and len(scored) == len(events)
    np.testing.assert_allclose((scored.signal + scored.background).to_numpy(), 1.0, rtol=1e-5)


def test_dataset_without_events_needs_sumw(empty_file, tmp_path):
    fs = {"dy": {"files": [str(empty_file)], "metadata": {"label": "bkg", "xsec": 1.0}}}
    with pytest.raises(
        FilesetError, match="dataset 'dy': sum of generator weights is 0.0.*give metadata 'sumw'"
    ):
        make_ntuples(fs, tmp_path / "out")
    assert not (tmp_path / "out").exists()
