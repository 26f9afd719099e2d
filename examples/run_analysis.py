"""Run :class:`ScoreHistProcessor` three ways and check that the histograms are identical.

1. ``eager``: ``coffea.processor.Runner`` with ``IterativeExecutor`` (virtual NanoEvents, chunk by chunk);
2. ``dask``: ``coffea.dataset_tools.preprocess`` + ``apply_to_fileset``, computed with Dask's local
   threaded scheduler;
3. ``distributed``: the same task graph on a ``dask.distributed.LocalCluster`` with 2 worker processes
   (each worker loads the model itself; only the model path travels).

All three use the same chunking (``chunk_size`` events per chunk), so each event is scored in the same
mini-batch everywhere and the histograms agree bin by bin.

Usage (each file is one dataset named by its stem; the chunk files of a simulated sample,
``sim/<process>/<process>_NNNNN.root``, form one dataset named ``<process>``)::

    python examples/run_analysis.py --model tth_vs_ttbar --plot score.png FILE.root [FILE.root ...]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from analysis_processor import ScoreHistProcessor, plot_histograms  # noqa: E402

MODES = ("eager", "dask", "distributed")


def make_fileset(datasets: Mapping[str, Sequence[str | os.PathLike]]) -> dict:
    """``{dataset: [paths]}`` -> coffea fileset ``{dataset: {"files": {path: "Events"}}}``."""
    return {name: {"files": {os.fspath(p): "Events" for p in paths}} for name, paths in datasets.items()}


def run_eager(fileset: dict, model: str, chunk_size: int) -> dict:
    from coffea import processor
    from coffea.nanoevents import NanoAODSchema

    runner = processor.Runner(
        executor=processor.IterativeExecutor(), schema=NanoAODSchema, chunksize=chunk_size, savemetrics=False
    )
    eager_fileset = {name: {"files": list(d["files"]), "treename": "Events"} for name, d in fileset.items()}
    return runner(eager_fileset, ScoreHistProcessor(model), treename="Events")


def _run_dask(fileset: dict, model: str, chunk_size: int, scheduler) -> dict:
    import dask
    from coffea.dataset_tools import apply_to_fileset, preprocess

    available, _ = preprocess(fileset, step_size=chunk_size, align_clusters=False, scheduler=scheduler)
    graph = apply_to_fileset(ScoreHistProcessor(model), available)
    (out,) = dask.compute(graph, scheduler=scheduler)
    return {name: result[name] for name, result in out.items()}


def run_dask(fileset: dict, model: str, chunk_size: int) -> dict:
    return _run_dask(fileset, model, chunk_size, scheduler="threads")


def run_distributed(fileset: dict, model: str, chunk_size: int, n_workers: int = 2) -> dict:
    from dask.distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=n_workers, processes=True, threads_per_worker=1, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        return _run_dask(fileset, model, chunk_size, scheduler=client.get)


def run(
    mode: str, datasets: Mapping[str, Sequence[str | os.PathLike]], model: str, chunk_size: int = 100
) -> dict:
    """Run the processor in ``mode`` (one of :data:`MODES`); returns ``{dataset: {"score": Hist, ...}}``."""
    from coffea_hepfm.nanoaod.reader import CROSS_REFERENCE_WARNING

    fileset = make_fileset(datasets)
    with warnings.catch_warnings():
        # coffea opens these files itself: hide its notes on absent optional cross-references, only those
        warnings.filterwarnings("ignore", message=CROSS_REFERENCE_WARNING, category=RuntimeWarning)
        if mode == "eager":
            return run_eager(fileset, model, chunk_size)
        if mode == "dask":
            return run_dask(fileset, model, chunk_size)
        if mode == "distributed":
            return run_distributed(fileset, model, chunk_size)
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


def group_datasets(files: Sequence[str | os.PathLike]) -> dict[str, list[str]]:
    """Dataset name of each file: its stem, except chunks of one simulated sample, which form one dataset.

    ``coffea-hepfm simulate`` writes ``<process>/<process>_NNNNN.root``; those files are grouped under
    ``<process>``.

    >>> group_datasets(["sim/tth/tth_00000.root", "sim/tth/tth_00001.root", "cms/nano_dy.root"])
    {'tth': ['sim/tth/tth_00000.root', 'sim/tth/tth_00001.root'], 'nano_dy': ['cms/nano_dy.root']}
    """
    out: dict[str, list[str]] = {}
    for f in files:
        path = Path(f)
        chunk = re.fullmatch(r"(.+)_\d{5}", path.stem)
        name = path.parent.name if chunk and chunk.group(1) == path.parent.name else path.stem
        out.setdefault(name, []).append(os.fspath(f))
    return out


def histograms_equal(a: dict, b: dict) -> bool:
    """Same datasets, same binning, same sums of weights and of squared weights in every bin."""
    import numpy as np

    if set(a) != set(b):
        return False
    for name in a:
        ha, hb = a[name]["score"], b[name]["score"]
        if ha.axes != hb.axes:
            return False
        va, vb = ha.view(flow=True), hb.view(flow=True)
        if not (np.array_equal(va["value"], vb["value"]) and np.array_equal(va["variance"], vb["variance"])):
            return False
    return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", help="NanoAOD files; each file stem is its dataset name")
    parser.add_argument("--model", default="tth_vs_ttbar", help="shipped model name or model file")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, from {MODES}")
    parser.add_argument("--chunk-size", type=int, default=100)
    parser.add_argument("--plot", default=None, help="write the score histograms to this PNG")
    parser.add_argument("--signal", default=None, help="dataset drawn in the signal colour")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: free cores)")
    args = parser.parse_args(argv)
    modes = args.modes.split(",")
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        parser.error(f"unknown mode(s) {unknown}; choose from {MODES}")

    from coffea_hepfm.threads import set_torch_threads

    set_torch_threads(args.threads)
    datasets = group_datasets(args.files)
    results = {}
    for mode in modes:
        results[mode] = run(mode, datasets, args.model, args.chunk_size)
        counts = {name: int(out["score"].sum().value) for name, out in results[mode].items()}
        print(f"{mode:12s} selected events per dataset: {counts}")
    first = next(iter(results.values()))
    same = True
    if len(results) > 1:
        same = all(histograms_equal(first, other) for other in results.values())
        print(f"histograms identical in modes {', '.join(results)}: {same}")
    else:
        print(f"one mode ({modes[0]}): nothing to compare (--modes {','.join(MODES)} compares them)")
    if args.plot:
        plot_histograms(first, args.plot, signal=args.signal)
        print("plot written to", args.plot)
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
