"""``HEPFMScore``: the foundation-model score as a coffea column, eager or dask-awkward.

Built on coffea's :class:`coffea.ml_tools.helper.numpy_call_wrapper` template method, the same base as
coffea's ``torch_wrapper``:

1. :meth:`HEPFMScore.prepare_awkward` builds the graph node record from NanoEvents with awkward only
   (eager, virtual, or lazily through dask-awkward, which then reads only the branches the graph spec
   needs) and hands three flat arrays to numpy: node features ``x [N, F]``, the event of each node
   ``batch [N]`` and global features ``u [B, Fg]``. No padding: jagged events stay jagged.
2. :meth:`HEPFMScore.numpy_call` builds the edges and runs the network (``local`` torch backend, or a
   Triton server) in mini-batches of ``batch_size`` events, returning ``[B, C (+ H)]`` float32.
3. :meth:`HEPFMScore.postprocess_awkward` turns that into a record array with one field per class (and
   ``embedding``).

The torch module is a *non-serialisable attribute* (coffea's ``nonserializable_attribute``): the wrapper
pickles as its parameters only, and each Dask worker loads the model the first time it needs it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
from coffea.ml_tools.helper import nonserializable_attribute, numpy_call_wrapper

from coffea_hepfm.errors import HEPFMError
from coffea_hepfm.score.backend import BackendSpec, parse_backend

__all__ = [
    "HEPFMScore",
    "NonFiniteScore",
    "NotEventsError",
    "ScoreArray",
    "check_model_file",
    "resolve_model",
]

_DEVICES = ("auto", "cpu", "cuda")


def _check_policy(policy: dict[str, str], spec, model: str) -> None:
    """Validate graph-spec policy values against the model's own spec, with the graph stage's rules (one
    source of truth): a bad value raises ``ValueError`` naming the field and its allowed values."""
    if "era" in policy and spec.version < 2:
        raise ValueError(
            f"era={policy['era']!r}: the era chooses the b-tag working points of graph spec v2, but model "
            f"{model!r} uses graph spec v{spec.version} (raw b-tag scores, no working points); leave era "
            "unset for this model, or use a model trained with graph spec v2"
        )
    spec.replace(**policy)


class NonFiniteScore(HEPFMError, RuntimeError):
    """The network produced a NaN/inf score; never returned silently."""


def resolve_model(model: str | os.PathLike) -> Path:
    """Turn a shipped model name or a path into the path of a ``.safetensors`` model file.

    Parameters
    ----------
    model
        A name from :func:`coffea_hepfm.models.available` (e.g. ``"tth_vs_ttbar"``) or a path to a model
        file written by :func:`coffea_hepfm.model.io.save_model`.

    Raises
    ------
    coffea_hepfm.models.UnknownModel
        ``model`` is neither a shipped name nor a path; the message lists the shipped names.
    FileNotFoundError
        ``model`` looks like a path (has a directory part or the suffix) but there is no such file.

    Examples
    --------
    >>> resolve_model("no_such_model")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    coffea_hepfm.models.UnknownModel: no shipped model 'no_such_model'; available: ...
    >>> resolve_model("/nowhere/m.safetensors")
    Traceback (most recent call last):
    ...
    FileNotFoundError: model file not found: /nowhere/m.safetensors
    """
    from coffea_hepfm import models

    text = os.fspath(model)
    if isinstance(model, os.PathLike) or os.sep in text or text.endswith(models.SUFFIX):
        if not Path(text).is_file():
            raise FileNotFoundError(f"model file not found: {text}")
        return Path(text)
    return models.path(text)


def check_model_file(path: Path):
    """Refuse a model file whose graph spec this code cannot build, from its header only (no weights);
    returns its :class:`~coffea_hepfm.graph.GraphSpec`.

    Raises ``ModelFileError`` (not a coffea-hepfm model), ``ValueError`` (unsupported graph spec
    version) or :class:`~coffea_hepfm.graph.GraphSpecMismatch` (network input sizes differ from the
    spec's feature counts).
    """
    from coffea_hepfm.graph import GraphSpec, GraphSpecMismatch
    from coffea_hepfm.model.io import read_metadata

    meta = read_metadata(path)
    try:
        spec = GraphSpec.from_dict(meta["graph_spec"])
    except ValueError as err:  # UnsupportedGraphSpec: name the file
        raise type(err)(f"{path}: {err}") from err
    cfg = meta["model_config"]
    for key, want in (
        ("n_node", spec.n_node_features),
        ("n_edge", spec.n_edge_features),
        ("n_global", spec.n_global_features),
    ):
        if cfg.get(key) != want:
            raise GraphSpecMismatch(
                f"{path.name}: network takes {key}={cfg.get(key)} but its graph spec "
                f"{spec.name} v{spec.version} gives {want}; refusing to score with it",
                {key: (want, cfg.get(key))},
            )
    return spec


class HEPFMScore(nonserializable_attribute, numpy_call_wrapper):
    """Per-event class probabilities (and optionally the graph embedding) from a coffea-hepfm model.

    Parameters
    ----------
    model
        A shipped model name (see :func:`coffea_hepfm.models.available`) or a path to a model file. Only
        this name/path is sent to Dask workers; each worker loads the weights itself.
    device
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"`` or ``"cuda"``. Local backend only.
    batch_size
        Events per network call: bounds the memory of one call (edges grow as ``n_nodes**2``).
        ``None``: 1024 on CPU and 65536 on CUDA (``coffea_hepfm.score.local.DEFAULT_BATCH``).
    embedding
        Also return the graph embedding as ``out["embedding"]`` (fixed-length float32 list).
    backend
        ``"local"`` (torch in this process) or ``"triton+grpc://host:port/name[/version]"`` /
        ``"triton+http://..."`` (delegates to :mod:`coffea_hepfm.triton.client`).
    missing, nonfinite, era
        The graph spec's *policy* fields (they choose what happens on bad input, or how the input is
        read, never which features exist): ``None`` keeps the model's spec. ``missing``: a whole collection absent from the file (e.g.
        ``Photon`` in slimmed NanoAOD v12) is ``"empty"`` (no nodes of that type, with a
        :class:`~coffea_hepfm.graph.errors.MissingCollectionWarning`) or an ``"error"``
        (:class:`~coffea_hepfm.graph.errors.MissingBranchError`). ``nonfinite``: objects with NaN/inf
        inputs are dropped (``"drop"``, with a warning giving the count), zeroed (``"zero"``) or
        ``"raise"`` :class:`~coffea_hepfm.graph.errors.NonFiniteInput`. A NaN score is never returned:
        it raises :class:`NonFiniteScore`. ``era`` (graph spec v2 models only): the CMS era
        (``coffea_hepfm.cms.ERAS``, e.g. ``"2022EE"``) whose b-tag working points categorise the jets, or
        ``"auto"`` (the v2 default): collision data take the era of their run number, simulation the
        chosen tagger's reference era (``coffea_hepfm.cms.btag.REFERENCE_ERA``). Set it for simulation
        of another era, or data whose runs are in no known era (which otherwise warn with
        :class:`~coffea_hepfm.graph.errors.EraWarning`); a v1 model (raw b-tag scores) refuses it.
    ood
        Add ``out["ood_score"]`` (float32: minimum squared Mahalanobis distance of the event's embedding to
        the model's training classes, Lee et al. 2018; see :mod:`coffea_hepfm.model.ood`) and
        ``out["in_domain"]`` (bool: ``ood_score`` at or below the threshold calibrated so that about 1 %
        of held-out training events are flagged). Needs a model file with a reference (written at
        training time); otherwise :class:`~coffea_hepfm.model.reference.ReferenceMissing` is raised here.

    Attributes
    ----------
    runner_
        The loaded backend, created lazily on first use in each process (not pickled).

    Examples
    --------
    >>> score = HEPFMScore("tth_vs_ttbar")                       # doctest: +SKIP
    >>> out = score(events)                                      # doctest: +SKIP
    >>> out.fields                                               # doctest: +SKIP
    ['ttH', 'ttbar']
    >>> out["tth"]                                               # doctest: +SKIP
    Traceback (most recent call last):
    awkward.errors.FieldNotFoundError: no score field 'tth'; did you mean 'ttH'? fields: ttH, ttbar ...
    >>> score(events.Jet)                                        # doctest: +SKIP
    Traceback (most recent call last):
    coffea_hepfm.score.wrapper.NotEventsError: HEPFMScore takes the events, not a collection: ...

    Edge cases: an empty chunk gives an empty record array of the same type; an event with no objects
    still gets a score (from its MET node and global features).

    >>> len(score(events[:0]))                                   # doctest: +SKIP
    0
    >>> HEPFMScore("no_such_model")                              # doctest: +SKIP
    Traceback (most recent call last):
    coffea_hepfm.models.UnknownModel: no shipped model 'no_such_model'; available: tth_vs_ttbar, ...
    """

    def __init__(
        self,
        model: str | os.PathLike,
        device: str = "auto",
        batch_size: int | None = None,
        embedding: bool = False,
        backend: str = "local",
        missing: str | None = None,
        nonfinite: str | None = None,
        ood: bool = False,
        era: str | None = None,
    ):
        nonserializable_attribute.__init__(self, ["runner_", "ood_"])
        self.model = os.fspath(model) if isinstance(model, os.PathLike) else model
        self.device = device
        self.batch_size = batch_size
        self.embedding = embedding
        self.backend = backend
        self.missing = missing
        self.nonfinite = nonfinite
        self.ood = bool(ood)
        self.era = era
        # Validation only: nothing loaded here (the object must stay cheap to pickle).
        if device not in _DEVICES:
            raise ValueError(f"device must be one of {_DEVICES}, got {device!r}")
        if batch_size is not None and (not isinstance(batch_size, (int, np.integer)) or batch_size < 1):
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self._backend_spec: BackendSpec = parse_backend(backend)
        _check_policy(self._policy(), check_model_file(resolve_model(self.model)), self.model)
        if self.ood:  # a model without OOD calibration fails here, not on a worker
            _read_ood(resolve_model(self.model))

    def _policy(self) -> dict[str, str]:
        """The graph-spec policy fields given to the constructor (``None`` = the model's own)."""
        fields = (("missing", self.missing), ("nonfinite", self.nonfinite), ("era", self.era))
        return {k: v for k, v in fields if v is not None}

    # -- lazily created, per process ------------------------------------------------------------------
    def _create_runner_(self):
        if self._backend_spec.kind == "local":
            from coffea_hepfm.score.local import LocalRunner

            return LocalRunner(resolve_model(self.model), device=self.device, batch_size=self.batch_size)
        from coffea_hepfm.score.remote import TritonRunner

        return TritonRunner(self._backend_spec, model=self.model, batch_size=self.batch_size)

    def _create_ood_(self) -> dict:
        return {"calibration": _read_ood(resolve_model(self.model)), "cache": {}}

    @property
    def graph_spec_(self):
        """The :class:`~coffea_hepfm.graph.GraphSpec` the model was trained with."""
        return self.runner_.graph_spec

    @property
    def class_names_(self) -> list[str]:
        """Output field names, one per class, in the model's order."""
        return list(self.runner_.class_names)

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        # coffea caches dask.delayed(self) on the instance; it is rebuilt where needed.
        state.pop("_delayed_wrapper", None)
        return state

    def __dask_tokenize__(self):
        return (
            type(self).__name__,
            self.model,
            self.device,
            self.batch_size,
            self.embedding,
            self.backend,
            self.missing,
            self.nonfinite,
            self.ood,
            self.era,
        )

    def __repr__(self) -> str:
        policy = "".join(f", {k}={v!r}" for k, v in self._policy().items())
        return (
            f"HEPFMScore({self.model!r}, device={self.device!r}, batch_size={self.batch_size}, "
            f"embedding={self.embedding}, backend={self.backend!r}{policy}"
            + (", ood=True)" if self.ood else ")")
        )

    def __call__(self, events, *args, **kwargs):
        """Score NanoEvents (eager, virtual or dask-awkward); see the class docstring."""
        if self.get_awkward_lib(events) is not None:  # numpy input keeps coffea's numpy_call interface
            _check_events(events)
        return super().__call__(events, *args, **kwargs)

    # -- numpy_call_wrapper hooks -----------------------------------------------------------------------
    def prepare_awkward(self, events, *args, **kwargs) -> tuple[tuple, dict]:
        """NanoEvents -> ``(x [N, F], batch [N], u [B, Fg])`` awkward (or dask-awkward) arrays."""
        from coffea_hepfm.graph import build_node_record

        spec = self.graph_spec_.replace(**self._policy())  # policy fields: never change the features
        record = build_node_record(events, spec)
        lib = self.get_awkward_lib(record)
        x = lib.flatten(record.nodes, axis=1)
        if lib is ak:
            batch = _node_event_index(record.nodes)
        else:  # the event index must restart at 0 in each partition, as numpy_call sees one partition
            batch = lib.map_partitions(_node_event_index, record.nodes, label="hepfm-node-event-index")
        return (x, batch, record.globals), {}

    def validate_numpy_input(self, x: np.ndarray, batch: np.ndarray, u: np.ndarray) -> None:
        spec = self.graph_spec_
        if x.ndim != 2 or x.shape[1] != spec.n_node_features:
            raise ValueError(f"node features must be [N, {spec.n_node_features}], got {x.shape}")
        if u.ndim != 2 or u.shape[1] != spec.n_global_features:
            raise ValueError(f"global features must be [B, {spec.n_global_features}], got {u.shape}")
        if batch.shape != (len(x),):
            raise ValueError(f"batch must be [N={len(x)}], got {batch.shape}")
        if len(batch) and (batch[0] < 0 or batch[-1] >= len(u) or np.any(np.diff(batch) < 0)):
            raise ValueError("batch must be sorted event indices in [0, B)")

    def numpy_call(self, x: np.ndarray, batch: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Score flat graph inputs: returns ``[B, C]`` probabilities (``[B, C + H]`` with embedding; two more
        columns, the OOD score and the in-domain flag, with ``ood=True``)."""
        counts = np.bincount(batch, minlength=len(u)).astype(np.int64)
        probs, emb = self.runner_.score(x, counts, u, embedding=self.embedding or self.ood)
        if not np.isfinite(probs).all():
            bad = np.flatnonzero(~np.isfinite(probs).all(axis=1))
            raise NonFiniteScore(f"non-finite score for {len(bad)} event(s), first at chunk index {bad[0]}")
        parts = [probs, emb] if self.embedding else [probs]
        if self.ood:
            from coffea_hepfm.model.ood import ood_scores

            cal = self.ood_["calibration"]
            d2 = ood_scores(emb, cal, self.ood_["cache"])
            parts += [d2[:, None], (d2 <= cal["threshold"])[:, None]]
        out = np.concatenate(parts, axis=1) if len(parts) > 1 else probs
        return np.ascontiguousarray(out, dtype=np.float32)

    def postprocess_awkward(self, return_array, *args, **kwargs):
        """``[B, C (+ H) (+ 2)]`` -> record array ``{class: float32, ..., "embedding": H * float32,
        "ood_score": float32, "in_domain": bool}``."""
        lib = self.get_awkward_lib(return_array) or ak
        names = self.class_names_
        fields = {name: return_array[:, i] for i, name in enumerate(names)}
        stop = len(names)
        if self.embedding:
            stop = len(names) + self.runner_.hidden
            fields["embedding"] = return_array[:, len(names) : stop]
        if self.ood:
            fields["ood_score"] = return_array[:, stop]
            fields["in_domain"] = return_array[:, stop + 1] > 0.5
        return lib.zip(fields, depth_limit=1, with_name=SCORES_RECORD, behavior=SCORES_BEHAVIOR)


class NotEventsError(HEPFMError, TypeError):
    """``HEPFMScore`` was given something other than NanoEvents (a collection, a numpy array...)."""


#: Collections whose presence marks an array as events (any one is enough: slimmed files lack some).
_EVENT_COLLECTIONS = ("Jet", "Electron", "Muon", "Photon", "MET", "PuppiMET")


def _record_name(events) -> str | None:
    layout = events._meta.layout if hasattr(events, "_meta") else events.layout
    return layout.purelist_parameter("__record__")


def _check_events(events) -> None:
    """Refuse a collection (``events.Jet``) instead of events, with advice, before any work.

    >>> _check_events(ak.Array([{"pt": 1.0}]))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    coffea_hepfm.score.wrapper.NotEventsError: HEPFMScore takes the events, not a collection: ...
    """
    if any(c in events.fields for c in _EVENT_COLLECTIONS):
        return
    name = _record_name(events)
    what = f"a {name!r} collection" if name else f"an array with fields {events.fields[:6]}"
    raise NotEventsError(
        f"HEPFMScore takes the events, not a collection: got {what}. Pass the events, e.g. "
        "score(events), not score(events.Jet); it reads Jet, Electron, Muon, Photon and MET itself"
    )


class ScoreArray(ak.Array):
    """The record array ``HEPFMScore`` returns: a wrong field name lists the fields (``out["tth"]``).

    Field names are the model's class names (``HEPFMScore.class_names_``, e.g. ``ttH``), which need not
    be the simulated process names (``tth``).
    """

    def __getitem__(self, where):
        if isinstance(where, str) and where not in self.fields:
            from coffea_hepfm.models import suggest

            raise ak.errors.FieldNotFoundError(
                f"no score field {where!r};{suggest(where, self.fields)} fields: {', '.join(self.fields)} "
                "(the model's class names, HEPFMScore.class_names_)"
            )
        return super().__getitem__(where)


SCORES_RECORD = "HEPFMScores"
SCORES_BEHAVIOR = {("*", SCORES_RECORD): ScoreArray}


def _read_ood(path: Path) -> dict:
    """The OOD calibration stored in a model file; :class:`ReferenceMissing` (with the remedy) if none."""
    from coffea_hepfm.model.io import read_metadata
    from coffea_hepfm.model.reference import ReferenceMissing, read_reference, remedy

    ref = read_reference(read_metadata(path), path)
    if ref is None or ref.ood is None:
        raise ReferenceMissing(f"ood=True: {path} has no out-of-distribution calibration; {remedy(path)}")
    return ref.ood


def _node_event_index(nodes: ak.Array) -> ak.Array:
    """Index of the event each node belongs to, flat ``[N]`` int64; works on typetracers too.

    >>> _node_event_index(ak.Array([[[1.0], [2.0]], [], [[3.0]]])).tolist()
    [0, 0, 2]
    """
    event = ak.local_index(nodes, axis=0)
    per_node = ak.broadcast_arrays(event, ak.local_index(nodes, axis=1))[0]
    return ak.values_astype(ak.flatten(per_node, axis=1), np.int64)
