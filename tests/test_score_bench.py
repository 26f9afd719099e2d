"""The benchmark's pieces: the padded torch_wrapper baseline computes the same scores; the bench file."""

from __future__ import annotations

import contextlib

import awkward as ak
import numpy as np
import pytest

from coffea_hepfm import HEPFMScore
from coffea_hepfm.graph import MissingCollectionWarning
from coffea_hepfm.nanoaod import open_events


def test_padded_torch_wrapper_baseline_matches_hepfmscore(shared_nanoaod, sim_files, hepfm_model, tmp_path):
    from coffea.ml_tools.torch_wrapper import torch_wrapper

    from coffea_hepfm.score.dense import PaddedGraphTorchWrapper, save_dense_torchscript

    jit, spec = save_dense_torchscript(hepfm_model, tmp_path / "dense.pt")
    wrapper = PaddedGraphTorchWrapper(jit, spec)
    assert isinstance(wrapper, torch_wrapper)
    scorer = HEPFMScore(hepfm_model, device="cpu")
    for path in (shared_nanoaod / "nano_tt_v12.root", sim_files["tth"][0]):
        events = open_events(path)
        no_photon = "Photon" not in events.fields  # slimmed v12: the documented warning, asserted
        with pytest.warns(MissingCollectionWarning) if no_photon else contextlib.nullcontext():
            dense = ak.to_numpy(wrapper(events))
        with pytest.warns(MissingCollectionWarning) if no_photon else contextlib.nullcontext():
            sparse = np.stack([ak.to_numpy(scorer(events)[n]) for n in scorer.class_names_], axis=1)
        assert dense.shape == sparse.shape == (len(events), len(scorer.class_names_))
        # Same weights, different float32 summation order (dense 23x23 masked vs sparse edges) and a
        # few edges at the delta-phi = +-pi wrap: a trained model shows up to ~6e-5 on probabilities.
        # This baseline only exists for the speed comparison; the Triton path is held to 1e-5.
        np.testing.assert_allclose(dense, sparse, rtol=1e-3, atol=2e-4)


def test_bench_file_repeats_the_sources(shared_nanoaod, tmp_path):
    import uproot

    from coffea_hepfm.graph import GraphSpec, build_flat
    from coffea_hepfm.score.bench import make_bench_file, read_chunk

    # v1: graph spec v2 picks the b-tagger per chunk and the jet-ID recipe per file (from the branches
    # present), so the graphs of a mixed file are not the concatenation of its sources' graphs.
    spec = GraphSpec(version=1)
    sources = [shared_nanoaod / "nano_tt_v12.root", shared_nanoaod / "nano_tree.root"]
    path = make_bench_file(sources, 500, tmp_path / "bench.root", spec, basket=128)
    tree = uproot.open(path)["Events"]
    assert tree.num_entries == 500 and "nJet" in tree.keys() and "Jet_pt" in tree.keys()
    branches = [b for b in tree.keys() if not b.startswith("n")]
    with pytest.warns(MissingCollectionWarning, match="Photon_pt"):  # neither has Photon
        from_bench = build_flat(read_chunk(tree, branches, 0, 420), spec)
    with pytest.warns(MissingCollectionWarning, match="Photon_pt"):
        first = build_flat(open_events(sources[0]), spec)
    # nano_tt_v12 has no Photon, so the bench file has none: the common branches of all sources
    second = build_flat(open_events(sources[1]), spec.replace(max_photons=0))
    # entries 0..209 are the two sources, 210..419 the same again
    np.testing.assert_array_equal(from_bench.x, np.concatenate([first.x, second.x, first.x, second.x]))
    np.testing.assert_array_equal(from_bench.u, np.concatenate([first.u, second.u, first.u, second.u]))


def test_run_benchmark_prints_all_rates(shared_nanoaod, tiny_model_file, tmp_path):
    import json

    from coffea_hepfm.benchjson import write_json
    from coffea_hepfm.score.bench import GOALS, run_benchmark

    lines = []
    with pytest.warns(MissingCollectionWarning, match="Photon"):  # the v12 skim has no Photon
        res = run_benchmark(
            model=str(tiny_model_file),
            sources=[shared_nanoaod / "nano_tt_v12.root"],
            n_events=1000,
            chunk_size=500,
            workdir=tmp_path,
            memory=True,
            dense_events=100,
            network_events=300,
            network_seconds=0.2,
            print_fn=lines.append,
        )
    for key in ("a_read", "b_read_graph", "c_read_graph_score", "d_torch_wrapper_padded"):
        assert res["rates"][key]["events_per_cpu_s"] > 0
    for key in ("hepfm_ev_per_cpu_s", "torch_wrapper_ev_per_cpu_s", "graph_ev_per_cpu_s", "peak_rss_mib"):
        assert res[key] > 0
    assert 0 < res["fraction_of_matmul_peak"] < 1.5 and res["matmul_peak_gflops"] > 0
    assert res["scorer"] == "fused" and res["threads"] == 1
    assert res["graph_spec"]["version"] >= 1 and set(res["goals"]) == set(GOALS)
    # The memory probe: one fresh process per chunk size, one peak per chunk, bounded by the chunk.
    m_small, m_big = res["memory"]
    assert (m_small["chunk_size"], m_small["chunks"], m_big["chunks"]) == (125, 8, 2)
    assert m_small["events"] == m_big["events"] == 1000
    assert len(m_small["chunk_peak_rss_mib"]) == 8 and m_small["peak_rss_mib"] >= m_small["baseline_rss_mib"]
    text = "\n".join(lines)
    assert "(a)" in text and "(e) network alone" in text and "peak RSS" in text and "goals:" in text
    path = write_json(tmp_path / "score.json", "score", res)
    doc = json.loads(path.read_text())
    assert doc["benchmark"] == "score" and doc["hepfm_ev_per_cpu_s"] == res["hepfm_ev_per_cpu_s"]
    assert doc["machine"]["cores"] >= 1 and "load_avg" in doc["machine"] and doc["versions"]["torch"]


def test_memory_probe_reports_its_own_peak_not_the_parents():
    """A child's ru_maxrss starts at its parent's peak on Linux; the probe reads the child's own VmHWM."""
    import subprocess
    import sys

    from coffea_hepfm.score import memprobe

    if memprobe.peak_rss_mib() is None or not memprobe.reset_peak_rss():
        pytest.skip("needs Linux /proc/self/status VmHWM and clear_refs")
    ballast = np.ones(300 * 2**20 // 8)  # 300 MiB, touched
    parent_peak = memprobe.peak_rss_mib()
    code = (
        f"import resource, runpy; m = runpy.run_path({memprobe.__file__!r}); "
        "print(m['peak_rss_mib'](), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
    )
    own, inherited = map(float, subprocess.check_output([sys.executable, "-c", code], text=True).split())
    assert inherited >= parent_peak - 10  # what the old probe read
    assert own < 100 < parent_peak  # the child's own peak: a bare interpreter
    del ballast
    assert memprobe.reset_peak_rss()
    assert memprobe.peak_rss_mib() < parent_peak - 200  # the mark follows the process down again
