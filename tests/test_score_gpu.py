"""The GPU scoring path on CPU: edges built by torch on the device equal GraphBatch's, and the GPU check
(``python -m coffea_hepfm.score.gpu``) runs end to end with tiny sizes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from coffea_hepfm.graph import GraphBatch, GraphSpec, build_flat
from coffea_hepfm.graph.errors import MissingCollectionWarning


def test_device_graphs_equal_graphbatch(shared_nanoaod):
    from coffea_hepfm.nanoaod import open_events
    from coffea_hepfm.score.local import device_graphs
    from coffea_hepfm.triton.padded import EdgeFeatures

    spec = GraphSpec()
    with pytest.warns(MissingCollectionWarning, match="Photon"):
        flat = build_flat(open_events(shared_nanoaod / "nano_tt_v12.root", mode="virtual"), spec)
    counts = flat.node_counts.copy()
    counts[:3] = 0  # events without nodes keep their place
    x = np.concatenate([flat.x[:0], flat.x[int(flat.node_counts[:3].sum()) :]])
    want = GraphBatch.from_flat(x, counts, flat.u)
    got = device_graphs(x, counts, flat.u, torch.device("cpu"), EdgeFeatures(spec.node_features))
    assert torch.equal(got[1], torch.from_numpy(want.edge_index))
    assert torch.equal(got[4], torch.from_numpy(want.batch))
    torch.testing.assert_close(got[2], torch.from_numpy(want.edge_attr), atol=2e-6, rtol=2e-6)
    empty = device_graphs(
        x[:0], counts[:0], flat.u[:0], torch.device("cpu"), EdgeFeatures(spec.node_features)
    )
    assert empty[1].shape == (2, 0) and empty[2].shape == (0, 4)


def test_gpu_check_runs_on_cpu(shared_nanoaod, tiny_model_file, tmp_path, monkeypatch):
    from coffea_hepfm.score import gpu

    threads = torch.get_num_threads()
    monkeypatch.setenv("HEPFM_SHARED", str(shared_nanoaod.parents[1]))
    out = tmp_path / "gpu.json"
    args = ["--device", "cpu", "--model", str(tiny_model_file), "--batch-size", "64", "--batch-size", "128"]
    args += ["--full-events", "500", "--triton-events", "300", "--seconds", "0.05", "--no-triton"]
    try:
        # The shared mix has no Photon in its v12 skim, so the common branches have none: said once per file.
        with pytest.warns(MissingCollectionWarning, match="Photon"):
            res = gpu.main([*args, "--json", str(out)])
    finally:
        torch.set_num_threads(threads)
    assert [r["batch"] for r in res["rows"]] == [64, 128]
    assert all(r["network_ev_per_s"] > 0 and r["runner_score_ev_per_s"] > 0 for r in res["rows"])
    assert res["full_path"]["events"] == 500 and res["full_path"]["ev_per_s"] > 0
    assert res["triton_dask"] == {"skipped": "--no-triton"}
    doc = json.loads(out.read_text())
    assert doc["benchmark"] == "gpu" and doc["device"] == "cpu" and doc["sources"][0] == "nano_tt_v12.root"


def test_compiled_or_eager_falls_back_with_one_warning():
    """The CUDA path compiles the module; a compiler that fails leaves the eager module scoring (same
    values) with one CompileFallback warning naming the error."""
    import warnings

    import torch

    from coffea_hepfm.score.local import CompileFallback, _CompiledOrEager

    lin = torch.nn.Linear(3, 2)
    x = torch.randn(5, 3)

    def broken(_module):
        raise RuntimeError("no C++ compiler for Inductor")

    run = _CompiledOrEager(lin, compiler=broken)
    with pytest.warns(CompileFallback, match="torch.compile failed: RuntimeError: no C\\+\\+ compiler"):
        got = run(x)
    torch.testing.assert_close(got, lin(x))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        torch.testing.assert_close(run(x), lin(x))  # no second warning
    ok = _CompiledOrEager(lin, compiler=lambda m: m)  # a compiler that works: its module runs
    torch.testing.assert_close(ok(x), lin(x))
    assert ok.fallback_reason == ""


def test_compiled_or_eager_passes_out_of_memory_through():
    """A CUDA out-of-memory error is the batch's, not the compiler's: it propagates and the compiled
    module stays in use."""
    import torch

    from coffea_hepfm.score.local import _CompiledOrEager

    def oom(*_):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    run = _CompiledOrEager(torch.nn.Identity(), compiler=lambda m: oom)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        run(torch.zeros(1))
    assert run.fallback_reason == ""
