"""Chunked, resumable simulation: in-process or on a Dask cluster.

Each (process, chunk index) is one task that writes ``out_dir/<process>/<process>_<chunk:05d>.root``.
The chunk's Pythia seed and detector random stream derive from (seed, process, chunk) only, so the output
does not depend on how many workers ran it, and a rerun skips chunk files that already exist (stale
temporary files of a killed run are removed first).

Examples
--------
>>> simulate(["nope"], 10, 1, "/tmp/x")                   # doctest: +IGNORE_EXCEPTION_DETAIL
Traceback (most recent call last):
KeyError: "unknown process 'nope'; known processes: ggf_h, ..."
>>> simulate(["ttbar"], 0, 1, "/tmp/x")                   # doctest: +IGNORE_EXCEPTION_DETAIL
Traceback (most recent call last):
ValueError: n_events must be a positive integer, got 0
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from coffea_hepfm.simulation.generator import check_settings, chunk_seed
from coffea_hepfm.simulation.processes import MPI_DEFAULT, get_process
from coffea_hepfm.simulation.writer import TMP_PREFIX


@dataclass(frozen=True)
class ChunkTask:
    process: str
    chunk: int
    n_events: int
    first_event: int
    seed: int
    path: str
    mpi: bool = MPI_DEFAULT
    pythia: tuple[str, ...] = ()  # extra Pythia settings (``simulate --pythia``), applied last


def chunk_path(out_dir: str | os.PathLike, process: str, chunk: int) -> Path:
    return Path(out_dir) / process / f"{process}_{chunk:05d}.root"


# CMS simulation has run 1 (its eras come from the production campaign, not the run); a per-process
# number could fall in a data era's run range and make a copy without genWeight read as collision data.
SIM_RUN = 1


def run_chunk(task: ChunkTask, batch_size: int = 500, progress: Callable[[int], None] | None = None) -> dict:
    """Generate, reconstruct and write one chunk; safe to call in a Dask worker.

    Returns the chunk's metadata (as stored in the file, plus ``seconds``: wall time including Pythia
    initialisation ``init_seconds`` and writing; ``cpu_seconds`` and ``init_cpu_seconds`` likewise in
    CPU time of this process). ttH processes (``cp_alpha_deg`` set) also store ``LHEReweightingWeight``
    and their generation bookkeeping (``lhe_reweighting``, ``generation``; see
    :mod:`coffea_hepfm.simulation.reweight`); their ``sigma_gen_pb`` is ``sigma_SM * <w(alpha)>``.
    """
    from coffea_hepfm.simulation.detector import reconstruct
    from coffea_hepfm.simulation.writer import concatenate_batches, write_nanoaod

    t0, c0 = time.perf_counter(), time.process_time()
    rng = np.random.default_rng([task.seed, 2])  # detector stream, independent of Pythia's
    proc = get_process(task.process)
    batches, extra = [], {}
    if proc.cp_alpha_deg is None:
        from coffea_hepfm.simulation.generator import generate_batches, make_pythia, sigma_gen_pb

        pythia = make_pythia(task.process, task.seed, mpi=task.mpi, extra=task.pythia)
        t_init, c_init = time.perf_counter() - t0, time.process_time() - c0
        for prt in generate_batches(pythia, task.n_events, batch_size):
            batches.append(reconstruct(prt, rng))
            if progress is not None:
                progress(len(prt))
        gen_weight = np.ones(task.n_events)
        extra["sigma_gen_pb"] = sigma_gen_pb(pythia)
    else:  # ttH: SM hard process reweighted to the process's CP-mixing angle (see simulation.reweight)
        from coffea_hepfm.simulation.reweight import reweighted_batches

        lhe_w, gen_w = [], []
        for prt, w, gw in reweighted_batches(
            task.process, task.seed, task.n_events, task.mpi, batch_size, meta=extra
        ):
            batches.append(reconstruct(prt, rng))
            lhe_w.append(w)
            gen_w.append(gw)
            if progress is not None:
                progress(len(prt))
        t_init, c_init = 0.0, 0.0  # both Pythia initialisations are inside the generation time
        gen_weight = np.concatenate(gen_w)
    data = concatenate_batches(batches)
    if proc.cp_alpha_deg is not None:
        data["arrays"] = {"LHEReweightingWeight": np.concatenate(lhe_w)}
    n = task.n_events
    data["scalars"] = {
        "run": np.full(n, SIM_RUN),
        "luminosityBlock": np.full(n, task.chunk + 1),
        "event": np.arange(task.first_event + 1, task.first_event + n + 1),
        "genWeight": gen_weight,
        **data["scalars"],
    }
    meta = {
        "format": "coffea-hepfm-sim",
        "process": task.process,
        "chunk": task.chunk,
        "n_events": n,
        "pythia_seed": task.seed,
        "mpi": task.mpi,
        "settings": list(proc.settings),
        "pythia_extra": list(task.pythia),
        "init_seconds": t_init,
        **extra,
    }
    write_nanoaod(task.path, data, meta)
    meta["seconds"] = time.perf_counter() - t0
    meta["cpu_seconds"] = time.process_time() - c0
    meta["init_cpu_seconds"] = c_init
    return meta


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"output path {out_dir} exists and is not a directory")
    probe = out_dir
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise PermissionError(f"output directory {out_dir} is not writable (checked {probe})")


def plan(
    processes: Sequence[str],
    n_events: int,
    seed: int,
    out_dir: str | os.PathLike,
    chunk_size: int,
    mpi: bool,
    pythia: Sequence[str] = (),
) -> list[ChunkTask]:
    """All chunk tasks of a request, validated; raises before any work on bad input."""
    if isinstance(processes, str):
        processes = [processes]
    if not processes:
        raise ValueError("no process given")
    pythia = tuple(pythia)
    for p in processes:
        if get_process(p).cp_alpha_deg is not None and pythia:
            # their hard process comes from our own LHE step (simulation.reweight), which these lines
            # would not reach: refuse rather than write files whose settings differ from their metadata
            raise ValueError(
                f"--pythia settings are not supported for {p!r}: ttH samples are generated through the "
                "CP reweighting step (simulation.reweight); simulate them without --pythia"
            )
    check_settings(pythia)
    if isinstance(n_events, bool) or int(n_events) != n_events or n_events <= 0:
        raise ValueError(f"n_events must be a positive integer, got {n_events}")
    if int(chunk_size) != chunk_size or chunk_size <= 0:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}")
    out_dir = Path(out_dir)
    _check_out_dir(out_dir)
    tasks = []
    for p in dict.fromkeys(processes):
        for c, first in enumerate(range(0, n_events, chunk_size)):
            tasks.append(
                ChunkTask(
                    p,
                    c,
                    min(chunk_size, n_events - first),
                    first,
                    chunk_seed(seed, p, c),
                    str(chunk_path(out_dir, p, c)),
                    mpi,
                    pythia,
                )
            )
    return tasks


def _clean_stale(out_dir: Path, processes: Sequence[str]) -> None:
    for p in processes:
        for stale in (out_dir / p).glob(f"{TMP_PREFIX}*.root"):
            stale.unlink(missing_ok=True)


def check_existing(tasks: Sequence[ChunkTask]) -> None:
    """Refuse chunk files left by another request (seed, size, MPI or ``--pythia`` lines) that a rerun would
    silently reuse; called by :func:`simulate`, so the Python API is guarded as the CLI is."""
    import uproot

    for t in tasks:
        if not Path(t.path).exists():
            continue
        with uproot.open(t.path) as f:
            meta = json.loads(str(f["hepfm_meta"])) if "hepfm_meta" in f else {}
        got = (
            meta.get("pythia_seed"),
            meta.get("n_events"),
            meta.get("mpi", False),
            meta.get("pythia_extra", []),
        )
        if got != (t.seed, t.n_events, t.mpi, list(t.pythia)):
            raise ValueError(
                f"{t.path} was simulated with another --seed, --events/--chunk-size, --mpi or --pythia (chunk "
                f"seed {got[0]}, {got[1]} events, mpi={got[2]}, pythia={got[3]}; this request: chunk seed "
                f"{t.seed}, {t.n_events} events, mpi={t.mpi}, pythia={list(t.pythia)}); choose another --out or "
                "delete that folder"
            )


def simulate(
    processes: Sequence[str],
    n_events: int,
    seed: int,
    out_dir: str | os.PathLike,
    workers: int = 0,
    chunk_size: int = 1000,
    client=None,
    progress: bool = True,
    mpi: bool = MPI_DEFAULT,
    pythia: Sequence[str] = (),
) -> dict[str, list[Path]]:
    """Simulate ``n_events`` per process into NanoAOD chunk files.

    Parameters
    ----------
    processes
        Names from :mod:`coffea_hepfm.simulation.processes` (``coffea-hepfm processes``).
    n_events
        Events per process (> 0). The last chunk may be shorter than ``chunk_size``.
    seed
        Master seed; chunk seeds derive from (seed, process, chunk index).
    out_dir
        Output folder, created if needed; must not be a file.
    workers
        0: run in this process. K > 0: start a ``dask.distributed.LocalCluster`` with K single-threaded
        worker processes. Ignored when ``client`` is given.
    client
        An existing ``distributed.Client`` or a scheduler address string.
    progress
        Show a rich progress bar.
    mpi
        Pythia multiparton interactions (default ``MPI_DEFAULT``, on; ``False`` is ~4x faster).
    pythia
        Extra Pythia ``readString`` lines (``"Key = value"``), applied after the defaults and stored in
        each file's metadata (``pythia_extra``); e.g. ``["Beams:eCM = 13600."]``. Not for ttH processes.

    Returns
    -------
    ``{process: [chunk files]}`` in chunk order, including chunks that already existed.
    """
    tasks = plan(processes, n_events, seed, out_dir, chunk_size, mpi, pythia)
    if int(workers) != workers or workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    check_existing(tasks)
    out_dir = Path(out_dir)
    names = list(dict.fromkeys([t.process for t in tasks]))
    for p in names:
        (out_dir / p).mkdir(parents=True, exist_ok=True)
    _clean_stale(out_dir, names)
    todo = [t for t in tasks if not Path(t.path).exists()]

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(
        TextColumn("[bold]simulate"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("events"),
        TimeRemainingColumn(),
        disable=not progress,
    )
    with bar:
        tid = bar.add_task("simulate", total=sum(t.n_events for t in todo))
        if todo and client is None and workers == 0:
            for t in todo:
                run_chunk(t, progress=lambda k: bar.advance(tid, k))
        elif todo:
            _run_distributed(todo, workers, client, lambda t: bar.advance(tid, t.n_events))
    result: dict[str, list[Path]] = {p: [] for p in names}
    for t in tasks:
        result[t.process].append(Path(t.path))
    return result


def _run_distributed(todo: list[ChunkTask], workers: int, client, done: Callable[[ChunkTask], None]) -> None:
    from distributed import Client, LocalCluster, as_completed

    cluster = own_client = None
    if client is None:
        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0"
        )
        client = own_client = Client(cluster)
    elif isinstance(client, str):
        client = own_client = Client(client)
    try:
        futures = {
            client.submit(run_chunk, t, key=f"hepfm-sim-{t.process}-{t.chunk}-{t.seed}"): t for t in todo
        }
        for fut in as_completed(futures):
            fut.result()  # re-raise worker errors here
            done(futures[fut])
    finally:
        if own_client is not None:
            own_client.close()
        if cluster is not None:
            cluster.close()
