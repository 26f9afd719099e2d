"""Graph spec v2: which NanoAOD branch provides each input of a file, with documented fallbacks.

:func:`resolve_v2` decides from branch names only (nothing is read) how a file provides every input the
spec needs: the jet ID recipe, the electron, muon and photon ID branches, the b-tag branches that may be
used, the MET collection, and whether the era needs the run number. Each choice follows the fallback
table of ``docs/design.md`` ("NanoAOD version fallbacks"); when no fallback applies it raises
:class:`~coffea_hepfm.graph.errors.MissingBranchError` naming the branch, never "everything passes".
:func:`read_columns_v2` then reads exactly those branches as flat numpy arrays.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import awkward as ak
import numpy as np

from coffea_hepfm.cms import objects as ids
from coffea_hepfm.graph.columns import collection_present
from coffea_hepfm.graph.errors import MissingBranchError, MissingCollectionWarning
from coffea_hepfm.graph.spec import COLLECTIONS, GraphSpec
from coffea_hepfm.nanoaod.versions import available_branches, version_hint

#: Branches whose presence marks a Run 3 (NanoAOD v12+) file.
RUN3_MARKERS = ("Jet_btagPNetB", "Jet_btagRobustParTAK4B", "Jet_btagUParTAK4B")
KINEMATICS = {
    "jet": ("pt", "eta", "phi", "mass"),
    "electron": ("pt", "eta", "phi", "charge"),
    "muon": ("pt", "eta", "phi", "charge"),
    "photon": ("pt", "eta", "phi"),
}


@dataclass(frozen=True)
class PlanV2:
    """How one kind of file provides the inputs of a v2 spec (the result of :func:`resolve_v2`).

    ``fields[obj]`` maps input keys to NanoAOD field names of the object's collection (``"id"`` is the ID
    input, e.g. ``"cutBased"``); ``choices`` says in words which recipe / fallback was taken (see
    :meth:`describe`); ``taggers`` lists the b-tag branches of ``spec.taggers`` present in the file, in order
    of preference (which one is used is decided per chunk).
    """

    spec: GraphSpec
    collections: dict[str, str | None]
    fields: dict[str, dict[str, str]]
    choices: dict[str, str]
    taggers: tuple[str, ...]
    met_source: str | None
    is_mc: bool | None  # None: decide from the run number (data unless run == 1)
    run3: bool
    absent: tuple[str, ...] = field(default=())

    @property
    def read_run(self) -> bool:
        return self.spec.era == "auto" and self.is_mc is None and bool(self.taggers)

    def branches(self) -> list[str]:
        """NanoAOD branch names that may be read, counters included."""
        out = set()
        for obj, coll in self.collections.items():
            if coll is not None:
                out.add(f"n{coll}")
                out.update(f"{coll}_{f}" for f in self.fields[obj].values())
        if self.collections.get("jet") is not None:
            out.update(f"Jet_{t}" for t in self.taggers)
        if self.met_source is not None:
            out.update({f"{self.met_source}_pt", f"{self.met_source}_phi"})
        if self.read_run:
            out.add("run")
        return sorted(out)

    def describe(self) -> dict[str, str]:
        """The resolved choices in words, e.g. ``{"jet_id": "Jet_jetId bit 2 (tight)", ...}``."""
        return dict(self.choices)

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


def _names(spec: GraphSpec, available: Any) -> set[str] | None:
    if available is None:
        return None
    if hasattr(available, "fields"):  # NanoEvents: the form only
        names = available_branches(available, [*COLLECTIONS.values(), *spec.met_sources])
        names.update(f for f in ("run", "genWeight") if f in available.fields)
        return names
    return set(available)


def _first(have, coll: str, candidates: Iterable[str]) -> str | None:
    return next((c for c in candidates if have(f"{coll}_{c}")), None)


def resolve_v2(spec: GraphSpec, available: Iterable[str] | Any | None = None) -> PlanV2:
    """Decide which branches a v2 ``spec`` reads from a file with branch names ``available``.

    ``available=None`` assumes a NanoAOD v12 file with every first choice (used for documentation).

    Examples
    --------
    >>> v15 = {"nJet", "Jet_pt", "Jet_eta", "Jet_phi", "Jet_mass", "Jet_btagUParTAK4B", "Jet_neHEF",
    ...        "Jet_neEmEF", "Jet_chHEF", "Jet_chMultiplicity", "Jet_neMultiplicity", "PuppiMET_pt",
    ...        "PuppiMET_phi", "genWeight"}
    >>> p = resolve_v2(GraphSpec(max_electrons=0, max_muons=0, max_photons=0), v15)
    >>> p.choices["jet_id"], p.met_source, p.taggers, p.is_mc
    ('Run 3 recipe from energy fractions (JetID13p6TeV), tight', 'PuppiMET', ('btagUParTAK4B',), True)
    """
    names = _names(spec, available)
    documentation = names is None
    if documentation:
        names = _first_choices(spec)
    have = names.__contains__
    hint = "NanoAOD with every first choice" if documentation else version_hint(names)
    run3 = any(have(b) for b in RUN3_MARKERS)
    collections: dict[str, str | None] = {}
    fields: dict[str, dict[str, str]] = {}
    choices: dict[str, str] = {}
    absent: list[str] = []
    for obj, coll in COLLECTIONS.items():
        if not collection_present(spec, obj, KINEMATICS[obj], have, hint, absent):
            collections[obj] = None
            continue
        f, choice = _RESOLVERS[obj](spec, have, hint, run3)
        collections[obj] = coll
        fields[obj] = {**{k: k for k in KINEMATICS[obj]}, **f}
        choices.update(choice)
    taggers: tuple[str, ...] = ()
    if collections.get("jet") is not None:
        taggers = tuple(t for t in spec.taggers if have(f"Jet_{t}"))
        if not taggers:
            tried = ", ".join(f"Jet_{t}" for t in spec.taggers)
            raise MissingBranchError(
                f"no b-tag branch found, tried {tried} ({hint}); add this file's tagger to "
                "GraphSpec.taggers (known: coffea_hepfm.cms.btag.TAGGERS)",
                f"Jet_{spec.taggers[0]}",
            )
        choices["btag"] = f"first valid of {', '.join(f'Jet_{t}' for t in taggers)} per chunk"
    met_source = None
    if spec.met:
        met_source = next((m for m in spec.met_sources if have(f"{m}_pt") and have(f"{m}_phi")), None)
        if met_source is None:
            tried = ", ".join(f"{m}_pt/{m}_phi" for m in spec.met_sources)
            raise MissingBranchError(
                f"no MET found, tried {tried} ({hint}); add this file's MET collection to "
                "GraphSpec.met_sources, or pass GraphSpec(met=False)",
                f"{spec.met_sources[0]}_pt",
            )
        choices["met"] = met_source
    is_mc = True if "genWeight" in names or "run" not in names else None
    if spec.era != "auto":
        choices["era"] = f"GraphSpec(era={spec.era!r})"
    elif is_mc:
        why = "genWeight present" if "genWeight" in names else "no run number"
        choices["era"] = f"simulation ({why}): the chosen tagger's reference era"
    else:
        choices["era"] = "from the run number (run == 1: simulation, the tagger's reference era)"
    return PlanV2(spec, collections, fields, choices, taggers, met_source, is_mc, run3, tuple(absent))


def _first_choices(spec: GraphSpec) -> set[str]:
    """Branch names of a file that has every first choice of ``spec`` (``available=None``)."""
    first = {
        "Jet": ("jetId", spec.taggers[0] if spec.taggers else "btagDeepFlavB"),
        "Electron": ("cutBased",),
        "Muon": (ids.MUON_ID[spec.muon_id], "pfRelIso04_all"),
        "Photon": ("cutBased",),
    }
    names = {"genWeight", f"{spec.met_sources[0]}_pt", f"{spec.met_sources[0]}_phi"}
    for obj, coll in COLLECTIONS.items():
        names.update(f"{coll}_{f}" for f in (*KINEMATICS[obj], *first[coll]))
    return names


def _missing(branch: str, hint: str, why: str) -> MissingBranchError:
    return MissingBranchError(f"{branch} not found ({hint}); {why}", branch)


def _jet(spec, have, hint, run3):
    level = spec.jet_id
    run3_fields = ids.jet_id_inputs("run3", level)
    v12_fields = ids.jet_id_inputs("v12", level)
    has_run3 = all(have(f"Jet_{f}") for f in run3_fields)
    if has_run3 and (run3 or not have("Jet_jetId")):
        return {f: f for f in run3_fields}, {
            "jet_id": f"Run 3 recipe from energy fractions (JetID13p6TeV), {level}"
        }
    if not have("Jet_jetId"):
        missing = [f"Jet_{f}" for f in run3_fields if not have(f"Jet_{f}")]
        raise _missing(
            "Jet_jetId",
            hint,
            f"the Run 3 jet-ID recipe also lacks {', '.join(missing)}. Jets are never taken without an ID: "
            "use NanoAOD with Jet_jetId or the energy-fraction branches",
        )
    if run3 and all(have(f"Jet_{f}") for f in v12_fields):
        return {"id": "jetId", **{f: f for f in v12_fields}}, {
            "jet_id": f"Jet_jetId with the JME NanoAOD v12 fix for |eta| > 2.7, {level}"
        }
    return {"id": "jetId"}, {"jet_id": f"Jet_jetId bit {ids.JET_ID_BITS[level]} ({level})"}


def _electron(spec, have, hint, run3):
    level = spec.electron_id
    if have("Electron_cutBased"):
        return {"id": "cutBased"}, {
            "electron_id": f"Electron_cutBased >= {ids.ELECTRON_CUTBASED[level]} ({level})"
        }
    wp = ids.ELECTRON_MVA_FOR[level]
    branch = _first(have, "Electron", (f"mvaIso_{wp}", f"mvaFall17V2Iso_{wp}"))
    if branch is None:
        raise _missing(
            "Electron_cutBased",
            hint,
            f"no MVA fallback either (Electron_mvaIso_{wp}, Electron_mvaFall17V2Iso_{wp}); pass "
            "GraphSpec(max_electrons=0) to build graphs without electrons",
        )
    return {"id": branch}, {"electron_id": f"Electron_{branch} (fallback for cut-based {level})"}


def _muon(spec, have, hint, run3):
    flag = ids.MUON_ID[spec.muon_id]
    if not have(f"Muon_{flag}"):
        raise _missing(f"Muon_{flag}", hint, "pass another GraphSpec(muon_id=...) or max_muons=0")
    if have("Muon_pfRelIso04_all"):
        iso, text = "pfRelIso04_all", f"Muon_pfRelIso04_all < {ids.MUON_ISO[spec.muon_iso]}"
    elif have("Muon_pfIsoId"):
        iso, text = "pfIsoId", f"Muon_pfIsoId >= {ids.MUON_PFISOID[spec.muon_iso]} (fallback)"
    else:
        raise _missing("Muon_pfRelIso04_all", hint, "no Muon_pfIsoId fallback either")
    return {"id": flag, "iso": iso}, {"muon_id": f"Muon_{flag} and {text}"}


def _photon(spec, have, hint, run3):
    level = spec.photon_id
    if have("Photon_cutBased"):
        return {"id": "cutBased"}, {"photon_id": f"Photon_cutBased >= {ids.PHOTON_CUTBASED[level]} ({level})"}
    if have("Photon_cutBasedBitmap"):
        return {"id": "cutBasedBitmap"}, {
            "photon_id": f"Photon_cutBasedBitmap bit {ids.PHOTON_BITMAP[level]} ({level}, NanoAOD v5-v8)"
        }
    wp = ids.PHOTON_MVA_FOR[level]
    if have(f"Photon_mvaID_{wp}"):
        return {"id": f"mvaID_{wp}"}, {"photon_id": f"Photon_mvaID_{wp} (fallback for cut-based {level})"}
    raise _missing(
        "Photon_cutBased",
        hint,
        f"no fallback either (Photon_cutBasedBitmap, Photon_mvaID_{wp}); pass GraphSpec(max_photons=0)",
    )


_RESOLVERS = {"jet": _jet, "electron": _electron, "muon": _muon, "photon": _photon}


# -- reading ------------------------------------------------------------------------------------------
def _flat_and_counts(arr) -> tuple[np.ndarray, np.ndarray]:
    """Flat numpy values and per-event counts of a jagged (one list per event) awkward array."""
    layout = arr.layout if isinstance(arr, ak.Array) else arr
    if isinstance(layout, ak.contents.ListOffsetArray) and isinstance(layout.content, ak.contents.NumpyArray):
        off = np.asarray(layout.offsets.data)
        return np.asarray(layout.content.data)[off[0] : off[-1]], np.diff(off)
    return np.asarray(ak.to_numpy(ak.flatten(arr, axis=1))), np.asarray(ak.to_numpy(ak.num(arr, axis=1)))


def read_columns_v2(events, plan: PlanV2) -> dict[str, Any]:
    """Read the plan's branches from eager or virtual NanoEvents (or uproot arrays with the same layout).

    Returns ``{"n_events", "<obj>": {"counts", key: flat array, ...} | None, "met": {"pt", "phi"} | None,
    "run": array | None, "taggers": {branch: callable -> flat array}}``. b-tag branches are read lazily
    (only those the placeholder check needs). On typetracer input every branch is touched and zero-length
    arrays come back, so dask-awkward's column optimisation reads exactly ``plan.branches()``.
    """
    typetracer = ak.backend(events) == "typetracer"

    def get(coll, f):
        a = events[coll, f]
        if typetracer:
            a = ak.typetracer.length_zero_if_typetracer(a)  # touches the buffers: the column is needed
        return a

    out: dict[str, Any] = {"n_events": 0 if typetracer else len(events), "taggers": {}}
    for obj, coll in plan.collections.items():
        if coll is None:
            out[obj] = None
            continue
        cols = {}
        for key, f in plan.fields[obj].items():
            cols[key], counts = _flat_and_counts(get(coll, f))
        cols["counts"] = counts.astype(np.int64, copy=False)
        out[obj] = cols
    if out.get("jet") is not None:
        for t in plan.taggers:
            if typetracer:
                get("Jet", t)
            out["taggers"][t] = lambda t=t: _flat_and_counts(get("Jet", t))[0]
    if plan.met_source is not None:
        out["met"] = {f: np.asarray(ak.to_numpy(get(plan.met_source, f))) for f in ("pt", "phi")}
    else:
        out["met"] = None
    out["run"] = None
    if plan.read_run:
        run = events["run"]
        run = ak.typetracer.length_zero_if_typetracer(run) if typetracer else run
        out["run"] = np.asarray(ak.to_numpy(run))
    return out
