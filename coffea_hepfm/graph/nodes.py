"""Node and global features from flat NanoAOD columns: numpy on flat arrays + per-event counts.

Everything here works on all events at once (no per-event loop): objects are selected with boolean masks,
sorted only if a file is not already pT-ordered, capped by their position within the event, and
scattered into one ``[N, F]`` float32 array in node order jets, electrons, muons, photons, MET.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from coffea_hepfm.graph.columns import FIXED_MASS, Plan
from coffea_hepfm.graph.errors import NonFiniteWarning
from coffea_hepfm.graph.spec import COLLECTIONS, NODE_FEATURES_V1, OBJECT_TYPES
from coffea_hepfm.graph.validity import RULE, apply_rule

NODE_FEATURES = NODE_FEATURES_V1  # this module builds graph spec version 1
_F = {name: i for i, name in enumerate(NODE_FEATURES)}


@dataclass
class FlatNodes:
    """Flat node features of ``B`` events: ``x`` [N, F] float32, ``node_counts`` [B] int64,
    ``u`` [B, G] float32, and ``nonfinite`` = {object type: number of objects dropped/zeroed}."""

    x: np.ndarray
    node_counts: np.ndarray
    u: np.ndarray
    nonfinite: dict[str, int]


def _handle_nonfinite(
    arrays: dict[str, np.ndarray], obj: str, plan: Plan, source: str | None = None
) -> tuple[np.ndarray | None, int]:
    """Apply ``spec.nonfinite`` (:mod:`~coffea_hepfm.graph.validity`) in place; returns (mask of objects to
    drop or None, number of objects affected)."""
    coll = COLLECTIONS.get(obj, plan.met_source)
    names = {k: f"{coll}_{plan.btag_branch if k == 'btag' else k}" for k in arrays}
    drop, _, n_bad = apply_rule(arrays, names, plan.spec.nonfinite, obj, source)
    return drop, n_bad


def _select(
    cols: dict[str, np.ndarray], obj: str, plan: Plan, n_events: int, source: str | None = None
) -> dict[str, Any]:
    """Threshold, NaN rule, pT sort and cap for one object type; also its global counts."""
    counts = cols["counts"]
    arrays = {k: v for k, v in cols.items() if k != "counts"}
    drop, n_bad = _handle_nonfinite(arrays, obj, plan, source)
    pt = arrays["pt"]
    keep = pt >= plan.spec.min_pt(obj)
    if drop is not None:
        keep &= ~drop
    ev = np.repeat(np.arange(n_events, dtype=np.int64), counts)
    sel = np.flatnonzero(keep)
    ev_s = ev[sel]
    n_sel = np.bincount(ev_s, minlength=n_events).astype(np.int64)
    pt_s = pt[sel]
    if np.any((pt_s[1:] > pt_s[:-1]) & (ev_s[1:] == ev_s[:-1])):  # NanoAOD is pT-ordered; sims may not be
        order = np.lexsort((-pt_s, ev_s))
        sel, ev_s, pt_s = sel[order], ev_s[order], pt_s[order]
    pos = np.arange(len(sel), dtype=np.int64) - np.repeat(np.cumsum(n_sel) - n_sel, n_sel)
    capped = pos < plan.spec.cap(obj)
    idx = sel[capped]
    out = {
        "n": n_sel,
        "n_bad": n_bad,
        "ev": ev_s[capped],
        "pos": pos[capped],
        "counts": np.minimum(n_sel, plan.spec.cap(obj)),
        "arrays": {k: v[idx] for k, v in arrays.items()},
    }
    if obj == "jet":
        out["ht"] = np.bincount(ev_s, weights=pt_s, minlength=n_events)
        out["n_b"] = np.bincount(ev_s, weights=arrays["btag"][sel] > plan.btag_wp, minlength=n_events)
    return out


def _features(obj: str, a: dict[str, np.ndarray]) -> np.ndarray:
    """``[M, F]`` float32 node features of ``M`` objects of type ``obj``."""
    f32 = np.float32
    pt = np.maximum(a["pt"].astype(f32, copy=False), f32(0))
    phi = a["phi"].astype(f32, copy=False)
    block = np.zeros((len(pt), len(NODE_FEATURES)), dtype=f32)
    block[:, _F["log_pt"]] = np.log1p(pt)
    block[:, _F["sin_phi"]] = np.sin(phi)
    block[:, _F["cos_phi"]] = np.cos(phi)
    block[:, _F[f"is_{obj}"]] = 1
    if obj == "met":
        block[:, _F["log_energy"]] = block[:, _F["log_pt"]]  # massless with eta = 0: E = pT
        return block
    eta = a["eta"].astype(f32, copy=False)
    mass = np.maximum(a["mass"], f32(0)) if "mass" in a else f32(FIXED_MASS[obj])  # NanoAOD: tiny m < 0
    block[:, _F["eta"]] = eta
    block[:, _F["log_energy"]] = np.log1p(np.hypot(pt * np.cosh(eta), mass))
    block[:, _F["log_mass"]] = np.log1p(mass)
    if "charge" in a:
        block[:, _F["charge"]] = a["charge"]
    if "btag" in a:
        block[:, _F["btag"]] = np.clip(a["btag"], 0, 1)  # NanoAOD default -1 (no tracks) -> 0
    return block


def build_flat_nodes(
    cols: dict[str, Any], plan: Plan, warn: bool = True, stacklevel: int = 2, source: str | None = None
) -> FlatNodes:
    """Node features ``x``, ``node_counts`` and globals ``u`` from :func:`read_columns` output.

    Examples
    --------
    Zero events give arrays of the right dtype and width:

    >>> from coffea_hepfm.graph import GraphSpec, resolve
    >>> plan = resolve(GraphSpec(version=1, max_jets=0, max_electrons=0, max_photons=0, met=False))
    >>> flat = build_flat_nodes({"n_events": 0, "muon": None}, plan)
    >>> flat.x.shape, flat.x.dtype, flat.u.shape, flat.node_counts.shape
    ((0, 13), dtype('float32'), (0, 7), (0,))

    An event whose only muon is below threshold keeps zero nodes and filled globals:

    >>> cols = {"n_events": 1, "muon": {"counts": np.array([1]), "pt": np.array([5.0], np.float32),
    ...         "eta": np.zeros(1, np.float32), "phi": np.zeros(1, np.float32), "charge": np.ones(1)}}
    >>> f = build_flat_nodes(cols, plan)
    >>> f.node_counts.tolist(), f.u.tolist()
    ([0], [[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    """
    spec = plan.spec
    B = int(cols["n_events"])
    sel = {
        obj: _select(cols[obj], obj, plan, B, source)
        for obj in OBJECT_TYPES[:-1]
        if cols.get(obj) is not None
    }
    nonfinite = {obj: s["n_bad"] for obj, s in sel.items() if s["n_bad"]}

    has_met = np.zeros(B, dtype=np.int64)
    met_pt = np.zeros(B)
    met = cols.get("met")
    if met is not None:
        arrays = {"pt": np.asarray(met["pt"]), "phi": np.asarray(met["phi"])}
        drop, n_bad = _handle_nonfinite(arrays, "met", plan, source)
        if n_bad:
            nonfinite["met"] = n_bad
        drop = np.zeros(B, dtype=bool) if drop is None else drop
        has_met = (~drop).astype(np.int64)
        met_pt = np.where(drop, 0.0, arrays["pt"].astype(np.float64))

    node_counts = has_met.copy()
    for s in sel.values():
        node_counts += s["counts"]
    node_off = np.zeros(B + 1, dtype=np.int64)
    np.cumsum(node_counts, out=node_off[1:])
    x = np.empty((int(node_off[-1]), len(NODE_FEATURES)), dtype=np.float32)  # every row is written once

    base = node_off[:-1].copy()  # next free node slot of each event, advanced type by type
    for obj in OBJECT_TYPES[:-1]:
        s = sel.get(obj)
        if s is None:
            continue
        x[base[s["ev"]] + s["pos"]] = _features(obj, s["arrays"])
        base += s["counts"]
    if met is not None:
        ev_m = np.flatnonzero(has_met)
        x[base[ev_m]] = _features("met", {"pt": arrays["pt"][ev_m], "phi": arrays["phi"][ev_m]})

    zero = np.zeros(B)
    n = {obj: (sel[obj]["n"] if obj in sel else zero) for obj in OBJECT_TYPES[:-1]}
    u = np.stack(
        [
            np.log1p(n["jet"]),
            np.log1p(sel["jet"]["n_b"] if "jet" in sel else zero),
            np.log1p(n["electron"]),
            np.log1p(n["muon"]),
            np.log1p(n["photon"]),
            np.log1p(np.maximum(sel["jet"]["ht"], 0.0) if "jet" in sel else zero),
            np.log1p(np.maximum(met_pt, 0.0)),
        ],
        axis=1,
    ).astype(np.float32)
    if warn and nonfinite:
        what = ", ".join(f"{k}: {v}" for k, v in nonfinite.items())
        action = "dropped" if spec.nonfinite == "drop" else "zeroed"
        warnings.warn(
            f"unusable input values{f' in {source}' if source else ''} ({RULE}), objects {action} "
            f"(GraphSpec(nonfinite={spec.nonfinite!r})): {what}",
            NonFiniteWarning,
            stacklevel=stacklevel,
        )
    return FlatNodes(x=x, node_counts=node_counts, u=u, nonfinite=nonfinite)
