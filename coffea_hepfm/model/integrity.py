"""Integrity of model files without a sidecar: hashes of the weights and of the metadata, stored in the file.

A model file written by :func:`coffea_hepfm.model.io.save_model` (``format_version`` 2) carries, inside its
``"hepfm"`` metadata, the record::

    "integrity": {"scheme": "coffea-hepfm-sha256/1",
                  "weights_sha256": "<hex>",    # canonical serialisation of every tensor
                  "metadata_sha256": "<hex>"}   # canonical JSON of the metadata without "integrity"

Canonical serialisation (independent of the tensors' order and offsets in the file):

- weights: for each tensor in name order, ``name``, the safetensors dtype (``"F32"``...), the shape as JSON
  and the raw little-endian bytes, each length-prefixed (8-byte little-endian), fed to one sha256;
- metadata: ``json.dumps(meta, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`` in UTF-8.

Both are checked at every load: an edited byte in a tensor, or edited class names, spec, metrics or
provenance in the header, raise :class:`~coffea_hepfm.model.checks.ChecksumMismatch` naming the file and
the part that changed. This detects corruption and edits; it is not a signature (whoever edits a file can
recompute the hashes). The ``.json`` sidecar's sha256 of the whole file, when present, is checked too.

Files written before (``format_version`` 1, e.g. the first shipped models) have no record: with a sidecar
they are verified by its sha256 alone; without one they load with one :class:`UnverifiedModelFile`
warning per file and process.

Examples
--------
>>> weights_digest({"w": torch.zeros(2)}) == file_weights_digest(safetensors.torch.save({"w": torch.zeros(2)}))
... # doctest: +SKIP
True
"""

from __future__ import annotations

import hashlib
import json
import struct
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from coffea_hepfm.errors import HEPFMWarning
from coffea_hepfm.model.checks import ChecksumMismatch, ModelFileError

__all__ = [
    "INTEGRITY_KEY",
    "SCHEME",
    "Integrity",
    "UnverifiedModelFile",
    "file_weights_digest",
    "integrity_record",
    "metadata_digest",
    "verify_file",
    "weights_digest",
]

INTEGRITY_KEY = "integrity"
SCHEME = "coffea-hepfm-sha256/1"

#: what each verification state means, as shown by ``coffea-hepfm model-info``
STATEMENTS = {
    "embedded": "verified: sha256 of the weights and of the metadata stored in the file",
    "embedded+sidecar": "verified: sha256 of the weights and of the metadata stored in the file, and the "
    ".json sidecar's sha256 of the whole file",
    "sidecar": "sidecar sha256 only: the file predates stored hashes (format_version 1); its .json sidecar's "
    "sha256 of the whole file matches",
    "unverified": "NOT verified: the file predates stored hashes (format_version 1) and has no .json sidecar",
    "skipped": "not checked (verify=False)",
}


class UnverifiedModelFile(HEPFMWarning):
    """A model file without stored hashes (``format_version`` 1) and without its ``.json`` sidecar: nothing
    can tell whether its weights or metadata were changed. Keep the sidecar next to it, or re-save it
    (``coffea-hepfm ship``) to store hashes inside the file."""


@dataclass(frozen=True)
class Integrity:
    """What was verified for one file: ``state`` (a key of :data:`STATEMENTS`) and the file's sha256."""

    state: str
    sha256: str

    @property
    def statement(self) -> str:
        return STATEMENTS[self.state]


def _dtype_name(tensor) -> str:
    from safetensors.torch import _TYPES  # {"F32": torch.float32, ...}: the names the file format uses

    for name, dtype in _TYPES.items():
        if dtype == tensor.dtype:
            return name
    raise ModelFileError(f"tensor dtype {tensor.dtype} cannot be stored in a safetensors model file")


def _feed(h, name: str, dtype: str, shape, data) -> None:
    for part in (name.encode(), dtype.encode(), json.dumps(list(shape)).encode(), data):
        h.update(struct.pack("<Q", len(part)))
        h.update(part)


def weights_digest(tensors: Mapping) -> str:
    """Canonical sha256 of a ``{name: torch.Tensor}`` state dict (CPU tensors, as written to the file)."""
    import torch

    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        data = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        _feed(h, name, _dtype_name(t), t.shape, data)
    return h.hexdigest()


def file_weights_digest(raw: bytes, path: Path | str = "<bytes>") -> str:
    """Canonical sha256 of the tensors of a safetensors file given as bytes (the same value as
    :func:`weights_digest` of the state dict that was saved)."""
    (n,) = struct.unpack("<Q", raw[:8])
    try:
        header = json.loads(raw[8 : 8 + n])
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelFileError(f"{path}: safetensors header is not valid JSON ({err})") from err
    base, view = 8 + n, memoryview(raw)
    h = hashlib.sha256()
    for name in sorted(k for k in header if k != "__metadata__"):
        info = header[name]
        start, stop = info["data_offsets"]
        if not 0 <= start <= stop <= len(raw) - base:
            raise ModelFileError(f"{path}: tensor {name!r} lies outside the file (truncated?)")
        _feed(h, name, info["dtype"], info["shape"], view[base + start : base + stop])
    return h.hexdigest()


def metadata_digest(meta: Mapping) -> str:
    """Canonical sha256 of the ``"hepfm"`` metadata, without its ``"integrity"`` record."""
    body = {k: v for k, v in meta.items() if k != INTEGRITY_KEY}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def integrity_record(meta: Mapping, tensors: Mapping) -> dict:
    """The ``"integrity"`` record that :func:`coffea_hepfm.model.io.save_model` stores in ``meta``."""
    return {
        "scheme": SCHEME,
        "weights_sha256": weights_digest(tensors),
        "metadata_sha256": metadata_digest(meta),
    }


_WARNED: set[tuple[str, str]] = set()


def verify_file(path: Path, meta: dict, raw: bytes) -> Integrity:
    """Check the stored hashes (format_version >= 2) and the sidecar (when present) of the file ``raw``.

    Raises
    ------
    ChecksumMismatch
        The weights or the metadata differ from the hashes stored in the file, or the file differs from
        its sidecar's sha256. The message names the file and what differs.
    ModelFileError
        A format_version >= 2 file without an integrity record, or with an unknown scheme.
    """
    digest = hashlib.sha256(raw).hexdigest()
    record = meta.get(INTEGRITY_KEY)
    if record is None and meta.get("format_version", 1) >= 2:
        raise ChecksumMismatch(
            f"{path}: format_version {meta['format_version']} model file without its {INTEGRITY_KEY!r} record: "
            "the metadata was rewritten by another tool; re-save the original file"
        )
    if record is not None:
        if not isinstance(record, dict) or record.get("scheme") != SCHEME:
            scheme = record.get("scheme") if isinstance(record, dict) else record
            raise ModelFileError(
                f"{path}: unknown integrity scheme {scheme!r} (this coffea-hepfm checks {SCHEME!r}); upgrade "
                "coffea-hepfm"
            )
        bad = []
        if metadata_digest(meta) != record.get("metadata_sha256"):
            bad.append("the metadata (class names, graph spec, metrics or provenance) was edited")
        if file_weights_digest(raw, path) != record.get("weights_sha256"):
            bad.append("the weights were modified")
        if bad:
            raise ChecksumMismatch(
                f"{path}: {' and '.join(bad)} after saving: the hashes stored in the file do not match; "
                "do not use this file, get the original again"
            )
    sidecar = path.with_suffix(".json")
    has_sidecar = sidecar.is_file()
    if has_sidecar:
        try:
            recorded = json.loads(sidecar.read_text()).get("sha256")
        except (json.JSONDecodeError, AttributeError) as err:
            raise ModelFileError(f"{sidecar} is not a valid sidecar: {err}") from err
        if recorded != digest:
            raise ChecksumMismatch(
                f"{path} has sha256 {digest} but its sidecar {sidecar.name} records {recorded}: the file was "
                "modified or the sidecar belongs to another model"
            )
    if record is not None:
        return Integrity("embedded+sidecar" if has_sidecar else "embedded", digest)
    if has_sidecar:
        return Integrity("sidecar", digest)
    key = (str(path.resolve()), digest)
    if key not in _WARNED:
        _WARNED.add(key)
        warnings.warn(
            f"{path}: {STATEMENTS['unverified']}: a changed weight or class name would go unnoticed. Keep "
            f"{sidecar.name} next to it, or re-save it with `coffea-hepfm ship` to store hashes in the file",
            UnverifiedModelFile,
            stacklevel=4,
        )
    return Integrity("unverified", digest)
