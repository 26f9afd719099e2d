"""``coffea-hepfm bench score``: throughput of reading, graph building and scoring, and peak memory.

One run, one file, one set of weights, one thread (``torch.set_num_threads(1)``, uproot decompresses in
the calling thread), so events/s are per core:

- (a) read the branches the graph spec needs (uproot, ``how="zip"``);
- (b) (a) + graph build (node features and globals; edges are reported separately);
- (c) (a) + ``HEPFMScore`` (graph build, edges, network): ``hepfm_ev_per_cpu_s``;
- (d) (a) + coffea's ``torch_wrapper`` on padded dense input (:mod:`coffea_hepfm.score.dense`), the same
  weights computing the same probabilities: ``torch_wrapper_ev_per_cpu_s``;
- (e) the network alone (the module ``HEPFMScore`` runs, on prebuilt graphs of the same file) and the
  float32 ``1024 x 1024`` matmul rate, measured before, between and after two halves of (e) (the best
  counts): ``fraction_of_matmul_peak`` = the network's useful FLOP/s (``2 * in * out`` per row of every
  Linear, :func:`coffea_hepfm.model.bench.model_flops`; no padding, no element-wise work) over it.

Rates are per CPU second of this process (``time.process_time``; wall-clock rates are printed too): on a
shared machine CPU time is what a core gives us. Peak memory is measured in fresh processes scoring the
whole file at two chunk sizes (:mod:`coffea_hepfm.score.memprobe`). ``--json PATH`` writes every figure
with the model, graph spec, machine (CPU, cores, load average) and the command.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["make_bench_file", "read_chunk", "run_benchmark"]

#: Goals of issue 14 (``bench score`` defaults: shared CMS file mix, shipped model, one thread).
GOALS = {
    "hepfm_ev_per_cpu_s": 10_000,
    "hepfm_over_torch_wrapper": 30,
    "graph_ev_per_cpu_s": 1_000_000,
    "fraction_of_matmul_peak": 0.4,
}

COLLECTIONS = ("Jet", "Electron", "Muon", "Photon")
ID_BRANCHES = ("run", "luminosityBlock", "event")


def _default_sources() -> list[Path]:
    shared = Path(os.environ.get("HEPFM_SHARED", Path(__file__).resolve().parents[2].parent / "shared"))
    folder = shared / "data" / "nanoaod"
    return [folder / f for f in ("nano_tt_v12.root", "nano_dy.root", "nano_dimuon.root", "nano_tree.root")]


def bench_branches(spec, sources: Sequence[str | os.PathLike]) -> list[str]:
    """Branches the spec reads that every source has (b-tag and MET resolved per file, like the builder)."""
    import uproot

    common = None
    for src in sources:
        with uproot.open(src) as f:
            keys = set(f["Events"].keys())
        wanted = set(spec.required_branches(keys)) | (set(ID_BRANCHES) & keys)
        common = wanted if common is None else common & wanted
    return sorted(common or ())


def make_bench_file(
    sources: Sequence[str | os.PathLike], n_events: int, out: str | os.PathLike, spec, basket: int = 100_000
) -> Path:
    """Write ``n_events`` NanoAOD-like events (needed branches only) by repeating the ``sources``' events.

    Only branches that every source has are written (a collection missing from one source, e.g. Photon
    in slimmed NanoAOD v12, is left out). Reused if ``out`` already has ``n_events`` entries. Written to a
    temporary name, then renamed.
    """
    import awkward as ak
    import uproot

    out = Path(out)
    if out.is_file():
        with uproot.open(out) as f:
            if "Events" in f and f["Events"].num_entries == n_events:
                return out
    branches = bench_branches(spec, sources)
    parts = []
    for src in sources:
        with uproot.open(src) as f:
            parts.append(f["Events"].arrays([b for b in branches if not b.startswith("n")]))
    base = ak.concatenate(parts)
    if len(base) == 0:
        raise ValueError("benchmark sources have no events")
    groups: dict[str, object] = {}
    for coll in COLLECTIONS:
        fields = [b[len(coll) + 1 :] for b in branches if b.startswith(coll + "_")]
        if fields:
            groups[coll] = ak.zip({f: base[f"{coll}_{f}"] for f in fields})
    flat = [b for b in base.fields if b.split("_")[0] not in groups]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    try:
        with uproot.recreate(tmp) as f:
            for start in range(0, n_events, basket):
                idx = np.arange(start, min(start + basket, n_events)) % len(base)
                data = {k: v[idx] for k, v in groups.items()} | {k: base[k][idx] for k in flat}
                if start == 0:  # NanoAOD naming: nJet counter, Jet_pt fields
                    types = {k: v.type if isinstance(v, ak.Array) else v.dtype for k, v in data.items()}
                    f.mktree("Events", types, field_name=lambda outer, inner: f"{outer}_{inner}")
                f["Events"].extend(data)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out


def read_chunk(tree, branches: Sequence[str], start: int, stop: int):
    """Read ``branches`` for entries ``start:stop`` as NanoEvents-like records (``Jet.pt``, ``MET.pt``)."""
    import awkward as ak

    arrays = tree.arrays(list(branches), entry_start=start, entry_stop=stop, how="zip")
    fields = {f: arrays[f] for f in arrays.fields if f in COLLECTIONS or f in ID_BRANCHES}
    for prefix in {f.split("_")[0] for f in arrays.fields if "_" in f and f.split("_")[0] not in COLLECTIONS}:
        fields[prefix] = ak.zip(
            {f.split("_", 1)[1]: arrays[f] for f in arrays.fields if f.startswith(prefix + "_")}
        )
    return ak.zip(fields, depth_limit=1)


def _default_model(workdir: Path) -> str:
    from coffea_hepfm import models

    for name in ("tth_vs_ttbar", "tth-vs-ttbar"):
        if name in models.available():
            return name
    import torch

    from coffea_hepfm.graph import GraphSpec
    from coffea_hepfm.model import ClassifierHead, HEPFMClassifier, HEPFMNet, save_model

    torch.manual_seed(1)
    spec = GraphSpec()
    clf = HEPFMClassifier(
        HEPFMNet(spec.n_node_features, spec.n_edge_features, spec.n_global_features), ClassifierHead(2)
    )
    path = workdir / "bench_default.safetensors"
    meta = {"class_names": ["ttH", "ttbar"], "task": "benchmark", "description": "untrained, default size"}
    return str(save_model(path, clf, spec.to_dict(), meta))


class _Clock:
    def __init__(self):
        self.wall = 0.0
        self.cpu = 0.0

    def __enter__(self):
        self._w, self._c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall += time.perf_counter() - self._w
        self.cpu += time.process_time() - self._c


def _measure(tree, branches, n_events, chunk_size, work) -> tuple[_Clock, _Clock]:
    """Total (read, read + work) clocks over all chunks."""
    read, total = _Clock(), _Clock()
    for start in range(0, n_events, chunk_size):
        stop = min(start + chunk_size, n_events)
        with total:
            with read:
                events = read_chunk(tree, branches, start, stop)
            work(events)
    return read, total


def _network_alone(runner, tree, branches, spec, n_events: int, seconds: float) -> dict:
    """(e): the scoring module on prebuilt graphs of the first ``n_events`` events, and the matmul peak
    before, between and after its two halves (CPU seconds of this process)."""
    import torch

    from coffea_hepfm.graph import GraphBatch, build_flat
    from coffea_hepfm.model.bench import matmul_gflops, model_flops

    flat = build_flat(read_chunk(tree, branches, 0, n_events), spec)
    graphs = [
        g.to_torch()
        for g in GraphBatch.from_flat(flat.x, flat.node_counts, flat.u).iter_batches(runner.batch_size)
    ]
    counts = flat.node_counts
    n_edges = int((counts * (counts - 1)).sum())
    flops = model_flops(runner.net_config, int(counts.sum()), n_edges, len(counts), runner.head_linears)[
        "total"
    ]
    peaks, cpu, passes = [matmul_gflops()], 0.0, 0
    with torch.inference_mode():
        runner.module(*graphs[0])  # warm-up
        for _ in range(2):
            t0 = time.process_time()
            while True:
                for g in graphs:
                    runner.module(*g)
                passes += 1
                if time.process_time() - t0 >= seconds / 2:
                    break
            cpu += time.process_time() - t0
            peaks.append(matmul_gflops())
    gflops = flops * passes / cpu / 1e9
    return {
        "network_ev_per_cpu_s": len(counts) * passes / cpu,
        "network_gflops": gflops,
        "network_mflop_per_event": flops / len(counts) / 1e6,
        "matmul_peak_gflops": max(peaks),
        "matmul_gflops_samples": peaks,
        "fraction_of_matmul_peak": gflops / max(peaks),
        "network_events": len(counts),
        "mean_nodes": float(counts.mean()) if len(counts) else 0.0,
        "mean_edges": float((counts * (counts - 1)).mean()) if len(counts) else 0.0,
    }


def _rate(clock: _Clock, n: int) -> dict:
    return {
        "events_per_s": n / max(clock.wall, 1e-9),
        "events_per_cpu_s": n / max(clock.cpu, 1e-9),
        "wall_s": clock.wall,
        "cpu_s": clock.cpu,
    }


def run_benchmark(
    model: str | None = None,
    sources: Sequence[str | os.PathLike] | None = None,
    n_events: int = 1_000_000,
    chunk_size: int = 100_000,
    workdir: str | os.PathLike = "/tmp/coffea-hepfm-bench",
    memory: bool = True,
    dense_events: int = 20_000,
    dense_batch: int = 1024,
    network_events: int = 50_000,
    network_seconds: float = 4.0,
    print_fn=print,
    ood: bool = False,
) -> dict:
    """Run the benchmark, print a table and the goals; returns every figure as a JSON-ready dict.

    Top-level keys: ``hepfm_ev_per_cpu_s``, ``torch_wrapper_ev_per_cpu_s``, ``hepfm_over_torch_wrapper``,
    ``graph_ev_per_cpu_s``, ``read_ev_per_cpu_s``, ``edges_ev_per_cpu_s``, ``network_ev_per_cpu_s``,
    ``fraction_of_matmul_peak``, ``matmul_peak_gflops``, ``network_gflops``, ``peak_rss_mib`` (``None``
    without ``memory``), ``scorer`` (``"fused"`` or the eager fallback's reason), ``model``,
    ``model_sha256``, ``graph_spec``, ``sources``, ``n_events``, ``chunk_size``, ``threads``, ``rates``
    (wall and CPU per path), ``memory`` (per chunk size) and ``goals``.

    ``ood=True`` also times (c) with ``HEPFMScore(..., ood=True)`` (the model needs a reference) and
    reports the overhead of the per-event out-of-distribution score as ``ood_overhead``.
    """
    import torch
    import uproot

    from coffea_hepfm.graph import GraphBatch, GraphSpec, build_flat
    from coffea_hepfm.model.io import read_metadata
    from coffea_hepfm.score.dense import PaddedGraphTorchWrapper, save_dense_torchscript
    from coffea_hepfm.score.memprobe import measure_memory
    from coffea_hepfm.score.wrapper import HEPFMScore, resolve_model

    torch.set_num_threads(1)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    model = model or _default_model(workdir)
    meta = read_metadata(resolve_model(model))
    spec = GraphSpec.from_dict(meta["graph_spec"])
    sources = [Path(s) for s in (sources or _default_sources())]
    file = make_bench_file(sources, n_events, workdir / f"bench_{n_events}.root", spec)
    tree = uproot.open(file)["Events"]
    branches = [b for b in tree.keys() if not b.startswith("n")]
    print_fn(
        f"file {file} ({n_events} events, {len(branches)} branches from {', '.join(s.name for s in sources)}), "
        f"chunks of {chunk_size}, model {model} (graph spec {spec.name} v{spec.version}), 1 thread"
    )

    read_chunk(tree, branches, 0, min(chunk_size, n_events))  # warm the page cache
    scorer = HEPFMScore(model, device="cpu")
    scorer(read_chunk(tree, branches, 0, 100))  # load the model and the kernels outside the timers
    runner = scorer.runner_
    edges = _Clock()

    from coffea_hepfm.model.fused import fused_graph_inputs

    def graph(events):
        flat = build_flat(events, spec)
        with edges:  # the edges as HEPFMScore builds them (numba twin on CPU, else numpy)
            if runner.fused_edges:
                fused_graph_inputs(flat.x, flat.node_counts, flat.u, spec.node_features)
            else:
                GraphBatch.from_flat(flat.x, flat.node_counts, flat.u)

    a, _ = _measure(tree, branches, n_events, chunk_size, lambda ev: None)
    read_b, b = _measure(tree, branches, n_events, chunk_size, graph)
    b.wall -= edges.wall
    b.cpu -= edges.cpu
    _, c = _measure(tree, branches, n_events, chunk_size, scorer)
    if ood:
        ood_scorer = HEPFMScore(model, device="cpu", ood=True)
        ood_scorer(read_chunk(tree, branches, 0, 100))
        _, c_ood = _measure(tree, branches, n_events, chunk_size, ood_scorer)

    jit, _spec_dict = save_dense_torchscript(model, workdir / "dense_padded.pt")
    with warnings.catch_warnings():
        # coffea's torch_wrapper loads TorchScript (torch.jit.load), which torch 2.13 deprecates: this
        # baseline is coffea's API as it is, so its deprecation notice is expected here and only here.
        warnings.filterwarnings("ignore", r"`torch\.jit\.\w+` is deprecated", DeprecationWarning)
        wrapper = PaddedGraphTorchWrapper(jit, _spec_dict)
        n_dense = min(dense_events, n_events)

        def dense(events):
            for s in range(0, len(events), dense_batch):
                wrapper(events[s : s + dense_batch])

        _, d = _measure(tree, branches, n_dense, min(chunk_size, n_dense), dense)

    net = _network_alone(runner, tree, branches, spec, min(network_events, n_events), network_seconds)

    rates = {
        "a_read": _rate(a, n_events),
        "b_read_graph": _rate(b, n_events),
        "c_read_graph_score": _rate(c, n_events),
        "d_torch_wrapper_padded": _rate(d, n_dense),
    }
    if ood:
        rates["c_ood_read_graph_score_ood"] = _rate(c_ood, n_events)
    graph_cpu = max(b.cpu - read_b.cpu, 1e-9)
    res: dict = {
        "hepfm_ev_per_cpu_s": rates["c_read_graph_score"]["events_per_cpu_s"],
        "torch_wrapper_ev_per_cpu_s": rates["d_torch_wrapper_padded"]["events_per_cpu_s"],
        "graph_ev_per_cpu_s": n_events / graph_cpu,
        "read_ev_per_cpu_s": rates["a_read"]["events_per_cpu_s"],
        "edges_ev_per_cpu_s": n_events / max(edges.cpu, 1e-9),
        **net,
    }
    res["hepfm_over_torch_wrapper"] = res["hepfm_ev_per_cpu_s"] / res["torch_wrapper_ev_per_cpu_s"]
    res["graph_over_read"] = graph_cpu / max(read_b.cpu, 1e-9)
    res.update(
        {
            "scorer": "fused" if not runner.fallback_reason else f"eager ({runner.fallback_reason})",
            "model": str(model),
            "model_sha256": runner.sha256,
            "graph_spec": {"name": spec.name, "version": spec.version},
            "sources": [s.name for s in sources],
            "n_events": n_events,
            "dense_events": n_dense,
            "chunk_size": chunk_size,
            "batch_size": runner.batch_size,
            "threads": torch.get_num_threads(),
            "rates": rates,
        }
    )

    print_fn(f"{'':36s}{'events/s (wall)':>17s}{'events/CPU-s':>15s}")
    labels = {
        "a_read": "(a) read needed columns",
        "b_read_graph": "(b) read + graph build",
        "c_read_graph_score": "(c) read + graph + HEPFMScore",
        "d_torch_wrapper_padded": "(d) read + torch_wrapper (padded)",
    }
    if ood:
        labels["c_ood_read_graph_score_ood"] = "(c) with ood=True"
    for key, label in labels.items():
        r = rates[key]
        print_fn(f"{label:36s}{r['events_per_s']:>17,.0f}{r['events_per_cpu_s']:>15,.0f}")
    print_fn(
        f"{'(e) network alone (' + res['scorer'][:5] + ')':36s}{'':>17s}{res['network_ev_per_cpu_s']:>15,.0f}"
        f"   {res['network_mflop_per_event']:.2f} MFLOP/event, {res['network_gflops']:.1f} GFLOP/s of "
        f"{res['matmul_peak_gflops']:.1f} (matmul 1024^2) = {res['fraction_of_matmul_peak']:.2f}"
    )
    print_fn(
        f"graph build alone {res['graph_ev_per_cpu_s']:,.0f} events/CPU-s ({res['graph_over_read']:.2f} x read); "
        f"edges ({'numba' if runner.fused_edges else 'numpy'}, inside HEPFMScore) {res['edges_ev_per_cpu_s']:,.0f} events/CPU-s"
    )
    if ood:
        res["ood_overhead"] = c_ood.cpu / max(c.cpu, 1e-9) - 1.0
        print_fn(f"ood=True costs {res['ood_overhead']:+.1%} CPU time per event over (c)")

    res["peak_rss_mib"] = None
    if memory:
        res["memory"] = measure_memory(file, model, (max(chunk_size // 4, 1), chunk_size), workdir)
        for m in res["memory"]:
            peaks = m["chunk_peak_rss_mib"]
            print_fn(
                f"peak RSS scoring {m['events']} events in chunks of {m['chunk_size']}: {m['peak_rss_mib']:.0f} MiB "
                f"(after model load {m['baseline_rss_mib']:.0f}; per-chunk peaks {min(peaks, default=0):.0f}-"
                f"{max(peaks, default=0):.0f} MiB over {m['chunks']} chunks)"
            )
        res["peak_rss_mib"] = res["memory"][-1]["peak_rss_mib"]
    res["goals"] = {k: {"value": res[k], "goal": g, "met": bool(res[k] >= g)} for k, g in GOALS.items()}
    print_fn(
        "goals: "
        + "; ".join(
            f"{k} {v['value']:,.2f} (>= {v['goal']:,}) {'met' if v['met'] else 'MISSED'}"
            for k, v in res["goals"].items()
        )
    )
    return res
