"""``domain-report``: simulated vs CMS NanoAOD through a graph spec (selections, distances, classifier AUC,
model score, plots, JSON) on real CMS files and the session's simulated samples."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from coffea_hepfm.graph import GraphSpec, MissingCollectionWarning, build_flat
from coffea_hepfm.model.reference import feature_layout
from coffea_hepfm.nanoaod import open_events
from coffea_hepfm.score.domain import domain_report
from coffea_hepfm.score.domain_stats import event_features
from coffea_hepfm.score.selection import GenSelection, GenSelectionNotApplied, Preselection

SPEC = GraphSpec()


def test_preselection_parsing_and_mask(shared_nanoaod):
    sel = Preselection.parse("n_jets>=4, n_lepton==1,log_met>0", SPEC)
    assert sel.terms == (("n_jet", ">=", 4.0), ("n_lepton", "==", 1.0), ("log_met", ">", 0.0))
    with pytest.raises(ValueError, match="unknown quantity 'n_tau'"):
        Preselection.parse("n_tau>=1", SPEC)
    with pytest.raises(ValueError, match="is not '<quantity><op><number>'"):
        Preselection.parse("jets at least 4", SPEC)
    events = open_events(shared_nanoaod / "nano_dy.root", mode="virtual")
    flat = build_flat(events, SPEC)
    mask = sel.mask(flat.x, flat.node_counts, flat.u)
    # the same selection by hand from the node one-hot flags
    jets = np.add.reduceat(
        flat.x[:, SPEC.node_features.index("is_jet")], np.r_[0, np.cumsum(flat.node_counts)[:-1]]
    )
    lep = np.add.reduceat(
        flat.x[:, SPEC.node_features.index("is_electron")] + flat.x[:, SPEC.node_features.index("is_muon")],
        np.r_[0, np.cumsum(flat.node_counts)[:-1]],
    )
    expected = (jets >= 4) & (lep == 1) & (flat.u[:, SPEC.global_features.index("log_met")] > 0)
    assert mask.tolist() == expected.tolist() and 0 < mask.sum() < len(mask)


def test_gen_selection_on_real_and_simulated_files(shared_nanoaod, sim_files):
    opened = {}

    def count(path, text):
        if path not in opened:  # opening is the slow part: once per file
            opened[path] = open_events(path, mode="virtual")
        return int(GenSelection.parse(text).mask(opened[path]).sum())

    # nano_tt_v12 is semileptonic ttbar by construction (shared/data/README.md)
    assert count(shared_nanoaod / "nano_tt_v12.root", "semileptonic") == 200
    assert count(shared_nanoaod / "nano_tt_v12.root", "dileptonic") == 0
    dy = shared_nanoaod / "nano_dy.root"
    assert count(dy, "z-ll") == 40  # Drell-Yan to charged leptons
    assert count(dy, "z-ee") + count(dy, "z-mumu") + count(dy, "z-tautau") == 40
    assert count(shared_nanoaod / "nano_tree.root", "z-nunu") == 10
    sim = sim_files["ttbar"][0]
    n = len(opened.setdefault(sim, open_events(sim, mode="virtual")))
    modes = [count(sim, m) for m in ("semileptonic", "dileptonic", "allhadronic")]
    assert sum(modes) == n  # every simulated ttbar event has exactly one decay mode
    assert 0.3 < modes[0] / n < 0.6  # PDG: 43.8 %
    with pytest.raises(KeyError, match="no generator record"):
        GenSelection.parse("z-mumu").mask(open_events(shared_nanoaod / "nano_dimuon.root", mode="virtual"))
    with pytest.raises(ValueError, match="unknown generator selection"):
        GenSelection.parse("z-gg")


def test_event_features_by_hand():
    x = np.zeros((3, SPEC.n_node_features), np.float32)
    col = {n: k for k, n in enumerate(SPEC.node_features)}
    x[0, [col["log_pt"], col["is_jet"]]] = [4.0, 1]
    x[1, [col["log_pt"], col["is_jet"]]] = [3.0, 1]
    x[2, [col["log_pt"], col["is_met"]]] = [2.0, 1]
    u = np.arange(2 * SPEC.n_global_features, dtype=np.float32).reshape(2, -1)
    feats, names = event_features(x, np.array([3, 0]), u, SPEC)
    f = dict(zip(names, feats[0], strict=True))
    assert f["count/jet"] == 2 and f["count/met"] == 1 and f["count/muon"] == 0
    assert f["mean/jet/log_pt"] == 3.5 and f["lead/jet/log_pt"] == 4.0 and f["lead/met/log_pt"] == 2.0
    assert f["global/log_met"] == u[0, SPEC.global_features.index("log_met")]
    assert (feats[1, len(SPEC.global_features) :] == 0).all()  # the event without nodes


def test_domain_report_tt_against_cms(shared_nanoaod, sim_files, tiny_model_file, tmp_path):
    cms = shared_nanoaod / "nano_tt_v12.root"
    with pytest.warns(MissingCollectionWarning, match="Photon"):
        summary = domain_report(
            [sim_files["ttbar"][0].parent],
            [cms],
            model=str(tiny_model_file),
            preselection="n_jet>=4",
            sim_selection="semileptonic",
            cms_selection="semileptonic",
            out=tmp_path,
            n_repeats=1,
        )
    on_disk = json.loads((tmp_path / "domain_report.json").read_text())
    assert on_disk["domain_classifier"] == summary["domain_classifier"]
    # bookkeeping: selected = semileptonic and >= 4 jets in the graph, counted independently here
    expected = 0
    for f in sim_files["ttbar"]:
        ev = open_events(f, mode="virtual")
        ev = ev[GenSelection.parse("semileptonic").mask(ev)]
        flat = build_flat(ev, SPEC)
        expected += int(Preselection.parse("n_jet>=4", SPEC).mask(flat.x, flat.node_counts, flat.u).sum())
    sim = summary["domains"]["sim"]
    assert sim["events_selected"] == expected > 20
    assert summary["domains"]["cms"]["events_selected"] == 200  # the file is skimmed to >= 4 jets
    assert summary["domains"]["cms"]["gen_selection_applied_to"] == ["nano_tt_v12.root"]
    clf = summary["domain_classifier"]
    assert 0.5 < clf["auc_mean"] <= 1.0 and clf["auc_std"] >= 0 and len(clf["auc_folds"]) == 5
    assert summary["distances"]["count/jet"]["n_sim"] == expected
    assert summary["distances"]["count/jet"]["mean_cms"] >= 4
    assert set(summary["distances"]) == set(feature_layout(SPEC).names())
    m = summary["model_score"]
    assert m["class"] == "ttH" and 0 <= m["mean_sim"] <= 1 and 0 <= m["mean_cms"] <= 1
    pngs = {p.rsplit("/", 1)[-1] for p in summary["plots"]}
    assert {"node_jet.png", "globals.png", "counts.png", "score.png"} <= pngs
    assert all((tmp_path / p).read_bytes()[:4] == b"\x89PNG" for p in pngs)


def test_two_halves_of_one_sample_are_indistinguishable(sim_files):
    from coffea_hepfm.model.reference import input_values
    from coffea_hepfm.score.domain_stats import classifier_auc, distances

    flat = build_flat(open_events(sim_files["ttbar"][0], mode="virtual"), SPEC)
    feats, _ = event_features(flat.x, flat.node_counts, flat.u, SPEC)
    half = len(feats) // 2
    result = classifier_auc(feats[:half], feats[half:], n_repeats=1)
    assert abs(result["auc_mean"] - 0.5) < 0.1 and result["n_sim"] == half
    # exact duplicates would be memorised (AUC far from 0.5): the halves share no event
    values = input_values(flat.x, flat.node_counts, flat.u, feature_layout(SPEC))
    d = distances(values, values)
    assert all(v["ks"] == 0 and v["wasserstein1"] == 0 for v in d.values() if "ks" in v)


def test_cli_and_files_without_genpart(shared_nanoaod, sim_files, tmp_path):
    from coffea_hepfm.cli import app

    args = [
        "domain-report",
        "--sim", str(sim_files["zjets"][0]),
        "--cms", str(shared_nanoaod / "nano_dimuon.root"),
        "--sim-selection", "z-mumu",
        "--cms-selection", "z-mumu",
        "--out", str(tmp_path),
        "--no-plots",
        "--repeats", "1",
        "--folds", "2",
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    # the CLI summarises package warnings (one line per kind and file) instead of letting them escape
    assert f"warning: {GenSelectionNotApplied.__name__}" in result.output
    assert "nano_dimuon.root has no GenPart" in result.output
    summary = json.loads((tmp_path / "domain_report.json").read_text())
    cms = summary["domains"]["cms"]
    assert cms["gen_selection_not_applied_no_genpart"] == ["nano_dimuon.root"]  # collision data: as given
    assert cms["events_selected"] == 40
    assert "taken as given" in result.output and "domain-classifier AUC" in result.output
    bad = CliRunner().invoke(app, [*args[:5], "--preselection", "n_tau>=1", "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "unknown quantity 'n_tau'" in bad.output
