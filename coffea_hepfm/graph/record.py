"""``build_node_record``: NanoEvents -> one awkward record per event (``nodes``, ``globals``).

This is the storable form of an event graph (ntuples, parquet): edges are a deterministic function of the
nodes (:mod:`coffea_hepfm.graph.edges`) and are not stored. It works on eager and virtual NanoEvents and
on dask-awkward NanoEvents, where it maps over partitions and reads only the branches the spec needs.
"""

from __future__ import annotations

import awkward as ak
import numpy as np

from coffea_hepfm.graph.columns import Plan, read_columns, resolve
from coffea_hepfm.graph.nodes import FlatNodes, build_flat_nodes
from coffea_hepfm.graph.sources import PlanV2, read_columns_v2, resolve_v2
from coffea_hepfm.graph.spec import GraphSpec
from coffea_hepfm.graph.validity import source_of


def resolve_any(spec: GraphSpec, available=None) -> Plan | PlanV2:
    """The reading plan of ``spec`` for a file with branch names (or NanoEvents) ``available``:
    :func:`~coffea_hepfm.graph.columns.resolve` for version 1, :func:`~coffea_hepfm.graph.sources.resolve_v2`
    for version 2."""
    return resolve(spec, available) if spec.version == 1 else resolve_v2(spec, available)


def flat_from_columns(events, plan: Plan | PlanV2, warn: bool = True, stacklevel: int = 3) -> FlatNodes:
    """Read the plan's columns from eager/virtual (or typetracer) events and build the flat node arrays."""
    source = source_of(events)
    if isinstance(plan, PlanV2):
        from coffea_hepfm.graph.build_v2 import build_flat_v2

        cols = read_columns_v2(events, plan)
        return build_flat_v2(cols, plan, warn=warn, stacklevel=stacklevel + 1, source=source)
    cols = read_columns(events, plan)
    return build_flat_nodes(cols, plan, warn=warn, stacklevel=stacklevel + 1, source=source)


def record_from_flat(flat: FlatNodes) -> ak.Array:
    """Wrap flat node arrays as the record array ``{nodes: var * F * float32, globals: G * float32}``."""
    n_f = flat.x.shape[1]
    offsets = np.zeros(len(flat.node_counts) + 1, dtype=np.int64)
    np.cumsum(flat.node_counts, out=offsets[1:])
    nodes = ak.contents.ListOffsetArray(
        ak.index.Index64(offsets),
        ak.contents.RegularArray(ak.contents.NumpyArray(flat.x.reshape(-1)), n_f, zeros_length=0),
    )
    glob = ak.contents.RegularArray(
        ak.contents.NumpyArray(flat.u.reshape(-1)), flat.u.shape[1], zeros_length=len(flat.node_counts)
    )
    return ak.Array(
        ak.contents.RecordArray([nodes, glob], ["nodes", "globals"], length=len(flat.node_counts))
    )


def _is_dask(events) -> bool:
    return type(events).__module__.startswith("dask_awkward")


def _partition(events, plan: Plan | PlanV2) -> ak.Array:
    """Build the record of one eager/virtual (or typetracer) chunk for an already resolved plan."""
    typetracer = ak.backend(events) == "typetracer"
    # Warnings about bad values are raised where the data is; on typetracer there is no data.
    record = record_from_flat(flat_from_columns(events, plan, warn=not typetracer, stacklevel=4))
    if typetracer:
        return ak.Array(record.layout.to_typetracer(forget_length=True))
    return record


def build_node_record(events, spec: GraphSpec | None = None) -> ak.Array:
    """Turn NanoEvents into event-graph node records.

    Parameters
    ----------
    events
        NanoEvents from :func:`coffea_hepfm.nanoaod.open_events`: eager, virtual, or dask-awkward (then
        the result is a lazy dask-awkward array built with ``dask_awkward.map_partitions``, and only
        ``spec.required_branches(events)`` are read).
    spec
        The graph definition; ``GraphSpec()`` by default. Its ``missing`` / ``nonfinite`` fields choose
        what happens with absent collections and NaN/inf input.

    Returns
    -------
    ak.Array
        One record per event: ``nodes`` (``var * spec.n_node_features * float32``, node order jets,
        electrons, muons, photons, MET, pT-descending within a type) and ``globals``
        (``spec.n_global_features * float32``). ``len(result) == len(events)``.

    Examples
    --------
    >>> rec = build_node_record(open_events("nano_dy.root"))           # doctest: +SKIP
    >>> rec.nodes.type.content, rec.globals.type.content               # doctest: +SKIP
    (var * 13 * float32, 7 * float32)

    Edge cases: an empty file gives a length-0 array of the same type; an event with no objects has one
    node (MET), or zero nodes if ``spec.met`` is False, and its globals are still filled. A file without
    ``Photon`` warns (``MissingCollectionWarning``) and has no photon nodes, unless
    ``spec.missing == "error"``, which raises ``MissingBranchError("Photon_pt not found ...")``.
    """
    spec = GraphSpec() if spec is None else spec
    if _is_dask(events):  # one form for all files: refuse files that differ in what the spec reads
        from coffea_hepfm.nanoaod.consistency import check_uniform_inputs

        check_uniform_inputs(events, spec.required_branches)
    plan = resolve_any(spec, events)  # from the form only: errors/warnings once, before anything is read
    plan.warn_absent()
    if _is_dask(events):
        import dask_awkward as dak

        return dak.map_partitions(_partition, events, plan, label="hepfm-node-record")
    return _partition(events, plan)


def build_flat(events, spec: GraphSpec | None = None, *, _stacklevel: int = 3) -> FlatNodes:
    """Like :func:`build_node_record` for eager/virtual events, but returns the flat numpy arrays
    (skips the awkward wrapping; used by :func:`coffea_hepfm.graph.build_graphs`)."""
    spec = GraphSpec() if spec is None else spec
    if _is_dask(events):
        raise TypeError("build_flat needs eager or virtual events; use build_node_record for dask-awkward")
    plan = resolve_any(spec, events)
    plan.warn_absent(stacklevel=_stacklevel)
    return flat_from_columns(events, plan, stacklevel=_stacklevel)
