"""Throughput of the simulation chain against raw Pythia, measured in one run.

* raw Pythia: ``pythia.next()`` in a loop, same process and settings, no output (init excluded);
* full chain, one core: generation through ``nextBatch`` + detector + NanoAOD writing, per chunk, with
  Pythia's init time subtracted so both rates are per generated event. Both are CPU time of this
  process (events/s/core), so other jobs sharing the machine do not bias the ratio;
* Dask: the same chunks on a ``LocalCluster`` with 2 single-threaded worker processes versus in-process,
  both wall-clock including per-chunk init, cluster start-up excluded.

Examples
--------
>>> r = bench_simulation(n_events=400, workers=2)    # doctest: +SKIP
>>> sorted(r)                                        # doctest: +SKIP
['chain_eps', 'chain_over_raw', 'dask_eps', 'raw_eps', 'serial_eps', 'speedup', ...]
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from coffea_hepfm.simulation.generator import chunk_seed, make_pythia
from coffea_hepfm.simulation.processes import MPI_DEFAULT
from coffea_hepfm.simulation.runner import plan, run_chunk, simulate


def raw_pythia_rate(process: str, n_events: int, seed: int = 1, mpi: bool = MPI_DEFAULT) -> float:
    """Events per second of ``pythia.next()`` alone (after init)."""
    pythia = make_pythia(process, chunk_seed(seed, process, 10_000), mpi=mpi)
    t0 = time.process_time()
    done = 0
    while done < n_events:
        done += bool(pythia.next())
    return n_events / (time.process_time() - t0)


def _warm_imports() -> None:
    """Import the heavy modules in a worker so the timing does not include them."""
    import fastjet  # noqa: F401
    import pythia8mc  # noqa: F401
    import uproot  # noqa: F401

    import coffea_hepfm.simulation.detector  # noqa: F401


def bench_simulation(
    process: str = "ttbar", n_events: int = 2000, workers: int = 2, n_chunks: int = 4, mpi: bool = MPI_DEFAULT
) -> dict[str, float]:
    """Run the three measurements; returns rates in events/s and their ratios."""
    from distributed import Client, LocalCluster

    out: dict[str, float] = {"n_events": n_events, "workers": workers}
    out["raw_eps"] = raw_pythia_rate(process, n_events, mpi=mpi)
    with tempfile.TemporaryDirectory(prefix="hepfm-bench-") as tmp:
        (Path(tmp) / "one" / process).mkdir(parents=True)
        task = plan([process], n_events, 2, Path(tmp) / "one", n_events, mpi)[0]
        # One-time imports (scipy.special for the taggers alone is ~0.7 CPU-s) are not per-event cost,
        # as Pythia's init is not: the Dask measurement below warms its workers the same way.
        _warm_imports()
        meta = run_chunk(task)
        out["chain_eps"] = n_events / (meta["cpu_seconds"] - meta["init_cpu_seconds"])
        out["chain_over_raw"] = out["chain_eps"] / out["raw_eps"]

        chunk = max(n_events // n_chunks, 1)
        t0 = time.perf_counter()
        simulate(
            [process], n_events, 3, Path(tmp) / "serial", workers=0, chunk_size=chunk, progress=False, mpi=mpi
        )
        out["serial_eps"] = n_events / (time.perf_counter() - t0)
        with (
            LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0"
            ) as cluster,
            Client(cluster) as client,
        ):
            client.run(_warm_imports)
            t0 = time.perf_counter()
            simulate(
                [process],
                n_events,
                3,
                Path(tmp) / "dask",
                chunk_size=chunk,
                client=client,
                progress=False,
                mpi=mpi,
            )
            out["dask_eps"] = n_events / (time.perf_counter() - t0)
    out["speedup"] = out["dask_eps"] / out["serial_eps"]
    return out
