"""Everyday use (issue 11): names, threads, fileset paths, input formats, advice that can be followed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import awkward as ak
import numpy as np
import pytest
from typer.testing import CliRunner

from coffea_hepfm.cli import app


def _cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


# -- names ----------------------------------------------------------------------------------------------
def test_models_reachable_from_the_package_without_torch():
    code = (
        "import sys, coffea_hepfm; names = coffea_hepfm.models.available(); "
        "print(names, 'torch' in sys.modules, 'coffea' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "'tth_vs_ttbar'" in out and out.strip().endswith("False False")


def test_unknown_names_suggest_the_closest():
    from coffea_hepfm import models
    from coffea_hepfm.simulation.processes import canonical_name, get_process

    assert canonical_name("ttH") == "tth" and canonical_name("ZPRIME_TT") == "zprime_tt"
    with pytest.raises(KeyError, match="did you mean 'tth'"):
        get_process("ttH")
    with pytest.raises(models.UnknownModel, match="did you mean 'tth_vs_ttbar'"):
        models.path("ttH")
    res = _cli("model-info", "ttH")
    assert res.exit_code == 2 and res.output.startswith("error: ") and "tth_vs_ttbar" in res.output


def test_simulate_any_case_already_done_and_foreign_chunks(tmp_path):
    out = tmp_path / "sim"
    first = _cli("simulate", "ttH", "-n", 5, "--chunk-size", 5, "-o", out)
    assert first.exit_code == 0, first.output
    assert (out / "tth" / "tth_00000.root").is_file() and not (out / "ttH").exists()
    again = _cli("simulate", "tth", "-n", 5, "--chunk-size", 5, "-o", out)
    assert again.exit_code == 0 and "already done" in again.output and "0/0" not in again.output
    other_seed = _cli("simulate", "tth", "-n", 5, "--chunk-size", 5, "-o", out, "--seed", 2)
    assert other_seed.exit_code == 2 and "another --seed" in other_seed.output
    bad = _cli("simulate", "tthh", "-n", 5, "-o", out)
    assert bad.exit_code == 2 and "did you mean 'tth'" in bad.output


def test_processes_table_gives_units(monkeypatch):
    from coffea_hepfm.simulation import cli as sim_cli

    monkeypatch.setattr(sim_cli, "_cached_xsecs", lambda names, n: {name: 1.5 for name in names})
    res = CliRunner().invoke(app, ["processes"], env={"COLUMNS": "160"})
    assert res.exit_code == 0 and "1.5 pb" in res.output


def test_one_meaning_of_workers():
    for command in (
        ["simulate", "tth", "-n", "5", "-o", "x"],
        ["score", "f.root", "-m", "m", "-o", "o.parquet"],
    ):
        res = _cli(*command, "--workers", -1)
        assert res.exit_code == 2, command
    import typer

    commands = typer.main.get_command(app).commands
    for name in ("simulate", "score", "ntuples"):
        (workers,) = [p for p in commands[name].params if p.name == "workers"]
        assert workers.default == 0 and workers.help.startswith("0: in this process; N: N"), name


def test_one_finetuning_command(tmp_path):
    res = _cli("finetune-ntuples", tmp_path, "--from", "none", "--out", tmp_path / "m.safetensors")
    assert res.exit_code == 2 and "deprecated" in res.output and "finetune --ntuples" in res.output
    assert "finetune-ntuples" not in _cli("--help").output  # hidden: one documented command
    assert "--weight-column" in _cli("finetune", "--help").output


# -- HEPFMScore: policy arguments, input checks, field names -----------------------------------------------
@pytest.fixture(scope="module")
def scorer(tiny_model_file):
    from coffea_hepfm import HEPFMScore

    return HEPFMScore(tiny_model_file, device="cpu")


@pytest.mark.parametrize("mode", ["eager", "dask"])
def test_score_input_and_field_errors_give_advice(scorer, shared_nanoaod, mode):
    from coffea_hepfm.nanoaod import open_events
    from coffea_hepfm.score.wrapper import NotEventsError

    events = open_events(shared_nanoaod / "nano_dy.root", mode=mode)
    with pytest.raises(NotEventsError, match=r"not a collection: got a 'Jet' collection.*score\(events\)"):
        scorer(events.Jet)
    out = scorer(events)
    with pytest.raises(ak.errors.FieldNotFoundError, match="did you mean 'ttH'.*fields: ttH, ttbar"):
        out["tth"]
    assert out.fields == ["ttH", "ttbar"]


def test_score_takes_the_graph_policy_fields(tiny_model_file, shared_nanoaod):
    from coffea_hepfm import HEPFMScore
    from coffea_hepfm.graph.errors import MissingBranchError
    from coffea_hepfm.nanoaod import open_events

    strict = HEPFMScore(tiny_model_file, device="cpu", missing="error", nonfinite="raise")
    assert "missing='error'" in repr(strict)
    with pytest.raises(MissingBranchError, match="Photon_pt"):  # slimmed v12: no Photon collection
        strict(open_events(shared_nanoaod / "nano_tt_v12.root"))
    with pytest.raises(ValueError, match="missing"):
        HEPFMScore(tiny_model_file, missing="ignore")


# -- input formats ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "converted, original",
    [("nano_dimuon.parquet", "nano_dimuon.root"), ("nano_dy_rntuple.root", "nano_dy.root")],
)
def test_parquet_and_rntuple_read_and_score_like_the_ttree(scorer, shared_nanoaod, converted, original):
    from coffea_hepfm.nanoaod import open_events

    want = ak.to_numpy(scorer(open_events(shared_nanoaod / original))["ttH"])
    # uproot takes seconds per RNTuple header (1,500 fields): there, one dask partition and no separate
    # virtual read (dask partitions of RNTuple and parquet *are* virtual NanoEvents); two for parquet
    parquet = converted.endswith(".parquet")
    steps = 2 if parquet else 1
    for mode in ("eager", "virtual", "dask") if parquet else ("eager", "dask"):
        events = open_events(shared_nanoaod / converted, mode=mode, steps_per_file=steps)
        got = scorer(events)["ttH"]
        got = got.compute() if mode == "dask" else got
        np.testing.assert_allclose(ak.to_numpy(got), want, rtol=1e-6, err_msg=mode)


def test_score_command_reads_parquet(shared_nanoaod, tiny_model_file, tmp_path):
    import pyarrow.parquet as pq

    out = tmp_path / "s.parquet"
    res = _cli("score", shared_nanoaod / "nano_dimuon.parquet", "-m", tiny_model_file, "-o", out)
    assert res.exit_code == 0, res.output
    assert pq.read_table(out).num_rows == 40
    bad = _cli("score", tmp_path / "s.parquet", "-m", tiny_model_file, "-o", tmp_path / "t.parquet")
    assert bad.exit_code == 2 and "s.parquet" in bad.output  # a parquet file that is not NanoAOD


def test_only_cross_reference_warnings_are_filtered(shared_nanoaod):
    from coffea_hepfm.nanoaod import open_events

    filters = list(warnings.filters)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        open_events(shared_nanoaod / "nano_tt_v12.root", mode="virtual")  # dozens of absent cross-refs
    assert not [w for w in caught if "cross-reference" in str(w.message)]
    with warnings.catch_warnings():  # other coffea warnings keep the caller's filters
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(RuntimeWarning, match="already exists"):
            open_events(shared_nanoaod / "nano_dy.root")
    assert warnings.filters == filters


# -- threads ----------------------------------------------------------------------------------------------
def test_thread_default_follows_affinity_and_load(monkeypatch, tiny_model_file):
    from coffea_hepfm import threads

    monkeypatch.setattr(os, "getloadavg", lambda: (float(os.cpu_count()), 0.0, 0.0))
    assert threads.free_cpus() == 1 and threads.default_threads(current=8) == 1
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert threads.default_threads(current=64) == threads.usable_cpus()
    with pytest.raises(ValueError):
        threads.set_torch_threads(0)
    # A process restricted to one CPU: HEPFMScore's local runner (like every command) uses 1 thread.
    if not hasattr(os, "sched_setaffinity"):
        return
    import torch

    from coffea_hepfm.score.local import LocalRunner

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "_applied", False)
    affinity, before = os.sched_getaffinity(0), torch.get_num_threads()
    os.sched_setaffinity(0, {min(affinity)})
    try:
        LocalRunner(tiny_model_file, device="cpu")
        assert torch.get_num_threads() == 1
    finally:
        os.sched_setaffinity(0, affinity)
        torch.set_num_threads(before)


# -- filesets and example corrections -------------------------------------------------------------------
def test_fileset_paths_are_relative_to_the_json(sim_dir, tmp_path, monkeypatch):
    from coffea_hepfm.processors import load_fileset, simulated_fileset, write_fileset

    monkeypatch.chdir(sim_dir.parent)
    fs = simulated_fileset(os.path.relpath(sim_dir), {"tth": "signal"})  # relative input, absolute output
    assert all(os.path.isabs(f) for f in fs["tth"]["files"])
    path = write_fileset(fs, tmp_path / "a" / "fileset.json")
    stored = list(json.loads(path.read_text())["tth"]["files"])
    assert not any(os.path.isabs(f) for f in stored)
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "b")  # another working directory
    loaded = load_fileset(os.path.relpath(path))
    assert sorted(loaded["tth"]["files"]) == sorted(fs["tth"]["files"])
    assert all(os.path.isfile(f) for f in loaded["tth"]["files"])


def test_example_corrections_are_generated_by_the_package(tmp_path):
    from coffea_hepfm.processors import example_corrections as ex
    from coffea_hepfm.processors.corrections import load_correction

    for written in ex.write_example_corrections(tmp_path):
        shipped = ex.EXAMPLE_DIR / written.name
        assert shipped.read_bytes() == written.read_bytes(), f"regenerate {shipped}"
        assert "EXAMPLE ONLY" in shipped.read_text()
    pu, mu = ex.example_corrections()
    assert load_correction(mu).domain["pt"] == (15.0, float("inf"))
    assert load_correction(pu).evaluator.evaluate(32.0, "nominal") > 0
    res = _cli("ntuples", "f.json", "-o", tmp_path / "n", "--example-corrections", "--corrections", tmp_path)
    assert res.exit_code == 2 and "not both" in res.output


# -- plots --------------------------------------------------------------------------------------------------
def test_signal_and_background_colours_agree_between_plots(monkeypatch, tmp_path):
    import hist

    from coffea_hepfm.training import evaluate, figures

    figs = []
    monkeypatch.setattr(evaluate, "save_figure", lambda fig, path, **kw: figs.append(fig))
    y = np.r_[np.ones(50, bool), np.zeros(50, bool)]
    evaluate.plot_scores(y, np.linspace(0.01, 0.99, 100), ["tth", "ttbar"], tmp_path / "s.png")
    sys.path.insert(0, str(evaluate.Path(__file__).resolve().parents[1] / "examples"))
    try:
        from analysis_processor import plot_histograms, score_axis
    finally:
        sys.path.pop(0)
    monkeypatch.setattr(figures, "save_figure", lambda fig, path, **kw: figs.append(fig))
    output = {}
    for name in ("ttbar", "tth"):  # alphabetical order puts the background first
        h = hist.Hist(score_axis("tth"), storage=hist.storage.Weight())
        h.fill(score=[0.2, 0.7])
        output[name] = {"score": h}
    plot_histograms(output, tmp_path / "h.png", signal="tth")
    assert len(figs) == 2
    for fig in figs:
        colours = _legend_colours(fig.axes[0])
        assert colours == {"tth": evaluate.SIGNAL_COLOR, "ttbar": evaluate.BACKGROUND_COLOR}
        assert fig.axes[0].get_xlabel()


def _legend_colours(ax) -> dict[str, str]:
    from matplotlib.colors import to_hex

    out = {}
    for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
        line = handle.get_children()[0]  # mplhep draws an ErrorbarContainer: its first child is the line
        out[label.split(" ")[0]] = to_hex(line.get_color())
    return out
