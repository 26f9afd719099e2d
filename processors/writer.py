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
import math
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


class IncompleteNtuplesError(HEPFMError, FileNotFoundError):
    """Chunks that a complete run writes are missing (the run was interrupted or failed)."""

    def __str__(self) -> str:  # OSError would print its args tuple
        return str(self.args[0])


class IncompleteNtuplesWarning(HEPFMWarning):
    """Ntuples read with ``allow_incomplete=True`` lack chunks, or their completeness cannot be checked."""


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


def balanced_steps(num_entries: int, chunksize: int) -> list[list[int]]:
    """Entry ranges of a file, split exactly as coffea's ``Runner`` splits it (equal-sized chunks).

    coffea's ``preprocess`` (dask) splits the same way, so a rerun with another executor finds the chunks
    already written, and the manifest can list the chunks a complete run writes (:func:`expected_chunks`).

    Examples
    --------
    >>> balanced_steps(200, 70)
    [[0, 67], [67, 134], [134, 200]]
    >>> balanced_steps(0, 70)
    [[0, 0]]
    """
    if num_entries == 0:
        return [[0, 0]]
    n = max(round(num_entries / chunksize), 1)
    size = math.ceil(num_entries / n)
    return [[a, min(num_entries, a + size)] for a in range(0, num_entries, size)]


def expected_chunks(
    out_dir: str | os.PathLike, dataset: str, files: list, entries: list[int], chunksize: int
) -> list[str]:
    """File names of the chunks a complete run writes for one dataset (files with 0 entries write none)."""
    return [
        chunk_path(out_dir, dataset, f, a, b).name
        for f, n in zip(files, entries, strict=True)
        if n > 0
        for a, b in balanced_steps(n, chunksize)
    ]


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
            if prev is not None and "chunks" not in prev:  # manifest from before chunk lists: add it
                info = {k: v for k, v in info.items() if k != "chunks"}
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


def missing_chunks(out_dir: str | os.PathLike, manifest: dict, datasets: list[str] | None = None) -> dict:
    """``{dataset: [missing chunk names]}`` (``None`` instead of a list when the manifest cannot tell)."""
    out = Path(out_dir)
    names = datasets if datasets is not None else list(manifest.get("datasets", {}))
    result = {}
    for name in names:
        info = manifest.get("datasets", {}).get(name)
        if info is None:
            raise KeyError(f"{out} holds no dataset {name!r}; it has {sorted(manifest.get('datasets', {}))}")
        expected = info.get("chunks")
        if expected is None:
            result[name] = None
            continue
        present = {f.name for f in (out / _safe(name)).glob("[!.]*.parquet")}
        missing = [c for c in expected if c not in present]
        if missing:
            result[name] = missing
    return result


def _check_complete(out_dir, manifest: dict, datasets: list[str] | None, allow_incomplete: bool) -> None:
    problems = missing_chunks(out_dir, manifest, datasets)
    unknown = sorted(n for n, m in problems.items() if m is None)
    if unknown:
        warnings.warn(
            f"{out_dir}: the manifest does not list the chunks of dataset(s) {unknown} (written without a "
            "chunksize, or by an older coffea-hepfm), so their completeness cannot be checked; make them "
            "with make_ntuples / coffea-hepfm ntuples to have it checked",
            IncompleteNtuplesWarning,
            stacklevel=3,
        )
    missing = {n: m for n, m in problems.items() if m}
    if not missing:
        return
    total = {n: len(manifest["datasets"][n]["chunks"]) for n in missing}
    detail = "; ".join(
        f"dataset {n!r}: {len(m)} of {total[n]} chunk(s) missing ({', '.join(m[:3])}"
        + (f" and {len(m) - 3} more)" if len(m) > 3 else ")")
        for n, m in missing.items()
    )
    text = (
        f"{out_dir} is incomplete, the ntuples run was interrupted or failed: {detail}. Re-run the same "
        "`coffea-hepfm ntuples` command (or make_ntuples with the same fileset and output folder): it keeps "
        "the complete chunks and writes only the missing ones"
    )
    if not allow_incomplete:
        raise IncompleteNtuplesError(text)
    warnings.warn(text + " (reading the chunks present: allow_incomplete=True)", IncompleteNtuplesWarning, 3)


def read_ntuples(
    out_dir: str | os.PathLike,
    columns: list[str] | None = None,
    datasets: list[str] | None = None,
    *,
    allow_incomplete: bool = False,
) -> ak.Array:
    """All chunks of ``out_dir`` as one array (chunk files in sorted order).

    The manifest lists the chunks a complete run writes; a missing one means an interrupted or failed
    run, and reading on would silently lose events.

    Raises
    ------
    IncompleteNtuplesError
        Chunks are missing; the message names the dataset(s) and the chunks, and says how to resume.
        With ``allow_incomplete=True`` the chunks present are read, with an
        :class:`IncompleteNtuplesWarning` saying the same.

    Examples
    --------
    >>> arr = read_ntuples("ntuples", columns=["label", "weight"])  # doctest: +SKIP
    """
    manifest = read_manifest(out_dir)
    _check_complete(out_dir, manifest, datasets, allow_incomplete)
    files = ntuple_files(out_dir, datasets)
    if not files:
        raise FileNotFoundError(f"{out_dir} holds a manifest but no completed ntuple chunks")
    parts = [ak.from_parquet(f, columns=columns) for f in files]
    return ak.concatenate(parts) if len(parts) > 1 else parts[0]
