"""NanoAOD version differences that the graph stage must know about.

CMS NanoAOD changed between versions in ways that matter for event graphs:

- v1-v4 (2016): ``Photon_cutBased`` (int), ``Jet_btagCSVV2`` and DeepCSV; DeepJet may hold the placeholder
  -3000 for every jet (not computed).
- v5-v8: ``Photon_cutBasedBitmap`` (bits loose/medium/tight) instead of the int.
- v9 (Run 2 UL): ``MET_*`` and ``PuppiMET_*``; b-tag ``Jet_btagDeepFlavB`` and ``Jet_btagDeepB``;
  ``Electron_mvaFall17V2Iso_WP80/90``.
- v12 (Run 3, 2022): ``Jet_btagPNetB`` and ``Jet_btagRobustParTAK4B`` added, ``Jet_btagDeepB`` gone;
  ``Jet_jetId`` wrong above |eta| 2.7 (JME fix from ``Jet_neHEF``/``Jet_neEmEF``); ``Electron_mvaIso_WP80/90``;
  slimmed analysis files often drop whole collections (``Photon``, ``Tau``).
- v13/v14: ``Jet_chMultiplicity``/``Jet_neMultiplicity``: the Run 3 jet ID is recomputed from fractions.
- v15 (Run 3, 2024): ``MET`` renamed ``PFMET``; ``PuppiMET`` is the recommended (often the only) MET;
  ``Jet_jetId`` removed (recompute it), ``Jet_btagUParTAK4B`` added.

How the graph spec v2 falls back across these is the table "NanoAOD version fallbacks" in docs/design.md.

:func:`available_branches` lists branch names from NanoEvents (eager, virtual or dask; only the form is
used, nothing is read) and :func:`version_hint` turns the branches present into a short human hint used
in error messages.
"""

from __future__ import annotations

from collections.abc import Iterable

from awkward.forms import RecordForm as _RecordForm


def available_branches(events, collections: Iterable[str]) -> set[str]:
    """Flat NanoAOD branch names (``"Jet_pt"``) of ``collections`` that exist in ``events``.

    Works from the array form only (no behaviour classes are built, nothing is read), so it is free on
    virtual and dask-awkward events.

    Examples
    --------
    >>> available_branches(events, ["Jet", "Photon"])          # doctest: +SKIP
    {'Jet_pt', 'Jet_eta', ..., 'Photon_pt', ...}
    >>> available_branches(slimmed_v12_events, ["Photon"])     # doctest: +SKIP
    set()
    """
    form = events.form if hasattr(events, "form") else events.layout.form  # dask-awkward | awkward
    while not isinstance(form, _RecordForm) and hasattr(form, "content"):
        form = form.content  # masked events (events[mask]) wrap the record in an IndexedForm
    out: set[str] = set()
    for coll in collections:
        if coll not in form.fields:
            continue
        sub = form.content(coll)
        while not hasattr(sub, "fields") or sub.fields is None or not isinstance(sub, _RecordForm):
            sub = sub.content  # through ListOffsetForm / IndexedForm / ... to the record
        out.update(f"{coll}_{f}" for f in sub.fields)
    return out


def version_hint(branches: Iterable[str]) -> str:
    """Guess the NanoAOD flavour from the branch names present, for error messages.

    Examples
    --------
    >>> version_hint({"PuppiMET_pt", "Jet_pt"})
    'looks like NanoAOD v15 (PuppiMET only, no MET)'
    >>> version_hint({"MET_pt", "Jet_btagPNetB"})
    'looks like NanoAOD v12-v14 (Run 3)'
    >>> version_hint({"Jet_pt", "Jet_chMultiplicity"})
    'looks like NanoAOD v15 (no Jet_jetId)'
    >>> version_hint(set())
    'NanoAOD version unknown'
    """
    b = set(branches)
    if "Jet_pt" in b and "Jet_jetId" not in b and "Jet_chMultiplicity" in b:
        return "looks like NanoAOD v15 (no Jet_jetId)"
    if "PuppiMET_pt" in b and "MET_pt" not in b:
        return "looks like NanoAOD v15 (PuppiMET only, no MET)"
    if "Jet_btagUParTAK4B" in b:
        return "looks like NanoAOD v15 (Run 3, UParT b-tag)"
    if "Jet_btagPNetB" in b or "Jet_btagRobustParTAK4B" in b:
        return "looks like NanoAOD v12-v14 (Run 3)"
    if "Jet_btagDeepB" in b or "Jet_btagDeepFlavB" in b:
        return "looks like NanoAOD v9 or older (Run 2)"
    return "NanoAOD version unknown"
