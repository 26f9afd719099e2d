"""The simulation engine: real Pythia 8 events through the detector into NanoAOD, read back with coffea."""

from __future__ import annotations

import json
import os

import awkward as ak
import numpy as np
import pytest
import uproot

from coffea_hepfm.nanoaod import open_events
from coffea_hepfm.nanoaod.validate import observables, peak_position, validate_dir
from coffea_hepfm.simulation import known_processes, pretraining_processes, simulate
from coffea_hepfm.simulation.generator import MAX_SEED, chunk_seed
from coffea_hepfm.simulation.taggers import TAGGERS


def _read_objects(events) -> dict[str, np.ndarray]:
    """The reading code shared by CMS and simulated files: the objects every later stage uses."""
    out = {"n": len(events)}
    for name in ("Jet", "Electron", "Muon"):
        coll = events[name]
        out[name] = np.asarray(ak.flatten(coll.pt))
        assert ak.all(np.abs(coll.eta) < 5.5)
        assert ak.all(np.abs(coll.phi) <= np.pi + 1e-5)
        assert ak.all(coll.pt > 0)
    out["MET"] = np.asarray(events.MET.pt)
    out["btag"] = np.asarray(ak.flatten(events.Jet.btagDeepFlavB))
    return out


def _arrays(path):
    with uproot.open(path) as f:
        return f["Events"].arrays()


def test_registry():
    assert len(pretraining_processes()) >= 12
    for name in ("ttbar", "tth", "zjets", "tth_aa", "tta_aa", "zprime_tt", "hplus_tb"):
        assert name in known_processes()
    seeds = {chunk_seed(7, p, c) for p in known_processes() for c in range(50)}
    assert len(seeds) == 50 * len(known_processes())  # distinct per (process, chunk)
    assert all(0 < s < MAX_SEED for s in seeds)
    assert chunk_seed(7, "ttbar", 3) == chunk_seed(7, "ttbar", 3)


def test_reads_like_cms_file(cms_file):
    objs = _read_objects(open_events(cms_file))
    assert objs["n"] > 0 and objs["MET"].shape == (objs["n"],)


@pytest.mark.parametrize("process", ["ttbar", "tth", "zjets"])
def test_reads_like_sim_file(sim_files, process):
    (path,) = sim_files[process]
    objs = _read_objects(open_events(path))
    assert objs["n"] == 200
    assert len(objs["Jet"]) > 200  # several jets per event
    assert np.all((objs["btag"] >= 0) & (objs["btag"] <= 1))
    assert 5 < np.median(objs["MET"]) < 150


def test_branch_types_match_cms_v12(sim_files, shared_nanoaod):
    with uproot.open(shared_nanoaod / "nano_tt_v12.root") as f:
        cms = {k: b.typename for k, b in f["Events"].items()}
    with uproot.open(sim_files["ttbar"][0]) as f:
        ours = {k: b.typename for k, b in f["Events"].items()}
    shared = sorted(set(ours) & set(cms))
    assert len(shared) > 40
    assert {k: ours[k] for k in shared} == {k: cms[k] for k in shared}
    for name in ("Jet_btagDeepFlavB", "Jet_hadronFlavour", "GenPart_statusFlags", "Pileup_nTrueInt", "event"):
        assert name in shared


def test_cross_references(sim_files):
    ev = open_events(sim_files["tth"][0])
    gen = ev.Jet.matched_gen
    ratio = ak.to_numpy(ak.flatten(ak.drop_none(ev.Jet.pt / gen.pt)))
    matched = ev.Jet.genJetIdx >= 0
    assert len(ratio) == ak.sum(matched)  # every jet with a genJetIdx finds its GenJet
    # pileup jets and jets whose GenJet is below 10 GeV have none: 11 % of jets in CMS ttbar
    assert 0.04 < 1 - ak.mean(matched) < 0.25
    assert 0.9 < np.median(ratio) < 1.1
    assert ak.all(abs(ak.drop_none(ev.Electron.matched_gen.pdgId, axis=1)) == 11)
    assert ak.all(abs(ak.drop_none(ev.Muon.matched_gen.pdgId, axis=1)) == 13)
    higgs = ev.GenPart[(ev.GenPart.pdgId == 25) & ev.GenPart.hasFlags(["isLastCopy"])]
    assert ak.all(ak.num(higgs) == 1)
    # Higgs daughters point back to the Higgs; tops come from the hard process.
    kids = ev.GenPart[ak.fill_none(ev.GenPart.parent.pdgId == 25, False)]
    assert ak.mean(ak.num(kids) >= 2) > 0.95
    tops = ev.GenPart[(abs(ev.GenPart.pdgId) == 6) & ev.GenPart.hasFlags(["isHardProcess"])]
    assert ak.all(ak.num(tops) == 2)
    mothers = ev.GenPart.genPartIdxMother
    assert ak.all((mothers >= -1) & (mothers < ak.num(ev.GenPart)))


def test_btag_working_points(sim_files):
    jets = ak.concatenate([open_events(p).Jet for p in (sim_files["ttbar"][0], sim_files["tth"][0])])
    jets = ak.flatten(jets[(abs(jets.eta) < 2.4) & (jets.pt > 25)])
    tagged = jets.btagDeepFlavB > TAGGERS["btagDeepFlavB"].wp[1]
    b, light = jets.hadronFlavour == 5, jets.hadronFlavour == 0
    assert ak.sum(b) > 300 and ak.sum(light) > 300
    assert 0.80 < ak.mean(tagged[b]) < 0.93  # 0.869 tabulated
    assert ak.mean(tagged[light]) < 0.04


def test_event_ids_unique(sim_files):
    ev = open_events(sim_files["ttbar"][0])
    assert len(np.unique(ak.to_numpy(ev.event))) == len(ev)
    assert ev.event.type.content.primitive == "uint64"
    assert 20 < np.mean(ak.to_numpy(ev.Pileup.nTrueInt)) < 45


def test_simulation_has_run_1_and_reads_as_simulation_without_genweight(sim_files, tmp_path):
    """Run 1, as CMS simulation: a copy that lost genWeight is still simulation (no era from its run)."""
    import warnings

    from graph_helpers import write_copy

    from coffea_hepfm.graph import GraphSpec, build_graphs
    from coffea_hepfm.graph.errors import EraWarning

    for files in sim_files.values():
        assert np.all(ak.to_numpy(open_events(files[0]).run) == 1)
    copy = write_copy(sim_files["ttbar"][0], tmp_path / "no_genweight.root", drop=("genWeight",))
    with uproot.open(copy) as f:
        assert "genWeight" not in f["Events"].keys()
    with warnings.catch_warnings():
        warnings.simplefilter("error", EraWarning)
        build_graphs(open_events(copy, mode="virtual"), GraphSpec(max_photons=0))


@pytest.fixture(scope="module")
def resume_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("resume")
    files = simulate(["ttbar"], n_events=200, seed=5, out_dir=out, workers=0, chunk_size=100, progress=False)
    return out, files["ttbar"]


def test_workers_give_identical_arrays(resume_dir, tmp_path):
    out, serial = resume_dir
    files = simulate(
        ["ttbar"], n_events=200, seed=5, out_dir=tmp_path, workers=2, chunk_size=100, progress=False
    )
    assert (
        [p.name for p in files["ttbar"]]
        == [p.name for p in serial]
        == ["ttbar_00000.root", "ttbar_00001.root"]
    )
    for a, b in zip(serial, files["ttbar"], strict=True):
        assert ak.array_equal(_arrays(a), _arrays(b))


def test_seed_changes_output(resume_dir, tmp_path):
    _, serial = resume_dir
    other = simulate(["ttbar"], n_events=100, seed=6, out_dir=tmp_path, chunk_size=100, progress=False)[
        "ttbar"
    ][0]
    assert not ak.array_equal(_arrays(serial[0]).Jet_pt, _arrays(other).Jet_pt)


def test_rerun_after_kill_completes_missing_chunks(resume_dir):
    out, files = resume_dir
    before = [_arrays(p) for p in files]
    kept_mtime = files[0].stat().st_mtime_ns
    files[1].unlink()  # a worker died before renaming chunk 1 ...
    stale = out / "ttbar" / ".tmp-ttbar_00001-deadbeef.root"
    stale.write_bytes(b"half-written")  # ... and left its temporary file behind
    again = simulate(["ttbar"], n_events=200, seed=5, out_dir=out, workers=0, chunk_size=100, progress=False)
    assert again["ttbar"] == files
    assert files[0].stat().st_mtime_ns == kept_mtime  # complete chunk skipped
    assert not stale.exists()
    assert sorted(os.listdir(out / "ttbar")) == ["ttbar_00000.root", "ttbar_00001.root"]
    for old, p in zip(before, files, strict=True):
        assert ak.array_equal(old, _arrays(p))


def test_bad_inputs_fail_before_work(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(KeyError, match="known processes: .*ttbar"):
        simulate(["ttbar", "tbar"], n_events=10, seed=1, out_dir=out)
    for n in (0, -5, 2.5):
        with pytest.raises(ValueError, match="positive"):
            simulate(["ttbar"], n_events=n, seed=1, out_dir=out)
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(NotADirectoryError):
        simulate(["ttbar"], n_events=10, seed=1, out_dir=a_file)
    with pytest.raises(PermissionError, match="not writable"):
        simulate(["ttbar"], n_events=10, seed=1, out_dir=a_file / "sub")
    assert not out.exists()
    assert a_file.read_text() == "x"


def test_pythia_settings_are_applied_stored_and_checked(resume_dir, tmp_path):
    """``--pythia`` lines reach Pythia (same seed, 13.6 TeV: other events) and are stored; a rerun with other
    lines, a line Pythia rejects and a ttH process are refused before any work."""
    from typer.testing import CliRunner

    from coffea_hepfm.cli import app

    _, default = resume_dir
    line = "Beams:eCM = 13600."
    out = tmp_path / "a"
    f = simulate(["ttbar"], n_events=100, seed=5, out_dir=out, chunk_size=100, progress=False, pythia=[line])
    f = f["ttbar"][0]
    with uproot.open(f) as r:
        assert json.loads(str(r["hepfm_meta"]))["pythia_extra"] == [line]
    with uproot.open(default[0]) as r:
        assert json.loads(str(r["hepfm_meta"]))["pythia_extra"] == []
    assert not ak.array_equal(_arrays(default[0]).Jet_pt, _arrays(f).Jet_pt)
    # the Python API refuses to reuse them for a request without the line, as the CLI does
    with pytest.raises(ValueError, match=r"--pythia .*pythia=\['Beams:eCM = 13600.'\]"):
        simulate(["ttbar"], n_events=100, seed=5, out_dir=out, chunk_size=100, progress=False)

    runner = CliRunner()
    rerun = runner.invoke(app, ["simulate", "ttbar", "-n", "100", "-c", "100", "-s", "5", "-o", str(out)])
    assert rerun.exit_code == 2 and "--pythia" in rerun.output and "13600" in rerun.output, rerun.output
    bad = ["simulate", "ttbar", "-n", "10", "-o", str(tmp_path / "b"), "--pythia", "Beams:eCMM = 1"]
    bad = runner.invoke(app, bad)
    assert bad.exit_code == 2 and "Pythia rejected setting 'Beams:eCMM = 1'" in bad.output, bad.output
    assert not (tmp_path / "b").exists()
    tth = runner.invoke(app, ["simulate", "tth", "-n", "10", "-o", str(tmp_path / "c"), "--pythia", line])
    assert tth.exit_code == 2 and "not supported for 'tth'" in tth.output, tth.output
    assert not (tmp_path / "c").exists()


def test_cli_bad_process_and_validate(sim_dir, tmp_path):
    from typer.testing import CliRunner

    from coffea_hepfm.cli import app

    runner = CliRunner()
    bad = runner.invoke(app, ["simulate", "ttbarr", "--events", "10", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "known processes" in bad.output
    ok = runner.invoke(app, ["validate-sim", str(sim_dir), "--out", str(tmp_path / "plots")])
    assert ok.exit_code == 0, ok.output
    assert sorted(p.name for p in (tmp_path / "plots").glob("*.png")) == ["ttbar.png", "tth.png", "zjets.png"]


@pytest.fixture(scope="module")
def peak_samples(tmp_path_factory):
    out = tmp_path_factory.mktemp("peaks")
    return simulate(["tth_aa", "zll"], n_events=200, seed=11, out_dir=out, chunk_size=200, progress=False)


def test_higgs_peak_in_diphoton_mass(peak_samples):
    events = open_events(peak_samples["tth_aa"][0])
    gen = events.GenPart
    higgs_kids = gen[ak.fill_none((gen.parent.pdgId == 25) & (gen.pdgId != 25), False)]
    assert ak.all(ak.num(higgs_kids) == 2) and ak.all(higgs_kids.pdgId == 22)  # H -> gamma gamma only
    m_gg = observables(events)["m_gg"]
    inside = m_gg[(m_gg > 110) & (m_gg < 140)]
    assert len(inside) > 40  # ~30% of ttH events have two isolated photons
    assert abs(peak_position(m_gg, 110, 140) - 125.0) < 2.5


def test_z_peak_in_dilepton_mass(peak_samples, tmp_path):
    m_ll = observables(open_events(peak_samples["zll"][0]))["m_ll"]
    assert np.sum((m_ll > 76) & (m_ll < 106)) > 50
    assert abs(peak_position(m_ll, 76, 106) - 91.19) < 2.5
    summary = validate_dir(peak_samples["zll"][0].parents[1], tmp_path)
    assert abs(summary["zll"]["m_ll_peak"] - 91.19) < 2.5
