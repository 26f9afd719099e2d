"""Training sets: simulated NanoAOD -> one parquet file per process, made once and reused.

Each parquet file holds the graph node record of :func:`coffea_hepfm.graph.build_node_record` (``nodes``,
``globals``) plus ``label`` (the process name), ``truth`` (hard-process content, see
:mod:`coffea_hepfm.training.truth`), ``weight``, ``run``, ``luminosityBlock``, ``event`` and ``row`` (the
event's position in the process sample, which fixes the pretraining/downstream split). This is the ntuple
format of the processors, so ``coffea-hepfm finetune --data`` reads either.

Layout of a dataset directory::

    DIR/dataset.json        # graph spec, processes, event counts, dropped (non-finite) events
    DIR/<process>.parquet   # one file per process

Events whose node or global features are not finite are dropped and counted (``dropped_nonfinite`` in
``dataset.json``); nothing is ever trained on NaN.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import awkward as ak
import numpy as np

from coffea_hepfm.errors import HEPFMError
from coffea_hepfm.training.truth import TRUTH_LABELS, MissingTruth, truth_labels

DATASET_META = "dataset.json"
#: every ``DOWNSTREAM_EVERY``-th event of a pretraining process is held out of pretraining and kept for the
#: downstream (fine-tuning) tasks, so fine-tuning never sees events the backbone was trained on.
DOWNSTREAM_EVERY = 3


class DatasetError(HEPFMError, ValueError):
    """A dataset cannot be built or does not hold what a task needs."""


def finite_event_mask(record: ak.Array) -> np.ndarray:
    """Boolean ``[n_events]``: True where every node and global feature of the event is finite.

    Examples
    --------
    >>> finite_event_mask(ak.Array({"nodes": [[[1.0, np.nan]], []], "globals": [[0.0], [1.0]]}))
    array([False,  True])
    """
    nodes_ok = ak.all(ak.all(np.isfinite(record["nodes"]), axis=-1), axis=-1)
    globals_ok = ak.all(np.isfinite(record["globals"]), axis=-1)
    return ak.to_numpy(nodes_ok & globals_ok).astype(bool)


def _event_ids(events: ak.Array) -> dict[str, np.ndarray]:
    n = len(events)
    fields = set(ak.fields(events))
    out = {}
    for name in ("run", "luminosityBlock", "event"):
        out[name] = ak.to_numpy(events[name]).astype(np.int64) if name in fields else np.zeros(n, np.int64)
    out["weight"] = (
        ak.to_numpy(events.genWeight).astype(np.float32) if "genWeight" in fields else np.ones(n, np.float32)
    )
    return out


def events_to_table(events: ak.Array, spec, process: str, row_start: int = 0) -> ak.Array:
    """Training rows for one block of NanoEvents: the node record plus label, truth and event ids."""
    from coffea_hepfm.graph import build_node_record

    record = build_node_record(events, spec)
    try:
        truth = truth_labels(events).astype(bool)
    except MissingTruth:
        truth = np.zeros((len(events), len(TRUTH_LABELS)), bool)
    columns = {
        "nodes": record["nodes"],
        "globals": record["globals"],
        "label": ak.from_numpy(np.full(len(events), process)),
        "truth": ak.zip({name: truth[:, k] for k, name in enumerate(TRUTH_LABELS)}),
        "row": np.arange(row_start, row_start + len(events), dtype=np.int64),
    }
    columns.update(_event_ids(events))
    return ak.zip(columns, depth_limit=1)


def _write_parquet(table: ak.Array, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    ak.to_parquet(table, tmp)
    os.replace(tmp, path)


def build_dataset(
    sim_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    processes: Sequence[str] | None = None,
    spec=None,
    max_events: int | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> dict:
    """Make the training set from simulated NanoAOD in ``sim_dir/<process>/*.root``.

    Parameters
    ----------
    sim_dir
        Output directory of ``coffea-hepfm simulate``.
    out_dir
        Dataset directory; ``<process>.parquet`` files are (re)written, others are kept, and
        ``dataset.json`` is updated.
    processes
        Processes to convert; default all sub-directories of ``sim_dir`` that hold ROOT files.
    spec
        :class:`coffea_hepfm.graph.GraphSpec`; default ``GraphSpec()``.
    max_events
        Cap per process (first events in file order).
    progress
        Called as ``progress(process, n_events_done)`` after every file.

    Returns
    -------
    dict
        The dataset metadata written to ``dataset.json``.

    Raises
    ------
    DatasetError
        If ``sim_dir`` has no ROOT files for a requested process, or the dataset on disk was made with a
        different graph spec.

    Examples
    --------
    >>> build_dataset("data/sim", "data/train", ["ttbar", "tth"], max_events=1000)  # doctest: +SKIP
    {'graph_spec': {...}, 'processes': {'ttbar': {'events': 1000, 'dropped_nonfinite': 0, ...}, ...}}
    """
    from coffea_hepfm.graph import GraphSpec
    from coffea_hepfm.nanoaod import open_events

    spec = spec or GraphSpec()
    sim_dir, out_dir = Path(sim_dir), Path(out_dir)
    if processes is None:
        processes = sorted(p.name for p in sim_dir.iterdir() if p.is_dir() and any(p.glob("*.root")))
    if not processes:
        raise DatasetError(f"no simulated processes found in {sim_dir}")
    out_dir.mkdir(parents=True, exist_ok=True)
    meta_path = out_dir / DATASET_META
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    if meta and meta.get("graph_spec") != spec.to_dict():
        raise DatasetError(f"{out_dir} was built with another graph spec; use a new directory")
    meta.update(
        graph_spec=spec.to_dict(),
        truth_labels=list(TRUTH_LABELS),
        downstream_every=DOWNSTREAM_EVERY,
    )
    meta.setdefault("processes", {})
    for process in processes:
        files = sorted((sim_dir / process).glob("*.root"))
        if not files:
            raise DatasetError(f"no ROOT files for process {process!r} in {sim_dir / process}")
        parts, n_rows, n_dropped = [], 0, 0
        for f in files:
            if max_events is not None and n_rows >= max_events:
                break
            stop = None if max_events is None else max_events - n_rows
            events = open_events(f, entry_stop=stop)
            table = events_to_table(events, spec, process, row_start=n_rows)
            n_rows += len(table)
            ok = finite_event_mask(table)
            n_dropped += int((~ok).sum())
            parts.append(table[ok])
            if progress is not None:
                progress(process, n_rows)
        table = ak.concatenate(parts) if len(parts) > 1 else parts[0]
        _write_parquet(table, out_dir / f"{process}.parquet")
        meta["processes"][process] = {
            "events": len(table),
            "dropped_nonfinite": n_dropped,
            "files": [os.fspath(f) for f in files[: len(parts)]],
        }
    tmp = meta_path.with_name(meta_path.name + ".tmp")
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, meta_path)
    return meta


def read_meta(data_dir: str | os.PathLike) -> dict:
    """The ``dataset.json`` of a dataset directory, or a minimal one for a plain ntuple directory."""
    path = Path(data_dir) / DATASET_META
    if path.exists():
        return json.loads(path.read_text())
    if not Path(data_dir).is_dir():
        raise DatasetError(f"dataset directory not found: {data_dir}")
    return {"processes": {p.stem: {} for p in Path(data_dir).glob("*.parquet")}}


def read_process(data_dir: str | os.PathLike, process: str, columns: Sequence[str] | None = None) -> ak.Array:
    """All rows of one process: ``DIR/<process>.parquet`` or every parquet file in ``DIR/<process>/``.

    Raises
    ------
    DatasetError
        If the process is not in the dataset (a task whose classes are missing in the data).
    """
    base = Path(data_dir)
    single = base / f"{process}.parquet"
    if single.exists():
        paths = [single]
    else:
        paths = sorted((base / process).glob("*.parquet")) if (base / process).is_dir() else []
    if not paths:
        present = sorted({p.stem for p in base.glob("*.parquet")} | {p.name for p in base.glob("*/")})
        raise DatasetError(f"process {process!r} is missing from {base} (present: {present})")
    arrays = [ak.from_parquet(p, columns=columns) for p in paths]
    return arrays[0] if len(arrays) == 1 else ak.concatenate(arrays)
