"""Open NanoAOD files as coffea NanoEvents (eager, virtual or dask-awkward).

Three storage formats, as coffea reads them: a ROOT ``TTree`` and a ROOT ``RNTuple`` named ``Events``
(:meth:`coffea.nanoevents.NanoEventsFactory.from_root`), and parquet in coffea's NanoAOD layout
(:meth:`~coffea.nanoevents.NanoEventsFactory.from_parquet`). The format is recognised from the file's
first bytes (``root`` / ``PAR1``), not its name.

coffea builds dask-awkward NanoEvents with column projection for TTrees only: its parquet reader has no
dask mode, and uproot's dask reader fails on RNTuples (``'RField' object has no attribute 'title'``
with uproot 5.7). For those two formats ``mode="dask"`` makes one partition per file step, each opened
as *virtual* NanoEvents when it runs, so a task still reads only the branches it touches.

coffea warns about every optional cross-reference branch that a file lacks (``Missing cross-reference
index for FatJet_genJetAK8Idx => GenJetAK8``); slimmed NanoAOD lacks dozens. Those warnings, and only
those (``RuntimeWarning`` with that message), are filtered while this module opens a file.
"""

from __future__ import annotations

import os
import re
import threading
import warnings
from collections.abc import Sequence
from contextlib import contextmanager
from typing import Literal

from coffea_hepfm.errors import HEPFMError

__all__ = ["NotNanoAODError", "count_events", "file_format", "open_events"]

Mode = Literal["eager", "virtual", "dask"]
Format = Literal["root", "parquet"]
MODES = ("eager", "virtual", "dask")

#: coffea's NanoAODSchema messages for absent optional cross-references (regex for warnings filters).
CROSS_REFERENCE_WARNING = r"Missing cross-reference (index|target) for "


class NotNanoAODError(HEPFMError, ValueError):
    """The file is not NanoAOD this package can read (not ROOT or parquet, or no ``Events`` tree)."""


# warnings.catch_warnings swaps process-wide state: two threads (dask's threaded scheduler opens
# partitions in parallel) interleaving enter/exit could leave the filter installed for good.
_FILTER_LOCK = threading.RLock()
# Leaving catch_warnings also resets Python's once-per-location memory, so coffea's other notes (e.g.
# "Branch Photon_mass already exists ...") would repeat for every file opened: they are passed on once
# per process here instead, as Python's default filter would.
_PASSED_ON: set[tuple[type, str]] = set()


@contextmanager
def quiet_cross_references():
    """Drop coffea's cross-reference warnings (category and message) raised inside the block.

    Every other warning keeps the caller's filters (an ``error`` filter raises inside the block) and is
    passed on once per process after the block.
    """
    with _FILTER_LOCK:
        with warnings.catch_warnings(record=True) as caught:
            warnings.filterwarnings("ignore", message=CROSS_REFERENCE_WARNING, category=RuntimeWarning)
            yield
        for w in caught:
            key = (w.category, str(w.message))
            if key not in _PASSED_ON:
                _PASSED_ON.add(key)
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)


def file_format(path: str | os.PathLike) -> Format:
    """``"root"`` or ``"parquet"`` from the file's magic bytes.

    Raises
    ------
    FileNotFoundError
        No such file.
    NotNanoAODError
        Neither a ROOT nor a parquet file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"NanoAOD file not found: {path}")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic == b"root":
        return "root"
    if magic == b"PAR1":
        return "parquet"
    raise NotNanoAODError(
        f"{path} is neither a ROOT file (TTree or RNTuple 'Events') nor a parquet NanoAOD file "
        f"(first bytes {magic!r})"
    )


def _parquet_rows(path: str) -> int:
    """Events in a parquet NanoAOD file; refuses parquet without NanoAOD collections (e.g. a score table)."""
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path)
    names = set(meta.schema_arrow.names)
    counters = [
        n for n in names if re.fullmatch(r"n[A-Z]\w*", n) and any(c.startswith(n[1:] + "_") for c in names)
    ]
    if not counters:
        raise NotNanoAODError(
            f"{path} is parquet but not NanoAOD in coffea's layout: no collection counters such as nJet or "
            f"nMuon with their Jet_* / Muon_* columns (columns: {', '.join(sorted(names)[:8])}...)"
        )
    return int(meta.metadata.num_rows)


def _root_events(path: str, treename: str):
    """The uproot ``TTree`` or ``RNTuple`` named ``treename`` (the caller closes the file)."""
    import uproot

    root = uproot.open(path)
    if treename not in root:
        keys = ", ".join(sorted({k.split(";")[0] for k in root.keys(recursive=False)})[:10])
        root.close()
        raise NotNanoAODError(f"{path} has no {treename!r} TTree or RNTuple (it has: {keys or 'nothing'})")
    return root, root[treename]


def count_events(path: str | os.PathLike, treename: str = "Events") -> int:
    """Number of events in a NanoAOD file of any supported format, read from its metadata only.

    >>> count_events("nano_dy.root"), count_events("nano_dimuon.parquet")  # doctest: +SKIP
    (40, 40)
    """
    path = os.fspath(path)
    if file_format(path) == "parquet":
        return _parquet_rows(path)
    root, events = _root_events(path, treename)
    with root:
        return int(events.num_entries)


def _is_rntuple(path: str, treename: str) -> bool:
    root, events = _root_events(path, treename)
    with root:
        return "RNTuple" in type(events).__name__


def _open_one(path: str, fmt: Format, mode: str, entry_start, entry_stop, treename: str):
    from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

    if fmt == "parquet":
        _parquet_rows(path)  # a clear error before coffea's own
    with quiet_cross_references():
        if fmt == "parquet":
            factory = NanoEventsFactory.from_parquet(
                path, schemaclass=NanoAODSchema, mode=mode, entry_start=entry_start, entry_stop=entry_stop
            )
        else:
            factory = NanoEventsFactory.from_root(
                {path: treename},
                schemaclass=NanoAODSchema,
                mode=mode,
                entry_start=entry_start,
                entry_stop=entry_stop,
            )
        return factory.events()


# The first partition, opened on the client to make the collection's meta, waits here for the task that
# reads it in this process (dask's local schedulers): uproot parses an RNTuple's 1,500-field header in
# seconds, so it is parsed once, not twice. Popped on use; other processes open their own.
_OPENED: dict[tuple, object] = {}


class _VirtualPartition:
    """``dask_awkward.from_map`` callable: ``(path, format, start, stop)`` -> virtual NanoEvents."""

    def __init__(self, treename: str):
        self.treename = treename

    def __call__(self, part: tuple[str, Format, int, int]):
        path, fmt, start, stop = part
        opened = _OPENED.pop((*part, self.treename), None)
        return opened if opened is not None else _open_one(path, fmt, "virtual", start, stop, self.treename)


def _steps(n: int, steps: int) -> list[tuple[int, int]]:
    """``steps`` contiguous entry ranges covering ``[0, n)`` (one empty range for an empty file)."""
    k = max(1, min(steps, n))
    edges = [round(i * n / k) for i in range(k + 1)]
    return list(zip(edges[:-1], edges[1:], strict=True))


def _dask_partitioned(paths: list[str], formats: list[Format], steps_per_file: int, treename: str):
    import awkward as ak
    import dask_awkward as dak

    parts = [
        (p, fmt, start, stop)
        for p, fmt in zip(paths, formats, strict=True)
        for start, stop in _steps(count_events(p, treename), steps_per_file)
    ]
    first = _open_one(*parts[0][:2], "virtual", *parts[0][2:], treename)
    while len(_OPENED) >= 4:  # collections built but never computed: forget the oldest
        _OPENED.pop(next(iter(_OPENED)))
    _OPENED[(*parts[0], treename)] = first
    meta = ak.Array(first.layout.to_typetracer(forget_length=True), behavior=first.behavior)
    divisions = [0]
    for _, _, start, stop in parts:
        divisions.append(divisions[-1] + stop - start)
    return dak.from_map(
        _VirtualPartition(treename),
        parts,
        label="nanoaod-" + "-".join(sorted(set(formats))),
        meta=meta,
        divisions=tuple(divisions),
    )


def open_events(
    files: str | os.PathLike | Sequence[str | os.PathLike],
    mode: Mode = "eager",
    *,
    entry_start: int | None = None,
    entry_stop: int | None = None,
    steps_per_file: int = 1,
    treename: str = "Events",
):
    """Open NanoAOD ``files`` (ROOT TTree, ROOT RNTuple or parquet) with coffea's ``NanoAODSchema``.

    Parameters
    ----------
    files
        One path or a list of paths. Several files are only supported in ``mode="dask"``.
    mode
        ``"eager"`` (numpy-backed awkward arrays), ``"virtual"`` (lazily read columns) or ``"dask"``
        (a dask-awkward collection, ``steps_per_file`` partitions per file).
    entry_start, entry_stop
        Entry range, eager/virtual modes only.
    treename
        The TTree or RNTuple name in ROOT files (ignored for parquet).

    Raises
    ------
    FileNotFoundError
        A file does not exist.
    NotNanoAODError
        A file is neither ROOT nor parquet, or has no ``treename``.

    Examples
    --------
    >>> events = open_events("nano_dy.root")                              # doctest: +SKIP
    >>> events = open_events("nano_dimuon.parquet", mode="virtual")       # doctest: +SKIP
    >>> events = open_events(["a.root", "b.root"], mode="dask")           # doctest: +SKIP
    """
    paths = [files] if isinstance(files, (str, os.PathLike)) else list(files)
    if not paths:
        raise ValueError("open_events: no files given")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    paths = [os.fspath(p) for p in paths]
    formats = [file_format(p) for p in paths]
    if mode == "dask":
        if any(f == "parquet" for f in formats) or any(_is_rntuple(p, treename) for p in paths):
            return _dask_partitioned(paths, formats, steps_per_file, treename)
        from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

        with quiet_cross_references():
            return NanoEventsFactory.from_root(
                {p: treename for p in paths},
                schemaclass=NanoAODSchema,
                mode="dask",
                steps_per_file=steps_per_file,
            ).events()
    if len(paths) != 1:
        raise ValueError(f"mode={mode!r} opens one file at a time; use mode='dask' for {len(paths)} files")
    return _open_one(paths[0], formats[0], mode, entry_start, entry_stop, treename)
