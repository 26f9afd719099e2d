"""Helpers shared by the graph tests: NanoEvents opened once per session, hand-made events, checks."""

from __future__ import annotations

import contextlib
import functools

import awkward as ak
import numpy as np
import pytest

from coffea_hepfm.graph import GraphBatch, GraphSpec, MissingCollectionWarning, TaggerFallbackWarning
from coffea_hepfm.nanoaod import open_events

#: Package warnings the v2 default spec gives on each shared CMS file (asserted, never ignored).
V2_WARNINGS = {
    "nano_tt_v12.root": (MissingCollectionWarning, "Photon_pt not found"),  # slimmed: no Photon
    "nano_tree.root": (TaggerFallbackWarning, r"falls back to Jet_btagDeepB: Jet_btagDeepFlavB: placeholder"),
}


@functools.cache
def opened(path, mode="virtual"):
    """NanoEvents opened once per test session (eager opening reads every branch: slow on 1500-branch
    files; opening builds the schema: seconds). Builders never modify events, so sharing them is safe."""
    return open_events(path, mode=mode)


def expect_v2_warnings(path):
    """``pytest.warns`` for the warnings the v2 default gives on a shared CMS file, else a no-op."""
    name = getattr(path, "name", str(path))
    if name in V2_WARNINGS:
        cls, match = V2_WARNINGS[name]
        return pytest.warns(cls, match=match)
    return contextlib.nullcontext()


# Passing ID values of every branch the v2 spec reads (hand-made events are "good" unless a test says).
ID_DEFAULTS = {
    "Jet": {"jetId": 6, "btagDeepFlavB": 0.0},
    "Electron": {"cutBased": 4, "charge": -1},
    "Muon": {"tightId": True, "pfRelIso04_all": 0.0, "charge": -1},
    "Photon": {"cutBased": 3},
}
FIELDS = {
    "Jet": ("pt", "eta", "phi", "mass", "btagDeepFlavB", "jetId"),
    "Electron": ("pt", "eta", "phi", "charge", "cutBased"),
    "Muon": ("pt", "eta", "phi", "charge", "tightId", "pfRelIso04_all"),
    "Photon": ("pt", "eta", "phi", "cutBased"),
}
_DTYPES = {"jetId": np.uint8, "cutBased": np.uint8, "tightId": bool, "charge": np.int32}


def make_events(jets, electrons=None, muons=None, photons=None, met=None, genweight=True):
    """Hand-made events with the NanoEvents field layout the builders read (one list per event); every
    object passes ID unless its dict overrides a field. ``genweight`` marks them as simulation."""
    n = len(jets)
    empty = [[] for _ in range(n)]

    def coll(name, rows):
        rows = empty if rows is None else rows
        counts = [len(ev) for ev in rows]
        out = {}
        for f in FIELDS[name]:
            default = ID_DEFAULTS[name].get(f, 0.0)
            vals = [o.get(f, default) for ev in rows for o in ev]
            out[f] = ak.unflatten(np.array(vals, dtype=_DTYPES.get(f, np.float32)), counts)
        return ak.zip(out)

    fields = {
        "Jet": coll("Jet", jets),
        "Electron": coll("Electron", electrons),
        "Muon": coll("Muon", muons),
        "Photon": coll("Photon", photons),
        "MET": ak.Array(met if met is not None else [{"pt": 0.0, "phi": 0.0}] * n),
    }
    if genweight:
        fields["genWeight"] = np.ones(n, np.float32)
    return ak.Array(fields)


def check_batch(g: GraphBatch, spec: GraphSpec) -> None:
    n = g.node_counts
    assert g.x.dtype == np.float32 and g.x.shape == (n.sum(), spec.n_node_features)
    assert g.u.dtype == np.float32 and g.u.shape == (len(n), spec.n_global_features)
    assert g.edge_index.dtype == np.int64 and g.edge_index.shape == (2, int((n * (n - 1)).sum()))
    assert g.edge_attr.dtype == np.float32 and g.edge_attr.shape == (g.num_edges, spec.n_edge_features)
    assert np.array_equal(g.batch, np.repeat(np.arange(len(n)), n))
    src, dst = g.edge_index
    assert np.all(src != dst), "self loop"
    assert np.array_equal(g.batch[src], g.batch[dst]), "edge across events"
    key = src * max(g.num_nodes, 1) + dst
    assert np.all(np.diff(key) > 0), "edges not unique / not source-major ordered"
    assert np.isfinite(g.x).all() and np.isfinite(g.u).all() and np.isfinite(g.edge_attr).all()
    assert np.all(np.abs(g.edge_attr[:, 1]) <= np.float32(np.pi))


# -- modified copies of shared files (written with uproot, as a user's odd file would be) ---------------
_KEEP = ("Jet", "Electron", "Muon", "Photon", "MET", "PuppiMET", "PFMET")
_IDS = ("run", "luminosityBlock", "event", "genWeight")


def write_copy(src, dst, edit=None, drop=()):
    """Copy the object collections (no cross-reference ``*Idx*`` branches) and event IDs of NanoAOD ``src``
    to ``dst``; ``edit(cols)`` may change / add / delete branches (``{"Jet_pt": awkward array, ...}``) and
    ``drop`` lists branch names (or ``"MET_*"`` prefixes) to leave out. Returns ``dst``."""
    import uproot

    tree = uproot.open(src)["Events"]
    keys = [
        k
        for k in tree.keys()
        if (k in _IDS or (k.split("_")[0] in _KEEP and "_" in k and "Idx" not in k))
        and not any(k == d or (d.endswith("*") and k.startswith(d[:-1])) for d in drop)
    ]
    arrays = tree.arrays(keys)
    cols = {k: arrays[k] for k in keys}
    if edit is not None:
        edit(cols)
    out, groups = {}, {}
    for k, v in cols.items():
        coll, _, field = k.partition("_")
        if field and v.ndim > 1:
            groups.setdefault(coll, {})[field] = v
        else:
            out[k] = v
    out.update({coll: ak.zip(fields) for coll, fields in groups.items()})
    with uproot.recreate(dst) as f:
        f["Events"] = out
    return dst


def set_value(arr, event, value, index=0):
    """A copy of jagged (or flat, ``index`` ignored) ``arr`` with object ``index`` of ``event`` set to
    ``value``."""
    if arr.ndim == 1:
        flat = np.asarray(ak.to_numpy(arr)).copy()
        flat[event] = value
        return ak.Array(flat)
    counts = np.asarray(ak.num(arr))
    flat = np.asarray(ak.to_numpy(ak.flatten(arr))).copy()
    flat[np.cumsum(counts)[event] - counts[event] + index] = value
    return ak.unflatten(flat, counts)
