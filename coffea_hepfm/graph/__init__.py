"""NanoAOD events -> event graphs for the HEP foundation model.

Two representations of the same graphs:

- :func:`build_node_record` -> awkward record per event (``nodes``, ``globals``): eager, virtual and
  dask-awkward NanoEvents; the storable (parquet) form.
- :class:`GraphBatch` (flat numpy, PyG layout, edges included): :func:`build_graphs`,
  :meth:`GraphBatch.from_record`, :meth:`GraphBatch.to_pyg`, :meth:`GraphBatch.to_torch`.

The features are defined by :class:`GraphSpec` (see ``docs/design.md``, section graph).
"""

from coffea_hepfm.graph.batch import GraphBatch, build_graphs, iter_graph_batches, record_arrays
from coffea_hepfm.graph.columns import Plan
from coffea_hepfm.graph.edges import edge_attr, edge_index
from coffea_hepfm.graph.errors import (
    EraWarning,
    GraphError,
    GraphSpecMismatch,
    MissingBranchError,
    MissingCollectionWarning,
    NonFiniteInput,
    NonFiniteWarning,
    NoValidTagger,
    TaggerFallbackWarning,
    UnsupportedGraphSpec,
)
from coffea_hepfm.graph.nodes import FlatNodes
from coffea_hepfm.graph.record import build_flat, build_node_record
from coffea_hepfm.graph.record import resolve_any as resolve
from coffea_hepfm.graph.sources import PlanV2
from coffea_hepfm.graph.spec import (
    EDGE_FEATURES,
    GLOBAL_FEATURES,
    NODE_FEATURES,
    NODE_FEATURES_V1,
    NODE_FEATURES_V2,
    GraphSpec,
)

__all__ = [
    "EDGE_FEATURES",
    "GLOBAL_FEATURES",
    "NODE_FEATURES",
    "NODE_FEATURES_V1",
    "NODE_FEATURES_V2",
    "EraWarning",
    "FlatNodes",
    "GraphBatch",
    "GraphError",
    "GraphSpec",
    "GraphSpecMismatch",
    "MissingBranchError",
    "MissingCollectionWarning",
    "NonFiniteInput",
    "NonFiniteWarning",
    "NoValidTagger",
    "Plan",
    "PlanV2",
    "TaggerFallbackWarning",
    "UnsupportedGraphSpec",
    "build_flat",
    "build_graphs",
    "build_node_record",
    "edge_attr",
    "edge_index",
    "iter_graph_batches",
    "record_arrays",
    "resolve",
]
