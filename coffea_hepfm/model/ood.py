"""Per-event out-of-distribution score: Mahalanobis distance to the training classes in embedding space.

The method of Lee, Lee, Lee & Shin, "A Simple Unified Framework for Detecting Out-of-Distribution Samples
and Adversarial Attacks", NeurIPS 2018 (arXiv:1807.03888): fit one Gaussian per training class with a
covariance shared by all classes (tied) to the graph embedding :math:`f(x)` of the training events, and
score an event by its distance to the closest class,

.. math::

    D^2(x) = \\min_c \\, (f(x) - \\mu_c)^\\top \\Sigma^{-1} (f(x) - \\mu_c),

with :math:`\\mu_c` the class means and :math:`\\Sigma` the pooled within-class covariance. :math:`\\Sigma` is
estimated with Ledoit-Wolf shrinkage (Ledoit & Wolf, J. Multivariate Anal. 88 (2004) 365), so it stays
invertible with fewer events than embedding dimensions. (Lee et al. also add input pre-processing and
combine layers; we use the plain last-layer score, their baseline.)

Calibration: the threshold is the ``quantile`` (default 0.99) of :math:`D^2` on held-out events of the
training processes, so about 1 % of such events are flagged (``in_domain = D^2 <= threshold``). The
stored entry (``reference["ood"]`` in the model file)::

    {"method": "mahalanobis-tied", "citation": ..., "space": "graph embedding (HEPFMNet.embed)",
     "classes": [...], "means": <packed [C, H] float32>, "whitening": <packed [H, H] float32>,
     "threshold": t, "quantile": 0.99, "n_fit": ..., "n_calibration": ...,
     "flagged_fraction_calibration": ..., "score_edges": [...], "score_counts": [...]}

``whitening`` is the Cholesky factor :math:`L` of :math:`\\Sigma^{-1} = L L^\\top`, so
:math:`D^2 = \\lVert (f - \\mu_c) L \\rVert^2`; the threshold is computed with the stored (float32) arrays.

Examples
--------
>>> rng = np.random.default_rng(0)
>>> emb = rng.normal(size=(2000, 4)); y = (rng.random(2000) < 0.5).astype(int); emb[y == 1] += 3
>>> cal = fit_ood(emb[:1000], y[:1000], ["a", "b"], emb[1000:])
>>> round(float((ood_scores(emb[1000:], cal) > cal["threshold"]).mean()), 3)
0.01
>>> bool(ood_scores(np.full((1, 4), 50.0), cal)[0] > cal["threshold"])   # far from both classes
True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from coffea_hepfm.model.reference import choose_edges, histogram, pack, unpack

__all__ = ["CITATION", "METHOD", "fit_ood", "ood_scores", "whitened"]

METHOD = "mahalanobis-tied"
CITATION = (
    "K. Lee, K. Lee, H. Lee, J. Shin, 'A Simple Unified Framework for Detecting Out-of-Distribution "
    "Samples and Adversarial Attacks', NeurIPS 2018, arXiv:1807.03888; covariance: Ledoit-Wolf shrinkage"
)


def fit_ood(
    emb_fit: np.ndarray,
    y_fit: np.ndarray,
    class_names: Sequence[str],
    emb_calibration: np.ndarray,
    quantile: float = 0.99,
) -> dict:
    """Fit class means and the tied covariance on ``emb_fit``; calibrate the threshold on ``emb_calibration``.

    Classes without events in ``emb_fit`` are left out (listed under ``"classes_absent"``). Raises
    ``ValueError`` with no fit or calibration events.
    """
    from sklearn.covariance import LedoitWolf

    emb_fit = np.asarray(emb_fit, np.float64)
    y_fit = np.asarray(y_fit, np.int64)
    if len(emb_fit) < 2 or len(emb_calibration) == 0:
        raise ValueError(
            f"OOD calibration needs >= 2 fit events and >= 1 held-out event, got {len(emb_fit)} and "
            f"{len(emb_calibration)}"
        )
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"quantile must be in (0, 1), got {quantile}")
    present = [k for k in range(len(class_names)) if np.any(y_fit == k)]
    means = np.stack([emb_fit[y_fit == k].mean(axis=0) for k in present])
    centred = emb_fit - means[np.searchsorted(present, y_fit)]
    precision = LedoitWolf(assume_centered=True).fit(centred).precision_
    precision = 0.5 * (precision + precision.T)
    whitening = np.linalg.cholesky(precision)
    # Calibrate with exactly the arrays that are stored (float32), so the flagged fraction is what users get.
    stored = {"means": pack(means.astype(np.float32)), "whitening": pack(whitening.astype(np.float32))}
    scores = ood_scores(emb_calibration, stored)
    threshold = float(np.quantile(scores, quantile))
    edges, _ = choose_edges(scores, n_bins=40, max_discrete=0)
    return {
        "method": METHOD,
        "citation": CITATION,
        "space": "graph embedding (HEPFMNet.embed), Gaussian per class with shared covariance",
        "classes": [str(class_names[k]) for k in present],
        "classes_absent": [str(class_names[k]) for k in range(len(class_names)) if k not in present],
        **stored,
        "threshold": threshold,
        "quantile": quantile,
        "n_fit": int(len(emb_fit)),
        "n_calibration": int(len(scores)),
        "flagged_fraction_calibration": float(np.mean(scores > threshold)),
        "score_edges": edges.tolist(),
        "score_counts": histogram(scores, edges).tolist(),
    }


def whitened(calibration: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """``(means @ L, L)`` in float64 from a stored calibration (what :func:`ood_scores` multiplies with)."""
    means = unpack(calibration["means"]).astype(np.float64)
    w = unpack(calibration["whitening"]).astype(np.float64)
    return means @ w, w


def ood_scores(emb: np.ndarray, calibration: Mapping[str, Any], _cache: dict | None = None) -> np.ndarray:
    """Minimum squared Mahalanobis distance ``[B]`` (float64) of embeddings ``emb [B, H]`` to the classes.

    ``_cache`` (a dict the caller keeps) avoids decoding the stored arrays on every call.
    """
    if _cache is not None and "mw" in _cache:
        mw, w = _cache["mw"], _cache["w"]
    else:
        mw, w = whitened(calibration)
        if _cache is not None:
            _cache.update(mw=mw, w=w)
    emb = np.asarray(emb, np.float64)
    if emb.ndim != 2 or emb.shape[1] != w.shape[0]:
        raise ValueError(f"embedding must be [B, {w.shape[0]}], got {emb.shape}")
    z = emb @ w
    d2 = (z * z).sum(1)[:, None] + (mw * mw).sum(1)[None, :] - 2.0 * z @ mw.T
    return np.maximum(d2.min(axis=1), 0.0) if len(emb) else np.zeros(0)
