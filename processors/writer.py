"""Ntuple files on disk: one parquet file per chunk, written atomically, plus an ``ntuple.json`` manifest.

Layout::

    OUT/ntuple.json                                    # manifest: graph spec, classes, weights, datasets
    OUT/<dataset>/<file stem>-<path hash>_<start>-<stop>.parquet

A chunk's name is a function of (dataset, input file, entry range) only, so a rerun finds the chunks that
are already complete and writes only the missing ones. A chunk is written to ``.<name>.tmp-<random>`` and
renamed when complete: readers ignore dot-files, so an interrupted run never leaves a half-file that a
later step would read. :func:`remove_stale_temps` deletes the leftovers of a killed run.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
import warnings
from pathlib import Path

import awkward as ak

from coffea_hepfm.errors import HEPFMError, HEPFMWarning

MANIFEST = "ntuple.json"
FORMAT = "coffea-hepfm-ntuple"
FORMAT_VERSION = 1
#: Manifest entries that must agree between runs writing into the same folder.
CONFIG_KEYS = ("graph_spec", "classes", "selection", "corrections", "lumi", "chunksize")


class NtupleConfigMismatch(HEPFMError, ValueError):
    """The output folder holds ntuples made with another configuration (graph spec, classes, ...)."""


class EmptySelectionWarning(HEPFMWarning):
    """No event of a chunk passed the selection; an empty but valid parquet file was written."""


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", name)


def chunk_path(out_dir: str | os.PathLike, dataset: str, filename: str, start: int, stop: int) -> Path:
    """Deterministic parquet path of one chunk.

    The input file enters by its stem and a hash of its absolute path, so two files called
    ``nano.root`` in different folders do not collide.

    Examples
    --------
    >>> chunk_path("out", "ttbar", "/data/ttbar/chunk0.root", 0, 100).name  # doctest: +SKIP
    'chunk0-1a2b3c4d_000000000-000000100.parquet'
    """
    stem = Path(str(filename)).name.rsplit(".root", 1)[0]
    digest = hashlib.sha1(os.path.abspath(os.fspath(filename)).encode()).hexdigest()[:8]
    return Path(out_dir) / _safe(dataset) / f"{_safe(stem)}-{digest}_{int(start):09d}-{int(stop):09d}.parquet"


def write_chunk(record: ak.Array, path: str | os.PathLike) -> int:
    """Write ``record`` to ``path`` atomically (temp name + rename); returns the number of events.

    A record of zero events still gets a valid parquet file with the full schema, and an
    :class:`EmptySelectionWarning`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    if len(record) == 0:
        warnings.warn(
            f"no event passed the selection in {path.name}: writing an empty ntuple", EmptySelectionWarning, 2
        )
    try:
        ak.to_parquet(record, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return len(record)


def ntuple_files(out_dir: str | os.PathLike, datasets: list[str] | None = None) -> list[Path]:
    """Completed chunk files (no temp files), sorted by dataset and name."""
    out = Path(out_dir)
    dirs = sorted(p for p in out.iterdir() if p.is_dir()) if out.is_dir() else []
    if datasets is not None:
        dirs = [out / _safe(d) for d in datasets]
    return [f for d in dirs for f in sorted(d.glob("[!.]*.parquet"))]


def remove_stale_temps(out_dir: str | os.PathLike) -> list[Path]:
    """Delete temp files left by an interrupted run; returns what was removed.

    Only call this when no other job writes into ``out_dir``.
    """
    stale = sorted(Path(out_dir).glob("*/.*.parquet.tmp-*"))
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def read_manifest(out_dir: str | os.PathLike) -> dict:
    """The ``ntuple.json`` of ``out_dir``.

    Raises
    ------
    FileNotFoundError
        ``out_dir`` holds no ntuples.
    """
    path = Path(out_dir) / MANIFEST
    if not path.exists():
        raise FileNotFoundError(f"{out_dir} holds no ntuples ({MANIFEST} not found)")
    return json.loads(path.read_text())


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def prepare_output(out_dir: str | os.PathLike, manifest: dict) -> dict:
    """Create ``out_dir`` and its manifest, or check that an existing one has the same configuration.

    Datasets are merged: a new dataset may be added to an existing folder, but a dataset already present
    must have the same label, cross section and sum of weights.

    Raises
    ------
    NtupleConfigMismatch
        ``out_dir`` holds ntuples of another graph spec, class list, selection, corrections or lumi, or
        of a dataset with other normalisation. Nothing is written in that case.
    """
    out = Path(out_dir)
    # JSON round trip: compare what is stored (tuples become lists)
    manifest = json.loads(json.dumps({"format": FORMAT, "format_version": FORMAT_VERSION, **manifest}))
    path = out / MANIFEST
    if path.exists():
        old = read_manifest(out)
        diffs = [k for k in CONFIG_KEYS if old.get(k) != manifest.get(k)]
        if diffs:
            detail = "; ".join(f"{k}: existing {old.get(k)!r}, new {manifest.get(k)!r}" for k in diffs)
            raise NtupleConfigMismatch(
                f"{out} holds ntuples made with another {', '.join(diffs)}; refusing to mix them "
                f"(use a new --out folder). {detail}"
            )
        for name, info in manifest.get("datasets", {}).items():
            prev = old.get("datasets", {}).get(name)
            if prev is not None and prev != info:
                raise NtupleConfigMismatch(
                    f"{out} holds dataset {name!r} with {prev!r}; this run has {info!r}: refusing to mix"
                )
        manifest = {**old, "datasets": {**old.get("datasets", {}), **manifest.get("datasets", {})}}
    elif out.exists() and any(out.iterdir()):
        raise NtupleConfigMismatch(f"{out} is not empty and holds no {MANIFEST}: refusing to write into it")
    out.mkdir(parents=True, exist_ok=True)
    _write_json(path, manifest)
    return manifest


def read_ntuples(
    out_dir: str | os.PathLike, columns: list[str] | None = None, datasets: list[str] | None = None
) -> ak.Array:
    """All chunks of ``out_dir`` as one array (chunk files in sorted order).

    Examples
    --------
    >>> arr = read_ntuples("ntuples", columns=["label", "weight"])  # doctest: +SKIP
    """
    read_manifest(out_dir)
    files = ntuple_files(out_dir, datasets)
    if not files:
        raise FileNotFoundError(f"{out_dir} holds a manifest but no completed ntuple chunks")
    parts = [ak.from_parquet(f, columns=columns) for f in files]
    return ak.concatenate(parts) if len(parts) > 1 else parts[0]
