"""Model files: one ``NAME.safetensors`` (weights + ``"hepfm"`` JSON metadata), ``NAME.json``, ``NAME.md``.

The ``"hepfm"`` metadata key holds::

    {"format": "coffea-hepfm-model", "format_version": 2, "graph_spec": {...},
     "model_config": {n_node, n_edge, n_global, hidden, n_proc_steps, aggr, mlp_layers,
                      "head": kind, "n_outputs": C, "head_config": {...}},
     "head": kind, "class_names": [...], "task": ..., "recipe": {...}, "data": {...}, "metrics": {...}, ...}

plus ``"created"`` (when training finished, recorded by the training code; the save time for models saved
otherwise), ``"resaves"`` (one entry per re-save, see :mod:`coffea_hepfm.model.resave`) and ``"integrity"``
(sha256 of the weights and of the metadata, checked at every load: :mod:`coffea_hepfm.model.integrity`).
The sidecar ``NAME.json`` repeats it plus ``"sha256"`` of the whole file; ``NAME.md`` is the model card.
Loading never unpickles: pickle and torch-zip files are refused by their first bytes, weights are read
with ``safetensors``. Files of ``format_version`` 1 (no stored hashes) still load: see ``integrity``.

Examples
--------
>>> save_model("tth.safetensors", clf, spec.to_dict(), {"class_names": ["ttbar", "ttH"], "task": "tth"})
... # doctest: +SKIP
>>> loaded = load_model("tth.safetensors", expected_spec=spec)  # doctest: +SKIP
>>> load_model("old.pt")  # doctest: +SKIP
UnsafeModelFile: old.pt is a pickle/torch.save file (starts with b'PK'); ...
>>> load_model("edited.safetensors")  # class names swapped in the header  # doctest: +SKIP
ChecksumMismatch: edited.safetensors: the metadata (class names, graph spec, metrics or provenance) was edited
after saving: the hashes stored in the file do not match; do not use this file, get the original again
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coffea_hepfm.model.checks import (
    ChecksumMismatch,
    GraphSpecMismatch,
    ModelFileError,
    UnsafeModelFile,
    check_consistent,
    check_magic,
    check_spec,
    jsonable,
    sha256_file,
    spec_to_dict,
)
from coffea_hepfm.model.integrity import (
    INTEGRITY_KEY,
    STATEMENTS,
    Integrity,
    UnverifiedModelFile,
    file_weights_digest,
    integrity_record,
    verify_file,
)

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "ChecksumMismatch",
    "GraphSpecMismatch",
    "LoadedModel",
    "ModelFileError",
    "UnsafeModelFile",
    "UnverifiedModelFile",
    "load_backbone",
    "load_model",
    "read_metadata",
    "resolve_model_path",
    "save_model",
    "sha256_file",
]

FORMAT = "coffea-hepfm-model"
#: written by this code: 2 (stored hashes, exact provenance); read: 1 and 2
FORMAT_VERSION = 2
READ_VERSIONS = (1, 2)
METADATA_KEY = "hepfm"


@dataclass
class LoadedModel:
    """A loaded model file: ``module`` (``HEPFMClassifier`` in eval mode) and its metadata."""

    module: Any
    graph_spec: dict
    meta: dict
    class_names: list[str]
    path: Path
    sha256: str = field(default="")
    #: what was verified at load: a key of ``coffea_hepfm.model.integrity.STATEMENTS``
    integrity: str = field(default="")

    @property
    def integrity_statement(self) -> str:
        """One sentence on what was verified when the file was loaded (shown by ``model-info``)."""
        return STATEMENTS.get(self.integrity, "(unknown)")

    @property
    def kind(self) -> str:
        """Head kind: ``"classifier"``, ``"multiclass"``, ``"multilabel"`` or ``"projection"``."""
        return self.meta["head"]

    @property
    def multilabel(self) -> bool:
        return self.kind == "multilabel"

    @property
    def spec(self):
        """The graph spec as a ``coffea_hepfm.graph.GraphSpec`` (to build graphs for this model)."""
        from coffea_hepfm.graph import GraphSpec

        return GraphSpec.from_dict(self.graph_spec)

    def scoring_module(self):
        """``ScoringModule`` returning ``(probabilities, embedding)``, eval mode; ``torch.jit.script``-able."""
        from coffea_hepfm.model.heads import ScoringModule

        return ScoringModule(self.module, multilabel=self.multilabel).eval()


def _write_atomic(target: Path, write) -> Path:
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    try:
        write(tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def save_model(
    path: str | os.PathLike, classifier, spec_dict, meta: dict | None = None, *, overwrite: bool = True
) -> Path:
    """Write ``path`` (``.safetensors``), the ``.json`` sidecar and the ``.md`` model card.

    Parameters
    ----------
    path : path-like
        Must end in ``.safetensors``.
    classifier : HEPFMClassifier
    spec_dict : dict or GraphSpec
        The graph spec the model was trained on (``GraphSpec.to_dict()``); needs ``name`` and ``version``.
    meta : dict
        ``class_names`` (one per output for classifier/multiclass/multilabel heads), ``task``,
        ``recipe``, ``data`` (e.g. ``n_train``), ``metrics``, and optionally ``created`` (ISO 8601 time
        when training finished; default: now), ``reproduce``, ``description``, ``intended_use``,
        ``limitations``. Values must be JSON-serialisable.

    Returns
    -------
    Path
        The weights file. All three files are written to temporary names first and renamed at the end,
        so a failure leaves no half-written model. The file stores sha256 hashes of its weights and of its
        metadata (``"integrity"``), verified at every load.
    """
    import safetensors.torch
    import torch

    from coffea_hepfm import __version__
    from coffea_hepfm.model.card import render_card
    from coffea_hepfm.model.heads import HEPFMClassifier

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ModelFileError(f"model files end in .safetensors, got {path.name!r}")
    if not isinstance(classifier, HEPFMClassifier):
        raise TypeError(f"classifier must be a HEPFMClassifier, got {type(classifier).__name__}")
    if not overwrite and path.exists():
        raise FileExistsError(path)
    meta = dict(meta or {})
    reserved = {"format", "format_version", "graph_spec", "model_config", "head", "sha256", INTEGRITY_KEY}
    reserved &= set(meta)
    if reserved:
        raise ModelFileError(f"meta must not set the reserved keys {sorted(reserved)}")
    class_names = [str(c) for c in meta.pop("class_names", [])]
    if classifier.kind != "projection" and len(class_names) != classifier.n_outputs:
        raise ModelFileError(
            f"{classifier.kind} head has {classifier.n_outputs} outputs but {len(class_names)} class_names "
            f"were given: {class_names}"
        )
    cfg = classifier.get_config()
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "graph_spec": spec_to_dict(spec_dict),
        "model_config": {
            **cfg["backbone"],
            "head": classifier.kind,
            "n_outputs": classifier.n_outputs,
            "head_config": cfg["head"],
        },
        "head": classifier.kind,
        "class_names": class_names,
        "task": meta.pop("task", None),
        "recipe": meta.pop("recipe", {}),
        "data": meta.pop("data", {}),
        "metrics": meta.pop("metrics", {}),
        "created": _created(meta.pop("created", None)),
        # a re-save keeps the versions the model was trained with
        "coffea_hepfm_version": meta.pop("coffea_hepfm_version", __version__),
        "torch_version": meta.pop("torch_version", torch.__version__.split("+")[0]),
        **meta,
    }
    header = jsonable(header)
    check_consistent(header, path)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in classifier.state_dict().items()}
    n_parameters = sum(p.numel() for p in classifier.parameters())
    header[INTEGRITY_KEY] = integrity_record(header, tensors)
    blob = safetensors.torch.save(tensors, metadata={METADATA_KEY: json.dumps(header)})
    if file_weights_digest(blob, path) != header[INTEGRITY_KEY]["weights_sha256"]:  # never expected
        raise ModelFileError(f"{path}: the serialised weights do not hash like the state dict; not written")
    digest = hashlib.sha256(blob).hexdigest()

    path.parent.mkdir(parents=True, exist_ok=True)
    tmps: list[tuple[Path, Path]] = []
    try:
        tmps.append((_write_atomic(path, lambda t: t.write_bytes(blob)), path))
        sidecar = {**header, "weights_file": path.name, "sha256": digest, "n_parameters": n_parameters}
        js = path.with_suffix(".json")
        tmps.append((_write_atomic(js, lambda t: t.write_text(json.dumps(sidecar, indent=2) + "\n")), js))
        card = render_card(header, path.stem, digest, n_parameters)
        md = path.with_suffix(".md")
        tmps.append((_write_atomic(md, lambda t: t.write_text(card)), md))
    except BaseException:
        for tmp, _ in tmps:
            tmp.unlink(missing_ok=True)
        raise
    for tmp, final in tmps:
        os.replace(tmp, final)
    return path


def _created(value) -> str:
    """``created``: an ISO 8601 time given by the training code, or now (UTC, seconds)."""
    if value is None:
        return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    try:
        datetime.datetime.fromisoformat(str(value))
    except ValueError as err:
        raise ModelFileError(f"meta 'created' must be an ISO 8601 time, got {value!r}") from err
    return str(value)


def resolve_model_path(path_or_name: str | os.PathLike) -> Path:
    """An existing file path, or the name of a shipped model (``coffea_hepfm.models.available()``)."""
    p = Path(path_or_name)
    if p.is_file():
        return p
    if isinstance(path_or_name, str) and p.parent == Path(".") and p.suffix in ("", ".safetensors"):
        from coffea_hepfm import models

        return models.path(path_or_name)  # raises UnknownModel listing the available names
    raise FileNotFoundError(f"model file not found: {p}")


def read_metadata(path_or_name: str | os.PathLike, *, verify: bool = True) -> dict:
    """The ``"hepfm"`` metadata of a model file, checked for format and version (and, with ``verify``, the
    hashes stored in the file and its sidecar, as at load; see :func:`load_model`)."""
    path = resolve_model_path(path_or_name)
    raw = _read(path)
    meta = _metadata(raw, path)
    if verify:
        verify_file(path, meta, raw)
    return meta


def _read(path: Path) -> bytes:
    check_magic(path)
    return path.read_bytes()


def _metadata(raw: bytes, path: Path) -> dict:
    (n,) = struct.unpack("<Q", raw[:8])
    try:
        header = json.loads(raw[8 : 8 + n])
        meta_raw = (header.get("__metadata__") or {}).get(METADATA_KEY)
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as err:
        raise ModelFileError(f"{path} is not a readable safetensors file: {err}") from err
    if meta_raw is None:
        raise ModelFileError(f"{path} has no {METADATA_KEY!r} metadata: not a coffea-hepfm model file")
    try:
        meta = json.loads(meta_raw)
    except (json.JSONDecodeError, TypeError) as err:
        raise ModelFileError(f"{path}: {METADATA_KEY!r} metadata is not valid JSON ({err})") from err
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise ModelFileError(f"{path}: metadata format is {got!r}, expected {FORMAT!r}")
    if meta.get("format_version") not in READ_VERSIONS:
        raise ModelFileError(
            f"{path}: model format_version {meta.get('format_version')!r} is not supported by this "
            f"coffea-hepfm (reads versions {', '.join(map(str, READ_VERSIONS))}); upgrade coffea-hepfm or "
            "re-export the model"
        )
    for key in ("graph_spec", "model_config", "head"):
        if key not in meta:
            raise ModelFileError(f"{path}: metadata lacks {key!r}")
    return meta


def _load(path_or_name, expected_spec, verify: bool, part: str):
    import safetensors.torch

    from coffea_hepfm.model.heads import HEPFMClassifier, build_head
    from coffea_hepfm.model.network import HEPFMNet

    path = resolve_model_path(path_or_name)
    raw = _read(path)
    meta = _metadata(raw, path)
    integrity = (
        verify_file(path, meta, raw) if verify else Integrity("skipped", hashlib.sha256(raw).hexdigest())
    )
    check_spec(meta["graph_spec"], expected_spec, path)
    check_consistent(meta, path)
    cfg = dict(meta["model_config"])
    head_cfg = cfg.pop("head_config")
    backbone_cfg = {
        k: cfg[k] for k in ("n_node", "n_edge", "n_global", "hidden", "n_proc_steps", "aggr", "mlp_layers")
    }
    try:
        module = HEPFMClassifier(HEPFMNet(**backbone_cfg), build_head(head_cfg))
    except (TypeError, ValueError, KeyError) as err:
        raise ModelFileError(f"{path}: model_config cannot build a model: {err}") from err
    try:
        state = safetensors.torch.load(raw)
    except Exception as err:  # safetensors raises its own SafetensorError for malformed files
        raise ModelFileError(f"{path} is not a readable safetensors file: {err}") from err
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ModelFileError(f"{path}: weights do not match model_config: {err}") from err
    return path, meta, integrity, (module.backbone if part == "backbone" else module)


def load_model(path_or_name: str | os.PathLike, expected_spec=None, *, verify: bool = True) -> LoadedModel:
    """Load a model file (or shipped model by name) safely; ``module`` is a ``HEPFMClassifier`` in eval mode.

    Parameters
    ----------
    path_or_name : path-like or str
        A ``.safetensors`` file, or a name from ``coffea_hepfm.models.available()``.
    expected_spec : GraphSpec or dict, optional
        The spec the caller builds graphs with. Default: this code's current ``GraphSpec`` name/version.
    verify : bool
        Check the sha256 hashes of the weights and of the metadata stored in the file, and the ``.json``
        sidecar's sha256 of the whole file when the sidecar exists. Files written before hashes were stored
        (``format_version`` 1) are verified by their sidecar; without one they load with an
        :class:`UnverifiedModelFile` warning. ``LoadedModel.integrity_statement`` says what was verified.

    Raises
    ------
    UnsafeModelFile
        Pickle or ``torch.save`` zip file (never unpickled).
    ModelFileError
        Not safetensors, no/foreign ``"hepfm"`` metadata, unsupported format version, weights that do not
        fit the config.
    ChecksumMismatch
        The weights or the metadata differ from the hashes stored in the file, or the file differs from
        its sidecar's sha256; the message names the file and what differs.
    GraphSpecMismatch
        Graph spec name/version/features differ from ``expected_spec``.
    UnknownModel
        A bare name that is not a shipped model.
    """
    path, meta, integrity, module = _load(path_or_name, expected_spec, verify, "all")
    return LoadedModel(
        module=module.eval(),
        graph_spec=meta["graph_spec"],
        meta=meta,
        class_names=list(meta.get("class_names", [])),
        path=path,
        sha256=integrity.sha256,
        integrity=integrity.state,
    )


def load_backbone(path_or_name: str | os.PathLike, expected_spec=None, *, verify: bool = True):
    """The pretrained ``HEPFMNet`` of a model file (head dropped), in training mode, for fine-tuning.

    Same checks and errors as :func:`load_model`. Rebuild the graph spec with ``read_metadata(path)``.
    """
    return _load(path_or_name, expected_spec, verify, "backbone")[3].train()
