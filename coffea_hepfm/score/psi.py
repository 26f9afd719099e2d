"""The population stability index (PSI) of binned data against a reference, and its judgement.

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
per-event OOD score is above three times its calibrated rate and significantly so (beta-binomial p < 0.01,
which includes the uncertainty of a threshold calibrated on a finite held-out sample); else
``"ok"``; ``"no-reference"`` for a model file without references and ``"too-few-events"`` when no
feature has :data:`MIN_ENTRIES` entries (see :func:`coffea_hepfm.score.drift.compare_to_reference`).

Order of the table: drifted features first, then moderate, then the rest; among drifted (and among
moderate) features the per-object ones (``node/<type>/<feature>``, read from one NanoAOD branch each)
come before the event-level ones computed from them (``global/...``, ``count/...``), so a broken branch
is named by its own feature first; within each group by PSI, largest first.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "ALPHA",
    "MIN_ENTRIES",
    "MIN_GROUP_FRACTION",
    "PSI_DRIFT",
    "PSI_MODERATE",
    "judge",
    "merge_groups",
    "psi",
    "rank",
]

PSI_MODERATE = 0.1
PSI_DRIFT = 0.25
#: family-wise false-alarm probability of the per-feature significance requirement (Bonferroni)
ALPHA = 0.01
#: fewer entries than this: the feature is not judged
MIN_ENTRIES = 20
#: each merged PSI bin holds at least this fraction of the reference
MIN_GROUP_FRACTION = 0.1


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
    (0.853, True, 2)
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


_STATUS_RANK = {"drift": 0, "moderate": 1, "ok": 2, "few-entries": 3, "no-reference-entries": 3}


def rank(row: dict) -> tuple:
    """Sort key: status (drift first); among drifted/moderate features the per-object ones (``node/...``)
    before the event-level ones they feed (counts, sums: a broken branch is named by its own feature
    first); then PSI, largest first."""
    status = _STATUS_RANK[row["status"]]
    derived = status <= 1 and not row["feature"].startswith("node/")
    return (status, derived, -row["psi"])


def judge(rows: list[dict], min_entries: int, alpha: float) -> None:
    judged = [r for r in rows if r["n"] >= min_entries and r["n_reference"] > 0]
    limit = alpha / max(len(judged), 1)
    for r in rows:
        if r not in judged:
            r["status"] = "few-entries" if r["n"] < min_entries else "no-reference-entries"
        elif r["p_value"] >= limit or r["psi"] < PSI_MODERATE:
            r["status"] = "ok"
        else:
            r["status"] = "drift" if r["psi"] >= PSI_DRIFT else "moderate"
    rows.sort(key=rank)
    for r in rows:
        r["significance_limit"] = limit
