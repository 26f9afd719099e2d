"""Linear centred kernel alignment (CKA) between layer representations, and heatmaps of it.

Linear CKA (Kornblith, Norouzi, Lee, Hinton, "Similarity of Neural Network Representations Revisited",
ICML 2019, eq. 5): for representations ``X [n, p]`` and ``Y [n, q]`` of the same ``n`` inputs, centred
column-wise,

    CKA(X, Y) = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)

It is 1 for identical representations, invariant to orthogonal transforms and isotropic scaling of either
side, and not invariant to arbitrary invertible linear maps.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from coffea_hepfm.training.figures import save_figure


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA between ``x [n, p]`` and ``y [n, q]`` (rows are the same inputs).

    Raises
    ------
    ValueError
        If the row counts differ, there are fewer than 2 rows, or a representation is constant (CKA is
        undefined for zero variance).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(100, 8))
    >>> round(linear_cka(x, x), 6)
    1.0
    >>> q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    >>> round(linear_cka(x, 3.0 * x @ q), 6)
    1.0
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"linear_cka needs [n, p] and [n, q] arrays, got {x.shape} and {y.shape}")
    if x.shape[0] < 2:
        raise ValueError("linear_cka needs at least 2 rows")
    x = x - x.mean(axis=0)
    y = y - y.mean(axis=0)
    norm_x = np.linalg.norm(x.T @ x)
    norm_y = np.linalg.norm(y.T @ y)
    if norm_x == 0 or norm_y == 0:
        raise ValueError("linear_cka is undefined for a constant representation")
    return float(np.linalg.norm(y.T @ x) ** 2 / (norm_x * norm_y))


def cka_matrix(reps_a: Sequence[np.ndarray], reps_b: Sequence[np.ndarray]) -> np.ndarray:
    """``[len(reps_a), len(reps_b)]`` linear CKA of every pair of layers."""
    return np.array([[linear_cka(a, b) for b in reps_b] for a in reps_a])


def layer_names(n_layers: int) -> list[str]:
    """Names of ``HEPFMNet.layer_outputs``: encoder, processing steps, decoder."""
    return ["enc", *[f"step{k}" for k in range(1, n_layers - 1)], "dec"]


def plot_cka(matrix: np.ndarray, path, xlabel: str, ylabel: str, title: str = "") -> Path:
    """Heatmap PNG of a CKA matrix (rows: ``ylabel`` model's layers, columns: ``xlabel`` model's)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, cols = layer_names(matrix.shape[0]), layer_names(matrix.shape[1])
    fig, ax = plt.subplots(figsize=(5.5, 4.8))
    im = ax.imshow(matrix, vmin=0, vmax=1, cmap="magma", origin="lower")
    ax.set_xticks(range(len(cols)), cols, rotation=45)
    ax.set_yticks(range(len(rows)), rows)
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            ax.text(
                j,
                i,
                f"{matrix[i, j]:.2f}",
                ha="center",
                va="center",
                fontsize=7,
                color="black" if matrix[i, j] > 0.6 else "white",
            )
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, label="linear CKA")
    return save_figure(fig, path, dpi=100)


def compare_models(
    models: dict[str, object], table, spec, out_dir, max_events: int = 2000, tag: str = ""
) -> dict:
    """CKA between every pair of ``{name: model}`` on the events of ``table``; heatmaps + matrices.

    Returns ``{"A_vs_B": {"matrix": [[...]], "diagonal": [...], "png": path}}``.
    """
    from coffea_hepfm.training.loop import layer_outputs

    sub = table.subset(np.sort(np.random.default_rng(0).permutation(len(table))[:max_events]))
    reps = {name: layer_outputs(m, sub, spec) for name, m in models.items()}
    names = list(models)
    out = {}
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            mat = cka_matrix(reps[a], reps[b])
            png = plot_cka(mat, Path(out_dir) / f"cka_{tag}{a}_vs_{b}.png", b, a, f"{tag}{a} vs {b}")
            out[f"{a}_vs_{b}"] = {
                "matrix": mat.round(4).tolist(),
                "diagonal": np.diag(mat).round(4).tolist(),
                "png": os.fspath(png),
            }
    return out
