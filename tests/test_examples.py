"""The example analysis processor gives identical histograms eagerly, with dask, and on a LocalCluster."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def run_analysis():
    sys.path.insert(0, str(EXAMPLES))
    try:
        import run_analysis

        yield run_analysis
    finally:
        sys.path.remove(str(EXAMPLES))


def test_three_ways_identical_histograms(run_analysis, shared_nanoaod, sim_files, hepfm_model, tmp_path):
    from analysis_processor import plot_histograms

    datasets = {
        "cms_tt_v12": [shared_nanoaod / "nano_tt_v12.root"],
        "cms_dy": [shared_nanoaod / "nano_dy.root"],
        "cms_dimuon": [shared_nanoaod / "nano_dimuon.root"],
        "sim_tth": sim_files["tth"],
        "sim_ttbar": sim_files["ttbar"],
    }
    results = {
        mode: run_analysis.run(mode, datasets, hepfm_model, chunk_size=100) for mode in run_analysis.MODES
    }
    eager = results["eager"]
    assert set(eager) == set(datasets)
    for name, out in eager.items():
        n_sel = int(out["n_selected"])
        assert 0 < n_sel == out["score"].sum().value, name  # every selected event is in the histogram once
    assert int(eager["cms_tt_v12"]["n_selected"]) <= 200
    for mode in ("dask", "distributed"):
        assert run_analysis.histograms_equal(eager, results[mode]), mode
        for name in datasets:
            assert int(results[mode][name]["n_selected"]) == int(eager[name]["n_selected"])
    png = tmp_path / "score.png"
    plot_histograms(eager, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_histograms_equal_detects_a_difference(run_analysis):
    import hist
    from analysis_processor import score_axis

    a = hist.Hist(score_axis("ttH"), storage=hist.storage.Weight())
    b = a.copy()
    a.fill(score=[0.1, 0.5])
    b.fill(score=[0.1, 0.55])
    assert run_analysis.histograms_equal({"x": {"score": a}}, {"x": {"score": a.copy()}})
    assert not run_analysis.histograms_equal({"x": {"score": a}}, {"x": {"score": b}})
