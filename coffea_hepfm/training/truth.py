"""Multilabel truth content of an event from its ``GenPart`` collection.

Each event gets one boolean per label in :data:`TRUTH_LABELS`: is there a top quark, a Higgs, a W, a Z, a
b quark, a charged lepton (e, mu, tau) or a photon among the particles of the hard process? These are the
targets of the ``multilabel`` pretraining task.

"Hard process" follows the CMS NanoAOD convention: ``GenPart.statusFlags`` bit 7 (``isHardProcess``).
Files without ``statusFlags`` fall back to the Pythia status codes of the hard process (21-29).
"""

from __future__ import annotations

import awkward as ak
import numpy as np

from coffea_hepfm.errors import HEPFMError

TRUTH_LABELS: tuple[str, ...] = ("top", "higgs", "w", "z", "bquark", "lepton", "photon")

_PDG_IDS: dict[str, tuple[int, ...]] = {
    "top": (6,),
    "higgs": (25,),
    "w": (24,),
    "z": (23,),
    "bquark": (5,),
    "lepton": (11, 13, 15),
    "photon": (22,),
}

_IS_HARD_PROCESS_BIT = 7


class MissingTruth(HEPFMError, KeyError):
    """The events have no ``GenPart`` collection (e.g. real collision data)."""


def hard_process_mask(genpart: ak.Array) -> ak.Array:
    """Jagged boolean mask of the ``GenPart`` entries that belong to the hard process.

    Examples
    --------
    An event with no generator particles gives an empty list, not an error:

    >>> hard_process_mask(events.GenPart)  # doctest: +SKIP
    <Array [[True, True, False, ...], [], ...] type='2 * var * bool'>
    """
    fields = set(ak.fields(genpart))
    if "statusFlags" in fields:
        return (genpart.statusFlags & (1 << _IS_HARD_PROCESS_BIT)) != 0
    if "status" in fields:
        return (genpart.status >= 21) & (genpart.status <= 29)
    raise MissingTruth("GenPart has neither statusFlags nor status: cannot tell the hard process")


def truth_labels(events: ak.Array) -> np.ndarray:
    """Boolean matrix ``[n_events, len(TRUTH_LABELS)]`` of hard-process content.

    Parameters
    ----------
    events
        NanoEvents (or any record array) with a ``GenPart`` collection carrying ``pdgId`` and
        ``statusFlags`` (or ``status``).

    Returns
    -------
    numpy.ndarray
        ``uint8`` array; column ``k`` is 1 where a hard-process particle of kind ``TRUTH_LABELS[k]``
        (either charge) is present.

    Raises
    ------
    MissingTruth
        If ``events`` has no ``GenPart`` (real data cannot be used for multilabel pretraining).

    Examples
    --------
    >>> truth_labels(events)[:2]                    # doctest: +SKIP
    array([[1, 0, 1, 0, 1, 1, 0],                   # ttbar, semileptonic
           [1, 1, 1, 0, 1, 0, 0]], dtype=uint8)     # ttH
    >>> truth_labels(events[:0]).shape               # doctest: +SKIP
    (0, 7)
    """
    if "GenPart" not in ak.fields(events):
        raise MissingTruth("events have no GenPart collection: multilabel truth needs simulated events")
    genpart = events.GenPart
    pdg = abs(genpart.pdgId)
    hard = hard_process_mask(genpart)
    out = np.zeros((len(events), len(TRUTH_LABELS)), dtype=np.uint8)
    for k, name in enumerate(TRUTH_LABELS):
        is_kind = ak.zeros_like(pdg, dtype=bool)
        for pid in _PDG_IDS[name]:
            is_kind = is_kind | (pdg == pid)
        out[:, k] = ak.to_numpy(ak.any(is_kind & hard, axis=1))
    return out
