"""Input drift: histogram a model's inputs in a processor and compare them with the model's reference.

Two functions for a coffea processor:

- :func:`input_histograms` returns ``{feature: hist.Hist}`` of the model's input features for a chunk of
  NanoEvents (``hist.dask.Hist`` for dask-awkward events, filled lazily: only the model's input branches
  are read). Binning is the reference's, so histograms from any number of chunks add up (``+``, or
  coffea's ``accumulate``) and compare bin by bin. Pass the output of ``HEPFMScore(..., ood=True)`` as
  ``scores`` to also count out-of-distribution events.
- :func:`compare_to_reference` turns the accumulated histograms into a drift report: per feature the
  **population stability index** (PSI), its significance, a status, an overall verdict ``"ok"`` or
  ``"drift"``, and PNG overlays of the most drifted features.

The measure, its thresholds and the minimum-statistics rule are documented in
:mod:`coffea_hepfm.score.psi`.

Events are unweighted (every event counts once, as in the reference).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from coffea_hepfm.score.psi import (
    ALPHA,
    MIN_ENTRIES,
    MIN_GROUP_FRACTION,
    PSI_DRIFT,
    PSI_MODERATE,
    judge,
    merge_groups,
    psi,
)

__all__ = ["check_files", "compare_to_reference", "input_histograms"]

#: a flagged fraction above this multiple of the calibrated rate (and significant) is drift
OOD_FACTOR = 3.0


def _is_dask(obj) -> bool:
    return type(obj).__module__.startswith("dask_awkward")


def _model_reference(model):
    from coffea_hepfm.score.wrapper import resolve_model

    path = resolve_model(model)
    st = os.stat(path)
    return _cached_reference(os.fspath(path), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=8)
def _cached_reference(path: str, mtime_ns: int, size: int):
    # Keyed on the file's mtime and size: a processor calls this once per chunk, the header is parsed once.
    from coffea_hepfm.graph import GraphSpec
    from coffea_hepfm.model.io import read_metadata
    from coffea_hepfm.model.reference import read_reference

    meta = read_metadata(Path(path))
    return GraphSpec.from_dict(meta["graph_spec"]), read_reference(meta, path), Path(path)


def input_histograms(events, model, *, scores=None) -> dict:
    """Histograms of ``model``'s input features for a chunk (eager, virtual or dask-awkward NanoEvents).

    Parameters
    ----------
    events
        NanoEvents, or an already built node record (fields ``nodes``, ``globals``).
    model
        Shipped model name or model file with reference distributions.
    scores
        Optional output of ``HEPFMScore(model, ood=True)`` on the same events: adds ``"ood/in_domain"``
        (a boolean axis) and ``"ood/score"``; with ``embedding=True`` also ``"embedding/<k>"``.

    Returns
    -------
    dict
        ``{name: hist.Hist}`` (``hist.dask.Hist`` for dask input) named like the reference:
        ``node/<type>/<feature>``, ``global/<feature>``, ``count/<type>``.

    Raises
    ------
    coffea_hepfm.model.reference.ReferenceMissing
        The model file has no reference (the message gives the remedy).

    Examples
    --------
    >>> out = input_histograms(events, "my_model.safetensors")        # doctest: +SKIP
    >>> out["node/jet/btag"]                                           # doctest: +SKIP
    Hist(Variable([...], name='x', label='node/jet/btag'), storage=Int64()) # Sum: ...
    """
    import awkward as ak
    import hist

    from coffea_hepfm.graph import build_node_record
    from coffea_hepfm.model.reference import ReferenceMissing, feature_layout, remedy

    spec, ref, path = _model_reference(model)
    if ref is None:
        raise ReferenceMissing(f"{path} has no reference distributions to compare with; {remedy(path)}")
    dask = _is_dask(events)
    if dask:
        import dask_awkward as lib
        import hist.dask as hmod
    else:
        lib, hmod = ak, hist
    fields = set(events.fields)
    record = events if {"nodes", "globals"} <= fields else build_node_record(events, spec)
    layout = feature_layout(spec)
    flat = lib.flatten(record.nodes, axis=1)
    out = {}

    def make(name, edges):
        return hmod.Hist(hist.axis.Variable(edges, name="x", label=name), storage=hist.storage.Int64())

    for k, t in enumerate(layout.types):
        tc = layout.type_columns[k]
        of_type = flat[flat[:, tc] > 0.5]
        for feature, col in layout.node_columns:
            name = f"node/{t}/{feature}"
            if name in ref.inputs:
                out[name] = make(name, ref.inputs[name].edges).fill(of_type[:, col])
    for g, feature in enumerate(layout.globals):
        name = f"global/{feature}"
        if name in ref.inputs:
            out[name] = make(name, ref.inputs[name].edges).fill(record.globals[:, g])
    for k, t in enumerate(layout.types):
        name = f"count/{t}"
        if name in ref.inputs:
            n = lib.sum(record.nodes[:, :, layout.type_columns[k]] > 0.5, axis=1)
            out[name] = make(name, ref.inputs[name].edges).fill(n)
    if scores is not None:
        out.update(_score_histograms(scores, ref, hmod, hist))
    return out


def _score_histograms(scores, ref, hmod, hist) -> dict:
    out = {}
    fields = set(scores.fields)
    if ref.ood is not None and {"ood_score", "in_domain"} <= fields:
        out["ood/in_domain"] = hmod.Hist(hist.axis.Boolean(name="x", label="in_domain")).fill(
            scores.in_domain
        )
        edges = np.asarray(ref.ood["score_edges"], float)
        out["ood/score"] = hmod.Hist(hist.axis.Variable(edges, name="x", label="ood_score")).fill(
            scores.ood_score
        )
    if ref.embedding is not None and "embedding" in fields:
        for k, edges in enumerate(ref.embedding["edges"]):
            name = f"embedding/{k}"
            out[name] = hmod.Hist(hist.axis.Variable(edges, name="x", label=name)).fill(
                scores.embedding[:, k]
            )
    return out


def _values(h) -> np.ndarray:
    return np.asarray(h.values(flow=True), dtype=np.float64)


def _mean(edges, counts) -> float | None:
    """Mean from in-range bin centres (flow bins left out)."""
    inner = counts[1:-1]
    if inner.sum() <= 0:
        return None
    centres = 0.5 * (edges[1:] + edges[:-1])
    return float(np.sum(centres * inner) / inner.sum())


def _rows(hists: Mapping, refs: Mapping, prefix_filter) -> list[dict]:
    rows = []
    for name, fref in refs.items():
        if not prefix_filter(name) or name not in hists:
            continue
        data = _values(hists[name])
        ref_counts = fref["counts"]
        groups = merge_groups(ref_counts)
        nb = int(groups.max()) + 1
        d = np.bincount(groups, weights=data, minlength=nb)
        r = np.bincount(groups, weights=ref_counts, minlength=nb)
        value, p, bins = psi(d, r)
        rows.append(
            {
                "feature": name,
                "psi": round(value, 5),
                "p_value": p,
                "bins": bins,
                "n": int(data.sum()),
                "n_reference": int(ref_counts.sum()),
                "mean_reference": _mean(fref["edges"], ref_counts),
                "mean_data": _mean(fref["edges"], data),
            }
        )
    return rows


def _ood_summary(hists, ood: dict) -> dict | None:
    """Flagged fraction and whether it is significantly above the calibrated rate.

    The threshold was set on ``n_calibration`` held-out events of which ``m`` were above it, so the true
    rate at which in-domain events are flagged is itself uncertain: Beta(m + 1, n_calibration - m + 1)
    (uniform prior). The number flagged among ``n`` events then follows a beta-binomial distribution;
    its upper tail is the p-value. (A plain binomial at exactly 1 % calls a calibration on a few hundred
    events "drift" far too often.)
    """
    from scipy.stats import betabinom

    h = hists.get("ood/in_domain")
    if h is None or ood is None:
        return None
    counts = h.values()  # Boolean axis: [False, True]
    flagged, events = int(counts[0]), int(counts.sum())
    expected = 1.0 - float(ood["quantile"])
    n_cal = int(ood.get("n_calibration", 0))
    m_cal = int(round(float(ood.get("flagged_fraction_calibration", expected)) * n_cal))
    p = float(betabinom.sf(flagged - 1, events, m_cal + 1, n_cal - m_cal + 1)) if events else 1.0
    excess = events > 0 and flagged / events > OOD_FACTOR * expected and p < ALPHA
    return {
        "events": events,
        "flagged": flagged,
        "flagged_fraction": flagged / events if events else 0.0,
        "expected_fraction": expected,
        "calibration_events": n_cal,
        "p_value": p,
        "excess": bool(excess),
        "method": ood.get("method"),
    }


def compare_to_reference(
    hists: Mapping,
    model,
    *,
    plots: str | os.PathLike | None = None,
    top: int = 8,
    min_entries: int = MIN_ENTRIES,
    alpha: float = ALPHA,
) -> dict:
    """Compare accumulated :func:`input_histograms` output with ``model``'s reference.

    Returns a JSON-safe dict: ``verdict`` (``"ok"``, ``"drift"``; ``"no-reference"`` for a model file
    without references, ``"too-few-events"`` when no feature has ``min_entries`` entries), ``reason``,
    ``features`` (one row per input feature, most drifted first: ``psi``, ``p_value``, ``status``, ``n``,
    means), ``embedding`` (the same for the embedding dimensions, not part of the verdict), ``ood``
    (flagged fraction) and ``plots`` (PNG overlays of the ``top`` most drifted features, when ``plots``
    names a folder).
    """
    spec, ref, path = _model_reference(model)
    report = {
        "model": os.fspath(path),
        "measure": {
            "name": "PSI (population stability index)",
            "bins": f"reference bins merged to >= {MIN_GROUP_FRACTION:.0%} of the reference each",
            "thresholds": {"moderate": PSI_MODERATE, "drift": PSI_DRIFT},
            "significance": f"chi2 approximation (Yurdakul 2018), family-wise alpha {alpha} (Bonferroni)",
            "min_entries": min_entries,
        },
    }
    if ref is None:
        from coffea_hepfm.model.reference import remedy

        return {
            **report,
            "verdict": "no-reference",
            "reason": f"the model file has no reference distributions; {remedy(path)}",
            "features": [],
            "ood": None,
        }
    refs = {n: {"edges": f.edges, "counts": f.counts.astype(float)} for n, f in ref.inputs.items()}
    rows = _rows(hists, refs, lambda n: True)
    judge(rows, min_entries, alpha)
    emb_rows = []
    if ref.embedding is not None:
        erefs = {
            f"embedding/{k}": {"edges": e, "counts": c.astype(float)}
            for k, (e, c) in enumerate(zip(ref.embedding["edges"], ref.embedding["counts"], strict=True))
        }
        emb_rows = _rows(hists, erefs, lambda n: True)
        judge(emb_rows, min_entries, alpha)
    ood = _ood_summary(hists, ref.ood)
    drifted = [r["feature"] for r in rows if r["status"] == "drift"]
    reasons = []
    if drifted:
        reasons.append(f"{len(drifted)} input feature(s) drifted: {', '.join(drifted[:5])}")
    if ood is not None and ood["excess"]:
        reasons.append(
            f"{ood['flagged_fraction']:.1%} of events out of distribution (calibrated {ood['expected_fraction']:.0%})"
        )
    judged = sum(r["status"] not in ("few-entries", "no-reference-entries") for r in rows)
    if reasons:
        verdict = "drift"
    elif judged == 0:
        verdict = "too-few-events"
        reasons.append(f"no input feature has {min_entries} entries: nothing can be judged")
    else:
        verdict = "ok"
    report.update(
        verdict=verdict,
        reason="; ".join(reasons) or f"no significant drift in {judged} judged input features",
        features=rows,
        embedding=emb_rows,
        ood=ood,
        n_features_judged=judged,
    )
    if plots is not None:
        report["plots"] = [_plot_top(hists, refs, rows[:top], Path(plots))]
    return report


def _plot_top(hists, refs, rows, folder: Path) -> str:
    from coffea_hepfm.score.plots import Panel, save_grid

    panels = []
    for r in rows:
        name = r["feature"]
        edges = refs[name]["edges"]
        panels.append(
            Panel(
                name,
                edges,
                {"reference": refs[name]["counts"], "data": _values(hists[name])},
                f"PSI {r['psi']:.2f} ({r['status']})",
            )
        )
    title = "inputs vs the model's reference, drifted first (outer bins beyond dashed lines: under/overflow)"
    return os.fspath(save_grid(panels, folder / "drift_top.png", title))


def check_files(
    files: Sequence[str | os.PathLike],
    model,
    *,
    chunk_size: int = 50_000,
    plots: str | os.PathLike | None = None,
    top: int = 8,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """:func:`compare_to_reference` on NanoAOD files (what ``coffea-hepfm check-inputs`` runs).

    Chunks are read as virtual NanoEvents, histogrammed with :func:`input_histograms` and scored with
    ``HEPFMScore(model, ood=True, embedding=True)`` for the flagged fraction (when the model has an OOD
    calibration); memory is bounded by ``chunk_size``. The report adds ``files`` and ``events``.
    """
    from coffea_hepfm.nanoaod import open_events
    from coffea_hepfm.score.files import plan_chunks

    spec, ref, path = _model_reference(model)
    files = [os.fspath(f) for f in files]
    chunks = plan_chunks(files, chunk_size)  # missing files / no Events tree: an error before any work
    if ref is None:
        return {**compare_to_reference({}, model), "files": files, "events": 0}
    scorer = None
    if ref.ood is not None:
        from coffea_hepfm.score.wrapper import HEPFMScore

        scorer = HEPFMScore(model, device="cpu", ood=True, embedding=ref.embedding is not None)
    total: dict = {}
    n_events = 0
    for chunk in chunks:
        events = open_events(chunk.file, mode="virtual", entry_start=chunk.start, entry_stop=chunk.stop)
        scores = scorer(events) if scorer is not None else None
        hists = input_histograms(events, model, scores=scores)
        total = hists if not total else {k: total[k] + h for k, h in hists.items()}
        n_events += len(events)
        if progress is not None:
            progress(len(chunk))
    report = compare_to_reference(total, model, plots=plots, top=top)
    return {**report, "files": files, "events": n_events}
