"""How many CPU threads torch may use: one rule for every place this package runs torch.

torch's default (one intra-op thread per physical core of the *machine*) is wrong in the places a
coffea analysis runs: a batch slot or container gets a few cores of a large node (CPU affinity, a cgroup
CPU quota), and a shared login or development machine has cores that are already busy. OpenMP threads
that compete for a busy core spin against each other: scoring on 2 busy cores with 2 threads was measured
10-40x slower than with 1.

The rule (:func:`default_threads`), used by the training commands, ``coffea-hepfm demo``, the examples
and :class:`~coffea_hepfm.HEPFMScore`'s local backend:

1. an explicit request wins (``--threads N``, ``set_torch_threads(N)``);
2. else, if ``OMP_NUM_THREADS`` is set, torch already follows it and nothing is changed;
3. else ``min(torch's default, usable cores, free cores)``, at least 1, where *usable* is the CPU count
   after CPU affinity and the cgroup CPU quota (:func:`dask.system.cpu_count`, the count Dask itself
   uses for its workers) and *free* is the machine's CPU count minus its 1-minute load average, rounded.

On a Dask worker, :class:`~coffea_hepfm.HEPFMScore` then uses the worker's own thread count instead.
The default is applied once per process, so a later ``torch.set_num_threads`` by the user stands.

Examples
--------
>>> n = default_threads()
>>> 1 <= n <= usable_cpus()
True
"""

from __future__ import annotations

import os

__all__ = ["default_threads", "free_cpus", "set_torch_threads", "usable_cpus"]

_applied = False  # the default is applied once per process (see set_torch_threads)


def usable_cpus() -> int:
    """CPUs this process may run on: ``os.cpu_count()`` reduced by CPU affinity and the cgroup quota."""
    from dask.system import cpu_count

    return max(1, int(cpu_count()))


def free_cpus() -> int:
    """The machine's CPUs not already busy: ``os.cpu_count() - load average (1 min)``, rounded, >= 1.

    Where the load average cannot be read (not on Linux/macOS), every CPU counts as free.
    """
    total = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return total
    return max(1, min(total, round(total - load)))


def default_threads(current: int | None = None) -> int:
    """The thread count of rule 3 in the module docstring (``current``: torch's present count).

    >>> default_threads(current=1)
    1
    """
    if current is None:
        import torch

        current = torch.get_num_threads()
    return max(1, min(int(current), usable_cpus(), free_cpus()))


def set_torch_threads(threads: int | None = None) -> int:
    """Apply the rule: ``threads`` if given, else the default (once per process); returns torch's count.

    Parameters
    ----------
    threads
        An explicit thread count (>= 1), e.g. from ``--threads``; ``None`` applies :func:`default_threads`
        unless ``OMP_NUM_THREADS`` is set or the default was already applied in this process.

    Raises
    ------
    ValueError
        ``threads`` is not a positive integer.
    """
    global _applied
    import torch

    if threads is not None:
        if isinstance(threads, bool) or int(threads) != threads or threads < 1:
            raise ValueError(f"threads must be a positive integer, got {threads!r}")
        torch.set_num_threads(int(threads))
    elif not _applied and not os.environ.get("OMP_NUM_THREADS"):
        want = default_threads(torch.get_num_threads())
        if want != torch.get_num_threads():
            torch.set_num_threads(want)
    _applied = True
    return torch.get_num_threads()
