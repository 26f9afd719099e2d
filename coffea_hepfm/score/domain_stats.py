"""The statistics of the domain report: per-event classifier features, the cross-validated domain-classifier
AUC and per-feature distances (see :mod:`coffea_hepfm.score.domain` for what is reported)."""

from __future__ import annotations

import numpy as np

from coffea_hepfm.model.reference import feature_layout, node_types

__all__ = ["classifier_auc", "distances", "event_features", "univariate_auc"]


def event_features(x: np.ndarray, counts: np.ndarray, u: np.ndarray, spec) -> tuple[np.ndarray, list[str]]:
    """Per-event features of the domain classifier: ``(matrix [B, K] float32, names)``.

    In order: every global feature; the number of nodes of each object type; for each type, the mean of
    each (non one-hot) node feature over the event's nodes of that type; for each type, the node features
    of the leading (highest-pT: first in node order) node of that type. Means and leading features are 0
    where an event has no node of the type (the count tells the classifier so).
    """
    layout = feature_layout(spec)
    counts = np.asarray(counts, np.int64)
    n = len(counts)
    types = node_types(x, layout)
    event = np.repeat(np.arange(n), counts)
    cols = [c for _, c in layout.node_columns]
    blocks = [np.asarray(u, np.float64)]
    names = [f"global/{g}" for g in layout.globals]
    per_type = []
    for k, t in enumerate(layout.types):
        sel = types == k
        ev, vals = event[sel], x[sel][:, cols].astype(np.float64)
        num = np.bincount(ev, minlength=n).astype(np.float64)
        sums = np.stack([np.bincount(ev, weights=vals[:, j], minlength=n) for j in range(len(cols))], axis=1)
        lead = np.zeros((n, len(cols)))
        first_ev, first_idx = np.unique(ev, return_index=True)
        lead[first_ev] = vals[first_idx]
        per_type.append((t, num, sums / np.maximum(num, 1)[:, None], lead))
    blocks.append(np.stack([p[1] for p in per_type], axis=1))
    names += [f"count/{t}" for t, *_ in per_type]
    for t, _, mean, _ in per_type:
        blocks.append(mean)
        names += [f"mean/{t}/{f}" for f, _ in layout.node_columns]
    for t, _, _, lead in per_type:
        blocks.append(lead)
        names += [f"lead/{t}/{f}" for f, _ in layout.node_columns]
    return np.concatenate(blocks, axis=1).astype(np.float32), names


def classifier_auc(
    sim: np.ndarray,
    cms: np.ndarray,
    *,
    n_splits: int = 5,
    n_repeats: int = 5,
    seed: int = 0,
    threads: int = 1,
    max_ratio: float = 10.0,
) -> dict:
    """Cross-validated ROC AUC of a gradient-boosted classifier telling ``sim`` rows from ``cms`` rows.

    A domain with more than ``max_ratio`` times the other's events is subsampled (seeded) to that ratio.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import RepeatedStratifiedKFold, cross_val_score

    rng = np.random.default_rng(seed)
    for name, rows in (("sim", sim), ("cms", cms)):  # the smaller domain limits the precision anyway
        other = len(cms) if name == "sim" else len(sim)
        if len(rows) > max_ratio * other:
            keep = np.sort(rng.choice(len(rows), int(max_ratio * other), replace=False))
            sim, cms = (rows[keep], cms) if name == "sim" else (sim, rows[keep])
    X = np.concatenate([sim, cms])
    y = np.concatenate([np.zeros(len(sim), int), np.ones(len(cms), int)])
    n_splits = int(min(n_splits, len(sim), len(cms)))
    if n_splits < 2:
        raise ValueError(f"the domain classifier needs >= 2 events per domain, got {len(sim)} and {len(cms)}")
    clf = HistGradientBoostingClassifier(
        max_iter=100,
        learning_rate=0.1,
        max_leaf_nodes=15,
        max_bins=64,
        class_weight="balanced",
        random_state=seed,
    )
    cv = RepeatedStratifiedKFold(n_splits=n_splits, n_repeats=n_repeats, random_state=seed)
    # One OpenMP thread: the classifier's default (every core, busy-waiting) ran ~20x slower on a shared
    # 2-core machine; the folds are small.
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads):
        aucs = cross_val_score(clf, X, y, scoring="roc_auc", cv=cv, n_jobs=1)
    return {
        "auc_mean": float(np.mean(aucs)),
        "auc_std": float(np.std(aucs, ddof=1)) if len(aucs) > 1 else 0.0,
        "auc_folds": [round(float(a), 5) for a in aucs],
        "classifier": "sklearn HistGradientBoostingClassifier(max_iter=100, learning_rate=0.1, "
        "max_leaf_nodes=15, max_bins=64, class_weight='balanced')",
        "cross_validation": f"RepeatedStratifiedKFold(n_splits={n_splits}, n_repeats={n_repeats}, random_state={seed})",
        "n_sim": int(len(sim)),
        "n_cms": int(len(cms)),
    }


def univariate_auc(sim: np.ndarray, cms: np.ndarray, names: list[str]) -> dict[str, float]:
    """Each feature's own AUC, folded to >= 0.5 (how well that feature alone separates the domains)."""
    from sklearn.metrics import roc_auc_score

    y = np.concatenate([np.zeros(len(sim)), np.ones(len(cms))])
    out = {}
    for j, name in enumerate(names):
        v = np.concatenate([sim[:, j], cms[:, j]])
        a = roc_auc_score(y, v) if np.ptp(v) > 0 else 0.5
        out[name] = round(float(max(a, 1 - a)), 4)
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def distances(sim_values: dict, cms_values: dict) -> dict[str, dict]:
    """Wasserstein-1 (raw and over the simulated std) and KS statistic/p-value per feature."""
    from scipy.stats import ks_2samp, wasserstein_distance

    out = {}
    for name, a in sim_values.items():
        b = cms_values[name]
        row = {"n_sim": int(a.size), "n_cms": int(b.size)}
        if a.size and b.size:
            w1 = float(wasserstein_distance(a, b))
            std = float(np.std(a))
            ks = ks_2samp(a, b)
            row.update(
                mean_sim=float(np.mean(a)),
                mean_cms=float(np.mean(b)),
                wasserstein1=w1,
                wasserstein1_over_std=w1 / std if std > 0 else None,
                ks=float(ks.statistic),
                ks_pvalue=float(ks.pvalue),
            )
        out[name] = row
    return out
