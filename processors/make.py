"""``make_ntuples``: run :class:`NtupleProcessor` over a fileset eagerly, with dask-awkward or on a cluster.

Executors (identical output; only the scheduling differs):

``"iterative"``
    ``coffea.processor.Runner`` with ``IterativeExecutor``: eager/virtual NanoEvents, chunk by chunk.
``"dask"``
    ``coffea.dataset_tools.preprocess`` (steps of ``chunksize`` entries) and ``apply_to_fileset``: the
    processor builds a dask-awkward graph, one writer task per partition. Computed with the local
    threaded scheduler, or on ``client`` (e.g. a ``distributed.LocalCluster``) when given.

A rerun into the same folder skips the chunks already complete (their file exists) and deletes temp files
left by a killed run, so it writes only the missing chunks.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Sequence
from typing import Literal

from coffea_hepfm.processors.corrections import Correction
from coffea_hepfm.processors.ntuple import NtupleProcessor
from coffea_hepfm.processors.writer import EmptySelectionWarning, chunk_path


def _quiet_schema_warnings() -> None:
    # NanoAODSchema warns about cross-references absent in slimmed files: expected, not actionable here.
    warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"coffea\.nanoevents")


def _normalise(fileset: dict) -> dict:
    """``files`` as ``{path: "Events"}`` (a list of paths is accepted too)."""
    out = {}
    for name, ds in fileset.items():
        if not isinstance(ds, dict) or "files" not in ds:
            raise ValueError(f"dataset {name!r} must be a dict with 'files' (and 'metadata')")
        files = ds["files"]
        files = dict(files) if isinstance(files, dict) else {f: "Events" for f in files}
        out[name] = {"files": {os.fspath(k): v for k, v in files.items()}, "metadata": ds.get("metadata")}
    return out


def balanced_steps(num_entries: int, chunksize: int) -> list[list[int]]:
    """Entry ranges of a file, split exactly as coffea's ``Runner`` splits it (equal-sized chunks).

    Using the same chunk boundaries for every executor means a rerun with another executor finds the
    chunks already written.

    Examples
    --------
    >>> balanced_steps(200, 70)
    [[0, 67], [67, 134], [134, 200]]
    >>> balanced_steps(0, 70)
    [[0, 0]]
    """
    if num_entries == 0:
        return [[0, 0]]
    n = max(round(num_entries / chunksize), 1)
    size = math.ceil(num_entries / n)
    return [[a, min(num_entries, a + size)] for a in range(0, num_entries, size)]


def _dask_fileset(proc: NtupleProcessor, fileset: dict, chunksize: int, client=None) -> dict:
    """Preprocessed fileset of the chunks still missing, with their identities in ``metadata["chunks"]``."""
    from coffea.dataset_tools import DataGroupSpec, preprocess

    available, _ = preprocess(
        DataGroupSpec.model_validate(fileset),
        step_size=chunksize,
        save_form=False,  # files of one dataset may differ in minor branches; forms are read per file
        allow_empty_datasets=True,
        scheduler=client.get if client is not None else "sync",
    )
    available = available.model_dump()
    todo = {}
    for name, ds in available.items():
        files, chunks = {}, []
        for path, info in ds["files"].items():
            steps = [
                [int(a), int(b)]
                for a, b in info["steps"]
                if not chunk_path(proc.out_dir, name, path, a, b).exists()
            ]
            if steps:
                files[path] = {**info, "steps": steps}
                chunks += [[path, a, b] for a, b in steps]
        if files:
            meta = {**(fileset[name]["metadata"] or {}), "chunks": chunks}
            todo[name] = {"files": files, "metadata": meta}
    return todo


def make_ntuples(
    fileset: dict,
    out_dir: str | os.PathLike,
    spec=None,
    *,
    executor: Literal["iterative", "dask"] = "iterative",
    client=None,
    chunksize: int = 100_000,
    classes: Sequence[str] | None = None,
    selection: Callable | None = None,
    corrections: Sequence[Correction] = (),
    lumi: float = 59830.0,
    require_mc: bool = True,
    progress: bool = False,
    lhe_weight: str | None = None,
) -> dict:
    """Write training ntuples of ``fileset`` into ``out_dir``; returns per-dataset counts.

    Parameters
    ----------
    fileset
        ``{dataset: {"files": {path: "Events"} | [paths], "metadata": {"label": ..., "xsec": ...}}}``.
    out_dir
        Output folder; see :mod:`coffea_hepfm.processors.writer` for the layout.
    spec
        Graph spec; default ``GraphSpec()``.
    executor, client
        ``"iterative"`` (eager) or ``"dask"``; with ``client`` the dask graph runs on that cluster.
    chunksize
        Entries per chunk (= per parquet file).
    classes, selection, corrections, lumi, require_mc, lhe_weight
        See :class:`NtupleProcessor`.

    Returns
    -------
    dict
        ``{dataset: {"chunks_written", "chunks_skipped", "events", "selected", "empty_chunks"}}``.

    Examples
    --------
    >>> make_ntuples({"tth": {"files": ["tth.root"], "metadata": {"label": "signal", "xsec": 0.5}},
    ...               "tt": {"files": ["tt.root"], "metadata": {"label": "background", "xsec": 830.}}},
    ...              "ntuples", executor="dask")  # doctest: +SKIP
    """
    from coffea_hepfm.graph import GraphSpec

    proc = NtupleProcessor(
        spec if spec is not None else GraphSpec(),
        out_dir,
        classes=classes,
        selection=selection,
        corrections=corrections,
        lumi=lumi,
        require_mc=require_mc,
        chunksize=chunksize,
        lhe_weight=lhe_weight,
    )
    fileset = proc.prepare(_normalise(fileset))
    if executor == "iterative":
        from coffea.nanoevents import NanoAODSchema
        from coffea.processor import IterativeExecutor, Runner

        runner = Runner(IterativeExecutor(status=progress), schema=NanoAODSchema, chunksize=chunksize)
        with warnings.catch_warnings():
            _quiet_schema_warnings()
            result = runner(fileset, processor_instance=proc, treename="Events")
    elif executor == "dask":
        import dask
        from coffea.dataset_tools import apply_to_fileset
        from coffea.nanoevents import NanoAODSchema

        todo = _dask_fileset(proc, fileset, chunksize, client)
        with warnings.catch_warnings():
            _quiet_schema_warnings()
            graphs = apply_to_fileset(proc, todo, schemaclass=NanoAODSchema) if todo else {}
            (computed,) = dask.compute(graphs, scheduler=client.get if client is not None else None)
        result = {name: out[name] for name, out in computed.items()}
        for name, counts in result.items():
            if counts["empty_chunks"]:
                warnings.warn(
                    f"dataset {name!r}: {counts['empty_chunks']} chunk(s) had no event passing the selection; "
                    "wrote empty ntuples",
                    EmptySelectionWarning,
                    stacklevel=2,
                )
    else:
        raise ValueError(f"executor must be 'iterative' or 'dask', got {executor!r}")
    zero = {"chunks_written": 0, "chunks_skipped": 0, "events": 0, "selected": 0, "empty_chunks": 0}
    return {name: {**zero, **dict(result.get(name, {}))} for name in fileset}
