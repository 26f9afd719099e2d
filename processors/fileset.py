"""Filesets for :func:`~coffea_hepfm.processors.make_ntuples`: read from JSON, or built from simulated samples.

A fileset is coffea's dict ``{dataset: {"files": {path: "Events"}, "metadata": {...}}}`` with the
metadata keys documented in :mod:`coffea_hepfm.processors.ntuple` (``label``, ``xsec``, ``is_mc``...).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path


def load_fileset(path: str | os.PathLike) -> dict:
    """Read a fileset JSON; relative file paths are taken relative to the JSON file's folder.

    Examples
    --------
    ``fileset.json``::

        {"tth": {"files": {"sim/tth/tth_00000.root": "Events"},
                 "metadata": {"label": "signal", "xsec": 0.51}}}
    """
    path = Path(path)
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or not data:
        raise ValueError(
            f"{path}: a fileset must be a non-empty JSON object {{dataset: {{files, metadata}}}}"
        )
    out = {}
    for name, ds in data.items():
        if not isinstance(ds, dict) or "files" not in ds:
            raise ValueError(f"{path}: dataset {name!r} needs a 'files' entry")
        files = ds["files"] if isinstance(ds["files"], dict) else {f: "Events" for f in ds["files"]}
        files = {os.fspath(path.parent / f) if not os.path.isabs(f) else f: t for f, t in files.items()}
        out[name] = {**ds, "files": files}
    return out


def simulated_fileset(sim_dir: str | os.PathLike, labels: Mapping[str, str]) -> dict:
    """Fileset of samples made by ``coffea-hepfm simulate``: one dataset per process in ``labels``.

    The cross section is Pythia's estimate stored in each file's ``hepfm_meta`` (``sigma_gen_pb``),
    averaged over the chunks weighted by their event counts.

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
            "files": {os.fspath(f): "Events" for f in files},
            "metadata": {"label": label, "xsec": sigma / n, "is_mc": True},
        }
    return out
