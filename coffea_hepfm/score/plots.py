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
    """One feature: ``edges`` and ``{label: counts}``.

    Counts have either ``len(edges) - 1`` entries (in-range bins) or ``len(edges) + 1`` (underflow first,
    overflow last, as stored in references): flow bins are then drawn as one extra bin on each side,
    beyond dashed lines, so values outside the reference range are seen, not dropped.
    """

    title: str
    edges: np.ndarray
    counts: Mapping[str, np.ndarray]
    note: str = ""

    def drawn(self) -> tuple[np.ndarray, dict[str, np.ndarray], bool]:
        """``(edges, counts, has_flow)`` to draw, flow bins turned into outer bins."""
        edges = np.asarray(self.edges, float)
        n_in = len(edges) - 1
        counts = {k: np.asarray(v, float) for k, v in self.counts.items()}
        if all(len(v) == n_in for v in counts.values()):
            return edges, counts, False
        if not all(len(v) == n_in + 2 for v in counts.values()):
            raise ValueError(f"panel {self.title!r}: counts must have {n_in} or {n_in + 2} entries")
        w_lo, w_hi = edges[1] - edges[0], edges[-1] - edges[-2]
        outer = np.concatenate([[edges[0] - w_lo], edges, [edges[-1] + w_hi]])
        return outer, counts, True


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
        edges, all_counts, flow = panel.drawn()
        for label, counts in all_counts.items():
            if counts.sum() <= 0:
                continue
            mplhep.histplot(_hist(edges, counts), ax=ax, density=True, label=label)
        if flow:
            for x in (edges[1], edges[-2]):
                ax.axvline(x, color="grey", linestyle="--", linewidth=0.6)
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
    # fixed spacing: tight_layout costs a full extra draw (a quarter of the time of a grid)
    top = 1.0 - 0.7 / (2.8 * nrows)  # room for the suptitle and the first row's panel titles
    fig.subplots_adjust(left=0.05, right=0.98, bottom=0.1, top=top, hspace=0.55, wspace=0.25)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.png")
    try:
        fig.savefig(tmp, dpi=80)
    finally:
        plt.close(fig)
    os.replace(tmp, path)
    return path
