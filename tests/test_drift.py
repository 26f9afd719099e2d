"""Reference distributions in model files, the per-event OOD score, input-drift checks and their verdicts,
on real simulated samples and real CMS NanoAOD (issue 13)."""

from __future__ import annotations

import json

import awkward as ak
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from coffea_hepfm import HEPFMScore
from coffea_hepfm.graph import GraphSpec, MissingCollectionWarning
from coffea_hepfm.model.io import read_metadata
from coffea_hepfm.model.reference import ReferenceMissing, feature_layout, read_reference
from coffea_hepfm.nanoaod import open_events
from coffea_hepfm.score.drift import check_files, input_histograms

#: These tests pin the graph spec to v1 as stored in v1 model files, so their verdicts do not change when
#: the default spec does; the code under test reads every feature name from the spec.
SPEC = GraphSpec.from_dict(
    {
        "name": "hepfm-graph",
        "version": 1,
        "max_jets": 10,
        "max_electrons": 4,
        "max_muons": 4,
        "max_photons": 4,
        "met": True,
        "min_pt_jet": 20.0,
        "min_pt_electron": 10.0,
        "min_pt_muon": 10.0,
        "min_pt_photon": 20.0,
        "btag": [
            ["btagDeepFlavB", 0.2783],
            ["btagPNetB", 0.245],
            ["btagRobustParTAK4B", 0.4319],
            ["btagUParTAK4B", 0.4648],
            ["btagDeepB", 0.4168],
        ],
        "met_sources": ["MET", "PuppiMET"],
        "missing": "empty",
        "nonfinite": "drop",
    }
)
LAYOUT = feature_layout(SPEC)
#: the jets' b-tag node feature, whatever the spec calls it
BTAG = "node/jet/" + next(f for f, _ in LAYOUT.node_columns if "btag" in f)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def rewrite(src, dst, set_values=None, drop=()):
    """A NanoAOD copy holding the graph's branches, with some replaced (``{branch: value}``) or dropped."""
    import uproot

    with uproot.open(src) as f:
        tree = f["Events"]
        keys = set(tree.keys())
        wanted = set(SPEC.required_branches(keys)) | {k for k in keys if k.startswith("Jet_btag")}
        wanted |= {"run", "luminosityBlock", "event"} & keys
        wanted -= set(drop)
        arrays = tree.arrays(sorted(b for b in wanted if not b.startswith("n")))
    for branch, value in (set_values or {}).items():  # a branch the file lacks is created
        arrays[branch] = ak.values_astype(ak.ones_like(arrays["Jet_pt"]) * value, np.float32)
    groups = {}
    for coll in ("Jet", "Electron", "Muon", "Photon"):
        fields = [b for b in arrays.fields if b.startswith(coll + "_")]
        if fields:
            groups[coll] = ak.zip({b[len(coll) + 1 :]: arrays[b] for b in fields})
    flat = {b: arrays[b] for b in arrays.fields if b.split("_")[0] not in groups}
    with uproot.recreate(dst) as f:
        f.mktree(
            "Events", {k: v.type for k, v in {**groups, **flat}.items()}, field_name=lambda o, i: f"{o}_{i}"
        )
        f["Events"].extend({**groups, **flat})
    return dst


@pytest.fixture(scope="module")
def ref_data(sim_dir, tmp_path_factory):
    from coffea_hepfm.training.dataset import build_dataset

    out = tmp_path_factory.mktemp("refdata")
    build_dataset(sim_dir, out, ["ttbar", "tth"], spec=SPEC)
    return out


@pytest.fixture(scope="module")
def tiny_model_file(tmp_path_factory):
    """A small untrained model of the pinned spec, saved without a reference (like an old model file)."""
    from coffea_hepfm.model import ClassifierHead, HEPFMClassifier, HEPFMNet, save_model

    torch.manual_seed(0)
    net = HEPFMNet(
        SPEC.n_node_features, SPEC.n_edge_features, SPEC.n_global_features, hidden=16, n_proc_steps=2
    )
    clf = HEPFMClassifier(net, ClassifierHead(2, in_channels=16, width=16))
    meta = {"class_names": ["ttH", "ttbar"], "task": "test", "description": "tiny untrained test model"}
    return save_model(tmp_path_factory.mktemp("models") / "tiny_v1.safetensors", clf, SPEC.to_dict(), meta)


@pytest.fixture(scope="module")
def ref_model(tiny_model_file, ref_data, tmp_path_factory):
    """The tiny test model re-saved with references from simulated ttbar + ttH (its 'training processes')."""
    from coffea_hepfm.cli import app

    out = tmp_path_factory.mktemp("refmodel") / "tiny_ref.safetensors"
    args = ["reference", str(tiny_model_file), "--data", str(ref_data), "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--processes", "tth,ttbar", "--fold", "all"])
    assert result.exit_code == 0, result.output
    same = CliRunner().invoke(
        app, ["reference", str(tiny_model_file), "--data", str(ref_data), "--out", str(tiny_model_file)]
    )
    assert same.exit_code == 2 and "must be a new file" in same.output
    return str(out)


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    """Fresh simulated ttbar + ttH (another seed than the reference's) and a copy with every b-tag = 0."""
    from coffea_hepfm.simulation import simulate

    out = tmp_path_factory.mktemp("fresh")
    files = simulate(
        ["ttbar", "tth"], n_events=150, seed=99, out_dir=out, workers=0, chunk_size=150, progress=False
    )
    good = [files["ttbar"][0], files["tth"][0]]
    broken = [rewrite(f, out / f"broken_{f.name}", {"Jet_btagDeepFlavB": 0.0}) for f in good]
    return good, broken


def test_reference_written_at_training_time(sim_dir, ref_data, tmp_path):
    from coffea_hepfm.training.finetune import finetune

    out = tmp_path / "ft.safetensors"
    finetune(ref_data, "tth_vs_ttbar", 40, pretrained=None, out=out, max_epochs=2, hidden=16, progress=False)
    meta = read_metadata(out)
    ref = read_reference(meta, out, required=True)
    assert ref.source["what"] == "fine-tuning data" and ref.source["n_events"] > 40
    assert list(ref.inputs) == LAYOUT.names() and BTAG in ref.inputs
    jets = ref.inputs["count/jet"]
    assert jets.n == ref.source["n_events"] and jets.discrete and len(jets.counts) == len(jets.edges) + 1
    ood = ref.ood
    assert ood["classes"] == ["ttH", "ttbar"] and ood["method"] == "mahalanobis-tied"
    assert ood["n_calibration"] == ref.source["n_heldout"] and ood["flagged_fraction_calibration"] <= 0.05
    assert ref.embedding["counts"].shape == (16, 32)
    # the JSON sidecar repeats it, and the weights still load strictly (no stray tensors)
    assert json.loads(out.with_suffix(".json").read_text())["reference"]["format"] == "coffea-hepfm-reference"
    HEPFMScore(out, ood=True)


def test_old_model_files_without_reference(tiny_model_file, shared_nanoaod, tmp_path):
    with pytest.raises(ReferenceMissing, match="coffea-hepfm reference"):
        HEPFMScore(tiny_model_file, ood=True)
    report = check_files([shared_nanoaod / "nano_dy.root"], tiny_model_file)
    assert report["verdict"] == "no-reference" and "no reference distributions" in report["reason"]
    with pytest.raises(ReferenceMissing):
        input_histograms(open_events(shared_nanoaod / "nano_dy.root", mode="virtual"), tiny_model_file)
    out = HEPFMScore(tiny_model_file)(open_events(shared_nanoaod / "nano_dy.root", mode="virtual"))
    assert len(out) == 40  # scoring is unchanged


def ref_model_card(path) -> str:
    from pathlib import Path

    return Path(path).with_suffix(".md").read_text()


def test_resave_is_recorded(ref_model, tiny_model_file):
    meta = read_metadata(ref_model)
    r = meta["resaves"][-1]
    assert r["from"] == str(tiny_model_file) and r["changed"] == ["reference"]
    assert "--processes tth,ttbar" in r["command"] and r["from_sha256"]
    assert r["command"] in ref_model_card(ref_model)  # the card's route lists the re-save
    from coffea_hepfm.model.io import load_model

    a, b = load_model(ref_model).module.state_dict(), load_model(tiny_model_file).module.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in b)


def test_ood_score_eager_dask_and_by_hand(ref_model, shared_nanoaod):
    from coffea_hepfm.model.ood import ood_scores

    path = shared_nanoaod / "nano_dy.root"
    scorer = HEPFMScore(ref_model, device="cpu", ood=True, embedding=True)
    out = scorer(open_events(path, mode="virtual"))
    assert set(out.fields) == {"ttH", "ttbar", "embedding", "ood_score", "in_domain"}
    cal = read_reference(read_metadata(ref_model)).ood
    by_hand = ood_scores(ak.to_numpy(out.embedding), cal)
    np.testing.assert_allclose(ak.to_numpy(out.ood_score), by_hand, rtol=1e-5)
    assert ak.to_numpy(out.in_domain).tolist() == (by_hand <= cal["threshold"]).tolist()
    lazy = HEPFMScore(ref_model, device="cpu", ood=True)(open_events(path, mode="dask", steps_per_file=2))
    computed = lazy.compute(scheduler="sync")
    np.testing.assert_allclose(ak.to_numpy(computed.ood_score), ak.to_numpy(out.ood_score), rtol=1e-5)
    assert ak.to_numpy(computed.in_domain).dtype == bool


def test_histograms_eager_virtual_dask_agree_and_read_only_inputs(ref_model, shared_nanoaod, tmp_path):
    import dask
    import dask_awkward as dak

    path = shared_nanoaod / "nano_dy.root"
    # eager reads every branch: on a copy holding only the graph's branches (same events) it stays quick
    eager = input_histograms(open_events(rewrite(path, tmp_path / "dy.root"), mode="eager"), ref_model)
    virtual = input_histograms(open_events(path, mode="virtual"), ref_model)
    events = open_events(path, mode="dask", steps_per_file=2)
    lazy = input_histograms(events, ref_model)
    # every histogram needs the whole node record; two of them stand for all (the check is slow per graph)
    (columns,) = dak.necessary_columns(lazy[BTAG], lazy["count/photon"]).values()
    assert set(columns) == set(SPEC.required_branches(events))
    (computed,) = dask.compute(lazy, scheduler="sync")
    assert set(eager) == set(virtual) == set(computed) == set(read_reference(read_metadata(ref_model)).inputs)
    for name, h in eager.items():
        assert np.array_equal(h.values(flow=True), virtual[name].values(flow=True)), name
        assert np.array_equal(h.values(flow=True), computed[name].values(flow=True)), name
    assert eager["count/jet"].sum(flow=True) == 40
    # chunks accumulate like any coffea output
    halves = [
        input_histograms(open_events(path, mode="virtual", entry_start=a, entry_stop=b), ref_model)
        for a, b in ((0, 25), (25, 40))
    ]
    summed = {k: halves[0][k] + halves[1][k] for k in halves[0]}
    assert all(np.array_equal(summed[k].values(flow=True), eager[k].values(flow=True)) for k in eager)


def test_verdict_ok_on_fresh_events_and_drift_on_broken_btag(ref_model, fresh, tmp_path):
    good, broken = fresh
    ok = check_files(good, ref_model)
    assert ok["verdict"] == "ok", ok["reason"]
    assert ok["events"] == 300 and ok["ood"]["flagged_fraction"] < 0.05
    bad = check_files(broken, ref_model, plots=tmp_path)
    assert bad["verdict"] == "drift"
    assert (
        bad["features"][0]["feature"].startswith("node/jet/btag") and bad["features"][0]["status"] == "drift"
    )
    assert (tmp_path / "drift_top.png").read_bytes()[:4] == b"\x89PNG"


def test_verdict_drift_on_cms_dy_and_2015_shaped_file(ref_model, shared_nanoaod, tmp_path):
    dy = check_files([shared_nanoaod / "nano_dy.root"], ref_model)
    assert dy["verdict"] == "drift" and dy["events"] == 40
    moved = [r["feature"] for r in dy["features"] if r["status"] == "drift"]
    assert moved and moved[0] in dy["reason"]
    # 2015-open-data-shaped: placeholder b-tag scores ("not computed") and no Run-3 taggers
    src = shared_nanoaod / "nano_tt_v12.root"
    old = rewrite(
        src,
        tmp_path / "open_data_2015_like.root",
        {"Jet_btagDeepFlavB": -3000.0, "Jet_btagDeepB": -1.0},
        drop=("Jet_btagPNetB", "Jet_btagRobustParTAK4B", "Jet_btagUParTAK4B"),
    )
    with pytest.warns(MissingCollectionWarning):
        placeholder = check_files([old], ref_model)
        original = check_files([src], ref_model)
    assert placeholder["verdict"] == "drift"
    btag = {r["feature"]: r for r in placeholder["features"]}[BTAG]
    assert btag["status"] == "drift"
    assert btag["psi"] > 3 * {r["feature"]: r for r in original["features"]}[BTAG]["psi"]


def test_check_inputs_cli(ref_model, fresh, tmp_path):
    from coffea_hepfm.cli import app

    out = tmp_path / "check.json"
    result = CliRunner().invoke(
        app, ["check-inputs", *map(str, fresh[1]), "--model", ref_model, "--json", str(out)]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["verdict"] == "drift" and "verdict: drift" in result.output
    assert BTAG in result.output and "flagged" in result.output
    assert {"psi", "p_value", "status", "n"} <= set(report["features"][0]) and "flagged_fraction" in report[
        "ood"
    ]
    missing = CliRunner().invoke(app, ["check-inputs", "nowhere.root", "--model", ref_model])
    assert missing.exit_code == 2 and "not found" in missing.output


def test_psi_small_samples_are_not_called_drift():
    from coffea_hepfm.score.psi import judge, psi

    rng = np.random.default_rng(1)
    reference = np.bincount(rng.integers(0, 10, 100_000), minlength=10)
    small = np.bincount(rng.integers(0, 10, 40), minlength=10)
    value, p, bins = psi(small, reference)
    assert bins == 10 and value > 0.05  # small samples have a biased PSI ...
    rows = [{"feature": "x", "psi": value, "p_value": p, "n": 40, "n_reference": 100_000}]
    judge(rows, min_entries=20, alpha=0.01)
    assert rows[0]["status"] == "ok"  # ... which the significance requirement absorbs
    shifted = np.bincount(np.minimum(rng.integers(0, 10, 40) + 4, 9), minlength=10)
    rows = [
        {
            "feature": "x",
            "psi": (v := psi(shifted, reference))[0],
            "p_value": v[1],
            "n": 40,
            "n_reference": 100_000,
        }
    ]
    judge(rows, min_entries=20, alpha=0.01)
    assert rows[0]["status"] == "drift"


def test_bench_score_measures_the_ood_overhead(ref_model, shared_nanoaod, tmp_path):
    from coffea_hepfm.score.bench import run_benchmark

    lines = []
    res = run_benchmark(
        model=ref_model,
        sources=[shared_nanoaod / "nano_dy.root"],
        n_events=400,
        chunk_size=200,
        workdir=tmp_path,
        memory=False,
        dense_events=40,
        print_fn=lines.append,
        ood=True,
    )
    assert res["rates"]["c_ood_read_graph_score_ood"]["events_per_s"] > 0 and np.isfinite(res["ood_overhead"])
    assert any(line.startswith("ood=True costs") for line in lines)
