"""Write detector output as a NanoAOD ``Events`` tree with uproot, atomically.

Branch names and dtypes follow CMS NanoAOD v12 (checked against ``nano_tt_v12.root``): float32 kinematics,
``Jet_hadronFlavour``/``Jet_jetId``/``*_cutBased`` uint8, ``*_genPartIdx``/``Jet_genJetIdx``/
``GenPart_genPartIdxMother`` int16, ``GenPart_statusFlags`` uint16, ``*_pdgId``/``*_charge`` int32,
``Muon_*Id`` bool, ``run``/``luminosityBlock`` uint32, ``event`` uint64, ``nX`` counters int32.

The file is written under a hidden temporary name in the target folder and renamed when complete, so a
chunk file either exists whole or not at all.

A ``hepfm_meta`` string (JSON: process, seeds, Pythia cross-section in pb, settings) is stored next to the
tree; coffea ignores it.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import awkward as ak
import numpy as np

# Final dtypes per field; anything not listed is float32.
_DTYPES = {
    "hadronFlavour": np.uint8,
    "jetId": np.uint8,
    "cutBased": np.uint8,
    "genPartIdx": np.int16,
    "genJetIdx": np.int16,
    "genPartIdxMother": np.int16,
    "statusFlags": np.uint16,
    "pdgId": np.int32,
    "charge": np.int32,
    "status": np.int32,
    "mediumId": np.bool_,
    "tightId": np.bool_,
}
_SCALAR_DTYPES = {"Pileup_nPU": np.int32, "run": np.uint32, "luminosityBlock": np.uint32, "event": np.uint64}
TMP_PREFIX = ".tmp-"


def concatenate_batches(batches: list[dict]) -> dict:
    """Join the per-batch outputs of :func:`detector.reconstruct` (flat arrays, so a plain concatenate)."""
    first = batches[0]
    scalars = {k: np.concatenate([b["scalars"][k] for b in batches]) for k in first["scalars"]}
    collections = {}
    for name, (_, fields) in first["collections"].items():
        counts = np.concatenate([b["collections"][name][0] for b in batches])
        collections[name] = (
            counts,
            {f: np.concatenate([b["collections"][name][1][f] for b in batches]) for f in fields},
        )
    return {"scalars": scalars, "collections": collections}


def to_branches(data: dict) -> dict:
    """Build the dict uproot writes: scalars as numpy, collections as jagged records (``nX`` counters)."""
    out = {}
    for name, values in data["scalars"].items():
        out[name] = np.asarray(values, dtype=_SCALAR_DTYPES.get(name, np.float32))
    for name, (counts, fields) in data["collections"].items():
        record = {f: np.asarray(v, dtype=_DTYPES.get(f, np.float32)) for f, v in fields.items()}
        out[name] = ak.unflatten(ak.zip(record, depth_limit=1), np.asarray(counts, np.int64))
    # Fixed-width per-event vectors (e.g. LHEReweightingWeight [n, K]) as NanoAOD's float[] + nX counter.
    for name, values in data.get("arrays", {}).items():
        values = np.asarray(values, dtype=np.float32)
        out[name] = ak.unflatten(values.reshape(-1), np.full(len(values), values.shape[1], np.int64))
    return out


def write_nanoaod(path: str | os.PathLike, data: dict, meta: dict | None = None) -> Path:
    """Write ``data`` to ``path`` via a temporary file and an atomic rename.

    Parameters
    ----------
    path
        Final file name; its folder must exist.
    data
        ``{"scalars": ..., "collections": ...}`` as from :func:`concatenate_batches`.
    meta
        JSON-serialisable metadata stored as the string ``hepfm_meta``.
    """
    import uproot

    path = Path(path)
    tmp = path.with_name(f"{TMP_PREFIX}{path.stem}-{uuid.uuid4().hex[:8]}.root")
    branches = to_branches(data)
    try:
        with uproot.recreate(tmp, compression=uproot.LZ4(1)) as f:
            tree = f.mktree(
                "Events",
                {k: v.type if isinstance(v, ak.Array) else v.dtype for k, v in branches.items()},
                counter_name=lambda counted: "n" + counted,
                field_name=lambda outer, inner: f"{outer}_{inner}",
            )
            tree.extend(branches)
            if meta is not None:
                f["hepfm_meta"] = json.dumps(meta, sort_keys=True)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
