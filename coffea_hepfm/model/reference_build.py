"""Building a model file's reference at training time: input and embedding histograms, OOD calibration.

The format is described in :mod:`coffea_hepfm.model.reference`; the OOD method in
:mod:`coffea_hepfm.model.ood`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from coffea_hepfm.model.reference import (
    FORMAT,
    FORMAT_VERSION,
    N_BINS_EMBEDDING,
    build_input_reference,
    histogram,
    pack,
)

__all__ = ["build_reference", "embed_flat", "embedding_reference"]


def embedding_reference(emb: np.ndarray, n_bins: int = N_BINS_EMBEDDING) -> dict:
    """Per-dimension regular histograms of the embedding ``[B, H]`` (0.1 %-99.9 % quantile range)."""
    emb = np.asarray(emb, dtype=np.float64)
    h = emb.shape[1]
    edges = np.empty((h, n_bins + 1))
    counts = np.empty((h, n_bins + 2), np.int64)
    for k in range(h):
        lo, hi = np.quantile(emb[:, k], [0.001, 0.999]) if len(emb) else (0.0, 1.0)
        if not hi > lo:
            lo, hi = lo - 0.5, lo + 0.5
        edges[k] = np.linspace(lo, hi, n_bins + 1)
        counts[k] = histogram(emb[:, k], edges[k])
    return {"edges": pack(edges), "counts": pack(counts), "n": int(len(emb))}


def embed_flat(
    module, x: np.ndarray, counts: np.ndarray, u: np.ndarray, batch_size: int = 2048
) -> np.ndarray:
    """Graph embeddings ``[B, H]`` (``module.embed``) of flat graph inputs, in mini-batches, on CPU."""
    import torch

    from coffea_hepfm.graph import GraphBatch

    counts = np.asarray(counts, np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    out = []
    was_training = module.training
    module.eval()
    with torch.no_grad():
        for start in range(0, len(counts), batch_size):
            stop = min(start + batch_size, len(counts))
            xb = np.ascontiguousarray(x[offsets[start] : offsets[stop]])
            graphs = GraphBatch.from_flat(xb, counts[start:stop], np.ascontiguousarray(u[start:stop]))
            out.append(module.embed(*graphs.to_torch("cpu")).float().numpy())
    module.train(was_training)
    hidden = int(getattr(getattr(module, "backbone", module), "hidden", 0))
    return np.concatenate(out) if out else np.zeros((0, hidden), np.float32)


Flat = tuple  # (x [N, F], counts [B], u [B, G], y [B] class index)


def _concat(parts: list[Flat]) -> Flat:
    parts = [p for p in parts if p is not None and len(p[1])]
    return (
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        np.concatenate([p[2] for p in parts]),
        np.concatenate([p[3] for p in parts]),
    )


def _subset(flat: Flat, idx: np.ndarray) -> Flat:
    """Events ``idx`` of flat inputs (vectorised gather of their node ranges)."""
    x, counts, u, y = flat
    counts = np.asarray(counts, np.int64)
    starts = (np.cumsum(counts) - counts)[idx]
    c = counts[idx]
    first = np.cumsum(c) - c
    nodes = np.repeat(starts - first, c) + np.arange(int(c.sum()), dtype=np.int64)
    return x[nodes], c, u[idx], y[idx]


def build_reference(
    module,
    spec,
    train: Flat,
    heldout: Flat,
    class_names,
    source: Mapping[str, Any],
    *,
    max_fit: int = 50_000,
    quantile: float = 0.99,
    seed: int = 0,
) -> dict:
    """The ``"reference"`` header entry of a model file, from its training data.

    Parameters
    ----------
    module
        The trained ``HEPFMClassifier`` (its ``embed`` gives the embedding).
    spec
        Its ``GraphSpec``.
    train, heldout
        ``(x [N, F], node_counts [B], u [B, G], y [B])`` of the training events and of held-out events of
        the same processes (validation/test). Input and embedding histograms use both (all of the model's
        training sample); the OOD class means and covariance are fitted on ``train`` (at most ``max_fit``
        events, a seeded random subset) and its threshold is calibrated on ``heldout`` so that a fraction
        ``1 - quantile`` of held-out events is flagged.
    class_names
        Names of the classes indexed by ``y``.
    source
        What the data was (recorded as is, e.g. ``{"what": "fine-tuning data", "dataset": ...}``).
    """
    from coffea_hepfm.model.ood import fit_ood

    everything = _concat([train, heldout])
    inputs = build_input_reference(everything[0], everything[1], everything[2], spec)
    rng = np.random.default_rng(seed)
    fit = train
    if len(train[1]) > max_fit:
        fit = _subset(train, np.sort(rng.choice(len(train[1]), max_fit, replace=False)))
    emb_fit = embed_flat(module, *fit[:3])
    emb_held = embed_flat(module, *heldout[:3])
    ood = fit_ood(emb_fit, fit[3], list(class_names), emb_held, quantile=quantile)
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "source": {**dict(source), "n_events": int(len(everything[1])), "n_heldout": int(len(heldout[1]))},
        "weights": "unweighted: every event counts once",
        "inputs": inputs,
        "embedding": embedding_reference(np.concatenate([emb_fit, emb_held])),
        "ood": ood,
    }
