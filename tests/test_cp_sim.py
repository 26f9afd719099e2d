"""CP-mixed ttH on real Pythia events: cross-section ratio, published trends, unweighting, files, ntuples.

Process-level Pythia 8 SM ttH events (no shower) carry the hard process; the matrix-element ratio
``R = |M(90)|^2 / |M(0)|^2`` reweights them to a CP-odd top Yukawa.
"""

from __future__ import annotations

import json

import awkward as ak
import numpy as np
import pytest
import uproot

from coffea_hepfm.nanoaod import open_events
from coffea_hepfm.simulation import simulate
from coffea_hepfm.simulation.cp_validate import parton_observables, ratio_summary, weighted_mean
from coffea_hepfm.simulation.reweight import (
    ALPHA_GRID_DEG,
    hard_events,
    process_level_pythia,
    unweighted_hard_events,
)

# Published LO sigma(t tbar A) / sigma(t tbar H) at 13 TeV with kappa_tilde = kappa (same m_t/v). Not yet
# entered: the stored copies of the candidate sources reachable from this project's tools hold only their
# opening sections (see docs/results.md, "CP-odd ttH"); enter the table value and its tolerance here.
LITERATURE_RATIO: float | None = None
LITERATURE_TOLERANCE = 0.10  # relative: PDF set and scale choice differ from the paper's
# This project's own measurement (docs/results.md, `coffea-hepfm cp-validate`, 50,000 events): a
# regression guard for the matrix element and the process-level record, not a literature check.
MEASURED_RATIO = 0.42


@pytest.fixture(scope="module")
def sm_hard():
    """4000 Pythia SM ttH hard processes with their R and parton-level observables."""
    pythia = process_level_pythia("tth", 20251)
    ev = hard_events(pythia.nextBatch(4000, 10.0))
    return ev, ev.ratio(), parton_observables(ev.p[:, 2], ev.p[:, 3], ev.p[:, 4])


def test_hard_process_record(sm_hard):
    ev, r, _ = sm_hard
    assert ev.pid[:, 2:].tolist() == [[6, -6, 25]] * len(ev)
    np.testing.assert_allclose(ev.p[:, 0] + ev.p[:, 1], ev.p[:, 2:].sum(axis=1), atol=1e-6)
    # both initial states, recognised from the incoming ids (q qbar in either beam order)
    assert 0.6 < ev.is_gg.mean() < 0.85
    qq = ~ev.is_gg
    assert np.all(ev.pid[qq, 0] == -ev.pid[qq, 1]) and np.all(np.abs(ev.pid[qq, 0]) <= 5)
    assert np.all(r > 0) and np.all(np.isfinite(r))


def test_cross_section_ratio(sm_hard):
    ev, r, _ = sm_hard
    s = ratio_summary(r, ev.is_gg)
    total, err = s["all"]["ratio"], s["all"]["error"]
    assert abs(total - MEASURED_RATIO) < 4 * err + 0.01
    # the CP-odd suppression is much stronger for q qbar than for gg
    assert s["qqbar"]["ratio"] < 0.5 * s["gg"]["ratio"] < total


def test_cross_section_ratio_matches_literature(sm_hard):
    if LITERATURE_RATIO is None:
        pytest.skip("published LO sigma(ttA)/sigma(ttH) not entered yet (see docs/results.md, CP-odd ttH)")
    ev, r, _ = sm_hard
    s = ratio_summary(r, ev.is_gg)
    total, err = s["all"]["ratio"], s["all"]["error"]
    assert abs(total - LITERATURE_RATIO) < LITERATURE_TOLERANCE * LITERATURE_RATIO + 3 * err


def test_published_differential_trends(sm_hard):
    """CP-odd: harder Higgs pT, tops less back-to-back in phi, farther apart in eta (Gunion & He 1996;
    Demartin et al. 2014), b4 lower (Gunion & He)."""
    _, r, obs = sm_hard
    one = np.ones(len(r))
    for name, sign in (("pt_h", +1), ("dphi_tt", -1), ("deta_tt", +1), ("b4", -1), ("b2", +1)):
        even, (odd, err) = weighted_mean(obs[name], one)[0], weighted_mean(obs[name], r)
        assert sign * (odd - even) > 5 * err, name


def test_accept_reject_sample_matches_reweighting(sm_hard):
    """The engine's unweighted CP-odd events have the distribution of SM events weighted by R."""
    _, r, obs = sm_hard
    uw = unweighted_hard_events("tta_aa", 777, 250, 90.0)
    assert uw.n_accepted >= 250 and 0.01 < uw.n_accepted / uw.n_process_level < 0.05
    assert np.all(uw.gen_weight >= 1.0) and uw.n_overweight == int(np.sum(uw.gen_weight > 1))
    odd = parton_observables(uw.events.p[:, 2], uw.events.p[:, 3], uw.events.p[:, 4])
    for name in ("pt_h", "deta_tt", "b4"):
        rew, e1 = weighted_mean(obs[name], r)
        unw, e2 = weighted_mean(odd[name], uw.gen_weight)
        even, _ = weighted_mean(obs[name], np.ones(len(r)))
        assert abs(rew - unw) < 3.5 * np.hypot(e1, e2), name
        assert abs(unw - even) > 3 * e2, name  # and the check has power: SM is far away


def test_simulated_cp_odd_file(tmp_path):
    files = simulate(["tta_aa"], n_events=40, seed=5, out_dir=tmp_path, progress=False)["tta_aa"]
    with uproot.open(files[0]) as f:
        meta = json.loads(str(f["hepfm_meta"]))
        tree = f["Events"]
        assert tree["nLHEReweightingWeight"].typename == "int32_t"
        assert tree["LHEReweightingWeight"].typename == "float[]"
        w = tree["LHEReweightingWeight"].array(library="np")
        gen = tree["genWeight"].array(library="np")
    lhe = meta["lhe_reweighting"]
    assert lhe["alpha_deg"] == list(ALPHA_GRID_DEG) and lhe["alpha_gen_deg"] == 90.0
    w = np.stack(w)
    assert w.shape == (40, len(ALPHA_GRID_DEG))
    np.testing.assert_array_equal(w[:, -1], 1.0)  # generated at alpha = 90 deg
    assert np.all(gen >= 1.0)
    g = meta["generation"]
    assert meta["sigma_gen_pb"] == pytest.approx(g["sigma_sm_pb"] * g["mean_weight"])
    assert 0.3 < g["mean_weight"] < 0.6 and g["n_overweight"] >= 0
    events = open_events(files[0])
    assert ak.all(ak.num(events.LHEReweightingWeight) == len(ALPHA_GRID_DEG))
    hard = events.GenPart[(events.GenPart.statusFlags & (1 << 7)) != 0]
    assert ak.all(ak.sum(hard.pdgId == 25, axis=1) >= 1)  # the CP-odd scalar keeps PDG id 25


def test_sm_tth_files_carry_reweighting_weights(sim_files):
    """The shared session sample ``tth`` (SM) comes from the same route, with weights to every angle."""
    with uproot.open(sim_files["tth"][0]) as f:
        meta = json.loads(str(f["hepfm_meta"]))
        w = np.stack(f["Events"]["LHEReweightingWeight"].array(library="np"))
    assert meta["lhe_reweighting"]["alpha_gen_deg"] == 0.0
    np.testing.assert_array_equal(w[:, 0], 1.0)
    assert 0.25 < w[:, -1].mean() < 0.65  # <R> ~ 0.42 with 200 events
    np.testing.assert_allclose(w[:, 3], 0.5 + 0.5 * w[:, -1], rtol=1e-6)  # no interference


def test_ntuples_weight_one_sample_two_hypotheses(sim_files, tmp_path):
    """CP-even and CP-odd classes from the same SM ttH files, weighted by LHEReweightingWeight entries."""
    from coffea_hepfm.processors import make_ntuples, read_manifest, read_ntuples

    files = [str(f) for f in sim_files["tth"]]
    meta = {"xsec": 0.5, "sumw": 200.0}
    fileset = {
        "even": {"files": files, "metadata": {**meta, "label": "CP_even", "lhe_weight": "lhe:alpha=0"}},
        "odd": {"files": files, "metadata": {**meta, "label": "CP_odd", "lhe_weight": "lhe:6"}},
    }
    out = tmp_path / "nt"
    make_ntuples(fileset, out, classes=["CP_even", "CP_odd"], chunksize=1000)
    man = read_manifest(out)["datasets"]
    assert (man["even"]["lhe_index"], man["odd"]["lhe_index"]) == (0, 6)
    even = read_ntuples(out, datasets=["even"])
    odd = read_ntuples(out, datasets=["odd"])
    assert ak.all(even.event == odd.event)  # the same events, so the same train/test split
    with uproot.open(files[0]) as f:
        w = np.stack(f["Events"]["LHEReweightingWeight"].array(library="np"))
        ids = f["Events"]["event"].array(library="np")
    lookup = dict(zip(ids.tolist(), w[:, 6].tolist(), strict=True))
    expected = np.array([lookup[e] for e in ak.to_numpy(odd.event).tolist()])
    np.testing.assert_allclose(ak.to_numpy(odd.weight) / ak.to_numpy(even.weight), expected, rtol=1e-5)


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("lhe:7", "only 7 LHEReweightingWeight entries"),
        ("lhe:alpha=10", "not in the LHEReweightingWeight grid"),
        ("pdf:1", "is not 'lhe:IDX'"),
    ],
)
def test_bad_lhe_weight_spec_is_refused(sim_files, tmp_path, spec, match):
    from coffea_hepfm.processors import make_ntuples
    from coffea_hepfm.processors.lhe_weight import LHEWeightError

    fs = {"tth": {"files": [str(sim_files["tth"][0])], "metadata": {"label": "s", "xsec": 0.5}}}
    with pytest.raises(LHEWeightError, match=match):
        make_ntuples(fs, tmp_path / "nt", lhe_weight=spec)
    assert not (tmp_path / "nt").exists()  # refused before anything is written


def test_lhe_weight_on_cms_file_without_entries(shared_nanoaod, tmp_path):
    """CMS NanoAOD with an empty LHEReweightingWeight (nano_dy.root): a clear error naming file and branch."""
    from coffea_hepfm.processors import make_ntuples
    from coffea_hepfm.processors.lhe_weight import LHEWeightError

    path = str(shared_nanoaod / "nano_dy.root")
    fs = {"dy": {"files": [path], "metadata": {"label": "dy", "xsec": 6000.0}}}
    with pytest.raises(LHEWeightError, match=r"nano_dy\.root has only 0 LHEReweightingWeight entries"):
        make_ntuples(fs, tmp_path / "nt", lhe_weight="lhe:0")
    with pytest.raises(LHEWeightError, match="does not document its LHEReweightingWeight grid"):
        make_ntuples(fs, tmp_path / "nt", lhe_weight="lhe:alpha=90")


def test_cli_ntuples_weight_option(sim_files, tmp_path):
    from typer.testing import CliRunner

    from coffea_hepfm.cli import app

    fs = tmp_path / "fileset.json"
    fs.write_text(
        json.dumps({"tth": {"files": [str(sim_files["tth"][0])], "metadata": {"label": "s", "xsec": 0.5}}})
    )
    bad = CliRunner().invoke(
        app, ["ntuples", str(fs), "--out", str(tmp_path / "nt"), "--weight", "lhe:alpha=7"]
    )
    assert bad.exit_code == 2 and "not in the LHEReweightingWeight grid" in bad.output
    good = CliRunner().invoke(
        app, ["ntuples", str(fs), "--out", str(tmp_path / "ok"), "--weight", "lhe:alpha=90"]
    )
    assert good.exit_code == 0, good.output
    from coffea_hepfm.processors import read_manifest

    assert read_manifest(tmp_path / "ok")["datasets"]["tth"]["lhe_index"] == ALPHA_GRID_DEG.index(90.0)
