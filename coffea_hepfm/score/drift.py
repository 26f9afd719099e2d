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

The measure
-----------
PSI (Siddiqi, *Credit Risk Scorecards*, Wiley 2006) of data proportions :math:`p_i` against reference
proportions :math:`q_i` over bins :math:`i`:

.. math::

    \\mathrm{PSI} = \\sum_i (p_i - q_i) \\ln(p_i / q_i)

(the symmetrised Kullback-Leibler divergence). Usual reading: < 0.1 no significant change, 0.1-0.25
moderate change, >= 0.25 major change. Bins: the reference's fine bins (flow bins included) merged left
to right into groups holding at least 10 % of the reference each (PSI's customary deciles; a discrete
feature keeps its values unless they are rarer than that). Proportions use Jeffreys smoothing
(:math:`(n_i + 1/2) / (n + B/2)`), so empty bins are finite.

Minimum statistics: PSI of a small sample is biased upwards even without drift. Under no drift,
:math:`\\mathrm{PSI} / (1/n + 1/N)` follows a :math:`\\chi^2_{B-1}` distribution asymptotically
(n data and N reference entries, B bins; B. Yurdakul, *Statistical properties of population stability
index*, PhD thesis, Western Michigan University, 2018). A feature's status is

- ``"drift"``: PSI >= 0.25 **and** significant (p-value < 0.01 / number of features judged: a
  family-wise 1 % false-alarm rate, Bonferroni);
- ``"moderate"``: 0.1 <= PSI < 0.25 and significant;
- ``"ok"``: otherwise (a large PSI on few entries that is consistent with a fluctuation is ``"ok"``);
- ``"few-entries"``: fewer than :data:`MIN_ENTRIES` entries, not judged.

So a 40-event file is called drifted only by shifts far beyond its statistical noise. The verdict is
``"drift"`` when any input feature has status ``"drift"``, or when the fraction of events flagged by the
per-event OOD score is significantly (binomial p < 0.01) above three times its calibrated rate; else
``"ok"``; ``"no-reference"`` for a model file without references.

Events are unweighted (every event counts once, as in the reference).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "ALPHA",
    "MIN_ENTRIES",
    "PSI_DRIFT",
    "PSI_MODERATE",
    "check_files",
    "compare_to_reference",
    "input_histograms",
    "merge_groups",
    "psi",
]

PSI_MODERATE = 0.1
PSI_DRIFT = 0.25
#: family-wise false-alarm probability of the per-feature significance requirement (Bonferroni)
ALPHA = 0.01
#: fewer entries than this: the feature is not judged
MIN_ENTRIES = 20
#: each merged PSI bin holds at least this fraction of the reference
MIN_GROUP_FRACTION = 0.1
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


# -- the comparison ---------------------------------------------------------------------------------------------
def merge_groups(ref_counts: np.ndarray, min_fraction: float = MIN_GROUP_FRACTION) -> np.ndarray:
    """Group index of each fine bin: consecutive bins merged until each group has ``min_fraction`` of
    the reference (a short remainder joins the last group).

    >>> merge_groups(np.array([0, 50, 1, 1, 48, 0])).tolist()
    [0, 0, 1, 1, 1, 1]
    """
    total = ref_counts.sum()
    groups = np.zeros(len(ref_counts), np.int64)
    if total <= 0:
        return groups
    g, acc = 0, 0.0
    for i, c in enumerate(ref_counts):
        groups[i] = g
        acc += c
        if acc >= min_fraction * total and i < len(ref_counts) - 1:
            g, acc = g + 1, 0.0
    if acc < min_fraction * total and g > 0:  # remainder too small: merge into the previous group
        groups[groups == g] = g - 1
    return groups


def psi(data: np.ndarray, reference: np.ndarray) -> tuple[float, float, int]:
    """``(PSI, p-value, bins)`` of binned ``data`` against ``reference`` counts (same bins).

    Jeffreys-smoothed proportions; the p-value is the asymptotic chi-square of Yurdakul (2018).

    >>> round(psi(np.array([50, 50]), np.array([5000, 5000]))[0], 6)
    0.0
    >>> value, p, bins = psi(np.array([90, 10]), np.array([5000, 5000]))
    >>> round(value, 3), p < 1e-6, bins
    (0.857, True, 2)
    """
    from scipy.stats import chi2

    data = np.asarray(data, float)
    reference = np.asarray(reference, float)
    b = len(reference)
    n, m = data.sum(), reference.sum()
    if b < 2 or n <= 0 or m <= 0:
        return 0.0, 1.0, b
    p = (data + 0.5) / (n + 0.5 * b)
    q = (reference + 0.5) / (m + 0.5 * b)
    value = float(np.sum((p - q) * np.log(p / q)))
    stat = value / (1.0 / n + 1.0 / m)
    return value, float(chi2.sf(stat, b - 1)), b


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


def _judge(rows: list[dict], min_entries: int, alpha: float) -> None:
    judged = [r for r in rows if r["n"] >= min_entries and r["n_reference"] > 0]
    limit = alpha / max(len(judged), 1)
    for r in rows:
        if r not in judged:
            r["status"] = "few-entries" if r["n"] < min_entries else "no-reference-entries"
        elif r["p_value"] >= limit or r["psi"] < PSI_MODERATE:
            r["status"] = "ok"
        else:
            r["status"] = "drift" if r["psi"] >= PSI_DRIFT else "moderate"
    rows.sort(key=lambda r: (r["status"] in ("few-entries", "no-reference-entries"), -r["psi"]))
    for r in rows:
        r["significance_limit"] = limit


def _ood_summary(hists, ood: dict) -> dict | None:
    from scipy.stats import binom

    h = hists.get("ood/in_domain")
    if h is None or ood is None:
        return None
    counts = h.values()  # Boolean axis: [False, True]
    flagged, events = int(counts[0]), int(counts.sum())
    expected = 1.0 - float(ood["quantile"])
    p = float(binom.sf(flagged - 1, events, expected)) if events else 1.0
    excess = events > 0 and flagged / events > OOD_FACTOR * expected and p < ALPHA
    return {
        "events": events,
        "flagged": flagged,
        "flagged_fraction": flagged / events if events else 0.0,
        "expected_fraction": expected,
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
    _judge(rows, min_entries, alpha)
    emb_rows = []
    if ref.embedding is not None:
        erefs = {
            f"embedding/{k}": {"edges": e, "counts": c.astype(float)}
            for k, (e, c) in enumerate(zip(ref.embedding["edges"], ref.embedding["counts"], strict=True))
        }
        emb_rows = _rows(hists, erefs, lambda n: True)
        _judge(emb_rows, min_entries, alpha)
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
                {"reference": refs[name]["counts"][1:-1], "data": _values(hists[name])[1:-1]},
                f"PSI {r['psi']:.2f} ({r['status']})",
            )
        )
    return os.fspath(
        save_grid(panels, folder / "drift_top.png", "most drifted inputs vs the model's reference")
    )


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
