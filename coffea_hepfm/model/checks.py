"""Validation of model files: magic bytes, checksums, and graph-spec agreement (used by ``io``)."""

from __future__ import annotations

import hashlib
import math
import os
import struct
from pathlib import Path

from coffea_hepfm.errors import HEPFMError
from coffea_hepfm.graph.errors import GraphSpecMismatch

__all__ = [
    "ChecksumMismatch",
    "GraphSpecMismatch",
    "ModelFileError",
    "UnsafeModelFile",
    "check_consistent",
    "check_magic",
    "check_spec",
    "jsonable",
    "sha256_file",
    "spec_to_dict",
]

SPEC_KEYS = ("name", "version")
_MAX_HEADER = 100 * 1024 * 1024


def jsonable(obj):
    """Plain-JSON copy: numpy scalars/arrays and tuples converted, NaN/inf -> None (JSON has none)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "tolist"):  # numpy / torch scalars and arrays
        return jsonable(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"metadata value {obj!r} of type {type(obj).__name__} is not JSON-serialisable")


class ModelFileError(HEPFMError, ValueError):
    """A model file is missing, malformed, foreign or inconsistent."""


class UnsafeModelFile(ModelFileError):
    """The file is a pickle (or a ``torch.save`` zip holding one); it is refused, never unpickled."""


class ChecksumMismatch(ModelFileError):
    """The weights or the metadata of a model file differ from the hashes stored in it, or the file differs
    from the sha256 recorded in its ``.json`` sidecar (see :mod:`coffea_hepfm.model.integrity`)."""


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def spec_to_dict(spec) -> dict:
    d = spec.to_dict() if hasattr(spec, "to_dict") else dict(spec)
    missing = [k for k in SPEC_KEYS if k not in d]
    if missing:
        raise ModelFileError(f"graph spec is missing {missing}; pass GraphSpec.to_dict()")
    return jsonable(d)


def check_magic(path: Path) -> None:
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(9)
    # A safetensors header length can itself start with 0x80 or "PK": only refuse when the bytes are not a
    # plausible safetensors header (length, then "{").
    plausible = len(head) == 9 and 0 < struct.unpack("<Q", head[:8])[0] <= size - 8 and head[8:9] == b"{"
    if not plausible and (head[:1] == b"\x80" or head[:2] == b"PK"):
        raise UnsafeModelFile(
            f"{path} is a pickle/torch.save file (starts with {head[:2]!r}); coffea-hepfm never unpickles "
            "model files. Convert the state dict to safetensors (safetensors.torch.save_file) and save it "
            "with coffea_hepfm.model.io.save_model."
        )
    if len(head) < 9:
        raise ModelFileError(f"{path} is not a safetensors file ({size} bytes)")
    (n,) = struct.unpack("<Q", head[:8])
    if not (0 < n <= min(size - 8, _MAX_HEADER)) or head[8:9] != b"{":
        raise ModelFileError(f"{path} is not a safetensors file (bad header)")


def check_consistent(meta: dict, path: Path) -> None:
    """Model input sizes must match the spec's feature counts (when the graph module can tell)."""
    try:
        from coffea_hepfm.graph import GraphSpec
    except ImportError:  # graph stage not available: name/version checks still apply
        return
    try:
        spec = GraphSpec.from_dict(meta["graph_spec"])
    except GraphSpecMismatch:
        raise
    except Exception as err:
        raise GraphSpecMismatch(f"{path}: stored graph spec is not readable by this code: {err}") from err
    cfg = meta["model_config"]
    for key, attr in (
        ("n_node", "n_node_features"),
        ("n_edge", "n_edge_features"),
        ("n_global", "n_global_features"),
    ):
        want = getattr(spec, attr, None)
        if want is not None and cfg.get(key) != want:
            raise GraphSpecMismatch(
                f"{path}: model {key}={cfg.get(key)} but graph spec {spec.name} v{spec.version} has {attr}={want}",
                {key: (want, cfg.get(key))},
            )


def check_spec(stored: dict, expected, path: Path) -> None:
    """``expected`` (default: this code's current spec name/version) must match the file's spec."""
    try:
        from coffea_hepfm.graph import GraphSpec
    except ImportError:  # graph stage absent: compare the dicts only
        GraphSpec = None
    if expected is None:
        if GraphSpec is None:
            return
        from coffea_hepfm.graph.spec import SUPPORTED_VERSIONS

        if stored.get("name") == GraphSpec().name and stored.get("version") in SUPPORTED_VERSIONS:
            return  # every supported version builds its own features (v1 model files keep scoring)
        try:  # a version or fields this code cannot build: say so, naming the file
            GraphSpec.from_dict(stored)
        except ValueError as err:
            raise type(err)(f"{path}: {err}") from err
        current = GraphSpec()
        exp = {"name": current.name, "version": current.version}
    else:
        exp = spec_to_dict(expected)
    diffs = {k: (exp[k], stored.get(k)) for k in exp if k in SPEC_KEYS or k.endswith("_features")}
    diffs = {k: v for k, v in diffs.items() if _norm(v[0]) != _norm(v[1])}
    if diffs:
        detail = ", ".join(f"{k}: expected {a!r}, file has {b!r}" for k, (a, b) in diffs.items())
        raise GraphSpecMismatch(
            f"{path} was trained on graph spec {stored.get('name')!r} v{stored.get('version')} which does not "
            f"match {exp.get('name')!r} v{exp.get('version')} ({detail}); build graphs with the model's spec "
            "(LoadedModel.spec) or use a model trained for this spec",
            diffs,
        )
    if expected is not None and GraphSpec is not None:
        # Same name and version: the full comparison (object caps, b-tag and MET choices). "expected" is
        # the caller's spec, "file has" the model file's, as in the name/version message above.
        try:
            GraphSpec.from_dict(exp).check_compatible(GraphSpec.from_dict(stored))
        except GraphSpecMismatch as err:
            detail = "; ".join(
                f"{k}: expected {a!r}, file has {b!r}" for k, (a, b) in err.differences.items()
            )
            raise GraphSpecMismatch(
                f"{path} was trained on another graph spec than the expected one ({detail}); build graphs "
                "with the model's spec (LoadedModel.spec) or use a model trained for this spec",
                err.differences,
            ) from err
        except (ValueError, TypeError) as err:
            raise GraphSpecMismatch(f"{path}: graph spec not readable by this code: {err}") from err


def _norm(v):
    return list(v) if isinstance(v, tuple) else v
