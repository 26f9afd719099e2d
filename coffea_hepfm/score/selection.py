"""Event selections for comparing domains: a preselection on the event graph and a selection on GenPart.

Preselection (``--preselection``), evaluated on the graph built with the report's graph spec: terms
joined by commas, all must hold::

    n_jet>=4,n_lepton>=1        # node counts per object type in the graph (after thresholds and caps)
    n_muon>=2,log_met<4         # any global feature of the spec by name
    n_lepton==1                 # n_lepton = n_electron + n_muon

Quantities: ``n_<type>`` (``n_jets`` also accepted) for every object type of the spec, ``n_lepton``, and
the spec's global features. Operators: ``>= <= == != > <``.

Generator selection (``--sim-selection`` / ``--cms-selection``), from the NanoAOD ``GenPart`` record, to
compare like with like. Comma-separated terms, all must hold:

- ``semileptonic`` / ``dileptonic`` / ``allhadronic``: exactly 1 / 2 / 0 W bosons decaying to a lepton
  and a neutrino (e, mu or tau), i.e. ``w-leptonic=1`` / ``=2`` / ``=0``;
- ``w-leptonic=N``: exactly N leptonic W decays;
- ``z-ll`` (ee, mumu or tautau), ``z-ee``, ``z-mumu``, ``z-tautau``, ``z-nunu``, ``z-qq``: a Z boson
  decaying to that final state.

A W (Z) decay is read from the GenPart entries whose mother (``genPartIdxMother``) is a W (Z) and that are
not themselves a W (Z); so radiating copies of the boson are skipped, and the decay is that of the last
copy. Files without ``GenPart`` cannot be selected: the caller takes them as given and says so.

Examples
--------
>>> from coffea_hepfm.graph import GraphSpec
>>> sel = Preselection.parse("n_jet>=4, n_lepton>=1", GraphSpec())
>>> sel.terms
(('n_jet', '>=', 4.0), ('n_lepton', '>=', 1.0))
>>> Preselection.parse("n_tau>=1", GraphSpec())
Traceback (most recent call last):
...
ValueError: preselection term 'n_tau>=1': unknown quantity 'n_tau'; known: n_jet, n_electron, n_muon, n_photon, n_met, n_lepton, log_n_jets, log_n_bjets, log_n_electrons, log_n_muons, log_n_photons, log_ht, log_met
>>> GenSelection.parse("semileptonic").terms
(('w-leptonic', 1),)
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass

import awkward as ak
import numpy as np

from coffea_hepfm.errors import HEPFMWarning
from coffea_hepfm.model.reference import feature_layout, node_types


class GenSelectionNotApplied(HEPFMWarning):
    """A file has no ``GenPart`` record: a generator selection cannot be applied, its events are taken as
    given (e.g. collision data)."""


__all__ = ["GEN_ALIASES", "GenSelection", "GenSelectionNotApplied", "Preselection", "has_genpart"]

_OPS = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}
_TERM = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(>=|<=|==|!=|>|<)\s*([-+0-9.eE]+)\s*$")


@dataclass(frozen=True)
class Preselection:
    """A parsed graph-level preselection; :meth:`mask` evaluates it on flat graph inputs."""

    text: str
    terms: tuple[tuple[str, str, float], ...]
    spec: object

    @classmethod
    def parse(cls, text: str | None, spec) -> Preselection:
        layout = feature_layout(spec)
        known = [f"n_{t}" for t in layout.types] + ["n_lepton", *layout.globals]
        terms = []
        for raw in (text or "").split(","):
            if not raw.strip():
                continue
            m = _TERM.match(raw)
            if m is None:
                raise ValueError(
                    f"preselection term {raw.strip()!r} is not '<quantity><op><number>' (e.g. 'n_jet>=4')"
                )
            name, op, value = m.groups()
            if name.startswith("n_") and name.endswith("s") and name[:-1] in known:
                name = name[:-1]  # n_jets -> n_jet
            if name not in known:
                raise ValueError(
                    f"preselection term {raw.strip()!r}: unknown quantity {name!r}; known: {', '.join(known)}"
                )
            terms.append((name, op, float(value)))
        return cls(text=(text or "").strip(), terms=tuple(terms), spec=spec)

    def quantities(self, x: np.ndarray, counts: np.ndarray, u: np.ndarray) -> dict[str, np.ndarray]:
        """The values of every quantity the terms use, per event."""
        layout = feature_layout(self.spec)
        types = node_types(x, layout)
        event = np.repeat(np.arange(len(counts)), np.asarray(counts, np.int64))
        out = {}
        for k, t in enumerate(layout.types):
            out[f"n_{t}"] = np.bincount(event[types == k], minlength=len(counts))
        if "electron" in layout.types and "muon" in layout.types:
            out["n_lepton"] = out["n_electron"] + out["n_muon"]
        for g, name in enumerate(layout.globals):
            out[name] = u[:, g]
        return out

    def mask(self, x: np.ndarray, counts: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Boolean ``[B]``: events passing every term (all events without terms)."""
        keep = np.ones(len(counts), dtype=bool)
        if not self.terms:
            return keep
        values = self.quantities(x, counts, u)
        for name, op, value in self.terms:
            keep &= _OPS[op](values[name], value)
        return keep


#: named generator selections -> their terms
GEN_ALIASES = {
    "semileptonic": (("w-leptonic", 1),),
    "dileptonic": (("w-leptonic", 2),),
    "allhadronic": (("w-leptonic", 0),),
    "hadronic": (("w-leptonic", 0),),
}
_Z_MODES = {
    "ll": (11, 13, 15),
    "ee": (11,),
    "mumu": (13,),
    "tautau": (15,),
    "nunu": (12, 14, 16),
    "qq": (1, 2, 3, 4, 5),
}


def has_genpart(events) -> bool:
    """Whether NanoEvents have a ``GenPart`` collection with pdgId and mother index."""
    if "GenPart" not in events.fields:
        return False
    return {"pdgId", "genPartIdxMother"} <= set(events.GenPart.fields)


@dataclass(frozen=True)
class GenSelection:
    """A parsed generator-level selection; :meth:`mask` evaluates it on NanoEvents with ``GenPart``."""

    text: str
    terms: tuple[tuple[str, object], ...]

    @classmethod
    def parse(cls, text: str | None) -> GenSelection:
        terms: list[tuple[str, object]] = []
        for raw in (text or "").split(","):
            word = raw.strip().lower()
            if not word:
                continue
            if word.startswith("ttbar-"):
                word = word[len("ttbar-") :]
            if word in GEN_ALIASES:
                terms.extend(GEN_ALIASES[word])
            elif word.startswith("w-leptonic="):
                n = word.split("=", 1)[1]
                if not n.isdigit():
                    raise ValueError(
                        f"generator selection {raw.strip()!r}: 'w-leptonic=N' needs an integer N"
                    )
                terms.append(("w-leptonic", int(n)))
            elif word.startswith("z-") and word[2:] in _Z_MODES:
                terms.append(("z-decay", word[2:]))
            else:
                known = [*GEN_ALIASES, "w-leptonic=N", *(f"z-{m}" for m in _Z_MODES)]
                raise ValueError(f"unknown generator selection {raw.strip()!r}; known: {', '.join(known)}")
        return cls(text=(text or "").strip(), terms=tuple(terms))

    def __bool__(self) -> bool:
        return bool(self.terms)

    def mask(self, events) -> np.ndarray:
        """Boolean ``[B]`` for eager or virtual NanoEvents; ``KeyError`` if they have no ``GenPart``."""
        if not has_genpart(events):
            raise KeyError(
                "GenPart_pdgId / GenPart_genPartIdxMother are not in the file: no generator record"
            )
        pdg = events.GenPart.pdgId
        mother = events.GenPart.genPartIdxMother
        apdg = abs(pdg)
        safe = ak.where(mother >= 0, mother, 0)
        mother_apdg = ak.where(mother >= 0, apdg[safe], 0)
        keep = np.ones(len(events), dtype=bool)
        for kind, value in self.terms:
            if kind == "w-leptonic":
                keep &= _count_decaying(apdg, mother, mother_apdg, 24, (11, 12, 13, 14, 15, 16)) == value
            else:
                keep &= _count_decaying(apdg, mother, mother_apdg, 23, _Z_MODES[value]) > 0
        return keep


def _count_decaying(apdg, mother, mother_apdg, boson: int, daughters: tuple[int, ...]) -> np.ndarray:
    """Per event: number of distinct ``boson`` entries with at least one daughter in ``daughters``."""
    is_daughter = (mother_apdg == boson) & (apdg != boson)
    for_mode = ak.zeros_like(apdg, dtype=bool)
    for d in daughters:
        for_mode = for_mode | (apdg == d)
    sel = is_daughter & for_mode
    moms = mother[sel]
    n_events = len(moms)
    event = np.repeat(np.arange(n_events), ak.to_numpy(ak.num(moms, axis=1)))
    flat = ak.to_numpy(ak.flatten(moms, axis=1)).astype(np.int64)
    if flat.size == 0:
        return np.zeros(n_events, np.int64)
    pairs = np.unique(np.stack([event, flat], axis=1), axis=0)
    return np.bincount(pairs[:, 0], minlength=n_events)
