"""Triton serving against a real ``tritonserver`` (nvidia-pytriton's binary in the server environment).

One server per module (free loopback ports) serves the exported model ``hepfm`` (max_batch_size 64, so
the shared files need several requests) and ``slow``, the same model with a 3 s sleep per execution.
Fault tests stop or kill real servers, or point at wrong names and ports.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from coffea_hepfm.graph import (
    GraphBatch,
    GraphSpec,
    MissingCollectionWarning,
    TaggerFallbackWarning,
    build_flat,
    edge_attr,
    edge_index,
)
from coffea_hepfm.model import ClassifierHead, HEPFMClassifier, HEPFMNet, load_model, save_model
from coffea_hepfm.nanoaod import open_events
from coffea_hepfm.triton.client import (
    MalformedTritonURL,
    TritonGraphClient,
    TritonModelError,
    TritonSpecMismatch,
    TritonUnavailable,
    parse_url,
)
from coffea_hepfm.triton.padded import EdgeFeatures, pad_nodes
from coffea_hepfm.triton.repository import ExportError, export_model, run_exported
from coffea_hepfm.triton.server import TritonServer, free_port

MAX_BATCH = 64
NF = GraphSpec().n_node_features  # node features of the default graph spec
CLASSES = ["signal", "background"]
ATOL = 1e-5
SLOW_SECONDS = 3.0
SLOW_PATCH = f"""
import time as _time

_fast_execute = TritonPythonModel.execute


def _slow_execute(self, requests):  # test model: a server that takes {SLOW_SECONDS} s per batch
    _time.sleep({SLOW_SECONDS})
    return _fast_execute(self, requests)


TritonPythonModel.execute = _slow_execute
"""


def _expect_photon_warning(events):
    """Slimmed files (nano_tt_v12) have no Photon: the documented MissingCollectionWarning, asserted."""
    if "Photon" in events.fields:
        return contextlib.nullcontext()
    return pytest.warns(MissingCollectionWarning, match="Photon_pt not found")


def _expect_tagger_warning(path, spec):
    """nano_tree's DeepJet holds placeholder scores: graph spec v2 falls back to DeepCSV and says so."""
    if Path(path).name != "nano_tree.root" or spec.version == 1:
        return contextlib.nullcontext()
    return pytest.warns(TaggerFallbackWarning, match="placeholder scores")


def _graphs(path, spec=None):
    events = open_events(path)
    spec = spec or GraphSpec()
    with _expect_photon_warning(events), _expect_tagger_warning(path, spec):
        flat = build_flat(events, spec)
    return flat.x, flat.node_counts, flat.u


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    spec = GraphSpec()
    torch.manual_seed(5)
    net = HEPFMNet(spec.n_node_features, spec.n_edge_features, spec.n_global_features, hidden=32)
    clf = HEPFMClassifier(net, ClassifierHead(2, in_channels=32)).eval()
    path = tmp_path_factory.mktemp("model") / "hepfm_test.safetensors"
    return save_model(path, clf, spec.to_dict(), meta={"class_names": CLASSES, "task": "test"})


@pytest.fixture(scope="module")
def local(model_file):
    """Reference: the in-process scoring path (GraphBatch edges in numpy + ScoringModule)."""
    module = load_model(model_file).scoring_module()

    def score(x, counts, u):
        with torch.inference_mode():
            p, e = module(*GraphBatch.from_flat(x, counts, u).to_torch())
        return p.numpy(), e.numpy()

    return score


@pytest.fixture(scope="module")
def repo(model_file, tmp_path_factory) -> Path:
    repo = tmp_path_factory.mktemp("repo")
    # One torch thread per model: CI has 2 cores, and oversubscribed OpenMP threads crawl.
    # compute_batch=16: the server runs each merged batch in slices (checked by every agreement test).
    export_model(model_file, repo, name="hepfm", max_batch_size=MAX_BATCH, threads=1, compute_batch=16)
    export_model(model_file, repo, name="slow", max_batch_size=MAX_BATCH, threads=1)
    with open(repo / "slow" / "1" / "model.py", "a") as f:
        f.write(SLOW_PATCH)
    return repo


@pytest.fixture(scope="module")
def server(repo):
    s = TritonServer(repo).start()
    yield s
    s.stop(timeout=2)  # the slow model may still hold timed-out requests: do not wait for them


def _client(server, name="hepfm", protocol="grpc", **kw) -> TritonGraphClient:
    kw = {"spec": GraphSpec(), "class_names": CLASSES, "hidden": 32, **kw}
    return TritonGraphClient(server.model_url(name, 1, protocol), **kw)


# -- export ---------------------------------------------------------------------------------------------
def test_export_repository_layout_and_files(model_file, repo, local, shared_nanoaod, tmp_path):
    cfg = (repo / "hepfm" / "config.pbtxt").read_text()
    assert 'backend: "python"' in cfg and f"max_batch_size: {MAX_BATCH}" in cfg and "dynamic_batching" in cfg
    assert f"dims: [ 23, {NF} ]" in cfg
    assert {p.name for p in (repo / "hepfm" / "1").iterdir()} == {"model.pt", "model.py"}
    x, counts, u = _graphs(shared_nanoaod / "nano_tt_v12.root")
    want_p, want_e = local(x, counts, u)
    nodes = pad_nodes(x, counts, GraphSpec().max_nodes)
    # TorchScript (python and libtorch backends) through torch.jit.load.
    p, e = run_exported(repo / "hepfm" / "1" / "model.pt", nodes, counts, u)
    np.testing.assert_allclose(p, want_p, atol=ATOL, rtol=0)
    np.testing.assert_allclose(e, want_e, atol=ATOL, rtol=0)
    # ONNX through onnxruntime; libtorch config.
    export_model(model_file, tmp_path, name="m_onnx", backend="onnx")
    export_model(model_file, tmp_path, name="m_lt", backend="libtorch")
    assert 'platform: "onnxruntime_onnx"' in (tmp_path / "m_onnx" / "config.pbtxt").read_text()
    assert 'platform: "pytorch_libtorch"' in (tmp_path / "m_lt" / "config.pbtxt").read_text()
    p, e = run_exported(tmp_path / "m_onnx" / "1" / "model.onnx", nodes, counts, u)
    np.testing.assert_allclose(p, want_p, atol=ATOL, rtol=0)
    np.testing.assert_allclose(e, want_e, atol=ATOL, rtol=0)


def test_export_bad_arguments_write_nothing(model_file, tmp_path):
    repo = tmp_path / "r"
    with pytest.raises(ValueError, match="backend must be one of"):
        export_model(model_file, repo, backend="tensorrt")
    with pytest.raises(ExportError, match="version"):
        export_model(model_file, repo, version=0)
    with pytest.raises(ExportError, match="may only contain"):
        export_model(model_file, repo, name="bad name")
    export_model(model_file, repo, name="m")
    with pytest.raises(ExportError, match="exists"):
        export_model(model_file, repo, name="m")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]  # no temporary directories left
    assert sorted(p.name for p in (repo / "m").iterdir()) == ["1", "config.pbtxt"]


def test_edge_features_twin_matches_graph(shared_nanoaod):
    """The served model rebuilds edges in torch; they must equal coffea_hepfm.graph.edges."""
    twin = torch.jit.script(EdgeFeatures())
    for name in ("nano_tt_v12.root", "nano_dy.root"):
        x, counts, _ = _graphs(shared_nanoaod / name)
        src, dst = (torch.from_numpy(a) for a in edge_index(counts))
        got = twin(torch.from_numpy(x), src, dst).numpy()
        np.testing.assert_allclose(got, edge_attr(x, counts), atol=ATOL, rtol=0)


# -- agreement with local scoring -------------------------------------------------------------------------
def test_grpc_matches_local_on_cms_nanoaod(server, local, cms_file):
    x, counts, u = _graphs(cms_file)
    p, e = _client(server).infer_flat(x, counts, u)
    want_p, want_e = local(x, counts, u)
    assert p.shape == (len(u), 2) and e.shape == (len(u), 32)
    np.testing.assert_allclose(p, want_p, atol=ATOL, rtol=0)
    np.testing.assert_allclose(e, want_e, atol=ATOL, rtol=0)


def test_grpc_and_http_match_local_on_simulated_files(server, local, sim_files):
    for files in sim_files.values():
        x, counts, u = _graphs(files[0])
        want_p, want_e = local(x, counts, u)
        for protocol in ("grpc", "http"):
            p, e = _client(server, protocol=protocol).infer_flat(x, counts, u)
            np.testing.assert_allclose(p, want_p, atol=ATOL, rtol=0)
            np.testing.assert_allclose(e, want_e, atol=ATOL, rtol=0)


def _request_count(server, name="hepfm", at_least: int = 0) -> int:
    """Successful requests in the server's statistics (updated just after the response is sent, so
    wait briefly for ``at_least``)."""
    import tritonclient.grpc as grpcclient

    stats_client = grpcclient.InferenceServerClient(server.grpc_address)
    deadline = time.monotonic() + 3
    while True:
        stats = stats_client.get_inference_statistics(name, as_json=True)
        count = int(stats["model_stats"][0]["inference_stats"]["success"].get("count", 0))
        if count >= at_least or time.monotonic() > deadline:
            return count
        time.sleep(0.05)


def test_request_larger_than_max_batch_size_is_split(server, local, shared_nanoaod):
    x, counts, u = _graphs(shared_nanoaod / "nano_tt_v12.root")  # 200 events > 64
    client = _client(server)
    client.served_model()
    before = _request_count(server)
    p, _ = client.infer_flat(x, counts, u)
    n_requests = -(-len(u) // MAX_BATCH)
    assert _request_count(server, at_least=before + n_requests) - before == n_requests
    np.testing.assert_allclose(p, local(x, counts, u)[0], atol=ATOL, rtol=0)
    # A smaller client batch size is honoured too.
    before = _request_count(server)
    _client(server, batch_size=50).infer_flat(x, counts, u)
    assert _request_count(server, at_least=before + 4) - before == 4


def test_zero_events_and_events_without_nodes(server, local):
    client = _client(server)
    p, e = client.infer_flat(
        np.zeros((0, NF), np.float32), np.zeros(0, np.int64), np.zeros((0, 7), np.float32)
    )
    assert p.shape == (0, 2) and e.shape == (0, 32)
    u = np.random.default_rng(1).normal(size=(5, 7)).astype(np.float32)
    p, e = client.infer_flat(np.zeros((0, NF), np.float32), np.zeros(5, np.int64), u)
    np.testing.assert_allclose(
        p, local(np.zeros((0, NF), np.float32), np.zeros(5, np.int64), u)[0], atol=ATOL
    )


def _fields_close(got, want, names):
    for name in names:
        np.testing.assert_allclose(
            np.asarray(got[name].to_numpy()), np.asarray(want[name].to_numpy()), atol=ATOL, rtol=0
        )


def test_hepfmscore_triton_backend_equals_local(server, model_file, shared_nanoaod, sim_files):
    from coffea_hepfm.score import HEPFMScore

    remote = HEPFMScore(model_file, backend=server.model_url("hepfm", 1), embedding=True)
    local = HEPFMScore(model_file, device="cpu", embedding=True)
    for path in (shared_nanoaod / "nano_dimuon.root", sim_files["tth"][0]):
        events = open_events(path)
        with _expect_photon_warning(events):
            got = remote(events)
        with _expect_photon_warning(events):
            want = local(events)
        assert got.fields == want.fields == [*CLASSES, "embedding"] and len(got) == len(events)
        _fields_close(got, want, CLASSES)
        np.testing.assert_allclose(got.embedding.to_numpy(), want.embedding.to_numpy(), atol=ATOL, rtol=0)


def test_hepfmscore_dask_two_workers_share_one_server(server, model_file, shared_nanoaod, sim_files):
    """dask-awkward on a LocalCluster with 2 worker processes, both scoring through the one server."""
    from distributed import Client, LocalCluster

    from coffea_hepfm.score import HEPFMScore

    # One collection per dataset, as coffea's apply_to_fileset does (files of different NanoAOD
    # versions do not share one form).
    files = [shared_nanoaod / "nano_tt_v12.root", sim_files["ttbar"][0]]
    score = HEPFMScore(model_file, backend=server.model_url("hepfm", 1, "http"))
    want, lazy = [], []
    for f in files:
        events = open_events(f)
        with _expect_photon_warning(events):
            want.append(HEPFMScore(model_file, device="cpu")(events))
        with _expect_photon_warning(events):  # dask: warned once, on the client, when the graph is built
            lazy.append(score(open_events([f], mode="dask", steps_per_file=2)))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            # One dataset per worker, concurrently, so both processes talk to the server (left to
            # itself the scheduler may put every task on one worker).
            addresses = sorted(client.scheduler_info()["workers"])
            futures = [client.compute(c, workers=[a]) for c, a in zip(lazy, addresses, strict=True)]
            got = [f.result() for f in futures]
            # Each worker process made its own (lazy) connection to the one server.
            connections = client.run(
                lambda: len(__import__("coffea_hepfm.triton.client").triton.client._REGISTRY)
            )
    assert len(connections) == 2 and all(n >= 1 for n in connections.values()), connections
    for g, w in zip(got, want, strict=True):
        assert len(g) == len(w)
        _fields_close(g, w, CLASSES)


# -- faults -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url",
    [
        "grpc://127.0.0.1:8001/m/1",
        "triton+grpc://127.0.0.1/m/1",
        "triton+grpc://127.0.0.1:99999/m",
        "triton+tcp://127.0.0.1:8001/m",
        "triton+http://127.0.0.1:8000/m/v1",
        "triton+http://127.0.0.1:8000/",
        "",
    ],
)
def test_malformed_url(url):
    with pytest.raises(MalformedTritonURL, match="malformed Triton URL"):
        TritonGraphClient(url)


def test_url_forms():
    assert parse_url("triton+grpc://localhost:8001/tth_vs_ttbar/2") == (
        "grpc",
        "localhost",
        8001,
        "tth_vs_ttbar",
        "2",
    )
    assert str(parse_url("triton+http://h:8000/m/")) == "triton+http://h:8000/m"


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_server_down_at_start_fails_in_bounded_time(protocol):
    url = f"triton+{protocol}://127.0.0.1:{free_port()}/hepfm/1"
    client = TritonGraphClient(url, connect_timeout=2, timeout=2, retries=2, backoff=0.1)
    start = time.monotonic()
    with pytest.raises(TritonUnavailable) as err:
        client.infer_flat(np.zeros((0, NF), np.float32), np.zeros(1, np.int64), np.zeros((1, 7), np.float32))
    assert time.monotonic() - start < 10
    assert url in str(err.value) and "3 attempt" in str(err.value)


@pytest.mark.parametrize("name,version", [("nosuchmodel", 1), ("hepfm", 7)])
def test_unknown_model_or_version(server, name, version):
    url = server.model_url(name, version)
    start = time.monotonic()
    with pytest.raises(TritonModelError) as err:
        TritonGraphClient(url, retries=3).served_model()
    assert time.monotonic() - start < 5  # not retried: the server answered
    assert url in str(err.value) and "hepfm/1" in str(err.value)  # lists what is served


def test_spec_class_and_shape_mismatch(server):
    with pytest.raises(TritonSpecMismatch) as err:
        _client(server, spec=GraphSpec(max_photons=0)).served_model()
    msg = str(err.value)
    assert (
        server.model_url("hepfm", 1) in msg
        and "max_photons" in msg
        and "max_nodes: expected 19, served 23" in msg
    )
    with pytest.raises(TritonSpecMismatch, match="class names"):
        _client(server, class_names=["ttH", "ttbar"]).served_model()
    with pytest.raises(TritonSpecMismatch, match="embedding size: expected 64, served 32"):
        _client(server, hidden=64).served_model()
    client = _client(server)
    with pytest.raises(ValueError, match="must be nodes"):
        client.infer(np.zeros((2, 10, NF), np.float32), np.zeros(2), np.zeros((2, 7), np.float32))
    with pytest.raises(ValueError, match="at most 23"):
        client.infer_flat(np.zeros((24, NF), np.float32), np.array([24]), np.zeros((1, 7), np.float32))


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_slow_server_timeout(server, protocol):
    client = _client(server, "slow", protocol, timeout=1.0, retries=1, backoff=0.1)
    client.served_model()
    start = time.monotonic()
    with pytest.raises(TritonUnavailable) as err:
        client.infer_flat(np.zeros((0, NF), np.float32), np.zeros(3, np.int64), np.zeros((3, 7), np.float32))
    assert time.monotonic() - start < 2 * SLOW_SECONDS
    assert server.model_url("slow", 1, protocol) in str(err.value) and "timeout 1 s" in str(err.value)


def test_server_killed_mid_run(repo, local, shared_nanoaod, tmp_path):
    """A multi-request call while the server dies raises (naming the URL); no partial result comes back."""
    import shutil

    shutil.copytree(repo / "slow", tmp_path / "slow")
    x, counts, u = _graphs(shared_nanoaod / "nano_tt_v12.root")
    with TritonServer(tmp_path) as s:
        client = _client(s, "slow", timeout=30, retries=2, backoff=0.2)
        client.served_model()
        threading.Timer(1.0, s.kill).start()  # during the first of 4 requests
        start = time.monotonic()
        with pytest.raises(TritonUnavailable) as err:
            client.infer_flat(x, counts, u)
        assert time.monotonic() - start < 10
        assert s.model_url("slow", 1) in str(err.value)
        assert not s.running


# -- command line -----------------------------------------------------------------------------------------
def test_cli_export_serve_and_ctrl_c(model_file, local, shared_nanoaod, tmp_path):
    import os

    from typer.testing import CliRunner

    from coffea_hepfm.cli import app

    repo = tmp_path / "repo"
    args = ["export-triton", str(model_file), "--repo", str(repo), "--name", "cli", "--threads", "1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "verified" in result.output
    exe = [sys.executable, "-m", "coffea_hepfm.cli"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    # started with SIGINT ignored, as a background job of a script is: Ctrl-C must still stop it
    proc = subprocess.Popen([*exe, "serve", "--repo", str(repo), "--grpc-port", "0", "--http-port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))  # fmt: skip
    try:
        lines = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "triton+grpc://" in line or not line:
                break
        url = next((w for w in line.split() if w.startswith("triton+grpc://")), None)
        assert url and url.endswith("/cli/1"), "".join(lines)
        x, counts, u = _graphs(shared_nanoaod / "nano_dy.root")
        p, _ = TritonGraphClient(url, spec=GraphSpec(), class_names=CLASSES).infer_flat(x, counts, u)
        np.testing.assert_allclose(p, local(x, counts, u)[0], atol=ATOL, rtol=0)
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0 and "stopped" in rest, rest
        with pytest.raises(TritonUnavailable):
            TritonGraphClient(url, connect_timeout=1, retries=0).served_model()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_served_config_carries_the_graph_spec(server):
    served = _client(server).served_model()
    assert served.max_batch_size == MAX_BATCH and served.max_nodes == 23
    assert GraphSpec.from_dict(served.graph_spec) == GraphSpec()
    assert json.loads(json.dumps(served.class_names)) == CLASSES
