"""``coffea-hepfm bench score``: throughput of reading, graph building and scoring, and peak memory.

One run, one file, one set of weights, one thread (``torch.set_num_threads(1)``, uproot decompresses in
the calling thread), so events/s are per core:

- (a) read the branches the graph spec needs (uproot, ``how="zip"``);
- (b) (a) + graph build (node features and globals; edges are reported separately);
- (c) (a) + ``HEPFMScore`` (graph build, edges, network);
- (d) (a) + coffea's ``torch_wrapper`` on padded dense input (:mod:`coffea_hepfm.score.dense`), the same
  weights computing the same probabilities.

Rates are given per wall-clock second and per CPU second of this process (the second is what matters on a
shared machine). Peak memory is measured in fresh processes scoring the whole file with
:func:`coffea_hepfm.score.files.score_files` at two chunk sizes.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["make_bench_file", "read_chunk", "run_benchmark"]

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


def memory_run(file: str, model: str, chunk_size: int, out: str) -> dict:
    """Score ``file`` chunk by chunk in this process; peak RSS (MiB) and the RSS after loading the model."""
    import psutil
    import torch

    from coffea_hepfm.score.files import score_files
    from coffea_hepfm.score.wrapper import HEPFMScore

    torch.set_num_threads(1)
    HEPFMScore(model, device="cpu").runner_  # noqa: B018 - load torch + model before the baseline
    baseline = psutil.Process().memory_info().rss / 2**20
    t0 = time.perf_counter()
    n = score_files([file], model, out, chunk_size=chunk_size, device="cpu")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    return {
        "chunk_size": chunk_size,
        "events": n,
        "peak_rss_mib": peak,
        "baseline_rss_mib": baseline,
        "seconds": time.perf_counter() - t0,
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
    print_fn=print,
    ood: bool = False,
) -> dict:
    """Run the benchmark and print a table; returns the numbers as a dict.

    ``ood=True`` also times (c) with ``HEPFMScore(..., ood=True)`` (the model needs a reference) and
    reports the overhead of the per-event out-of-distribution score as ``ood_overhead``.
    """
    import torch
    import uproot

    from coffea_hepfm.graph import GraphBatch, build_flat
    from coffea_hepfm.model.io import read_metadata
    from coffea_hepfm.score.dense import PaddedGraphTorchWrapper, save_dense_torchscript
    from coffea_hepfm.score.wrapper import HEPFMScore, resolve_model

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")  # missing-collection warnings of the sources, once per chunk
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    model = model or _default_model(workdir)
    from coffea_hepfm.graph import GraphSpec

    spec = GraphSpec.from_dict(read_metadata(resolve_model(model))["graph_spec"])
    sources = [Path(s) for s in (sources or _default_sources())]
    file = make_bench_file(sources, n_events, workdir / f"bench_{n_events}.root", spec)
    tree = uproot.open(file)["Events"]
    branches = [b for b in tree.keys() if not b.startswith("n")]
    print_fn(
        f"file {file} ({n_events} events, {len(branches)} branches), chunks of {chunk_size}, model {model}"
    )

    read_chunk(tree, branches, 0, min(chunk_size, n_events))  # warm the page cache
    scorer = HEPFMScore(model, device="cpu")
    scorer(read_chunk(tree, branches, 0, 100))  # load the model outside the timers
    edges = _Clock()

    def graph(events):
        flat = build_flat(events, spec)
        with edges:
            GraphBatch.from_flat(flat.x, flat.node_counts, flat.u)

    results = {}
    a, _ = _measure(tree, branches, n_events, chunk_size, lambda ev: None)
    read_b, b = _measure(tree, branches, n_events, chunk_size, graph)
    b.wall -= edges.wall
    b.cpu -= edges.cpu
    _, c = _measure(tree, branches, n_events, chunk_size, scorer)
    if ood:
        ood_scorer = HEPFMScore(model, device="cpu", ood=True)
        ood_scorer(read_chunk(tree, branches, 0, 100))
        _, c_ood = _measure(tree, branches, n_events, chunk_size, ood_scorer)

    jit, spec_dict = save_dense_torchscript(model, workdir / "dense_padded.pt")
    wrapper = PaddedGraphTorchWrapper(jit, spec_dict)
    n_dense = min(dense_events, n_events)

    def dense(events):
        for s in range(0, len(events), dense_batch):
            wrapper(events[s : s + dense_batch])

    _, d = _measure(tree, branches, n_dense, min(chunk_size, n_dense), dense)

    def rate(clock, n):
        return {
            "events_per_s": n / clock.wall,
            "events_per_cpu_s": n / max(clock.cpu, 1e-9),
            "wall_s": clock.wall,
            "cpu_s": clock.cpu,
        }

    results["a_read"] = rate(a, n_events)
    results["b_read_graph"] = rate(b, n_events)
    results["c_read_graph_score"] = rate(c, n_events)
    results["d_torch_wrapper_padded"] = rate(d, n_dense)
    if ood:
        results["c_ood_read_graph_score_ood"] = rate(c_ood, n_events)
        results["ood_overhead"] = c_ood.cpu / max(c.cpu, 1e-9) - 1.0
    graph_cpu = max(b.cpu - read_b.cpu, 1e-9)
    results["graph_build"] = {
        "events_per_cpu_s": n_events / graph_cpu,
        "fraction_of_read": graph_cpu / read_b.cpu,
    }
    results["edges"] = {"events_per_cpu_s": n_events / max(edges.cpu, 1e-9)}
    results["c_over_d"] = (
        results["c_read_graph_score"]["events_per_cpu_s"]
        / results["d_torch_wrapper_padded"]["events_per_cpu_s"]
    )

    print_fn(f"{'':34s}{'events/s/core (wall)':>22s}{'events/CPU-s':>15s}")
    labels = {
        "a_read": "(a) read needed columns",
        "b_read_graph": "(b) read + graph build",
        "c_read_graph_score": "(c) read + graph + HEPFMScore",
        "d_torch_wrapper_padded": "(d) read + torch_wrapper (padded)",
    }
    if ood:
        labels["c_ood_read_graph_score_ood"] = "(c) with ood=True"
    for key, label in labels.items():
        r = results[key]
        print_fn(f"{label:34s}{r['events_per_s']:>22,.0f}{r['events_per_cpu_s']:>15,.0f}")
    g = results["graph_build"]
    print_fn(
        f"graph build alone: {g['events_per_cpu_s']:,.0f} events/CPU-s, {g['fraction_of_read']:.2f} x read time "
        f"(goals: >= 1M/s, <= 0.2x); edges (built inside HEPFMScore): "
        f"{results['edges']['events_per_cpu_s']:,.0f} events/CPU-s"
    )
    print_fn(f"(c) / (d) = {results['c_over_d']:.1f}x (goal >= 3x); (c) goal >= 10k events/s/core on CPU")
    if ood:
        print_fn(f"ood=True costs {results['ood_overhead']:+.1%} CPU time per event over (c)")

    if memory:
        results["memory"] = []
        for cs in (max(chunk_size // 4, 1), chunk_size):
            cmd = [
                sys.executable,
                "-m",
                "coffea_hepfm.score.bench",
                "memory",
                str(file),
                model,
                str(cs),
                str(workdir / f"mem_{cs}.parquet"),
            ]
            res = subprocess.run(cmd, capture_output=True, text=True, check=True)
            m = json.loads(res.stdout.strip().splitlines()[-1])
            results["memory"].append(m)
            print_fn(
                f"peak RSS scoring {m['events']} events in chunks of {cs}: {m['peak_rss_mib']:.0f} MiB "
                f"(after model load {m['baseline_rss_mib']:.0f} MiB; +{m['peak_rss_mib'] - m['baseline_rss_mib']:.0f})"
            )
    print_fn(json.dumps(results))
    return results


if __name__ == "__main__":  # hidden entry point of the memory measurement (fresh process per chunk size)
    if len(sys.argv) == 6 and sys.argv[1] == "memory":
        warnings.simplefilter("ignore")
        print(json.dumps(memory_run(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])))
    else:
        raise SystemExit("usage: python -m coffea_hepfm.score.bench memory FILE MODEL CHUNK_SIZE OUT.parquet")
