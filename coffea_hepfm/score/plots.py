"""Overlay plots (hist + mplhep) shared by the domain report and the drift check.

Each panel overlays two or more histograms of one feature, normalised to unit area, with the same
``hist`` axis; a figure is a grid of panels saved as PNG (written to a temporary name, then renamed).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Panel", "save_grid"]


@dataclass
class Panel:
    """One feature: ``edges`` and ``{label: counts}`` (in-range bins only, ``len(edges) - 1`` each)."""

    title: str
    edges: np.ndarray
    counts: Mapping[str, np.ndarray]
    note: str = ""


def _hist(edges: np.ndarray, counts: np.ndarray):
    import hist

    h = hist.Hist(hist.axis.Variable(np.asarray(edges, float), flow=False))
    h.view()[...] = np.asarray(counts, float)
    return h


def save_grid(panels: Sequence[Panel], path: str | os.PathLike, title: str = "", ncols: int = 4) -> Path:
    """Draw ``panels`` in a grid (``ncols`` wide) and save a PNG at ``path``; returns the path."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import mplhep

    path = Path(path)
    n = max(len(panels), 1)
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 2.8 * nrows), squeeze=False)
    for ax, panel in zip(axes.flat, panels, strict=False):
        for label, counts in panel.counts.items():
            counts = np.asarray(counts, float)
            if counts.sum() <= 0:
                continue
            mplhep.histplot(_hist(panel.edges, counts), ax=ax, density=True, label=label)
        ax.set_title(panel.title, fontsize=8)
        ax.set_xlabel(panel.title.rsplit("/", 1)[-1], fontsize=7)
        if panel.note:
            ax.text(0.98, 0.95, panel.note, transform=ax.transAxes, ha="right", va="top", fontsize=7)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6, loc="upper left")
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.png")
    try:
        fig.savefig(tmp, dpi=80)
    finally:
        plt.close(fig)
    os.replace(tmp, path)
    return path
