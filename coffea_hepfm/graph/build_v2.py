"""Graph spec v2 node and global features from flat NanoAOD columns (numpy, all events at once).

Per object type: unusable values (:mod:`~coffea_hepfm.graph.validity`), identification, acceptance,
Delta-R cleaning (photons against selected leptons, jets against selected leptons and photons), pT order,
cap. Features are written straight into a feature-major ``[F, N]`` buffer at each object's final node
position (node order per event: jets, electrons, muons, photons, MET) and transposed once at the end: no
per-type ``[M, F]`` temporaries, no 2-D scatter, and constant features (one-hot, charge 0) cost nothing
beyond the zero fill.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from coffea_hepfm.cms import objects as ids
from coffea_hepfm.graph import btagging
from coffea_hepfm.graph.columns import FIXED_MASS
from coffea_hepfm.graph.errors import NonFiniteWarning
from coffea_hepfm.graph.nodes import FlatNodes
from coffea_hepfm.graph.sources import PlanV2
from coffea_hepfm.graph.spec import COLLECTIONS, NODE_FEATURES_V2, OBJECT_TYPES
from coffea_hepfm.graph.validity import RULE, apply_rule

_F = {name: i for i, name in enumerate(NODE_FEATURES_V2)}
_F32 = np.float32


def _offsets(counts: np.ndarray) -> np.ndarray:
    off = np.empty(len(counts) + 1, dtype=np.int64)
    off[0] = 0
    np.cumsum(counts, out=off[1:])
    return off


def _identified(obj: str, a: dict[str, np.ndarray], plan: PlanV2) -> np.ndarray:
    """Objects passing the spec's ID (and, for muons, isolation), by the branch the plan resolved."""
    spec, f = plan.spec, plan.fields[obj]
    idv = a["id"] if "id" in a else None
    if obj == "jet":
        level = spec.jet_id
        if "chMultiplicity" in a:
            z = np.zeros(len(a["pt"]), _F32)
            return ids.jet_id_run3(
                np.abs(a["eta"]), a["neHEF"], a["neEmEF"], a["chHEF"], a.get("chEmEF", z), a.get("muEF", z),
                a["chMultiplicity"], a["neMultiplicity"], level,
            )  # fmt: skip
        if "neHEF" in a:
            z = np.zeros(len(a["pt"]), _F32)
            return ids.jet_id_v12_fix(
                idv, np.abs(a["eta"]), a["neHEF"], a["neEmEF"], a.get("chEmEF", z), a.get("muEF", z), level
            )
        return ids.jet_id_bits(idv, level)
    if obj == "electron":
        if f["id"] == "cutBased":
            return idv >= ids.ELECTRON_CUTBASED[spec.electron_id]
        return idv.astype(bool, copy=False)
    if obj == "muon":
        ok = idv.astype(bool, copy=False)
        iso = a["iso"]
        if f["iso"] == "pfRelIso04_all":
            return ok & (iso < ids.MUON_ISO[spec.muon_iso])
        return ok & (iso >= ids.MUON_PFISOID[spec.muon_iso])
    if f["id"] == "cutBased":
        return idv >= ids.PHOTON_CUTBASED[spec.photon_id]
    if f["id"] == "cutBasedBitmap":
        return (idv.astype(np.int64, copy=False) & ids.PHOTON_BITMAP[spec.photon_id]) > 0
    return idv.astype(bool, copy=False)


def _accepted(obj: str, a: dict[str, np.ndarray], spec) -> np.ndarray:
    pt, aeta = a["pt"], np.abs(a["eta"])
    if obj == "jet":
        central = (pt > spec.min_pt_jet) & (aeta < spec.eta_jet_central)
        return central | ((pt > spec.min_pt_jet_forward) & (aeta < spec.max_eta_jet))
    return (pt > spec.min_pt(obj)) & (aeta < getattr(spec, f"max_eta_{obj}"))


def _clean(keep: np.ndarray, t: dict, t_start: np.ndarray, t_counts: np.ndarray, cl: list[dict], dr: float):
    """Drop (in ``keep``) targets within Delta R < ``dr`` of any cleaner. ``t`` holds the targets' flat
    ``eta``/``phi``; ``cl`` the selected cleaners as ``{"eta", "phi", "ev"}``; all pairs of a cleaner with
    the targets of its event are formed at once (a few per event)."""
    cl = [c for c in cl if len(c["ev"])]
    if not cl or dr <= 0:
        return
    c_eta = np.concatenate([c["eta"] for c in cl])
    c_phi = np.concatenate([c["phi"] for c in cl])
    c_ev = np.concatenate([c["ev"] for c in cl])
    n = t_counts[c_ev]
    total = int(n.sum())
    if total == 0:
        return
    first = np.repeat(t_start[c_ev] - (np.cumsum(n) - n), n)
    tidx = first + np.arange(total, dtype=np.int64)
    rep = np.repeat(np.arange(len(c_ev)), n)
    deta = t["eta"][tidx] - c_eta[rep]
    dphi = np.abs(t["phi"][tidx] - c_phi[rep])
    dphi = np.minimum(dphi, _F32(2 * np.pi) - dphi)
    close = deta * deta + dphi * dphi < _F32(dr * dr)
    keep[tidx[close]] = False


def _positions(sel: np.ndarray, ev_all: np.ndarray, n_events: int, pt: np.ndarray, cap: int):
    """Event, position within the event (pT order) and per-event count of selected objects ``sel``;
    re-sorts by pT only if the file is not already pT-ordered (NanoAOD is; simulation may not be)."""
    ev = ev_all[sel]
    n = np.bincount(ev, minlength=n_events)
    p = pt[sel]
    if len(sel) > 1 and np.any((p[1:] > p[:-1]) & (ev[1:] == ev[:-1])):
        order = np.lexsort((-p, ev))
        sel, ev = sel[order], ev[order]
    pos = np.arange(len(sel), dtype=np.int32) - np.repeat(_offsets(n)[:-1].astype(np.int32), n)
    if n.max(initial=0) > cap:
        keep = pos < cap
        return sel, ev, pos, n, sel[keep], ev[keep], pos[keep]
    return sel, ev, pos, n, sel, ev, pos


def build_flat_v2(
    cols: dict[str, Any], plan: PlanV2, warn: bool = True, stacklevel: int = 2, source: str | None = None
) -> FlatNodes:
    """v2 node features ``x`` [N, 15], ``node_counts`` [B] and globals ``u`` [B, 7] from
    :func:`~coffea_hepfm.graph.sources.read_columns_v2` output (see ``docs/design.md``)."""
    spec = plan.spec
    B = int(cols["n_events"])
    nonfinite: dict[str, int] = {}
    bad_branches: dict[str, int] = {}
    data: dict[str, dict] = {}
    for obj, coll in COLLECTIONS.items():
        c = cols.get(obj)
        if c is None:
            continue
        counts = c["counts"]
        a = {k: v for k, v in c.items() if k != "counts"}
        if obj == "jet":  # the tagger is chosen on all jets, before any selection
            aeta_all = np.abs(a["eta"])
            ev_era = btagging.event_eras(spec.era, plan.is_mc, cols.get("run"), B, source)
            choice = btagging.choose_tagger(cols["taggers"], aeta_all, ev_era, plan.run3, source)
            a["btag"] = choice.scores
        names = {k: f"{coll}_{plan.fields[obj].get(k, k)}" for k in a}
        if obj == "jet":
            names["btag"] = f"Jet_{choice.branch}"
        drop, bad, n_bad = apply_rule(a, names, spec.nonfinite, obj, source)
        if n_bad:
            nonfinite[obj] = n_bad
            bad_branches.update(bad)
        keep = _identified(obj, a, plan) & _accepted(obj, a, spec)
        if drop is not None:
            keep &= ~drop
        data[obj] = {"a": a, "counts": counts, "start": _offsets(counts)[:-1], "keep": keep}
        data[obj]["ev"] = np.repeat(np.arange(B, dtype=np.int32), counts)
    # Delta-R cleaning: photons against selected leptons, then jets against selected leptons and photons.
    leptons = [
        {"eta": d["a"]["eta"][d["keep"]], "phi": d["a"]["phi"][d["keep"]], "ev": d["ev"][d["keep"]]}
        for o, d in data.items()
        if o in ("electron", "muon")
    ]
    if "photon" in data:
        d = data["photon"]
        _clean(d["keep"], d["a"], d["start"], d["counts"], leptons, spec.clean_dr)
        leptons.append(
            {"eta": d["a"]["eta"][d["keep"]], "phi": d["a"]["phi"][d["keep"]], "ev": d["ev"][d["keep"]]}
        )
    if "jet" in data:
        d = data["jet"]
        _clean(d["keep"], d["a"], d["start"], d["counts"], leptons, spec.clean_dr)

    sel = {}
    for obj, d in data.items():
        s_all, ev_all, _, n, s, ev, pos = _positions(
            np.flatnonzero(d["keep"]), d["ev"], B, d["a"]["pt"], spec.cap(obj)
        )
        sel[obj] = {"n": n, "s": s, "ev": ev, "pos": pos, "counts": np.minimum(n, spec.cap(obj))}
        if obj == "jet":
            a = d["a"]
            cat_all = btagging.categories(choice, s_all, ev_all, np.abs(a["eta"][s_all]))
            sel[obj]["n_b"] = np.bincount(ev_all, weights=cat_all[1], minlength=B)
            sel[obj]["ht"] = np.bincount(ev_all, weights=a["pt"][s_all], minlength=B)
            if len(s) != len(s_all):
                cat_all = btagging.categories(choice, s, ev, np.abs(a["eta"][s]))
            sel[obj]["cat"] = cat_all

    met = cols.get("met")
    has_met = np.zeros(B, dtype=np.int64)
    met_pt = np.zeros(B, dtype=np.float64)
    if met is not None:
        m = {"pt": np.asarray(met["pt"]), "phi": np.asarray(met["phi"])}
        src = plan.met_source
        drop, bad, n_bad = apply_rule(
            m, {"pt": f"{src}_pt", "phi": f"{src}_phi"}, spec.nonfinite, "MET", source
        )
        if n_bad:
            nonfinite["met"] = n_bad
            bad_branches.update(bad)
        has_met[:] = 1
        if drop is not None:
            has_met[drop] = 0
        met_pt = np.where(has_met > 0, m["pt"], 0).astype(np.float64)

    node_counts = has_met.copy()
    for s in sel.values():
        node_counts += s["counts"]
    node_off = _offsets(node_counts)
    x = np.empty((int(node_off[-1]), len(NODE_FEATURES_V2)), dtype=_F32)  # every row is written once
    base = node_off[:-1].copy()  # next free node slot of each event, advanced type by type
    for obj in OBJECT_TYPES[:-1]:
        s = sel.get(obj)
        if s is None:
            continue
        # Features are computed into contiguous rows of a feature-major block, then scattered as node rows
        # (numpy copies the transposed block row by row: no per-feature strided scatter, no transpose copy).
        x[base[s["ev"]] + s["pos"]] = _block(obj, data[obj]["a"], s).T
        base += s["counts"]
    if met is not None:
        ev_m = np.flatnonzero(has_met)
        bt = np.zeros((len(NODE_FEATURES_V2), len(ev_m)), dtype=_F32)
        lp = np.log1p(np.maximum(m["pt"][ev_m].astype(_F32, copy=False), _F32(0)))
        phi = m["phi"][ev_m].astype(_F32, copy=False)
        bt[_F["log_pt"]] = lp
        bt[_F["log_energy"]] = lp  # massless with eta = 0: E = pT
        bt[_F["sin_phi"]] = np.sin(phi)
        bt[_F["cos_phi"]] = np.cos(phi)
        bt[_F["is_met"]] = 1
        x[base[ev_m]] = bt.T

    zero = np.zeros(B)
    n = {obj: (sel[obj]["n"] if obj in sel else zero) for obj in OBJECT_TYPES[:-1]}
    u = np.empty((B, 7), dtype=_F32)
    u[:, 0] = np.log1p(n["jet"])
    u[:, 1] = np.log1p(sel["jet"]["n_b"] if "jet" in sel else zero)
    u[:, 2] = np.log1p(n["electron"])
    u[:, 3] = np.log1p(n["muon"])
    u[:, 4] = np.log1p(n["photon"])
    u[:, 5] = np.log1p(sel["jet"]["ht"] if "jet" in sel else zero)
    u[:, 6] = np.log1p(met_pt)
    if warn and nonfinite:
        what = ", ".join(f"{b}: {k}" for b, k in bad_branches.items())
        action = "dropped" if spec.nonfinite == "drop" else "zeroed"
        where = f" in {source}" if source else ""
        warnings.warn(
            f"unusable input values{where} ({RULE}), objects {action} (GraphSpec(nonfinite="
            f"{spec.nonfinite!r})): bad values per branch {what}; objects per type "
            + ", ".join(f"{k}: {v}" for k, v in nonfinite.items()),
            NonFiniteWarning,
            stacklevel=stacklevel,
        )
    return FlatNodes(x=x, node_counts=node_counts, u=u, nonfinite=nonfinite)


def _block(obj: str, a: dict[str, np.ndarray], s: dict) -> np.ndarray:
    """``[F, M]`` features of the capped selected objects ``s`` of type ``obj`` (feature-major)."""
    idx = s["s"]
    xt = np.zeros((len(NODE_FEATURES_V2), len(idx)), dtype=_F32)
    pt = a["pt"][idx].astype(_F32, copy=False)
    eta = a["eta"][idx].astype(_F32, copy=False)
    phi = a["phi"][idx].astype(_F32, copy=False)
    if obj == "jet":
        m = np.maximum(a["mass"][idx].astype(_F32, copy=False), _F32(0))  # NanoAOD: tiny m < 0
    else:
        m = _F32(FIXED_MASS[obj])
    p = pt * np.cosh(eta)
    np.log1p(pt, out=xt[_F["log_pt"]])
    xt[_F["eta"]] = eta
    np.sin(phi, out=xt[_F["sin_phi"]])
    np.cos(phi, out=xt[_F["cos_phi"]])
    p *= p
    p += m * m
    np.log1p(np.sqrt(p, out=p), out=xt[_F["log_energy"]])
    if obj == "jet":
        np.log1p(m, out=xt[_F["log_mass"]])
        xt[_F["btag_loose"] : _F["btag_tight"] + 1] = s["cat"]
    elif obj != "photon":
        xt[_F["log_mass"]] = np.log1p(m)
        xt[_F["charge"]] = a["charge"][idx]
    xt[_F[f"is_{obj}"]] = 1
    return xt
