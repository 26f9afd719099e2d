"""Score NanoAOD files chunk by chunk into one parquet file (what ``coffea-hepfm score`` runs).

Each chunk is opened as *virtual* NanoEvents (only the branches the graph spec needs are read), scored
with :class:`~coffea_hepfm.score.HEPFMScore` and appended to a parquet file under a temporary name, which
is renamed to the output only when every chunk succeeded (:mod:`coffea_hepfm.atomic`: a rerun removes
the temp file of a killed run, never that of a run still writing). Peak memory is set by ``chunk_size``,
not by the size of the files. With ``workers >= 1`` chunks are scored in that many worker processes,
each loading the model once, and written in input order.

Each chunk runs inside :func:`coffea_hepfm.nanoaod.inputs.reading`: a file uproot cannot read raises
``InputFileError`` naming it, and the package's warnings name the file they concern (in worker processes
they are recorded and re-emitted here, in input order).
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Chunk", "plan_chunks", "score_chunk", "score_files"]

ID_COLUMNS = ("run", "luminosityBlock", "event")


@dataclass(frozen=True)
class Chunk:
    file: str
    start: int
    stop: int

    def __len__(self) -> int:
        return self.stop - self.start


def plan_chunks(files: Sequence[str | os.PathLike], chunk_size: int) -> list[Chunk]:
    """Entry ranges of at most ``chunk_size`` events covering every file (none for an empty file).

    Raises ``FileNotFoundError`` / ``ValueError`` / ``InputFileError`` naming the file if one is missing,
    is not NanoAOD (ROOT TTree or RNTuple ``Events``, or parquet) or cannot be read (truncated, corrupt),
    before anything is scored.
    """
    from coffea_hepfm.nanoaod.inputs import reading
    from coffea_hepfm.nanoaod.reader import count_events

    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    chunks = []
    for f in files:
        path = os.fspath(f)
        with reading(path):
            n = count_events(path)
        chunks.extend(Chunk(path, s, min(s + chunk_size, n)) for s in range(0, n, chunk_size))
    return chunks


_SCORERS: dict[tuple, object] = {}  # one HEPFMScore per worker process and parameter set


def _scorer(model: str, device: str, batch_size: int | None, embedding: bool):
    from coffea_hepfm.score.wrapper import HEPFMScore

    key = (model, device, batch_size, embedding)
    if key not in _SCORERS:
        _SCORERS[key] = HEPFMScore(model, device=device, batch_size=batch_size, embedding=embedding)
    return _SCORERS[key]


def score_chunk(
    chunk: Chunk, model: str, device: str = "auto", batch_size: int | None = None, embedding: bool = False
):
    """Score one chunk; returns a ``pyarrow.Table`` with ``file``, run/lumi/event and one column per class."""
    import awkward as ak
    import pyarrow as pa

    from coffea_hepfm.nanoaod import open_events
    from coffea_hepfm.nanoaod.inputs import reading

    scorer = _scorer(model, device, batch_size, embedding)
    columns = {}
    with reading(chunk.file, chunk.start, chunk.stop):
        events = open_events(chunk.file, mode="virtual", entry_start=chunk.start, entry_stop=chunk.stop)
        out = scorer(events)
        columns["file"] = pa.array(np.full(len(out), os.path.basename(chunk.file)))
        for name in ID_COLUMNS:
            if name in events.fields:
                columns[name] = pa.array(ak.to_numpy(events[name]).astype(np.int64))
    for name in scorer.class_names_:
        columns[name] = pa.array(ak.to_numpy(out[name]))
    if embedding:
        emb = ak.to_numpy(out["embedding"])
        columns["embedding"] = pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), emb.shape[1])
    return pa.table(columns)


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _score_and_collect(chunk: Chunk, model: str, device: str, batch_size: int | None, embedding: bool):
    """:func:`score_chunk`, then a full garbage collection.

    A chunk's NanoEvents objects form reference cycles that hold the chunk's arrays; Python frees them
    only in a full collection, which in a process holding torch and coffea (~500 k objects) comes every
    ~100 chunks, so the RSS crept by ~3.4 MiB per 25 k-event chunk (140 B/event) over a file. Collecting
    after each chunk keeps the peak set by the chunk size (``bench score --memory``, ``docs/speed.md``);
    it costs ~0.1-0.2 s per chunk.
    """
    table = score_chunk(chunk, model, device, batch_size, embedding)
    gc.collect()
    return table


def _score_chunk_recorded(*args):
    """In a worker process: the table and the package warnings raised for it (re-emitted by the parent)."""
    from coffea_hepfm.nanoaod.inputs import collect

    with collect() as records:
        table = _score_and_collect(*args)
    return table, records


def _iter_tables(chunks, model, device, batch_size, embedding, workers) -> Iterator:
    from coffea_hepfm.nanoaod.inputs import replay

    if workers == 0:  # 0: in this process; N >= 1: N worker processes (the package-wide --workers rule)
        for c in chunks:
            yield c, _score_and_collect(c, model, device, batch_size, embedding)
        return
    import multiprocessing

    # spawn: torch and fork do not mix; each worker loads the model once (see _scorer).
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(1,)) as pool:
        futures = [
            pool.submit(_score_chunk_recorded, c, model, device, batch_size, embedding) for c in chunks
        ]
        try:
            for c, fut in zip(chunks, futures, strict=True):
                table, records = fut.result()
                replay(records)
                yield c, table
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise


def score_files(
    files: Sequence[str | os.PathLike],
    model: str,
    out: str | os.PathLike,
    *,
    workers: int = 0,
    chunk_size: int = 100_000,
    batch_size: int | None = None,
    device: str = "auto",
    embedding: bool = False,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Score ``files`` with ``model`` into the parquet file ``out``; returns the number of events.

    ``progress(n)`` is called after each chunk with its number of events. Nothing is left at ``out``
    (or under a temporary name) if any chunk fails.

    Examples
    --------
    >>> score_files(["nano_dy.root"], "tth_vs_ttbar", "scores.parquet")   # doctest: +SKIP
    40
    >>> score_files(["nano_dy_empty.root"], "tth_vs_ttbar", "empty.parquet")  # 0 rows, full schema
    ... # doctest: +SKIP
    0
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from coffea_hepfm.atomic import atomic_output, remove_stale, temp_files
    from coffea_hepfm.score.wrapper import HEPFMScore

    out = Path(out)
    if isinstance(workers, bool) or int(workers) != workers or workers < 0:
        raise ValueError(
            f"workers must be 0 (in this process) or a number of worker processes, got {workers}"
        )
    if out.suffix != ".parquet":
        raise ValueError(f"output must be a .parquet file, got {out}")
    scorer = HEPFMScore(model, device=device, batch_size=batch_size, embedding=embedding)  # validates early
    chunks = plan_chunks(files, chunk_size)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(temp_files(out))  # left by a killed run; a live run's temp file is locked and stays
    n_events = 0
    with atomic_output(out) as (_, sink):
        writer = None
        try:
            for chunk, table in _iter_tables(chunks, model, device, batch_size, embedding, workers):
                if writer is None:
                    writer = pq.ParquetWriter(sink, table.schema)
                writer.write_table(table)
                n_events += table.num_rows
                if progress is not None:
                    progress(len(chunk))
            if writer is None:  # no events at all: an empty table with the full schema
                fields = [("file", pa.string()), *((n, pa.int64()) for n in ID_COLUMNS)]
                fields += [(n, pa.float32()) for n in scorer.class_names_]
                if embedding:
                    fields.append(("embedding", pa.list_(pa.float32(), scorer.runner_.hidden)))
                writer = pq.ParquetWriter(sink, pa.schema(fields))
                writer.write_table(pa.schema(fields).empty_table())
        finally:
            if writer is not None:
                writer.close()
    return n_events
