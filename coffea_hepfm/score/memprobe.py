"""Peak memory of ``coffea-hepfm score`` on one file: ``coffea-hepfm bench score --memory``.

Each chunk size runs in a fresh process (``python -m coffea_hepfm.score.memprobe FILE MODEL CHUNK OUT``)
that loads the model, records its RSS (the *baseline*: Python, torch, coffea, numba, the model), then
scores the whole file with :func:`coffea_hepfm.score.files.score_files` and records the peak RSS of
every chunk.

The peak is the process's own high-water mark, ``VmHWM`` in ``/proc/self/status``, reset before each
chunk through ``/proc/self/clear_refs`` (Linux >= 4.0), so the per-chunk peaks show whether memory is
bounded by the chunk size (flat over the file) or grows with the file. ``resource.getrusage`` is *not*
used: on Linux a child's ``ru_maxrss`` starts at its parent's peak (inherited through fork and exec), so
a probe started by a large benchmark process reports the benchmark's memory, not its own. That is how
an earlier ``bench score`` printed 1161 MiB for every chunk size while the scoring process itself
peaked near 630 MiB.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["measure_memory", "memory_run", "peak_rss_mib", "reset_peak_rss"]

_STATUS = Path("/proc/self/status")


def _status_kib(key: str) -> float | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(key + ":"):
                return float(line.split()[1])
    except OSError:
        return None
    return None


def rss_mib() -> float:
    """Current resident set size of this process (MiB)."""
    kib = _status_kib("VmRSS")
    if kib is None:  # not Linux
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    return kib / 1024


def peak_rss_mib() -> float | None:
    """This process's own peak RSS since start or the last :func:`reset_peak_rss` (MiB); ``None`` if
    the OS does not report it (``/proc/self/status`` ``VmHWM`` is Linux only)."""
    kib = _status_kib("VmHWM")
    return None if kib is None else kib / 1024


def reset_peak_rss() -> bool:
    """Reset the peak-RSS mark to the current RSS (Linux ``clear_refs`` = 5); ``False`` if unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def memory_run(file: str, model: str, chunk_size: int, out: str) -> dict:
    """Score ``file`` chunk by chunk in *this* process; baseline RSS and the peak RSS of every chunk."""
    import torch
    import uproot

    from coffea_hepfm.score.files import Chunk, score_chunk, score_files

    torch.set_num_threads(1)
    with uproot.open(file) as f:
        first = min(1000, f["Events"].num_entries)
    # Load the model and the kernels, and let coffea / pyarrow do their first-use set-up, on the same
    # (cached) scorer that score_files uses: the baseline is everything but the chunk's data.
    score_chunk(Chunk(os.fspath(file), 0, first), model, "cpu")
    baseline = rss_mib()
    resettable = reset_peak_rss()
    chunk_peaks: list[float] = []

    def after_chunk(_n: int) -> None:
        chunk_peaks.append(peak_rss_mib() or rss_mib())
        reset_peak_rss()

    t0 = time.perf_counter()
    n = score_files([file], model, out, chunk_size=chunk_size, device="cpu", progress=after_chunk)
    return {
        "chunk_size": chunk_size,
        "events": n,
        "chunks": len(chunk_peaks),
        "baseline_rss_mib": baseline,
        "peak_rss_mib": max(chunk_peaks, default=baseline) if resettable else peak_rss_mib(),
        "chunk_peak_rss_mib": chunk_peaks,
        "per_chunk_peaks": resettable,
        "seconds": time.perf_counter() - t0,
    }


def measure_memory(
    file: str | os.PathLike, model: str, chunk_sizes, workdir: str | os.PathLike
) -> list[dict]:
    """Run :func:`memory_run` in a fresh process per chunk size; returns their results."""
    results = []
    for cs in chunk_sizes:
        out = Path(workdir) / f"mem_{cs}.parquet"
        cmd = [sys.executable, "-m", "coffea_hepfm.score.memprobe", os.fspath(file), model, str(cs), str(out)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"memory probe failed ({' '.join(cmd)}):\n{res.stderr[-2000:]}")
        results.append(json.loads(res.stdout.strip().splitlines()[-1]))
        out.unlink(missing_ok=True)
    return results


if __name__ == "__main__":
    if len(sys.argv) != 5:
        raise SystemExit("usage: python -m coffea_hepfm.score.memprobe FILE MODEL CHUNK_SIZE OUT.parquet")
    print(json.dumps(memory_run(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4])))
