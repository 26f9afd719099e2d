"""Reference distributions stored in a model file: the model's inputs and embedding on its training data.

A model file's ``"hepfm"`` header may hold a ``"reference"`` entry, written by the training code at
training time (:func:`coffea_hepfm.model.reference_build.build_reference`) or by a recorded re-save (``coffea-hepfm reference``)::

    {"format": "coffea-hepfm-reference", "format_version": 1,
     "source": {"what": ..., "n_events": N, ...},
     "inputs": {"node/jet/log_pt": {"kind": "node", "object": "jet", "feature": "log_pt", "column": 0,
                                    "discrete": false, "edges": [...], "counts": [...], "n": ...,
                                    "mean": ..., "std": ...},
                "global/log_ht": {...}, "count/jet": {...}, ...},
     "embedding": {"edges": <packed [H, K+1]>, "counts": <packed [H, K+2]>, "n": N},
     "ood": {...}}                      # see coffea_hepfm.model.ood

Inputs are histogrammed per feature (the names come from the graph spec, so a new spec gets its own
features without code changes):

- ``node/<type>/<feature>``: every node feature that is not a one-hot type flag, over the nodes of that
  object type (types are the spec's ``is_<type>`` node features);
- ``global/<feature>``: every global feature;
- ``count/<type>``: the number of nodes of each type per event.

Binning: a feature with at most :data:`MAX_DISCRETE` distinct values in the reference (counts, charge,
one-hot-like or categorical features) gets one bin per value; any other gets :data:`N_BINS` regular bins
between its 0.1 % and 99.9 % quantiles. ``counts`` always has an underflow bin first and an overflow bin
last (``len(edges) + 1`` entries), so values outside the training range are counted, never dropped. Bins
are half-open ``[lo, hi)`` as in ``hist``/boost-histogram.

Large arrays (embedding histograms, OOD matrices) are stored "packed": ``{"dtype", "shape", "b64"}``, the
little-endian bytes in base64. JSON stays small and numbers exact.

Examples
--------
>>> values = {"count/jet": np.array([0, 1, 1, 2, 9])}
>>> edges, discrete = choose_edges(values["count/jet"])
>>> discrete, edges.tolist()
(True, [-0.5, 0.5, 1.5, 5.5, 12.5])
>>> histogram(np.array([-3.0, 1.0, 1.2, 100.0]), edges).tolist()  # underflow, 4 bins, overflow
[1, 0, 2, 0, 0, 1]
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from coffea_hepfm.errors import HEPFMError

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MAX_DISCRETE",
    "N_BINS",
    "REFERENCE_KEY",
    "FeatureLayout",
    "FeatureReference",
    "Reference",
    "ReferenceMissing",
    "build_input_reference",
    "choose_edges",
    "feature_layout",
    "histogram",
    "input_values",
    "pack",
    "read_reference",
    "unpack",
]

REFERENCE_KEY = "reference"
FORMAT = "coffea-hepfm-reference"
FORMAT_VERSION = 1
#: at most this many distinct values -> one bin per value
MAX_DISCRETE = 16
#: regular bins of a continuous feature (between its 0.1 % and 99.9 % quantiles)
N_BINS = 40
#: regular bins per embedding dimension
N_BINS_EMBEDDING = 30


class ReferenceMissing(HEPFMError, LookupError):
    """The model file has no reference distributions (or no OOD calibration) for the requested check."""


def remedy(path) -> str:
    """How to add references to a model file that lacks them."""
    return (
        f"re-train it with this coffea-hepfm (references are written at training time) or add them with "
        f"`coffea-hepfm reference {path} --data DATASET_DIR --out NEW.safetensors`"
    )


# -- packing -----------------------------------------------------------------------------------------------
def pack(array: np.ndarray) -> dict:
    """``{"dtype", "shape", "b64"}``: an exact, compact JSON form of a numeric array.

    >>> unpack(pack(np.arange(3, dtype=np.float32))).tolist()
    [0.0, 1.0, 2.0]
    """
    a = np.ascontiguousarray(array)
    dtype = a.dtype.newbyteorder("<")
    return {
        "dtype": dtype.str,
        "shape": list(a.shape),
        "b64": base64.b64encode(a.astype(dtype).tobytes()).decode("ascii"),
    }


def unpack(packed: Mapping[str, Any]) -> np.ndarray:
    """Inverse of :func:`pack` (a plain list is accepted too)."""
    if not isinstance(packed, Mapping):
        return np.asarray(packed)
    raw = base64.b64decode(packed["b64"])
    return np.frombuffer(raw, dtype=np.dtype(packed["dtype"])).reshape(packed["shape"]).copy()


# -- which features ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FeatureLayout:
    """The histogrammed features of a graph spec.

    ``types`` are the object types (from the spec's ``is_<type>`` node features), ``type_columns`` their
    one-hot columns, ``node_columns`` the ``(name, column)`` of every other node feature, ``globals`` the
    global feature names.
    """

    types: tuple[str, ...]
    type_columns: tuple[int, ...]
    node_columns: tuple[tuple[str, int], ...]
    globals: tuple[str, ...]

    def names(self) -> list[str]:
        """Every input feature name, in a fixed order (node features by type, globals, counts)."""
        out = [f"node/{t}/{f}" for t in self.types for f, _ in self.node_columns]
        out += [f"global/{g}" for g in self.globals]
        out += [f"count/{t}" for t in self.types]
        return out


def feature_layout(spec) -> FeatureLayout:
    """:class:`FeatureLayout` of a ``GraphSpec`` (or its dict), read from its feature names.

    >>> from coffea_hepfm.graph import GraphSpec
    >>> lay = feature_layout(GraphSpec())
    >>> lay.types, len(lay.node_columns), len(lay.names())
    (('jet', 'electron', 'muon', 'photon', 'met'), 8, 52)
    """
    if isinstance(spec, Mapping):
        from coffea_hepfm.graph import GraphSpec

        spec = GraphSpec.from_dict(spec)
    names = list(spec.node_features)
    types = tuple(n[3:] for n in names if n.startswith("is_"))
    type_cols = tuple(names.index(f"is_{t}") for t in types)
    node_cols = tuple((n, k) for k, n in enumerate(names) if not n.startswith("is_"))
    return FeatureLayout(types, type_cols, node_cols, tuple(spec.global_features))


def node_types(x: np.ndarray, layout: FeatureLayout) -> np.ndarray:
    """Index into ``layout.types`` of each node (``-1`` for a node with no type flag set)."""
    if len(layout.type_columns) == 0 or len(x) == 0:
        return np.full(len(x), -1, np.int64)
    flags = x[:, list(layout.type_columns)] > 0.5
    return np.where(flags.any(axis=1), flags.argmax(axis=1), -1).astype(np.int64)


def input_values(x: np.ndarray, counts: np.ndarray, u: np.ndarray, layout: FeatureLayout) -> dict:
    """Per-feature raw values (``{name: 1-d array}``) of flat graph inputs, in :meth:`FeatureLayout.names` order.

    ``x`` [N, F] node features, ``counts`` [B] nodes per event, ``u`` [B, G] globals.
    """
    types = node_types(x, layout)
    event = np.repeat(np.arange(len(counts)), np.asarray(counts, np.int64))
    out: dict[str, np.ndarray] = {}
    for k, t in enumerate(layout.types):
        sel = x[types == k]
        for name, col in layout.node_columns:
            out[f"node/{t}/{name}"] = sel[:, col]
    for g, name in enumerate(layout.globals):
        out[f"global/{name}"] = u[:, g]
    for k, t in enumerate(layout.types):
        out[f"count/{t}"] = np.bincount(event[types == k], minlength=len(counts)).astype(np.float64)
    return out


# -- binning and histograms ----------------------------------------------------------------------------------
def choose_edges(values: np.ndarray, n_bins: int = N_BINS, max_discrete: int = MAX_DISCRETE):
    """Bin edges for a feature from its reference values; returns ``(edges float64, discrete bool)``.

    Discrete (at most ``max_discrete`` distinct values): one bin centred on each value (edges half-way
    between neighbours). Otherwise ``n_bins`` regular bins between the 0.1 % and 99.9 % quantiles. No
    values: a single bin ``[-0.5, 0.5)``.

    >>> choose_edges(np.array([0.0, 0.0]))[0].tolist()
    [-0.5, 0.5]
    >>> choose_edges(np.linspace(0, 1, 1001), n_bins=4)[0].round(3).tolist()
    [0.001, 0.25, 0.5, 0.75, 0.999]
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return np.array([-0.5, 0.5]), True
    distinct = np.unique(v)
    if distinct.size <= max_discrete:
        if distinct.size == 1:
            return np.array([distinct[0] - 0.5, distinct[0] + 0.5]), True
        mids = 0.5 * (distinct[1:] + distinct[:-1])
        lo = distinct[0] - (mids[0] - distinct[0])
        hi = distinct[-1] + (distinct[-1] - mids[-1])
        return np.concatenate([[lo], mids, [hi]]), True
    lo, hi = np.quantile(v, [0.001, 0.999])
    if not hi > lo:
        lo, hi = distinct[0], distinct[-1]
    return np.linspace(lo, hi, n_bins + 1), False


def histogram(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts ``[underflow, bins..., overflow]`` (int64) with ``[lo, hi)`` bins, as ``hist`` fills them."""
    idx = np.searchsorted(edges, np.asarray(values, dtype=np.float64), side="right")
    return np.bincount(idx, minlength=len(edges) + 1).astype(np.int64)


@dataclass
class FeatureReference:
    """One reference histogram: ``counts`` include the flow bins (``len(edges) + 1`` entries)."""

    name: str
    kind: str
    edges: np.ndarray
    counts: np.ndarray
    discrete: bool
    object: str | None = None
    feature: str | None = None
    column: int | None = None
    mean: float = float("nan")
    std: float = float("nan")

    @property
    def n(self) -> int:
        return int(self.counts.sum())

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "object": self.object,
            "feature": self.feature,
            "column": self.column,
            "discrete": self.discrete,
            "edges": self.edges.tolist(),
            "counts": self.counts.tolist(),
            "n": self.n,
            "mean": None if not np.isfinite(self.mean) else round(float(self.mean), 6),
            "std": None if not np.isfinite(self.std) else round(float(self.std), 6),
        }

    @classmethod
    def from_dict(cls, name: str, d: Mapping[str, Any]) -> FeatureReference:
        return cls(
            name=name,
            kind=d["kind"],
            edges=np.asarray(d["edges"], dtype=np.float64),
            counts=np.asarray(d["counts"], dtype=np.int64),
            discrete=bool(d.get("discrete", False)),
            object=d.get("object"),
            feature=d.get("feature"),
            column=d.get("column"),
            mean=float("nan") if d.get("mean") is None else float(d["mean"]),
            std=float("nan") if d.get("std") is None else float(d["std"]),
        )


def build_input_reference(x: np.ndarray, counts: np.ndarray, u: np.ndarray, spec) -> dict[str, dict]:
    """Reference histograms (JSON-safe dicts) of every input feature of flat graph inputs."""
    layout = feature_layout(spec)
    values = input_values(x, counts, u, layout)
    columns = dict(layout.node_columns)
    out = {}
    for name, v in values.items():
        kind, *rest = name.split("/")
        edges, discrete = choose_edges(v)
        ref = FeatureReference(
            name=name,
            kind=kind,
            edges=edges,
            counts=histogram(v, edges),
            discrete=discrete,
            object=rest[0] if kind in ("node", "count") else None,
            feature=rest[-1] if kind != "count" else "count",
            column=columns.get(rest[-1])
            if kind == "node"
            else (list(layout.globals).index(rest[0]) if kind == "global" else None),
            mean=float(np.mean(v)) if v.size else float("nan"),
            std=float(np.std(v)) if v.size else float("nan"),
        )
        out[name] = ref.to_dict()
    return out


@dataclass
class Reference:
    """A parsed ``"reference"`` entry: ``inputs`` by feature name, ``embedding`` arrays, ``ood`` dict."""

    inputs: dict[str, FeatureReference]
    source: dict = field(default_factory=dict)
    embedding: dict | None = None
    ood: dict | None = None
    raw: dict = field(default_factory=dict, repr=False)


def read_reference(
    meta: Mapping[str, Any], path: Any = "model", *, required: bool = False
) -> Reference | None:
    """The reference of a model file's header ``meta`` (``read_metadata(path)``), or ``None`` without one.

    ``required=True`` raises :class:`ReferenceMissing` naming ``path`` and the remedy instead of returning
    ``None``. A reference in an unknown format raises ``ValueError``.
    """
    raw = meta.get(REFERENCE_KEY)
    if raw is None:
        if required:
            raise ReferenceMissing(f"{path} has no reference distributions; {remedy(path)}")
        return None
    if raw.get("format") != FORMAT or raw.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path}: reference format {raw.get('format')!r} v{raw.get('format_version')} is not supported "
            f"(reads {FORMAT!r} v{FORMAT_VERSION}); upgrade coffea-hepfm"
        )
    inputs = {name: FeatureReference.from_dict(name, d) for name, d in raw["inputs"].items()}
    emb = raw.get("embedding")
    if emb is not None:
        emb = {"edges": unpack(emb["edges"]), "counts": unpack(emb["counts"]), "n": emb.get("n")}
    return Reference(
        inputs=inputs, source=dict(raw.get("source", {})), embedding=emb, ood=raw.get("ood"), raw=raw
    )
