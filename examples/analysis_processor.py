"""An analysis processor that adds the coffea-hepfm score as a column: the one-line use of HEPFMScore.

The same :class:`ScoreHistProcessor` runs unchanged

- eagerly, chunk by chunk (``coffea.processor.Runner`` with ``IterativeExecutor``, virtual NanoEvents),
- as a dask-awkward task graph (``coffea.dataset_tools.apply_to_fileset``) with any Dask scheduler,

because it only uses functions that exist for both awkward and dask-awkward arrays, and picks
``hist.Hist`` or ``hist.dask.Hist`` from the type of its input. See ``run_analysis.py``.

Selection (loose, so that the small CMS test files keep events): at least one jet with
``pt > 20 GeV`` and ``|eta| < 2.5``, or at least one muon or electron with ``pt > 10 GeV``.
"""

from __future__ import annotations

import os

import awkward as ak
import hist
from coffea import processor

from coffea_hepfm import HEPFMScore

SCORE_BINS = 20


def score_axis(name: str) -> hist.axis.Regular:
    return hist.axis.Regular(SCORE_BINS, 0.0, 1.0, name="score", label=f"HEPFM P({name})")


class ScoreHistProcessor(processor.ProcessorABC):
    """Select events, add ``HEPFMScore`` as a column, histogram one class probability per dataset.

    Parameters
    ----------
    model
        Model name or path passed to :class:`~coffea_hepfm.HEPFMScore`.
    score_class
        The class whose probability is histogrammed (default: the model's first class).
    device, batch_size
        Passed to :class:`~coffea_hepfm.HEPFMScore`.

    The output is ``{dataset: {"score": Hist, "n_selected": int}}``; eager chunks are summed by coffea's
    accumulator, dask outputs by ``dask.compute``.
    """

    def __init__(
        self,
        model: str | os.PathLike,
        score_class: str | None = None,
        device: str = "cpu",
        batch_size: int | None = None,
    ):
        self.model = os.fspath(model)
        self.scorer = HEPFMScore(self.model, device=device, batch_size=batch_size)
        self.score_class = score_class

    def select(self, events):
        jets = events.Jet[(events.Jet.pt > 20.0) & (abs(events.Jet.eta) < 2.5)]
        n_lep = ak.sum(events.Muon.pt > 10.0, axis=1) + ak.sum(events.Electron.pt > 10.0, axis=1)
        return events[(ak.num(jets, axis=1) >= 1) | (n_lep >= 1)]

    def process(self, events):
        dataset = events.metadata.get("dataset", "unknown")
        selected = self.select(events)
        # The one line an analysis adds: a per-event foundation-model score as a column.
        scores = self.scorer(selected)
        score_class = self.score_class or self.scorer.class_names_[0]

        is_dask = not isinstance(events, ak.Array)
        if is_dask:
            import hist.dask as hda

            h = hda.Hist(score_axis(score_class), storage=hist.storage.Weight())
        else:
            h = hist.Hist(score_axis(score_class), storage=hist.storage.Weight())
        h.fill(score=scores[score_class])
        return {dataset: {"score": h, "n_selected": ak.num(selected, axis=0)}}

    def postprocess(self, accumulator):
        return accumulator


def plot_histograms(
    output: dict, path: str | os.PathLike, title: str = "coffea-hepfm score", signal: str | None = None
) -> None:
    """One step histogram per dataset, normalised to unit area, written as PNG with mplhep's CMS style.

    ``signal`` (a dataset name) is drawn in the package's signal colour and the others in the background
    colours, as in every other plot of coffea-hepfm (:func:`coffea_hepfm.training.evaluate.role_colors`).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep

    from coffea_hepfm.training.evaluate import role_colors
    from coffea_hepfm.training.figures import save_figure

    plt.style.use(mplhep.style.CMS)
    fig, ax = plt.subplots(figsize=(8, 6))
    names = sorted(output, key=lambda name: (name != signal, name))  # signal first in the legend
    colors = role_colors(names, signal)
    for dataset in names:
        h = output[dataset]["score"]
        total = h.sum().value
        if total > 0:
            mplhep.histplot(
                h / total, ax=ax, label=f"{dataset} ({int(total)})", histtype="step", color=colors[dataset]
            )
        ax.set_xlabel(h.axes[0].label)
    ax.set_ylabel("fraction of events")
    ax.set_title(title, fontsize=14)
    ax.legend(fontsize=11)
    save_figure(fig, path, dpi=100)  # tight bounding box: axis labels are never clipped
