"""``GraphBatch``: many event graphs as flat numpy arrays (the model's input), and converters to torch/PyG."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import awkward as ak
import numpy as np

from coffea_hepfm.graph.edges import edge_attr, edge_counts, edge_index
from coffea_hepfm.graph.nodes import FlatNodes
from coffea_hepfm.graph.spec import GraphSpec


def _offsets(counts: np.ndarray) -> np.ndarray:
    off = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=off[1:])
    return off


@dataclass(frozen=True, eq=False)
class GraphBatch:
    """``B`` event graphs, flat (PyG layout).

    Attributes
    ----------
    x : float32 [N, F]
        Node features, events one after another.
    edge_index : int64 [2, E]
        Global (source, target) node ids; fully connected, directed, no self loops, event by event,
        source-major.
    edge_attr : float32 [E, Fe]
    u : float32 [B, Fg]
        Global features.
    batch : int64 [N]
        Event number of each node.
    node_counts : int64 [B]
        Nodes per event (may be 0: such an event has globals only).

    Examples
    --------
    >>> g = build_graphs(open_events("nano_dy.root"))       # doctest: +SKIP
    >>> len(g), g.x.shape[1], g.edge_attr.shape[1]         # doctest: +SKIP
    (40, 13, 4)
    >>> for sub in g.iter_batches(16): ...                 # doctest: +SKIP
    """

    x: np.ndarray
    edge_index: np.ndarray
    edge_attr: np.ndarray
    u: np.ndarray
    batch: np.ndarray
    node_counts: np.ndarray

    # -- construction --------------------------------------------------------------------------------
    @classmethod
    def from_flat(cls, x: np.ndarray, node_counts: np.ndarray, u: np.ndarray) -> GraphBatch:
        """Build edges and ``batch`` for flat node features ``x`` [N, F], ``node_counts`` [B], ``u``."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        node_counts = np.asarray(node_counts, dtype=np.int64)
        u = np.ascontiguousarray(u, dtype=np.float32)
        if x.ndim != 2 or u.ndim != 2 or len(u) != len(node_counts) or len(x) != node_counts.sum():
            raise ValueError(
                f"inconsistent graph arrays: x {x.shape}, u {u.shape}, {len(node_counts)} events with "
                f"{int(node_counts.sum())} nodes"
            )
        index = edge_index(node_counts)
        return cls(
            x=x,
            edge_index=index,
            edge_attr=edge_attr(x, node_counts),
            u=u,
            batch=np.repeat(np.arange(len(node_counts), dtype=np.int64), node_counts),
            node_counts=node_counts,
        )

    @classmethod
    def from_record(cls, record: ak.Array, spec: GraphSpec | None = None) -> GraphBatch:
        """From a :func:`~coffea_hepfm.graph.build_node_record` result (also one read back from parquet).

        With ``spec``, the feature widths are checked against it (``ValueError`` if they differ).
        """
        x, counts, u = record_arrays(record, spec)
        return cls.from_flat(x, counts, u)

    # -- shape ---------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.node_counts)

    @property
    def num_nodes(self) -> int:
        return len(self.x)

    @property
    def num_edges(self) -> int:
        return self.edge_index.shape[1]

    @property
    def node_offsets(self) -> np.ndarray:
        return _offsets(self.node_counts)

    @property
    def edge_offsets(self) -> np.ndarray:
        return _offsets(edge_counts(self.node_counts))

    def slice(self, start: int, stop: int) -> GraphBatch:
        """Events ``start:stop`` as a new batch with node ids and ``batch`` renumbered from 0."""
        start, stop, _ = slice(start, stop).indices(len(self))
        stop = max(stop, start)
        n0, n1 = self.node_offsets[[start, stop]]
        e0, e1 = self.edge_offsets[[start, stop]]
        return GraphBatch(
            x=self.x[n0:n1],
            edge_index=self.edge_index[:, e0:e1] - n0,
            edge_attr=self.edge_attr[e0:e1],
            u=self.u[start:stop],
            batch=self.batch[n0:n1] - start,
            node_counts=self.node_counts[start:stop],
        )

    def iter_batches(self, batch_size: int) -> Iterator[GraphBatch]:
        """Consecutive sub-batches of at most ``batch_size`` events (none for an empty batch)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        for start in range(0, len(self), batch_size):
            yield self.slice(start, start + batch_size)

    # -- torch ---------------------------------------------------------------------------------------
    def to_torch(self, device="cpu"):
        """``(x, edge_index, edge_attr, u, batch)`` as torch tensors on ``device`` (model forward order)."""
        import torch

        # Arrays read back from parquet/arrow can be read-only; torch wants writable memory.
        return tuple(
            torch.from_numpy(a if a.flags.writeable else a.copy()).to(device)
            for a in (self.x, self.edge_index, self.edge_attr, self.u, self.batch)
        )

    def to_pyg(self):
        """A ``torch_geometric.data.Batch`` with ``x, edge_index, edge_attr, u, batch`` (and ``ptr``).

        Slicing metadata is filled in, so ``to_data_list()`` / ``get_example(i)`` give the per-event
        ``Data`` (with ``u`` of shape [1, Fg]) and ``Batch.from_data_list`` of those rebuilds this batch.
        """
        import torch
        from torch_geometric.data import Batch

        x, ei, ea, u, batch = self.to_torch("cpu")
        node_ptr = torch.from_numpy(self.node_offsets)
        edge_ptr = torch.from_numpy(self.edge_offsets)
        b = Batch(x=x, edge_index=ei, edge_attr=ea, u=u, batch=batch, ptr=node_ptr)
        n = len(self)
        zeros = torch.zeros(n, dtype=torch.long)
        b._num_graphs = n
        b._slice_dict = {
            "x": node_ptr,
            "edge_index": edge_ptr,
            "edge_attr": edge_ptr,
            "u": torch.arange(n + 1, dtype=torch.long),
        }
        b._inc_dict = {"x": zeros, "edge_index": node_ptr[:-1], "edge_attr": zeros, "u": zeros}
        return b


def record_arrays(
    record: ak.Array, spec: GraphSpec | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(x [N, F], node_counts [B], u [B, G])`` numpy views of a node record."""
    if type(record).__module__.startswith("dask_awkward"):
        raise TypeError("GraphBatch needs a computed record; call .compute() on the dask-awkward array first")
    nodes = record["nodes"]
    counts = np.asarray(ak.to_numpy(ak.num(nodes, axis=1)), dtype=np.int64)
    flat = ak.flatten(nodes, axis=1)
    if len(flat) and not isinstance(flat.layout, ak.contents.RegularArray):
        flat = ak.to_regular(flat, axis=1)  # e.g. read back from a format without fixed-size lists
    x = np.asarray(ak.to_numpy(flat), dtype=np.float32)
    u = np.asarray(ak.to_numpy(record["globals"]), dtype=np.float32)
    n_f = spec.n_node_features if spec is not None else (x.shape[1] if x.ndim == 2 else 0)
    n_g = spec.n_global_features if spec is not None else (u.shape[1] if u.ndim == 2 else 0)
    x = x.reshape(len(x), n_f) if x.size == 0 else x
    u = u.reshape(len(u), n_g) if u.size == 0 else u
    if spec is not None and (x.shape[1] != n_f or u.shape[1] != n_g):
        raise ValueError(
            f"record has {x.shape[1]} node / {u.shape[1]} global features, spec {spec.name} "
            f"v{spec.version} expects {n_f} / {n_g}"
        )
    return x, counts, u


def build_graphs(events, spec: GraphSpec | None = None) -> GraphBatch:
    """NanoEvents (eager or virtual) -> :class:`GraphBatch`, without the awkward round trip.

    Same features as ``GraphBatch.from_record(build_node_record(events, spec))``. For large inputs,
    build per chunk (edges grow as ``n_nodes**2``), e.g. with :func:`iter_graph_batches`.

    On typetracer events (inside ``dask_awkward.map_partitions`` while dask-awkward computes the meta
    or the necessary columns) it touches exactly ``spec.required_branches(events)`` and returns an empty
    batch of the right widths, so a function that scores ``build_graphs(events)`` prunes columns too::

        def score(events):                                   # run with dak.map_partitions(score, events)
            g = build_graphs(events, spec)                   # touches only the spec's branches
            out = ak.Array(model(*g.to_torch()).numpy())     # zero rows on typetracer
            if ak.backend(events) == "typetracer":
                return ak.Array(out.layout.to_typetracer(forget_length=True))
            return out
    """
    from coffea_hepfm.graph.record import build_flat

    flat = build_flat(events, spec, _stacklevel=4)
    return GraphBatch.from_flat(flat.x, flat.node_counts, flat.u)


def iter_graph_batches(
    source: ak.Array | FlatNodes, batch_size: int, spec: GraphSpec | None = None
) -> Iterator[GraphBatch]:
    """Yield :class:`GraphBatch` of ``batch_size`` events from a node record or :class:`FlatNodes`,
    computing edges one batch at a time (bounded memory for batched inference)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if isinstance(source, FlatNodes):
        x, counts, u = source.x, source.node_counts, source.u
    else:
        x, counts, u = record_arrays(source, spec)
    off = _offsets(counts)
    for s in range(0, len(counts), batch_size):
        t = min(s + batch_size, len(counts))
        yield GraphBatch.from_flat(x[off[s] : off[t]], counts[s:t], u[s:t])
