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
    from coffea_hepfm.score.bench import run_benchmark

    lines = []
    res = run_benchmark(
        model=str(tiny_model_file),
        sources=[shared_nanoaod / "nano_tt_v12.root"],
        n_events=1000,
        chunk_size=500,
        workdir=tmp_path,
        memory=False,
        dense_events=100,
        print_fn=lines.append,
    )
    for key in ("a_read", "b_read_graph", "c_read_graph_score", "d_torch_wrapper_padded"):
        assert res[key]["events_per_s"] > 0
    assert res["c_over_d"] > 0
    text = "\n".join(lines)
    assert "(a)" in text and "(d)" in text and "(c) / (d)" in text
