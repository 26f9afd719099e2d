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

import os
import re
import warnings
from collections.abc import Callable, Sequence
from typing import Literal

from coffea_hepfm.processors.corrections import Correction
from coffea_hepfm.processors.ntuple import NtupleProcessor
from coffea_hepfm.processors.writer import EmptySelectionWarning, chunk_path


def _quiet_schema_warnings() -> None:
    # NanoAODSchema's notices about cross-references absent in slimmed files (and Photon_charge it fills
    # in): expected, not actionable here. Only these messages; every other warning still shows.
    for message in (
        r"Missing cross-reference (index|target) for ",
        r"Branch \w+ already exists but its values",
    ):
        warnings.filterwarnings(
            "ignore", message=message, category=RuntimeWarning, module=r"coffea\.nanoevents"
        )


_WORK_ITEM = re.compile(r"filename='(?P<file>[^']*)'.*?entrystart=(?P<start>\d+), entrystop=(?P<stop>\d+)")


def _unwrap_runner_error(err: Exception) -> BaseException:
    """The error behind coffea ``Runner``'s bare ``Exception("Failed processing file: WorkItem(...)")``.

    coffea re-raises everything that fails in a chunk that way, which would turn a clear
    ``MissingBranchError`` into an anonymous ``Exception``. Errors raised by reading the file (open,
    schema) become :class:`~coffea_hepfm.nanoaod.inputs.InputFileError` naming the file.
    """
    from coffea_hepfm.errors import HEPFMError
    from coffea_hepfm.nanoaod.inputs import InputFileError, is_read_error

    cause = err.__cause__
    if type(err) is not Exception or cause is None:
        return err
    item = _WORK_ITEM.search(str(err))
    if item is not None and getattr(cause, "input_file", None) is None and not isinstance(cause, HEPFMError):
        where = f"{item['file']} (entries {item['start']}-{item['stop']})"
        if is_read_error(cause) or str(err).startswith(("Failed to open file", "Failed creating nanoevents")):
            new = InputFileError(
                f"cannot read {where}: {type(cause).__name__}: {cause}. The file may be truncated or corrupt: "
                "check it, copy it again, or leave it out of the fileset",
                item["file"],
                (int(item["start"]), int(item["stop"])),
            )
            new.__cause__ = cause
            return new
        cause.input_file, cause.entries = item["file"], (int(item["start"]), int(item["stop"]))
    return cause


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
            try:
                result = runner(fileset, processor_instance=proc, treename="Events")
            except Exception as err:
                cause = _unwrap_runner_error(err)
                if cause is err:
                    raise
                raise cause from cause.__cause__  # coffea's wrapper only repeats the message
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
