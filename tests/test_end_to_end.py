"""The end-to-end example (issue 6): simulate -> `coffea-hepfm ntuples` -> `coffea-hepfm finetune --ntuples`
-> the analysis processor with the new model, on small samples.

Z' (1.5 TeV) -> tt against inclusive ttbar: separable enough that 300 training events per process give a
held-out AUC far above chance within a few seconds of fine-tuning, so the AUC check can fail for real
(an untrained or label-swapped model scores about 0.5 or below).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SIGNAL, BACKGROUND = "zprime_tt", "ttbar"
EVENTS = 300
MIN_AUC = 0.8


@pytest.fixture(scope="module")
def end_to_end():
    sys.path.insert(0, str(EXAMPLES))
    try:
        import end_to_end

        yield end_to_end
    finally:
        sys.path.remove(str(EXAMPLES))


@pytest.fixture(scope="module")
def e2e_out(end_to_end, tmp_path_factory, corrections_dir) -> Path:
    out = tmp_path_factory.mktemp("e2e")
    argv = ["--out", str(out), "--events", str(EVENTS), "--signal", SIGNAL, "--background", BACKGROUND]
    argv += ["--corrections", str(corrections_dir), "--epochs", "6", "--time-budget", "6"]
    argv += ["--threads", "1"]  # CI machines are small and shared: no OpenMP spinning
    import torch

    threads = torch.get_num_threads()
    assert end_to_end.main(argv) == 0
    assert torch.get_num_threads() == threads  # --threads is not left behind in this process
    return out


@pytest.mark.slow
def test_ntuples_written(e2e_out):
    from coffea_hepfm.processors import read_manifest, read_ntuples

    manifest = read_manifest(e2e_out / "ntuples")
    assert set(manifest["datasets"]) == {SIGNAL, BACKGROUND}
    assert [c["kind"] for c in manifest["corrections"]] == ["pileup", "muon"]
    rows = read_ntuples(e2e_out / "ntuples")
    labels = np.asarray(rows.label)
    for name in (SIGNAL, BACKGROUND):
        n = int(np.sum(labels == manifest["classes"].index(name)))
        assert 0 < n <= EVENTS, name
    for col in ("weight", "weight_pu_up", "weight_pu_down", "weight_muon_up", "weight_muon_down"):
        assert np.all(np.isfinite(np.asarray(rows[col]))), col


@pytest.mark.slow
def test_finetuned_model_separates_heldout_sample(e2e_out):
    """The model from the ntuples loads in HEPFMScore and ranks held-out signal above background."""
    import awkward as ak
    import torch
    from sklearn.metrics import roc_auc_score

    from coffea_hepfm import HEPFMScore
    from coffea_hepfm.model import read_metadata
    from coffea_hepfm.nanoaod import open_events
    from coffea_hepfm.processors import load_fileset

    summary = json.loads((e2e_out / "summary.json").read_text())
    train_files = {
        Path(f).resolve() for ds in load_fileset(e2e_out / "fileset.json").values() for f in ds["files"]
    }
    assert train_files and all(f.is_file() for f in train_files)
    model = Path(summary["model"])
    meta = read_metadata(model)
    assert meta["recipe"]["stage"] == "finetune-ntuples"
    assert Path(meta["data"]["ntuples"]) == e2e_out / "ntuples"
    scorer = HEPFMScore(str(model), device="cpu")
    scores = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # see test setup: shared CI cores
    try:
        for process in (SIGNAL, BACKGROUND):
            # Held-out files: another seed, never in the fileset the ntuples were made from.
            (path,) = sorted((e2e_out / "sim" / "heldout" / process).glob("*.root"))
            assert path.resolve() not in train_files
            scores[process] = ak.to_numpy(scorer(open_events(path))[SIGNAL])
            assert len(scores[process]) == EVENTS
    finally:
        torch.set_num_threads(threads)
    assert scorer.class_names_[0] == SIGNAL
    y = np.r_[np.ones(EVENTS, bool), np.zeros(EVENTS, bool)]
    auc = roc_auc_score(y, np.r_[scores[SIGNAL], scores[BACKGROUND]])
    assert auc > MIN_AUC
    assert np.median(scores[SIGNAL]) > np.median(scores[BACKGROUND])
    # The example's own number (analysis processor's selection) agrees with this independent one.
    assert summary["heldout_auc"] > MIN_AUC
    assert summary["heldout_auc"] == pytest.approx(auc, abs=0.02)


@pytest.mark.slow
def test_histograms_and_plots(e2e_out):
    import uproot

    summary = json.loads((e2e_out / "summary.json").read_text())
    with uproot.open(e2e_out / "histograms.root") as f:
        hists = {name: f[f"score_{name}"].to_hist() for name in (SIGNAL, BACKGROUND)}
    for name, h in hists.items():
        n = h.sum().value
        assert 0 < n <= EVENTS and n == summary["histograms"][name] == summary["heldout_events"][name]
    # Score distributions: signal piles up at high P(signal), background at low.
    centers = hists[SIGNAL].axes[0].centers
    mean = {k: np.average(centers, weights=h.values()) for k, h in hists.items()}
    assert mean[SIGNAL] > mean[BACKGROUND]
    for png in ("score.png", "heldout_roc.png"):
        assert (e2e_out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    commands = [s["command"] for s in summary["steps"]]
    assert any(c.startswith("coffea-hepfm ntuples ") for c in commands)
    assert any(c.startswith("coffea-hepfm finetune --ntuples ") for c in commands)


def test_finetune_cli_without_ntuples_asks_for_task(tmp_path):
    """`coffea-hepfm finetune --ntuples DIR` on a folder without ntuple.json: clear error, exit 2."""
    from typer.testing import CliRunner

    from coffea_hepfm.cli import app

    res = CliRunner().invoke(
        app, ["finetune", "--ntuples", str(tmp_path), "--from", "none", "--out", str(tmp_path / "m")]
    )
    assert res.exit_code == 2
    assert "--task and --train-size are required" in res.output
    assert not list(tmp_path.iterdir())


def test_same_signal_and_background_refused(end_to_end, tmp_path):
    with pytest.raises(ValueError, match="different processes"):
        end_to_end.run_end_to_end(tmp_path / "x", 10, signal="ttbar", background="ttbar")
    assert not (tmp_path / "x").exists()
