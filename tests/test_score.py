"""HEPFMScore on real CMS NanoAOD and simulated files: eager, virtual, dask; bad input; serialisation."""

from __future__ import annotations

import contextlib
import json
import pickle

import awkward as ak
import numpy as np
import pytest

from coffea_hepfm import HEPFMScore
from coffea_hepfm.graph import MissingCollectionWarning
from coffea_hepfm.nanoaod import open_events


def _open(path, mode="virtual", **kw):
    # virtual by default: reads only the branches used (eager reads all ~1500 of a CMS file)
    return open_events(path, mode=mode, **kw)


def _expect_photon_warning(events):
    """The documented warnings of the shared CMS files under graph spec v2, asserted: slimmed files
    (nano_tt_v12) have no Photon (MissingCollectionWarning); nano_tree's DeepJet holds the -3000
    placeholder everywhere, so b-tagging falls back to DeepCSV (TaggerFallbackWarning)."""
    from coffea_hepfm.graph import TaggerFallbackWarning

    if "Photon" not in events.fields:
        return pytest.warns(MissingCollectionWarning, match="Photon_pt not found")
    jets = events.Jet
    lazy = not isinstance(events, ak.Array)  # dask: graphs are built (and warn) at compute time
    if not lazy and "btagDeepFlavB" in jets.fields and "btagPNetB" not in jets.fields:
        central = jets.btagDeepFlavB[abs(jets.eta) < 2.5]
        if ak.count(central) and ak.all(central == -3000):
            return pytest.warns(TaggerFallbackWarning, match="falls back to Jet_btagDeepB")
    return contextlib.nullcontext()


def _score(scorer, events):
    with _expect_photon_warning(events):
        return scorer(events)


def _reference(model, events):
    """Scores computed directly with the model module on build_graphs(events): the ground truth."""
    import torch

    from coffea_hepfm.graph import build_graphs
    from coffea_hepfm.model import load_model

    loaded = load_model(model)
    with _expect_photon_warning(events):
        graphs = build_graphs(events, loaded.spec)
    with torch.no_grad():
        probs, emb = loaded.scoring_module()(*(t.clone() for t in graphs.to_torch("cpu")))
    return probs.numpy(), emb.numpy()


@pytest.fixture(scope="module")
def scorer(hepfm_model):
    return HEPFMScore(hepfm_model, device="cpu")


def test_eager_every_cms_file(cms_file, scorer, hepfm_model):
    events = _open(cms_file, mode="eager")
    out = _score(scorer, events)
    names = scorer.class_names_
    assert out.fields == names
    assert len(out) == len(events) > 0
    probs = np.stack([ak.to_numpy(out[n]) for n in names], axis=1)
    assert probs.dtype == np.float32
    assert np.isfinite(probs).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    ref, _ = _reference(hepfm_model, events)
    np.testing.assert_allclose(probs, ref, rtol=1e-5, atol=1e-6)


def test_virtual_equals_eager(shared_nanoaod, scorer):
    path = shared_nanoaod / "nano_dy.root"
    eager = _score(scorer, _open(path, mode="eager"))
    virtual = _score(scorer, _open(path, mode="virtual"))
    assert ak.array_equal(eager, virtual)


def test_dask_equals_eager_and_reads_only_needed_branches(shared_nanoaod, scorer):
    import dask_awkward as dak

    path = shared_nanoaod / "nano_dy.root"
    events = _open(path, mode="dask", steps_per_file=3)
    assert events.npartitions == 3
    out = _score(scorer, events)
    # Column pruning: the task graph reads exactly the branches of the graph spec, nothing else.
    (columns,) = dak.necessary_columns(out).values()
    assert set(columns) == set(scorer.graph_spec_.required_branches(events))
    assert "Jet_pt" in columns and "Muon_dxy" not in columns
    computed = out.compute(scheduler="sync")
    eager = _score(scorer, _open(path, mode="eager"))
    assert computed.fields == eager.fields
    for name in eager.fields:  # partitions are scored separately: same values up to float rounding
        np.testing.assert_allclose(
            ak.to_numpy(computed[name]), ak.to_numpy(eager[name]), rtol=1e-6, atol=1e-7
        )


def test_simulated_files_eager_and_dask(sim_files, scorer):
    for process, files in sim_files.items():
        eager = [_score(scorer, _open(f, mode="eager")) for f in files]
        lazy = _score(scorer, _open(files, mode="dask")).compute(scheduler="sync")
        eager = ak.concatenate(eager)
        assert len(eager) == len(lazy) > 0, process
        for name in scorer.class_names_:
            assert np.isfinite(ak.to_numpy(eager[name])).all()
            np.testing.assert_allclose(
                ak.to_numpy(lazy[name]), ak.to_numpy(eager[name]), rtol=1e-6, atol=1e-7
            )


def test_embedding_and_batch_size(shared_nanoaod, hepfm_model):
    events = _open(shared_nanoaod / "nano_tt_v12.root")
    big = _score(HEPFMScore(hepfm_model, device="cpu", embedding=True), events)
    small = _score(HEPFMScore(hepfm_model, device="cpu", embedding=True, batch_size=7), events)
    emb = ak.to_numpy(big["embedding"])
    _, ref_emb = _reference(hepfm_model, events)
    assert emb.dtype == np.float32 and emb.shape == ref_emb.shape == (len(events), ref_emb.shape[1])
    np.testing.assert_allclose(emb, ref_emb, rtol=1e-5, atol=1e-5)
    for name in big.fields:  # mini-batching must not change any event's score
        np.testing.assert_allclose(ak.to_numpy(small[name]), ak.to_numpy(big[name]), rtol=1e-5, atol=1e-6)


def test_device_auto_runs_where_available(shared_nanoaod, hepfm_model):
    import torch

    scorer = HEPFMScore(hepfm_model, device="auto")
    out = _score(scorer, _open(shared_nanoaod / "nano_tree.root"))
    assert scorer.runner_.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert len(out) == 10


# -- bad input ------------------------------------------------------------------------------------------
def test_empty_file_and_empty_chunk_give_empty_column_of_right_type(empty_file, shared_nanoaod, scorer):
    full = _score(scorer, _open(shared_nanoaod / "nano_dy.root"))
    empty = _score(scorer, _open(empty_file))
    assert len(empty) == 0
    assert str(empty.type.content) == str(full.type.content)
    chunk = _score(scorer, _open(shared_nanoaod / "nano_dy.root")[:0])
    assert len(chunk) == 0 and str(chunk.type.content) == str(full.type.content)
    lazy = _score(scorer, _open(empty_file, mode="dask")).compute(scheduler="sync")
    assert len(lazy) == 0 and str(lazy.type.content) == str(full.type.content)


def test_events_without_objects_get_a_defined_score(shared_nanoaod, scorer):
    events = _open(shared_nanoaod / "nano_dimuon.root")
    for coll in ("Jet", "Electron", "Muon", "Photon"):
        events[coll] = events[coll][events[coll].pt < 0]  # no objects at all (MET node only)
    out = _score(scorer, events)
    assert len(out) == len(events)
    for name in scorer.class_names_:
        assert np.isfinite(ak.to_numpy(out[name])).all()


def _with_nan_jet_pt(path):
    events = _open(path)
    pt = events.Jet.pt
    flat = ak.to_numpy(ak.flatten(pt)).copy()
    flat[[0, 5]] = [np.nan, np.inf]
    events["Jet", "pt"] = ak.unflatten(flat, ak.num(pt))
    return events


def test_nonfinite_input_follows_the_documented_rule(shared_nanoaod, hepfm_model):
    from coffea_hepfm.graph import NonFiniteInput, NonFiniteWarning

    path = shared_nanoaod / "nano_dy.root"
    with pytest.warns(NonFiniteWarning, match="jet: 2"):  # default rule of the spec: drop and warn
        out = HEPFMScore(hepfm_model, device="cpu")(_with_nan_jet_pt(path))
    for name in out.fields:
        assert np.isfinite(ak.to_numpy(out[name])).all()
    with pytest.warns(NonFiniteWarning):
        zeroed = HEPFMScore(hepfm_model, device="cpu", nonfinite="zero")(_with_nan_jet_pt(path))
    assert np.isfinite(ak.to_numpy(zeroed[out.fields[0]])).all()
    with pytest.raises(NonFiniteInput, match="Jet_pt"):
        _score(HEPFMScore(hepfm_model, device="cpu", nonfinite="raise"), _with_nan_jet_pt(path))


def test_missing_branch_names_branch_and_version(shared_nanoaod, tmp_path, scorer):
    import uproot

    from coffea_hepfm.graph import MissingBranchError

    # A real NanoAOD file rewritten without Jet_eta (keeping everything else the spec reads).
    with uproot.open(shared_nanoaod / "nano_tt_v12.root") as f:
        tree = f["Events"]
        jets = tree.arrays(["Jet_pt", "Jet_phi", "Jet_mass", "Jet_btagDeepFlavB"], how="zip")["Jet"]
        flat = tree.arrays(["MET_pt", "MET_phi", "run", "luminosityBlock", "event"])
    path = tmp_path / "no_jet_eta.root"
    data = {"Jet": jets, **{k: flat[k] for k in flat.fields}}
    with uproot.recreate(path) as f:  # NanoAOD naming: nJet, Jet_pt, ...
        types = {k: v.type if k == "Jet" else v.type.content for k, v in data.items()}
        f.mktree("Events", types, field_name=lambda outer, inner: f"{outer}_{inner}")
        f["Events"].extend(data)
    with uproot.open(path) as f:
        assert "Jet_pt" in f["Events"] and "Jet_eta" not in f["Events"]
    with pytest.raises(MissingBranchError, match="Jet_eta") as err:
        scorer(_open(path))  # the jets are resolved first: raises before any Photon warning
    assert err.value.branch == "Jet_eta"
    assert "NanoAOD" in str(err.value)


def test_unknown_model_lists_available():
    from coffea_hepfm import models

    with pytest.raises(models.UnknownModel, match="available") as err:
        HEPFMScore("no_such_model")
    for name in models.available():
        assert name in str(err.value)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"backend": "triton://localhost:8001/m"}, "malformed backend"),
        ({"backend": "triton+grpc://localhost/m"}, "malformed backend"),
        ({"backend": "triton+grpc://localhost:99999/m/1"}, "malformed backend"),
        ({"device": "tpu"}, "device"),
        ({"batch_size": 0}, "batch_size"),
        ({"nonfinite": "ignore"}, "nonfinite"),
    ],
)
def test_bad_parameters(tiny_model_file, kwargs, match):
    with pytest.raises(ValueError, match=match):
        HEPFMScore(tiny_model_file, **kwargs)


def _rewrite_model(src, dst, edit_meta=None, edit_tensors=None):
    """Copy a real model file, changing its metadata or weights (what a foreign/corrupt file looks like when
    its author wrote it so; edits after saving are refused at load, see tests/test_model_io.py)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(src), framework="pt") as f:
        meta = json.loads(f.metadata()["hepfm"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    if edit_meta:
        edit_meta(meta)
    if edit_tensors:
        edit_tensors(tensors)
    if "integrity" in meta:
        # written this way by its author: fresh stored hashes, so loading gets past the integrity check
        from coffea_hepfm.model.integrity import integrity_record

        meta["integrity"] = integrity_record(meta, tensors)
    save_file(tensors, str(dst), metadata={"hepfm": json.dumps(meta)})
    return dst


def test_model_with_mismatching_graph_spec_is_refused(tiny_model_file, tmp_path):
    from coffea_hepfm.graph import GraphSpecMismatch

    def newer_spec(meta):
        meta["graph_spec"]["version"] = 99

    def wrong_width(meta):
        meta["model_config"]["n_node"] = 12

    with pytest.raises(ValueError, match="version 99"):
        HEPFMScore(_rewrite_model(tiny_model_file, tmp_path / "v99.safetensors", newer_spec))
    with pytest.raises(GraphSpecMismatch, match="n_node"):
        HEPFMScore(_rewrite_model(tiny_model_file, tmp_path / "n12.safetensors", wrong_width))


def test_nan_score_is_never_returned(tiny_model_file, tmp_path, shared_nanoaod):
    from coffea_hepfm.score import NonFiniteScore

    def poison(tensors):  # a corrupt model: NaN in the last layer's bias
        key = sorted(k for k in tensors if k.endswith("bias"))[-1]
        tensors[key][:] = float("nan")

    bad = _rewrite_model(tiny_model_file, tmp_path / "nan.safetensors", edit_tensors=poison)
    with pytest.raises(NonFiniteScore, match="non-finite score"):
        _score(HEPFMScore(bad, device="cpu"), _open(shared_nanoaod / "nano_dy.root"))


# -- serialisation ------------------------------------------------------------------------------------
def test_pickles_as_parameters_only(shared_nanoaod, tiny_model_file):
    import cloudpickle

    scorer = HEPFMScore(tiny_model_file, device="cpu", batch_size=128)
    # nano_dy: no package warning under graph spec v2 (nano_tree's DeepJet holds placeholder scores)
    events = _open(shared_nanoaod / "nano_dy.root")
    before = _score(scorer, events)
    assert scorer._runner_ is not None  # loaded lazily on first use
    blob = cloudpickle.dumps(scorer)
    assert len(blob) < 4096  # the torch module is not in it
    clone = pickle.loads(blob)
    assert clone._runner_ is None and clone.batch_size == 128
    assert ak.array_equal(_score(clone, events), before)


def test_triton_backend_delegates_and_names_the_url(shared_nanoaod, tiny_model_file):
    from coffea_hepfm.triton.client import TritonUnavailable

    url = "triton+grpc://127.0.0.1:1/tiny/1"  # nothing listens on port 1
    scorer = HEPFMScore(tiny_model_file, backend=url)
    with pytest.raises(TritonUnavailable, match="127.0.0.1:1"):
        _score(scorer, _open(shared_nanoaod / "nano_dy.root"))


def _worker_torch_threads(model):
    import torch

    from coffea_hepfm.score.local import LocalRunner

    LocalRunner(model, device="cpu")
    return torch.get_num_threads()


def test_runner_on_dask_worker_uses_the_worker_thread_count(hepfm_model):
    """A single-threaded Dask worker must not run torch on every core of the node (oversubscription)."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        assert client.submit(_worker_torch_threads, str(hepfm_model), pure=False).result() == 1
