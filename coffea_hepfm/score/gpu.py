"""``coffea-hepfm bench gpu`` (or ``python -m coffea_hepfm.score.gpu``): scoring throughput on a GPU.

One short run, printing a table last and writing JSON (``--json PATH``):

- **(a1) network alone**: the scoring module ``HEPFMScore`` runs (eager torch, float32) on graphs already
  on the device, at each ``--batch-size`` (events per forward; the best is reported);
- **(a2) LocalRunner.score**: what ``HEPFMScore.numpy_call`` runs, from flat host node arrays: copy to
  the device, fully connected edges and their features built there
  (:func:`coffea_hepfm.score.local.device_graphs`), network, copy back;
- **(a3) full path**: read a NanoAOD file of ``--full-events`` (the default shared CMS file mix,
  replicated) with uproot, build node features on the host CPU (one process), then (a2) at the best
  batch size;
- **(b) Triton behind 2 Dask workers**: the model exported with ``gpu=True``, ``tritonserver`` from the
  server environment, a ``LocalCluster`` of 2 single-threaded workers each sending chunks through
  :class:`~coffea_hepfm.triton.client.TritonGraphClient` over gRPC. Skipped, with the reason, where
  ``tritonclient``, ``distributed`` or the server environment (``coffea-hepfm triton-env``) is missing.

GPU rates are wall-clock events/s with ``torch.cuda.synchronize()`` around the timed loops. ``--device
cpu`` runs the same code on the CPU (the network alone is then the eager module, not the fused one the
CPU path uses): that is how it is tested.

Needs torch, numpy, safetensors, awkward and uproot (and for (b): tritonclient[grpc], dask,
distributed, a server environment). ``coffea`` is *not* needed: nothing here imports the wrapper.

Example (the GPU machine of the project, after installing the wheels listed in ``docs/speed.md``)::

    HEPFM_SHARED=.whl/shared python -m coffea_hepfm.score.gpu --json "$OUT/gpu.json"
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

__all__ = ["main", "run_gpu_check"]

GPU_BATCHES = (4096, 16384, 65536, 262144)
CPU_BATCHES = (256, 1024)


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rate(fn, n_events: int, device, seconds: float) -> float:
    """Events/s of ``fn()`` (which scores ``n_events``): one warm-up call, then calls for ``seconds``."""
    fn()
    _sync(device)
    calls, t0 = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        _sync(device)
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            return calls * n_events / elapsed


def _flat_nodes(sources, spec, n_events: int, workdir: Path):
    """Flat node arrays of the sources' events, replicated (whole events) to ``n_events``.

    The sources are first written into one file of their common branches, as ``bench score`` does
    (:func:`~coffea_hepfm.score.bench.make_bench_file`), so the graph spec sees one mixed file: per-file
    decisions (graph spec v2's b-tagger choice, e.g. a file whose tagger holds placeholders) are taken
    on the mix, as in the CPU benchmark.
    """
    import uproot

    from coffea_hepfm.graph import build_flat
    from coffea_hepfm.score.bench import make_bench_file, read_chunk

    n_src = 0
    for src in sources:
        with uproot.open(src) as f:
            n_src += f["Events"].num_entries
    mixed = make_bench_file(sources, n_src, workdir / "gpu_sources.root", spec)
    with uproot.open(mixed) as f:
        tree = f["Events"]
        branches = [b for b in tree.keys() if not b.startswith("n")]
        flat = build_flat(read_chunk(tree, branches, 0, n_src), spec)
    x, c, u = flat.x, flat.node_counts, flat.u
    reps = -(-n_events // len(c))
    counts = np.tile(c, reps)[:n_events]
    return np.tile(x, (reps, 1))[: int(counts.sum())], counts, np.tile(u, (reps, 1))[:n_events]


def _slice(x, counts, u, n: int):
    return x[: int(counts[:n].sum())], counts[:n], u[:n]


def _network_and_runner(runner, x, counts, u, batches, seconds: float, log) -> list[dict]:
    """(a1) and (a2) at every batch size."""
    import torch

    from coffea_hepfm.score.local import device_graphs
    from coffea_hepfm.triton.padded import EdgeFeatures

    # On CPU the runner scores through the fused module and numpy edges; the device path is exercised here.
    edges = getattr(runner, "edge_features", None) or EdgeFeatures(runner.graph_spec.node_features)
    rows = []
    for bs in batches:
        xb, cb, ub = _slice(x, counts, u, bs)
        if len(cb) < bs:
            log(f"  batch {bs}: only {len(cb)} events prepared, skipped")
            continue
        runner.batch_size = bs
        try:
            with torch.inference_mode():
                graphs = device_graphs(xb, cb, ub, runner.device, edges)
                net = _rate(lambda g=graphs: runner.module(*g), bs, runner.device, seconds)
                full = _rate(lambda a=(xb, cb, ub): runner.score(*a), bs, runner.device, seconds)
            del graphs
        except torch.cuda.OutOfMemoryError:
            log(f"  batch {bs}: out of GPU memory")
            torch.cuda.empty_cache()
            break
        rows.append({"batch": bs, "network_ev_per_s": net, "runner_score_ev_per_s": full})
        log(f"  batch {bs:>7}: network {net:>12,.0f} ev/s   LocalRunner.score {full:>12,.0f} ev/s")
        if runner.device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def _full_path(runner, sources, spec, n_events: int, chunk: int, workdir: Path) -> dict:
    """(a3): read + host node features + LocalRunner.score, chunk by chunk."""
    import uproot

    from coffea_hepfm.graph import build_flat
    from coffea_hepfm.score.bench import make_bench_file, read_chunk

    file = make_bench_file(sources, n_events, workdir / f"gpu_bench_{n_events}.root", spec)
    tree = uproot.open(file)["Events"]
    branches = [b for b in tree.keys() if not b.startswith("n")]
    host = 0.0
    _sync(runner.device)
    t0 = time.perf_counter()
    for start in range(0, n_events, chunk):
        h0 = time.perf_counter()
        flat = build_flat(read_chunk(tree, branches, start, min(start + chunk, n_events)), spec)
        host += time.perf_counter() - h0
        runner.score(flat.x, flat.node_counts, flat.u)
    _sync(runner.device)
    wall = time.perf_counter() - t0
    return {"events": n_events, "ev_per_s": n_events / wall, "host_read_graph_ev_per_s": n_events / host}


def _score_chunk_on_triton(url: str, chunk: tuple, batch: int):  # runs on a Dask worker
    from coffea_hepfm.triton.client import TritonGraphClient

    return TritonGraphClient(url, batch_size=batch).infer_flat(*chunk)[0]


def _triton_dask(model, x, counts, u, gpu: bool, workers: int, batch: int, seconds: float, workdir) -> dict:
    """(b): Triton server (GPU instance when ``gpu``) fed by a LocalCluster of ``workers`` processes."""
    try:
        import tritonclient.grpc  # noqa: F401
        from distributed import Client, LocalCluster
    except ImportError as err:
        return {"skipped": f"{err.name} is not installed (needs tritonclient[grpc], dask, distributed)"}
    from coffea_hepfm.triton.env import ServerEnvError, ensure_server_env
    from coffea_hepfm.triton.repository import export_model
    from coffea_hepfm.triton.server import TritonServer

    try:
        env = ensure_server_env(create=False)
    except ServerEnvError as err:
        return {"skipped": str(err)}
    repo = Path(workdir) / "triton-repo"
    export_model(model, repo, name="hepfm", gpu=gpu, max_batch_size=batch, compute_batch=0 if gpu else 512)
    n = len(counts)
    per = -(-n // (4 * workers))  # 4 chunks per worker per round
    offsets = np.concatenate([[0], np.cumsum(counts)])
    chunks = [
        (x[offsets[s] : offsets[min(s + per, n)]], counts[s : s + per], u[s : s + per])
        for s in range(0, n, per)
    ]
    with (
        TritonServer(repo, env=env) as server,
        LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        url = server.model_url("hepfm", 1, "grpc")
        remote = client.scatter(chunks)

        def run():
            futures = [client.submit(_score_chunk_on_triton, url, c, batch, pure=False) for c in remote]
            return client.gather(futures)

        run()  # warm-up: connections, CUDA context in the server
        rounds, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds or rounds == 0:
            run()
            rounds += 1
        wall = time.perf_counter() - t0
    return {"workers": workers, "batch": batch, "events": n, "ev_per_s": rounds * n / wall}


def run_gpu_check(
    model: str = "tth_vs_ttbar",
    device: str = "auto",
    batches: tuple[int, ...] | None = None,
    full_events: int = 200_000,
    triton_events: int = 200_000,
    seconds: float = 2.0,
    sources=None,
    triton: bool = True,
    log=print,
) -> dict:
    """Run (a1)-(a3) and (b); returns the figures (see the module docstring)."""
    import torch

    from coffea_hepfm.model.io import resolve_model_path
    from coffea_hepfm.score.bench import _default_sources
    from coffea_hepfm.score.local import LocalRunner, resolve_device
    from coffea_hepfm.threads import set_torch_threads

    dev = torch.device(resolve_device(device))
    # Explicit, so LocalRunner keeps it (and needs no dask to work out a default): one thread on CPU for
    # per-core figures as bench score; on a GPU machine the host keeps torch's own count.
    set_torch_threads(1 if dev.type == "cpu" else torch.get_num_threads())
    batches = tuple(batches or (GPU_BATCHES if dev.type == "cuda" else CPU_BATCHES))
    path = resolve_model_path(model)
    runner = LocalRunner(path, device=dev.type)
    spec = runner.graph_spec
    sources = [Path(s) for s in (sources or _default_sources())]
    missing = [str(s) for s in sources if not s.is_file()]
    if missing:
        raise FileNotFoundError(f"NanoAOD sources not found: {missing} (set HEPFM_SHARED or pass --source)")
    gpu_name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "none (CPU run)"
    log(f"device {dev} ({gpu_name}), model {model}, torch {torch.__version__}")
    with tempfile.TemporaryDirectory(prefix="hepfm-gpu-") as tmp:
        x, counts, u = _flat_nodes(sources, spec, max(max(batches), triton_events), Path(tmp))
        log(f"(a1)/(a2) {len(sources)} source files, mean {counts.mean():.2f} nodes/event")
        rows = _network_and_runner(runner, x, counts, u, batches, seconds, log)
        best = max(rows, key=lambda r: r["runner_score_ev_per_s"]) if rows else None
        out = {
            "device": str(dev),
            "gpu": gpu_name,
            "model": str(model),
            "graph_spec": {"name": spec.name, "version": spec.version},
            "sources": [s.name for s in sources],
            "rows": rows,
            "best_network": max(rows, key=lambda r: r["network_ev_per_s"]) if rows else None,
            "best_runner_score": best,
        }
        if best is not None:
            runner.batch_size = best["batch"]
            chunk = max(best["batch"], 100_000)
            out["full_path"] = _full_path(runner, sources, spec, full_events, chunk, Path(tmp))
            fp = out["full_path"]
            log(
                f"(a3) full path {fp['ev_per_s']:,.0f} ev/s "
                f"(host read + nodes alone {fp['host_read_graph_ev_per_s']:,.0f})"
            )
        xb, cb, ub = _slice(x, counts, u, triton_events)
        if triton:
            gpu, batch = dev.type == "cuda", min(max(batches), 65536)
            out["triton_dask"] = _triton_dask(path, xb, cb, ub, gpu, 2, batch, seconds, tmp)
        else:
            out["triton_dask"] = {"skipped": "--no-triton"}
    tb = out["triton_dask"]
    log(
        "(b) Triton + 2 Dask workers: "
        + (f"skipped: {tb['skipped']}" if "skipped" in tb else f"{tb['ev_per_s']:,.0f} ev/s")
    )
    return out


def _table(res: dict) -> str:
    lines = [
        f"coffea-hepfm GPU check: {res['gpu']}, model {res['model']}",
        f"{'path':44s}{'batch':>9s}{'events/s':>14s}",
    ]
    for key, label in (
        ("best_network", "(a1) network alone"),
        ("best_runner_score", "(a2) LocalRunner.score (flat host nodes)"),
    ):
        r = res.get(key)
        if r:
            value = r["network_ev_per_s"] if key == "best_network" else r["runner_score_ev_per_s"]
            lines.append(f"{label:44s}{r['batch']:>9d}{value:>14,.0f}")
    if "full_path" in res:
        lines.append(
            f"{'(a3) read + host nodes + LocalRunner.score':44s}{'':>9s}{res['full_path']['ev_per_s']:>14,.0f}"
        )
    tb = res.get("triton_dask", {})
    lines.append(
        f"{'(b) Triton, 2 Dask workers (gRPC)':44s}"
        + (
            f"{tb['batch']:>9d}{tb['ev_per_s']:>14,.0f}"
            if "ev_per_s" in tb
            else f"  skipped: {tb.get('skipped')}"
        )
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m coffea_hepfm.score.gpu", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="tth_vs_ttbar")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--batch-size", type=int, action="append", dest="batches", help="repeatable")
    p.add_argument("--full-events", type=int, default=200_000)
    p.add_argument("--triton-events", type=int, default=200_000)
    p.add_argument("--seconds", type=float, default=2.0, help="timed seconds per measurement")
    p.add_argument("--source", action="append", help="NanoAOD files (default: the shared CMS mix)")
    p.add_argument("--no-triton", dest="triton", action="store_false", help="skip (b)")
    p.add_argument("--json", dest="json_path", help="write the figures here")
    a = p.parse_args(argv)
    from coffea_hepfm.benchjson import machine_info, write_json

    start = machine_info()
    res = run_gpu_check(
        a.model, a.device, a.batches, a.full_events, a.triton_events, a.seconds, a.source, a.triton
    )
    print(_table(res))
    if a.json_path:
        print(f"wrote {write_json(a.json_path, 'gpu', res, start)}")
    return res


if __name__ == "__main__":
    main()
    os._exit(0)  # do not wait for CUDA / server threads at interpreter shutdown
