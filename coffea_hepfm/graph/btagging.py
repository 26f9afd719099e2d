"""Graph spec v2 b-tagging: which tagger a chunk uses, in which era, and each jet's working-point category.

Tagger choice, per chunk, in ``GraphSpec.taggers`` order: the first branch that

1. is in the file;
2. does not hold *placeholder* scores: NanoAOD files where a tagger was not run carry a constant such as
   -3000, -1 or -10 for every jet. Rule: a tagger is a placeholder in a chunk when **no jet inside the
   tracker (|eta| < 2.5) has a score in [0, 1]**. A real tagger gives scores in [0, 1] to nearly every
   jet inside the tracker, and a default (-1, -2, -10) only to the few without tracks, so one valid jet is
   enough to keep it. A chunk with no jet inside the tracker decides nothing (no jet could be tagged);
3. has working points (``coffea_hepfm.cms.btag``) for the era of every event in the chunk.

Skipping a placeholder or era-less tagger warns once per chunk (:class:`TaggerFallbackWarning`, naming the
branches, the reason and the file); when no tagger is left, :class:`NoValidTagger` is raised. A placeholder
score never reads as "not b".

Era (``GraphSpec.era``): explicit, or ``"auto"``: collision data from the run number
(``coffea_hepfm.cms.eras``); simulation (``genWeight`` in the file, or ``run == 1``) from the chosen
tagger's reference era :data:`MC_ERA` (the era of its first, or only, calibrated simulation campaign of
that Run; DeepJet in a Run 3 file: 2022). Data runs outside every era warn (:class:`EraWarning`) and
use the reference era.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from coffea_hepfm.cms.btag import BTAG_ETA_MAX, REFERENCE_ERA, REFERENCE_ERA_RUN3, WORKING_POINTS
from coffea_hepfm.cms.eras import ERAS, RUN_RANGES, era_index_of_run
from coffea_hepfm.graph.errors import EraWarning, NoValidTagger, TaggerFallbackWarning

#: Reference era of each tagger for simulation when ``GraphSpec.era == "auto"`` (``cms.btag``).
MC_ERA = REFERENCE_ERA
MC_ERA_RUN3 = REFERENCE_ERA_RUN3
TRACKER_ETA = 2.5
_REFERENCE = -1  # event era index meaning "the tagger's reference era"


@dataclass
class TaggerChoice:
    """The tagger used in one chunk: ``branch``, its flat ``scores`` (all jets), the ``eras`` used, and
    ``cuts``: ``[3]`` (loose, medium, tight) or, for chunks spanning eras, ``[n_events, 3]``; ``eta_max``
    likewise (scalar or ``[n_events]``)."""

    branch: str
    scores: np.ndarray
    eras: tuple[str, ...]
    cuts: np.ndarray
    eta_max: float | np.ndarray
    skipped: dict[str, str]


def is_placeholder(scores: np.ndarray, abs_eta: np.ndarray) -> bool | None:
    """True if no jet inside the tracker has a score in [0, 1]; None if there is no such jet.

    Examples
    --------
    >>> is_placeholder(np.array([-3000.0, -3000.0]), np.array([0.5, 1.0]))
    True
    >>> is_placeholder(np.array([-1.0, 0.3, -1.0]), np.array([0.5, 1.0, 3.0]))   # a real tagger's -1 defaults
    False
    >>> is_placeholder(np.array([-1.0]), np.array([3.0])) is None                  # only a forward jet
    True
    """
    inside = abs_eta < TRACKER_ETA
    if not inside.any():
        return None
    s = scores[inside]
    return not bool(np.any((s >= 0) & (s <= 1)))


def event_eras(
    spec_era: str, is_mc: bool | None, run: np.ndarray | None, n_events: int, source
) -> np.ndarray | None:
    """Era index (into ``ERAS``) of each event, ``-1`` for "the tagger's reference era"; ``None`` when every
    event takes the reference era (simulation)."""
    if spec_era != "auto":
        return np.full(n_events, ERAS.index(spec_era), dtype=np.int64)
    if is_mc or run is None:
        return None
    idx = era_index_of_run(run)
    unknown = (idx < 0) & (run != 1)
    if unknown.any():
        bad = np.unique(run[unknown])
        where = f" in {source}" if source else ""
        ranges = ", ".join(f"{e} {a}-{b}" for e, (a, b) in RUN_RANGES.items())
        warnings.warn(
            f"{int(unknown.sum())} event(s){where} have run numbers outside every known era (runs "
            f"{bad[:5].tolist()}{' ...' if len(bad) > 5 else ''}; known: {ranges}): their b-tag working "
            "points are the tagger's reference era; pass GraphSpec(era=...) to choose",
            EraWarning,
            stacklevel=5,
        )
    if (idx < 0).all():
        return None
    return idx


def _eras_needed(branch: str, ev_era: np.ndarray | None, run3: bool) -> tuple[str, np.ndarray | None]:
    ref = (MC_ERA_RUN3 if run3 else MC_ERA)[branch]
    if ev_era is None:
        return (ref,), None
    idx = np.where(ev_era == _REFERENCE, ERAS.index(ref), ev_era)
    return tuple(ERAS[i] for i in np.unique(idx)), idx


def choose_tagger(
    getters: dict, abs_eta: np.ndarray, ev_era: np.ndarray | None, run3: bool, source: str | None
) -> TaggerChoice:
    """Pick the tagger of one chunk (see the module docstring). ``getters`` maps the present tagger
    branches, in preference order, to callables returning their flat scores (read lazily)."""
    skipped: dict[str, str] = {}
    for branch, get in getters.items():
        scores = get()
        if is_placeholder(scores, abs_eta):
            vals = np.unique(scores[abs_eta < TRACKER_ETA])
            skipped[branch] = f"placeholder scores (values {vals[:3].tolist()} for every jet in |eta| < 2.5)"
            continue
        eras, idx = _eras_needed(branch, ev_era, run3)
        missing = [e for e in eras if (branch, e) not in WORKING_POINTS]
        if missing:
            skipped[branch] = f"no working points for era {', '.join(missing)}"
            continue
        if idx is None or len(eras) == 1:
            wp = WORKING_POINTS[(branch, eras[0])]
            cuts, eta_max = np.array(wp.cuts, dtype=np.float32), BTAG_ETA_MAX[eras[0]]
        else:  # a chunk spanning eras: per-event cuts
            table = np.array(
                [
                    WORKING_POINTS[(branch, e)].cuts if (branch, e) in WORKING_POINTS else (2, 2, 2)
                    for e in ERAS
                ],
                dtype=np.float32,
            )
            cuts, eta_max = table[idx], np.array([BTAG_ETA_MAX[e] for e in ERAS], dtype=np.float32)[idx]
        if skipped:
            _warn_fallback(skipped, branch, source)
        return TaggerChoice(branch, scores, eras, cuts, eta_max, skipped)
    where = f" in {source}" if source else ""
    detail = "; ".join(f"Jet_{b}: {why}" for b, why in skipped.items())
    raise NoValidTagger(
        f"no usable b-tag branch{where}: {detail}. Add a valid tagger to GraphSpec.taggers (known: "
        "coffea_hepfm.cms.btag.TAGGERS), or pass GraphSpec(era=...) if the era is wrong"
    )


def _warn_fallback(skipped: dict[str, str], used: str, source: str | None) -> None:
    where = f" in {source}" if source else ""
    detail = "; ".join(f"Jet_{b}: {why}" for b, why in skipped.items())
    warnings.warn(
        f"b-tagging{where} falls back to Jet_{used}: {detail}. Working-point categories come from "
        f"Jet_{used}; set GraphSpec(taggers=...) to choose explicitly",
        TaggerFallbackWarning,
        stacklevel=5,
    )


def categories(
    choice: TaggerChoice, jet_index: np.ndarray, jet_event: np.ndarray, abs_eta: np.ndarray
) -> np.ndarray:
    """``[3, M]`` bool (passes loose, medium, tight) of jets ``jet_index`` (flat ids; ``jet_event`` their
    events, ``abs_eta`` their |eta|). Jets outside the tagger's acceptance pass nothing. A jet is tagged
    if its score is above the cut (BTV's convention)."""
    s = choice.scores[jet_index]
    if choice.cuts.ndim == 1:
        inside = abs_eta < choice.eta_max
        return np.stack([(s > c) & inside for c in choice.cuts.tolist()])
    cuts = choice.cuts[jet_event]
    inside = abs_eta < choice.eta_max[jet_event]
    return ((s[:, None] > cuts) & inside[:, None]).T
