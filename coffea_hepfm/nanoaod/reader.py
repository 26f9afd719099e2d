"""Open NanoAOD files as coffea NanoEvents (eager, virtual or dask-awkward)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import Literal

Mode = Literal["eager", "virtual", "dask"]


def open_events(
    files: str | os.PathLike | Sequence[str | os.PathLike],
    mode: Mode = "eager",
    *,
    entry_start: int | None = None,
    entry_stop: int | None = None,
    steps_per_file: int = 1,
    treename: str = "Events",
):
    """Open NanoAOD ``files`` with coffea's ``NanoAODSchema``.

    Parameters
    ----------
    files
        One path or a list of paths. Several files are only supported in ``mode="dask"``.
    mode
        ``"eager"`` (numpy-backed awkward arrays), ``"virtual"`` (lazily read columns) or ``"dask"``
        (a dask-awkward collection, one partition per file step).
    entry_start, entry_stop
        Entry range, eager/virtual modes only.

    Examples
    --------
    >>> events = open_events("nano_dy.root")                     # doctest: +SKIP
    >>> events = open_events(["a.root", "b.root"], mode="dask")  # doctest: +SKIP
    """
    from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

    paths = [files] if isinstance(files, (str, os.PathLike)) else list(files)
    if not paths:
        raise ValueError("open_events: no files given")
    for p in paths:
        if not os.path.exists(p):
            raise FileNotFoundError(f"NanoAOD file not found: {p}")
    with warnings.catch_warnings():
        # coffea warns about optional cross-reference branches missing in slimmed files; not an error.
        warnings.simplefilter("ignore")
        if mode == "dask":
            spec = {os.fspath(p): treename for p in paths}
            return NanoEventsFactory.from_root(
                spec, schemaclass=NanoAODSchema, mode="dask", steps_per_file=steps_per_file
            ).events()
        if len(paths) != 1:
            raise ValueError(
                f"mode={mode!r} opens one file at a time; use mode='dask' for {len(paths)} files"
            )
        return NanoEventsFactory.from_root(
            {os.fspath(paths[0]): treename},
            schemaclass=NanoAODSchema,
            mode=mode,
            entry_start=entry_start,
            entry_stop=entry_stop,
        ).events()
