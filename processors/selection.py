"""Event selection for training ntuples: a small frozen dataclass, or any ``events -> bool mask`` callable.

The selection also defines the *selected muons*: the muons the muon scale factor is evaluated on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import awkward as ak
import numpy as np


@dataclass(frozen=True)
class Selection:
    """Object and event selection.

    An event passes when it has at least ``min_objects`` selected jets + leptons, ``min_jets`` selected jets
    and ``min_leptons`` selected electrons + muons.

    Parameters
    ----------
    jet_pt, jet_eta
        Jet thresholds (GeV, |eta|).
    lepton_pt
        Electron and muon pt threshold (GeV).
    muon_eta, electron_eta
        |eta| acceptance.
    muon_id
        Boolean ``Muon`` field a selected muon must pass (``"tightId"``), or ``None`` for no ID.
    min_objects, min_jets, min_leptons
        Event-level requirements.

    Examples
    --------
    The default keeps events with at least one jet or lepton:

    >>> Selection().min_objects
    1

    Selecting nothing is allowed (the ntuple is empty but valid, with a warning):

    >>> Selection(min_jets=99)  # doctest: +ELLIPSIS
    Selection(...min_jets=99...)
    """

    jet_pt: float = 20.0
    jet_eta: float = 4.7
    lepton_pt: float = 10.0
    muon_eta: float = 2.4
    electron_eta: float = 2.5
    muon_id: str | None = "tightId"
    min_objects: int = 1
    min_jets: int = 0
    min_leptons: int = 0

    def jets(self, events):
        j = events.Jet
        return j[(j.pt > self.jet_pt) & (abs(j.eta) < self.jet_eta)]

    def muons(self, events):
        m = events.Muon
        keep = (m.pt > self.lepton_pt) & (abs(m.eta) < self.muon_eta)
        if self.muon_id is not None:
            if self.muon_id not in m.fields:
                raise KeyError(f"Muon has no field {self.muon_id!r} (Selection.muon_id); set muon_id=None")
            keep = keep & m[self.muon_id]
        return m[keep]

    def electrons(self, events):
        e = events.Electron
        return e[(e.pt > self.lepton_pt) & (abs(e.eta) < self.electron_eta)]

    def __call__(self, events) -> ak.Array:
        """Boolean mask, one entry per event."""
        n_jets = ak.num(self.jets(events), axis=1)
        n_leptons = ak.num(self.muons(events), axis=1) + ak.num(self.electrons(events), axis=1)
        return (
            (n_jets + n_leptons >= self.min_objects)
            & (n_jets >= self.min_jets)
            & (n_leptons >= self.min_leptons)
        )

    def to_dict(self) -> dict:
        return {"kind": "Selection", **asdict(self)}


def describe(selection: Callable) -> dict:
    """JSON description of a selection for the ntuple manifest (dataclass fields or the callable's name).

    Examples
    --------
    >>> describe(lambda events: events.nJet > 0)["kind"]
    'callable'
    """
    if hasattr(selection, "to_dict"):
        return selection.to_dict()
    name = getattr(selection, "__qualname__", type(selection).__qualname__)
    return {"kind": "callable", "name": f"{getattr(selection, '__module__', '?')}.{name}"}


def selected_muons(selection: Callable, events):
    """Muons the scale factor applies to: ``selection.muons(events)`` when defined, else all muons."""
    return selection.muons(events) if hasattr(selection, "muons") else events.Muon


def as_mask(mask) -> ak.Array:
    """Check a selection result is one boolean per event.

    Examples
    --------
    >>> as_mask(ak.Array([[True], []]))
    Traceback (most recent call last):
    ...
    ValueError: selection must return one boolean per event, got 2 * var * bool
    """
    mask = mask if isinstance(mask, ak.Array) else ak.Array(mask)
    if mask.ndim != 1:
        raise ValueError(f"selection must return one boolean per event, got {mask.type}")
    return ak.values_astype(ak.fill_none(mask, False), np.bool_)
