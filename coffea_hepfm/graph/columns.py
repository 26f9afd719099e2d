"""Which NanoAOD branches a spec reads from a given file, and reading them as flat numpy arrays.

:func:`resolve` decides, from branch names only (nothing is read), which b-tag branch and MET collection
a file provides and which collections are missing; :func:`read_columns` then pulls exactly those branches
out of NanoEvents as flat numpy arrays plus per-event counts. Keeping the two apart lets the dask path
resolve once on the client (warnings appear once, errors before any task runs) and lets the column
pruning test compare ``Plan.branches()`` with what dask-awkward actually reads.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import awkward as ak
import numpy as np

from coffea_hepfm.graph.errors import MissingBranchError, MissingCollectionWarning
from coffea_hepfm.graph.spec import COLLECTIONS, GraphSpec
from coffea_hepfm.nanoaod.versions import available_branches, version_hint

# Per-object inputs (besides the b-tag branch, which the spec resolves). Lepton and photon masses are
# fixed (PDG / 0) rather than read: NanoAOD v12+ has no Photon_mass and it saves two branches.
FIELDS = {
    "jet": ("pt", "eta", "phi", "mass"),
    "electron": ("pt", "eta", "phi", "charge"),
    "muon": ("pt", "eta", "phi", "charge"),
    "photon": ("pt", "eta", "phi"),
}
FIXED_MASS = {"electron": 0.000511, "muon": 0.1056584, "photon": 0.0}


@dataclass(frozen=True)
class Plan:
    """What to read for one spec from one kind of file (the result of :func:`resolve`).

    ``collections[obj]`` is the NanoAOD collection (``"Jet"``) or ``None`` when the type is disabled
    (cap 0) or absent; ``absent`` lists branches that were missing and are treated as empty.
    """

    spec: GraphSpec
    collections: dict[str, str | None]
    btag_branch: str | None
    btag_wp: float
    met_source: str | None
    absent: tuple[str, ...] = field(default=())

    def fields(self, obj: str) -> tuple[str, ...]:
        if self.collections.get(obj) is None:
            return ()
        return FIELDS[obj] + ((self.btag_branch,) if obj == "jet" else ())

    def branches(self) -> list[str]:
        """NanoAOD branch names read, counters (``nJet``) included."""
        out = []
        for obj, coll in self.collections.items():
            if coll is not None:
                out.append(f"n{coll}")
                out.extend(f"{coll}_{f}" for f in self.fields(obj))
        if self.met_source is not None:
            out.extend([f"{self.met_source}_pt", f"{self.met_source}_phi"])
        return sorted(out)

    def warn_absent(self, stacklevel: int = 3) -> None:
        for b in self.absent:
            coll = b.split("_")[0]
            warnings.warn(
                f"{b} not found: treating {coll} as empty (GraphSpec(missing='empty')). Slimmed NanoAOD "
                f"(e.g. v12 analysis skims) drops {coll}; pass GraphSpec(max_{coll.lower()}s=0) to silence "
                "this, or missing='error' to fail.",
                MissingCollectionWarning,
                stacklevel=stacklevel,
            )


def _branch_names(spec: GraphSpec, available: Any) -> set[str] | None:
    if available is None:
        return None
    if hasattr(available, "fields"):  # NanoEvents (eager, virtual or dask): use the form only
        colls = [COLLECTIONS[o] for o in COLLECTIONS] + list(spec.met_sources)
        return available_branches(available, colls)
    return set(available)


def collection_present(
    spec: GraphSpec, obj: str, fields: Iterable[str], have, hint: str, absent: list
) -> bool:
    """Whether object type ``obj`` is read: ``False`` when the spec caps it at 0 or the file lacks its
    ``pt`` (recorded in ``absent`` for the warning; an error with ``missing="error"``); a present
    collection without one of ``fields`` is a :class:`MissingBranchError`. Shared by both spec versions'
    resolvers (v2: :func:`coffea_hepfm.graph.sources.resolve_v2`)."""
    coll = COLLECTIONS[obj]
    if spec.cap(obj) == 0:
        return False
    if not have(f"{coll}_pt"):
        if spec.missing == "error":
            raise MissingBranchError(
                f"{coll}_pt not found ({hint}; slimmed NanoAOD, e.g. v12 skims, drops {coll}): pass "
                f"GraphSpec(max_{obj}s=0) or GraphSpec(missing='empty')",
                f"{coll}_pt",
            )
        absent.append(f"{coll}_pt")
        return False
    for f in fields:
        if not have(f"{coll}_{f}"):
            raise MissingBranchError(
                f"{coll}_{f} not found but {coll}_pt is ({hint}); the graph spec needs it", f"{coll}_{f}"
            )
    return True


def resolve(spec: GraphSpec, available: Iterable[str] | Any | None = None) -> Plan:
    """Decide which branches ``spec`` reads from a file with branch names ``available``.

    ``available=None`` assumes every first choice exists. Raises :class:`MissingBranchError` (with a
    NanoAOD version hint) when a needed branch is absent and no fallback applies.

    Examples
    --------
    >>> resolve(GraphSpec(), {"nJet", "Jet_pt", "Jet_eta", "Jet_phi", "Jet_mass", "Jet_btagPNetB",
    ...                       "PuppiMET_pt", "PuppiMET_phi"}).met_source   # doctest: +SKIP
    'PuppiMET'
    """
    names = _branch_names(spec, available)
    have = (lambda b: True) if names is None else (lambda b: b in names)
    hint = "" if names is None else version_hint(names)
    collections: dict[str, str | None] = {}
    absent: list[str] = []
    btag_branch, btag_wp = None, 0.0
    for obj, coll in COLLECTIONS.items():
        if not collection_present(spec, obj, FIELDS[obj], have, hint, absent):
            collections[obj] = None
            continue
        if obj == "jet":
            for b, wp in spec.btag:
                if have(f"Jet_{b}"):
                    btag_branch, btag_wp = b, wp
                    break
            else:
                tried = ", ".join(f"Jet_{b}" for b, _ in spec.btag)
                raise MissingBranchError(
                    f"no b-tag branch found, tried {tried} ({hint}); add this file's b-tagger to "
                    "GraphSpec.btag as (branch, medium working point)",
                    f"Jet_{spec.btag[0][0]}",
                )
        collections[obj] = coll
    met_source = None
    if spec.met:
        for m in spec.met_sources:
            if have(f"{m}_pt") and have(f"{m}_phi"):
                met_source = m
                break
        else:
            tried = ", ".join(f"{m}_pt/{m}_phi" for m in spec.met_sources)
            raise MissingBranchError(
                f"no MET found, tried {tried} ({hint}); NanoAOD v15 has PuppiMET (and PFMET) only: add it "
                "to GraphSpec.met_sources, or pass GraphSpec(met=False)",
                f"{spec.met_sources[0]}_pt",
            )
    return Plan(spec, collections, btag_branch, btag_wp, met_source, tuple(absent))


def _flat(arr) -> np.ndarray:
    return np.asarray(ak.to_numpy(ak.flatten(arr, axis=1)))


def read_columns(events, plan: Plan) -> dict[str, Any]:
    """Read the plan's branches from eager or virtual NanoEvents as flat numpy arrays.

    Returns ``{"n_events": int, "<obj>": {"counts": int64[B], "pt": ..., ...} | None, "met":
    {"pt": [B], "phi": [B]} | None}``. On typetracer input (dask-awkward meta / column optimisation) the
    needed branches are touched and length-zero arrays are returned, so dask reads exactly these columns.
    """
    typetracer = ak.backend(events) == "typetracer"

    def numpy(a):
        if typetracer:
            a = ak.typetracer.length_zero_if_typetracer(a)  # touches the buffers -> column is "needed"
        return a

    out: dict[str, Any] = {"n_events": 0 if typetracer else len(events)}
    for obj, coll in plan.collections.items():
        if coll is None:
            out[obj] = None
            continue
        cols = {}
        for f in plan.fields(obj):
            # events[coll, f] projects at layout level: no coffea behaviour class (and its validation)
            # is built for the collection.
            a = numpy(events[coll, f])
            cols["btag" if f == plan.btag_branch else f] = _flat(a)
        cols["counts"] = np.asarray(ak.to_numpy(ak.num(a, axis=1)), dtype=np.int64)
        out[obj] = cols
    if plan.met_source is not None:
        m = plan.met_source
        out["met"] = {f: np.asarray(ak.to_numpy(numpy(events[m, f]))) for f in ("pt", "phi")}
    else:
        out["met"] = None
    return out
