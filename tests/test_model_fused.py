"""The fused CPU scorer (the local scoring path) computes the eager HEPFMClassifier's probabilities.

"Today's math" is the plain eager forward: ``softmax(HEPFMClassifier(...))`` (sigmoid for multilabel and
single-output heads). The fused module must agree within 1e-5 on probabilities, for the shipped model on
real CMS NanoAOD and for every network shape the config allows.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from coffea_hepfm.model import (
    ClassifierHead,
    HEPFMClassifier,
    HEPFMNet,
    MulticlassHead,
    MultilabelHead,
    ScoringModule,
    load_model,
)
from coffea_hepfm.model.bench import random_graphs
from coffea_hepfm.model.fused import FusedKernelFallback, FusedScoringModule, cpu_scoring_module

PROB_ATOL = 1e-5


@pytest.fixture(autouse=True)
def _one_thread():
    # Per-core work, as HEPFMScore on a single-threaded Dask worker; also keeps idle OpenMP threads from
    # spinning on a shared CI machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _eager_probs(clf, graphs, sigmoid):
    with torch.inference_mode():
        logits = clf(*graphs)
    return torch.sigmoid(logits) if sigmoid else torch.softmax(logits, dim=1)


def _graphs(n_events=40, seed=0, zero=(0, 7), n_node=13, n_edge=4, n_global=7):
    g = torch.Generator().manual_seed(seed)
    counts = torch.randint(1, 17, (n_events,), generator=g)
    counts[list(zero)] = 0
    return random_graphs(n_events, n_node, n_edge, n_global, node_counts=counts, seed=seed)


@pytest.mark.parametrize(
    ("hidden", "steps", "aggr", "layers", "head"),
    [
        (64, 4, "mean", 2, "classifier"),
        (32, 2, "sum", 1, "multiclass"),
        (16, 3, "mean", 3, "multilabel"),
        (24, 0, "mean", 2, "single"),
    ],
)
def test_fused_equals_eager_classifier(hidden, steps, aggr, layers, head):
    torch.manual_seed(hidden + steps)
    net = HEPFMNet(13, 4, 7, hidden=hidden, n_proc_steps=steps, aggr=aggr, mlp_layers=layers)
    heads = {
        "classifier": ClassifierHead(2, in_channels=hidden),
        "multiclass": MulticlassHead(5, in_channels=hidden),
        "multilabel": MultilabelHead(4, in_channels=hidden),
        "single": ClassifierHead(1, in_channels=hidden),
    }
    clf = HEPFMClassifier(net, heads[head]).eval()
    scoring = ScoringModule(clf).eval()
    graphs = _graphs()
    # A small tile forces the edge rows through several tiles, as in large batches.
    for fused in (FusedScoringModule(scoring), FusedScoringModule(scoring, tile=37)):
        probs, emb = fused(*graphs)
        want = _eager_probs(clf, graphs, scoring.sigmoid)
        assert probs.shape == want.shape and probs.dtype == torch.float32
        torch.testing.assert_close(probs, want, atol=PROB_ATOL, rtol=0)
        torch.testing.assert_close(emb, clf.embed(*graphs), atol=1e-4, rtol=1e-4)
    # Called again with other sizes: the reused buffers must not leak values between calls.
    small = _graphs(5, seed=3, zero=(1,))
    torch.testing.assert_close(
        fused(*small)[0], _eager_probs(clf, small, scoring.sigmoid), atol=PROB_ATOL, rtol=0
    )


def test_fused_shipped_model_on_cms_nanoaod(shared_nanoaod, hepfm_model):
    from coffea_hepfm.graph import build_graphs
    from coffea_hepfm.graph.errors import MissingCollectionWarning
    from coffea_hepfm.nanoaod import open_events

    loaded = load_model(hepfm_model)
    scoring = loaded.scoring_module()
    fused, reason = cpu_scoring_module(scoring)
    assert reason == "" and isinstance(fused, FusedScoringModule)
    from graph_helpers import expect_v2_warnings

    for name in ("nano_tt_v12.root", "nano_dy.root", "nano_dimuon.root", "nano_tree.root"):
        events = open_events(shared_nanoaod / name, mode="virtual")
        # the shared files' documented warnings under spec v2 (no Photon in the v12 skim; nano_tree's
        # DeepJet placeholder), asserted; v1 models warn only about the Photon
        expected = expect_v2_warnings(shared_nanoaod / name) if loaded.spec.version == 2 else None
        with warnings.catch_warnings() if expected is None else expected:  # (a checker is falsy: len 0)
            if expected is None:
                warnings.simplefilter("ignore", MissingCollectionWarning)
            graphs = build_graphs(events, loaded.spec).to_torch()
        probs, _ = fused(*graphs)
        want = _eager_probs(loaded.module, graphs, scoring.sigmoid)
        assert len(probs) == len(events) > 0
        torch.testing.assert_close(probs, want, atol=PROB_ATOL, rtol=0, msg=name)


def test_fused_edge_cases():
    torch.manual_seed(1)
    clf = HEPFMClassifier(HEPFMNet(13, 4, 7, hidden=16, n_proc_steps=2), ClassifierHead(2, 16)).eval()
    scoring = ScoringModule(clf).eval()
    fused = FusedScoringModule(scoring)
    # No events at all; only events without nodes (globals only, no edges).
    for counts in ([], [0, 0, 0], [1, 1]):
        graphs = random_graphs(len(counts), 13, 4, 7, node_counts=torch.tensor(counts, dtype=torch.long))
        probs, emb = fused(*graphs)
        assert probs.shape == (len(counts), 2) and emb.shape == (len(counts), 16)
        torch.testing.assert_close(probs, _eager_probs(clf, graphs, False), atol=PROB_ATOL, rtol=0)
    # NaN in one event's node features: that event's probabilities are NaN, as in torch (never hidden
    # by the ReLU/LayerNorm kernels, so HEPFMScore can refuse it); other events are untouched.
    x, ei, ea, u, batch = _graphs(6, seed=2, zero=())
    x[batch == 3] = float("nan")
    probs, _ = fused(x, ei, ea, u, batch)
    want = _eager_probs(clf, (x, ei, ea, u, batch), False)
    assert torch.isnan(probs[3]).all() and torch.isnan(want[3]).all()
    keep = torch.arange(6) != 3
    torch.testing.assert_close(probs[keep], want[keep], atol=PROB_ATOL, rtol=0)
    with pytest.raises(ValueError, match=r"x must be \[N, 13\]"):
        fused(x[:, :5], ei, ea, u, batch)


def test_cpu_scoring_module_falls_back_with_a_reason():
    torch.manual_seed(2)
    net = HEPFMNet(13, 4, 7, hidden=16, n_proc_steps=1)
    net.decoder = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.Tanh(), torch.nn.LayerNorm(16))
    scoring = ScoringModule(HEPFMClassifier(net, ClassifierHead(2, 16)).eval()).eval()
    module, reason = cpu_scoring_module(scoring)
    assert module is scoring and "unexpected MLP layout" in reason and "Tanh" in reason


def test_local_runner_fallback_warns_once():
    from coffea_hepfm.score import local

    reason = "test reason: kernels unavailable (unique to this test)"
    with pytest.warns(FusedKernelFallback, match="eager torch model.*test reason"):
        local._warn_once(reason)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        local._warn_once(reason)  # the same reason again: silent


def test_local_scoring_path_has_no_torch_deprecation_warning(shared_nanoaod, hepfm_model):
    """torch 2.13 deprecates torch.jit.script/freeze/trace/save/load; HEPFMScore on CPU uses none."""
    import awkward as ak

    from coffea_hepfm import HEPFMScore
    from coffea_hepfm.graph.errors import MissingCollectionWarning
    from coffea_hepfm.nanoaod import open_events

    events = open_events(shared_nanoaod / "nano_tt_v12.root", mode="virtual")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        score = HEPFMScore(hepfm_model, device="cpu")
        out = score(events)
    assert len(out) == len(events) and np.isfinite(ak.to_numpy(out[score.class_names_[0]])).all()
    assert score.runner_.fallback_reason == "" and score.runner_.fused_edges
    # The whole local path (numba edges + fused network) against the eager classifier on GraphBatch.
    from coffea_hepfm.graph import build_graphs

    loaded = load_model(hepfm_model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingCollectionWarning)
        graphs = build_graphs(events, loaded.spec).to_torch()
    want = _eager_probs(loaded.module, graphs, loaded.scoring_module().sigmoid)
    got = np.stack([ak.to_numpy(out[name]) for name in score.class_names_], axis=1)
    np.testing.assert_allclose(got, want.numpy(), atol=PROB_ATOL, rtol=0)
    torch_warnings = [w for w in caught if "torch" in w.filename or "jit" in str(w.message)]
    assert not torch_warnings, [f"{w.category.__name__}: {w.message}" for w in torch_warnings]
    # The one package warning here is the documented missing Photon collection of the v12 skim.
    assert {w.category for w in caught} <= {MissingCollectionWarning}


@pytest.mark.parametrize("version", [1, 2])
def test_numba_edges_equal_graphbatch(shared_nanoaod, version):
    """The CPU path's edges (one numba pass) are GraphBatch.from_flat's: same indices, features within
    float32 rounding. numba's libm and numpy's SIMD arctan2 may differ in phi's last bit (2.4e-7 rad);
    for a nearly collinear pair that is a relative change of delta_phi, so the pair mass of such pairs
    differs by up to ~1e-5 relative (2.3e-6 in log1p(m) seen on nano_dy)."""
    from coffea_hepfm.graph import GraphBatch, GraphSpec, build_flat
    from coffea_hepfm.graph.errors import MissingCollectionWarning
    from coffea_hepfm.model.fused import fused_graph_inputs
    from coffea_hepfm.nanoaod import open_events

    spec = GraphSpec(version=version)
    # nano_tree's DeepJet holds placeholders, which v2 refuses: v1 only there.
    names = ["nano_tt_v12.root", "nano_dy.root", "nano_dimuon.root"] + (
        ["nano_tree.root"] if version == 1 else []
    )
    for name in names:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MissingCollectionWarning)  # Photon absent in the v12 skim
            flat = build_flat(open_events(shared_nanoaod / name, mode="virtual"), spec)
        want = GraphBatch.from_flat(flat.x, flat.node_counts, flat.u)
        x, ei, ea, u, batch = fused_graph_inputs(flat.x, flat.node_counts, flat.u, spec.node_features)
        assert np.array_equal(ei.numpy(), want.edge_index) and np.array_equal(batch.numpy(), want.batch), name
        np.testing.assert_allclose(ea.numpy(), want.edge_attr, atol=5e-6, rtol=1e-5, err_msg=name)
        assert np.array_equal(x.numpy(), want.x) and np.array_equal(u.numpy(), want.u)
    empty = fused_graph_inputs(flat.x[:0], flat.node_counts[:0], flat.u[:0], spec.node_features)
    assert empty[1].shape == (2, 0) and empty[2].shape == (0, 4) and empty[4].shape == (0,)


def test_fused_is_thread_safe(shared_nanoaod, hepfm_model):
    """dask's threaded scheduler calls one scorer from several threads at once; with one shared workspace
    the threads overwrote each other's buffers and the example's dask histograms differed from eager."""
    from concurrent.futures import ThreadPoolExecutor

    from coffea_hepfm.graph import build_graphs
    from coffea_hepfm.graph.errors import MissingCollectionWarning
    from coffea_hepfm.nanoaod import open_events

    loaded = load_model(hepfm_model)
    fused, _ = cpu_scoring_module(loaded.scoring_module())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingCollectionWarning)
        events = open_events(shared_nanoaod / "nano_tt_v12.root", mode="virtual")
        batches = [build_graphs(events[i : i + 25], loaded.spec).to_torch() for i in range(0, 200, 25)]
    want = [fused(*b)[0] for b in batches]
    with ThreadPoolExecutor(4) as pool:
        for _ in range(5):
            got = list(pool.map(lambda b: fused(*b)[0], batches))
            for g, w in zip(got, want, strict=True):
                torch.testing.assert_close(g, w, atol=0, rtol=0)
