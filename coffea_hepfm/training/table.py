"""In-memory training table and vectorised mini-batches of event graphs.

A :class:`GraphTable` keeps the events of a training set as flat numpy arrays (all nodes of all events in
one ``[N, F]`` matrix plus per-event offsets), so a mini-batch is a handful of numpy gathers: no per-event
Python loop. Edges are rebuilt per batch from the node features by the graph module's ``GraphBatch.from_flat``,
so augmented node features get consistent edge features.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import awkward as ak
import numpy as np

from coffea_hepfm.training.dataset import DatasetError, finite_event_mask, read_process


def _regular_2d(array: ak.Array) -> np.ndarray:
    return np.asarray(ak.to_numpy(ak.to_regular(array, axis=1)), dtype=np.float32)


def gather_ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + c)`` for every (start, count) pair, without a Python loop.

    Examples
    --------
    >>> gather_ranges(np.array([5, 0, 2]), np.array([2, 0, 3]))
    array([5, 6, 2, 3, 4])
    """
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    first = np.cumsum(counts) - counts
    return np.repeat(np.asarray(starts, np.int64) - first, counts) + np.arange(total, dtype=np.int64)


@dataclass
class GraphTable:
    """Events as flat arrays: ``x`` [N, F] nodes, ``offsets`` [B+1], ``u`` [B, G] globals, ``y`` [B] class
    index, ``truth`` [B, L] multilabel targets, ``weight`` [B] and ``row`` [B] (position in the process
    sample)."""

    x: np.ndarray
    offsets: np.ndarray
    u: np.ndarray
    y: np.ndarray
    truth: np.ndarray
    weight: np.ndarray
    row: np.ndarray
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.u)

    @property
    def counts(self) -> np.ndarray:
        return np.diff(self.offsets)

    def subset(self, idx: np.ndarray) -> GraphTable:
        """The events ``idx`` (any order, repeats allowed) as a new table."""
        idx = np.asarray(idx, dtype=np.int64)
        counts = self.counts[idx]
        nodes = gather_ranges(self.offsets[idx], counts)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return GraphTable(
            self.x[nodes],
            offsets,
            self.u[idx],
            self.y[idx],
            self.truth[idx],
            self.weight[idx],
            self.row[idx],
            self.class_names,
        )

    @staticmethod
    def concatenate(tables: Sequence[GraphTable]) -> GraphTable:
        offsets = [np.zeros(1, np.int64)]
        shift = 0
        for t in tables:
            offsets.append(t.offsets[1:] + shift)
            shift += int(t.offsets[-1])
        return GraphTable(
            np.concatenate([t.x for t in tables]),
            np.concatenate(offsets),
            np.concatenate([t.u for t in tables]),
            np.concatenate([t.y for t in tables]),
            np.concatenate([t.truth for t in tables]),
            np.concatenate([t.weight for t in tables]),
            np.concatenate([t.row for t in tables]),
            tables[0].class_names,
        )

    def batches(self, batch_size: int, rng: np.random.Generator | None = None) -> Iterator[np.ndarray]:
        """Event-index chunks, shuffled when ``rng`` is given."""
        order = rng.permutation(len(self)) if rng is not None else np.arange(len(self))
        for start in range(0, len(order), batch_size):
            yield order[start : start + batch_size]


def table_from_record(table: ak.Array, class_index: int, class_names: Sequence[str]) -> GraphTable:
    """Convert parquet rows of one class (``nodes``, ``globals``, ...) to a :class:`GraphTable`.

    Non-finite events are refused here as a last guard: datasets drop them when built.
    """
    ok = finite_event_mask(table)
    if not ok.all():
        raise DatasetError(f"{int((~ok).sum())} events with non-finite features; rebuild the dataset")
    nodes = table["nodes"]
    counts = ak.to_numpy(ak.num(nodes, axis=1)).astype(np.int64)
    flat = ak.flatten(nodes, axis=1)
    x = _regular_2d(flat) if len(flat) else np.zeros((0, _n_cols(nodes)), np.float32)
    fields = set(ak.fields(table))
    n = len(table)
    if "truth" in fields:
        truth = np.stack([ak.to_numpy(table["truth"][f]) for f in ak.fields(table["truth"])], axis=1)
    else:
        truth = np.zeros((n, 0))
    return GraphTable(
        x=x,
        offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        u=_regular_2d(table["globals"]),
        y=np.full(n, class_index, dtype=np.int64),
        truth=truth.astype(np.float32),
        weight=ak.to_numpy(table["weight"]).astype(np.float32)
        if "weight" in fields
        else np.ones(n, np.float32),
        row=ak.to_numpy(table["row"]).astype(np.int64) if "row" in fields else np.arange(n, dtype=np.int64),
        class_names=tuple(class_names),
    )


def _n_cols(nodes: ak.Array) -> int:
    t = nodes.type.content
    while hasattr(t, "content"):
        if hasattr(t, "size"):
            return int(t.size)
        t = t.content
    return 0


def load_classes(
    data_dir,
    processes: Sequence[str],
    class_names: Sequence[str] | None = None,
    fold: str = "all",
    downstream_every: int | None = None,
    max_per_class: int | None = None,
) -> GraphTable:
    """Load one class per process from a dataset directory into a single :class:`GraphTable`.

    Parameters
    ----------
    fold
        ``"pretrain"`` (events kept for pretraining), ``"downstream"`` (held-out events of a pretraining
        process) or ``"all"``.
    max_per_class
        Keep at most this many events per class (the first ones of the fold).

    Raises
    ------
    DatasetError
        If a process is missing or has no events in the fold.
    """
    from coffea_hepfm.training.dataset import DOWNSTREAM_EVERY

    every = downstream_every or DOWNSTREAM_EVERY
    class_names = tuple(class_names or processes)
    tables = []
    for k, process in enumerate(processes):
        rows = read_process(data_dir, process)
        if fold != "all":
            # ntuples without a ``row`` column count rows in file order
            row = ak.to_numpy(rows["row"]) if "row" in ak.fields(rows) else np.arange(len(rows))
            held = (row % every) == every - 1
            rows = rows[held if fold == "downstream" else ~held]
        if max_per_class is not None:
            rows = rows[:max_per_class]
        if len(rows) == 0:
            raise DatasetError(f"process {process!r} has no events in fold {fold!r} of {data_dir}")
        tables.append(table_from_record(rows, k, class_names))
    return GraphTable.concatenate(tables)


def make_batch(table: GraphTable, idx: np.ndarray, spec, augment=None, rng=None):
    """Torch tensors ``(x, edge_index, edge_attr, u, batch)`` for the events ``idx`` of ``table``.

    ``augment(x, counts, u, rng) -> (x, counts, u)`` transforms the flat node features first (see
    :mod:`coffea_hepfm.training.augment`); edges and edge features are then built from the transformed
    nodes by :meth:`coffea_hepfm.graph.GraphBatch.from_flat`, the graph module's own construction.
    """
    from coffea_hepfm.graph import GraphBatch

    sub = table.subset(idx)
    x, counts, u = sub.x, sub.counts, sub.u
    if augment is not None:
        x, counts, u = augment(x, counts, u, rng)
    return GraphBatch.from_flat(x, counts, u).to_torch("cpu")
