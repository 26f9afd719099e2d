"""Filesets for :func:`~coffea_hepfm.processors.make_ntuples`: read from JSON, or built from simulated samples.

A fileset is coffea's dict ``{dataset: {"files": {path: "Events"}, "metadata": {...}}}`` with the
metadata keys documented in :mod:`coffea_hepfm.processors.ntuple` (``label``, ``xsec``, ``is_mc``...).

Paths in a fileset JSON
-----------------------
One rule: a relative file path in a fileset JSON is relative to **the folder of the JSON file**, never
to the working directory, so a folder holding ``fileset.json`` and the samples can be moved, shared or
used from any directory. :func:`write_fileset` writes paths that way, :func:`load_fileset` reads them
that way (absolute paths and URLs such as ``root://`` are kept as they are). In memory (the dicts that
:func:`simulated_fileset` and :func:`load_fileset` return) paths are absolute.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

__all__ = ["load_fileset", "simulated_fileset", "write_fileset"]


def _is_url(path: str) -> bool:
    return "://" in path


def load_fileset(path: str | os.PathLike) -> dict:
    """Read a fileset JSON; relative file paths are taken relative to the JSON file's folder.

    Returns the fileset with absolute local paths (URLs unchanged).

    Examples
    --------
    ``runs/e2e/fileset.json``::

        {"tth": {"files": {"sim/train/tth/tth_00000.root": "Events"},
                 "metadata": {"label": "signal", "xsec": 0.51}}}

    names ``runs/e2e/sim/train/tth/tth_00000.root`` whatever the working directory.
    """
    path = Path(path)
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or not data:
        raise ValueError(
            f"{path}: a fileset must be a non-empty JSON object {{dataset: {{files, metadata}}}}"
        )
    base = path.resolve().parent
    out = {}
    for name, ds in data.items():
        if not isinstance(ds, dict) or "files" not in ds:
            raise ValueError(f"{path}: dataset {name!r} needs a 'files' entry")
        files = ds["files"] if isinstance(ds["files"], dict) else {f: "Events" for f in ds["files"]}
        files = {f if _is_url(f) else os.path.normpath(base / f): t for f, t in files.items()}
        out[name] = {**ds, "files": files}
    return out


def write_fileset(fileset: Mapping, path: str | os.PathLike) -> Path:
    """Write ``fileset`` as JSON at ``path``, file paths relative to its folder (see the module notes).

    The file appears complete or not at all (written under a temporary name, then renamed). Returns
    ``path``.

    >>> fs = {"tth": {"files": {"/data/sim/tth/a.root": "Events"}, "metadata": {"xsec": 0.5}}}
    >>> out = write_fileset(fs, tmp / "fileset.json")                # doctest: +SKIP
    """
    path = Path(path)
    base = path.parent.resolve()
    out = {}
    for name, ds in fileset.items():
        files = ds["files"] if isinstance(ds["files"], dict) else {f: "Events" for f in ds["files"]}
        rel = {}
        for f, tree in files.items():
            f = os.fspath(f)
            rel[f if _is_url(f) else os.path.relpath(Path(f).resolve(), base)] = tree
        out[name] = {**ds, "files": rel}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(out, indent=1) + "\n")
    os.replace(tmp, path)
    return path


def simulated_fileset(sim_dir: str | os.PathLike, labels: Mapping[str, str]) -> dict:
    """Fileset of samples made by ``coffea-hepfm simulate``: one dataset per process in ``labels``.

    The cross section is Pythia's estimate stored in each file's ``hepfm_meta`` (``sigma_gen_pb``),
    averaged over the chunks weighted by their event counts. File paths are absolute; save the fileset
    with :func:`write_fileset`.

    Parameters
    ----------
    sim_dir
        The simulation output folder (``sim_dir/<process>/*.root``).
    labels
        ``{process: class name}``, e.g. ``{"tth": "signal", "ttbar": "background"}``.

    Raises
    ------
    FileNotFoundError
        A process has no files in ``sim_dir``.
    """
    import uproot

    out = {}
    for process, label in labels.items():
        files = sorted((Path(sim_dir) / process).glob("[!.]*.root"))
        if not files:
            raise FileNotFoundError(f"no simulated files for {process!r} in {Path(sim_dir) / process}")
        sigma, n = 0.0, 0
        for f in files:
            with uproot.open(f) as root:
                meta = json.loads(str(root["hepfm_meta"])) if "hepfm_meta" in root else {}
            if "sigma_gen_pb" not in meta:
                raise ValueError(
                    f"{f} has no hepfm_meta cross section; give 'xsec' in a fileset JSON instead"
                )
            sigma += meta["sigma_gen_pb"] * meta["n_events"]
            n += meta["n_events"]
        out[process] = {
            "files": {os.fspath(f.resolve()): "Events" for f in files},
            "metadata": {"label": label, "xsec": sigma / n, "is_mc": True},
        }
    return out
