"""``coffea-hepfm domain-report``: how far simulated NanoAOD is from CMS NanoAOD, seen through a graph spec.

Both samples are read chunk by chunk (virtual NanoEvents: only the branches the graph spec reads, plus
``GenPart`` for a generator selection), optionally selected on the generator record (``GenSelection``:
e.g. semileptonic ttbar; a file without ``GenPart`` is taken as given and listed as such) and on the
graph (``Preselection``: e.g. ``n_jet>=4``), and turned into event graphs with one graph spec. At most
``max_events`` selected events per domain are kept, as flat float32 graph inputs: memory is bounded by
that and by ``chunk_size``. The report then gives:

- **per-feature distances** between the domains for every input feature (``node/<type>/<feature>``,
  ``global/<feature>``, ``count/<type>``; names from the spec): the Wasserstein-1 distance (earth mover's
  distance between the two 1-d distributions, in the feature's units; ``scipy.stats.wasserstein_distance``),
  the same divided by the simulated sample's standard deviation, and the two-sample Kolmogorov-Smirnov
  statistic with its p-value (``scipy.stats.ks_2samp``; conservative for discrete features);
- **a domain classifier**: scikit-learn's ``HistGradientBoostingClassifier`` (balanced class weights)
  trained to tell simulated from CMS events on per-event features (:func:`~coffea_hepfm.score.domain_stats.event_features`), with
  ``RepeatedStratifiedKFold`` cross-validation; the ROC AUC is reported as mean and standard deviation
  over the folds (0.5: indistinguishable), with each feature's own AUC;
- **the mean score of a model** in each domain (its first class, e.g. P(ttH)), with standard errors;
- **overlay plots** (PNG, hist + mplhep): one grid per object type, globals, node counts, and the score;
- a **JSON summary** (``domain_report.json``) with all of the above.

Events are unweighted (``genWeight`` is not applied; CMS NLO samples with negative weights are compared
event by event).

Examples
--------
>>> summary = domain_report(["sim/ttbar"], ["nano_tt_v12.root"], preselection="n_jet>=4",
...                         sim_selection="semileptonic", model="tth_vs_ttbar", out="report")  # doctest: +SKIP
>>> summary["domain_classifier"]["auc_mean"]                                                     # doctest: +SKIP
0.81
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from coffea_hepfm.model.reference import choose_edges, feature_layout, input_values
from coffea_hepfm.score.domain_stats import classifier_auc, distances, event_features, univariate_auc
from coffea_hepfm.score.selection import GenSelection, GenSelectionNotApplied, Preselection, has_genpart

__all__ = ["DomainSample", "collect", "domain_report", "expand_inputs", "resolve_spec"]

FORMAT = "coffea-hepfm-domain-report"


def expand_inputs(paths: Sequence[str | os.PathLike]) -> list[str]:
    """Files as given, folders replaced by their ``*.root`` files (recursively, sorted).

    Raises ``FileNotFoundError`` for a missing path or a folder without ROOT files.
    """
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(p.rglob("*.root"))
            if not found:
                raise FileNotFoundError(f"no .root files in folder {p}")
            out.extend(map(os.fspath, found))
        elif p.is_file():
            out.append(os.fspath(p))
        else:
            raise FileNotFoundError(f"input not found: {p}")
    return out


def resolve_spec(spec=None, model: str | None = None):
    """The graph spec of the report: a ``GraphSpec``, a dict, ``"default"`` (this code's ``GraphSpec()``),
    a ``.json`` file (a spec, or a model sidecar with ``graph_spec``), a model (name or file: its spec);
    default: ``model``'s spec, else ``GraphSpec()``."""
    from coffea_hepfm.graph import GraphSpec

    if isinstance(spec, GraphSpec):
        return spec
    if isinstance(spec, dict):
        return GraphSpec.from_dict(spec.get("graph_spec", spec))
    if spec == "default":
        return GraphSpec()
    if spec is not None and str(spec).endswith(".json"):
        d = json.loads(Path(spec).read_text())
        return GraphSpec.from_dict(d.get("graph_spec", d))
    source = spec if spec is not None else model
    if source is None:
        return GraphSpec()
    from coffea_hepfm.model.io import read_metadata
    from coffea_hepfm.score.wrapper import resolve_model

    return GraphSpec.from_dict(read_metadata(resolve_model(source))["graph_spec"])


@dataclass
class DomainSample:
    """The selected events of one domain as flat graph inputs, plus bookkeeping and model scores."""

    name: str
    files: list[str]
    x: list = field(default_factory=list)
    counts: list = field(default_factory=list)
    u: list = field(default_factory=list)
    scores: list = field(default_factory=list)
    n_read: int = 0
    n_gen_selected: int = 0
    n_selected: int = 0
    gen_applied: list[str] = field(default_factory=list)
    gen_not_applied: list[str] = field(default_factory=list)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not self.counts:
            raise ValueError(f"no {self.name} events pass the selection (read {self.n_read})")
        return np.concatenate(self.x), np.concatenate(self.counts), np.concatenate(self.u)

    def bookkeeping(self) -> dict:
        return {
            "files": self.files,
            "events_read": self.n_read,
            "events_after_gen_selection": self.n_gen_selected,
            "events_selected": self.n_selected,
            "gen_selection_applied_to": [os.path.basename(f) for f in self.gen_applied],
            "gen_selection_not_applied_no_genpart": [os.path.basename(f) for f in self.gen_not_applied],
        }


def _take(x, counts, u, keep):
    """Events ``keep`` (bool mask) of flat inputs."""
    node_keep = np.repeat(keep, counts)
    return x[node_keep], counts[keep], u[keep]


def collect(
    name: str,
    files: Sequence[str],
    spec,
    preselection: Preselection,
    gen: GenSelection,
    *,
    scorer=None,
    score_class: str | None = None,
    max_events: int = 50_000,
    chunk_size: int = 20_000,
    progress: Callable[[int], None] | None = None,
) -> DomainSample:
    """Read ``files`` chunk by chunk into a :class:`DomainSample` (at most ``max_events`` selected)."""
    from coffea_hepfm.graph import build_flat
    from coffea_hepfm.nanoaod import open_events
    from coffea_hepfm.score.files import plan_chunks

    sample = DomainSample(name, list(files))
    for chunk in plan_chunks(files, chunk_size):
        if sample.n_selected >= max_events:
            break
        events = open_events(chunk.file, mode="virtual", entry_start=chunk.start, entry_stop=chunk.stop)
        sample.n_read += len(events)
        if gen:
            if has_genpart(events):
                events = events[gen.mask(events)]
                if chunk.file not in sample.gen_applied:
                    sample.gen_applied.append(chunk.file)
            elif chunk.file not in sample.gen_not_applied:
                sample.gen_not_applied.append(chunk.file)
                warnings.warn(
                    f"{chunk.file} has no GenPart record: generator selection {gen.text!r} not applied, its "
                    "events are taken as given",
                    GenSelectionNotApplied,
                    stacklevel=2,
                )
        sample.n_gen_selected += len(events)
        flat = build_flat(events, spec)
        keep = preselection.mask(flat.x, flat.node_counts, flat.u)
        room = max_events - sample.n_selected
        if keep.sum() > room:  # keep the first `room` selected events
            keep &= np.cumsum(keep) <= room
        x, counts, u = _take(flat.x, flat.node_counts, flat.u, keep)
        sample.x.append(x)
        sample.counts.append(counts)
        sample.u.append(u)
        sample.n_selected += int(keep.sum())
        if scorer is not None and keep.any():
            out = scorer(events[keep])
            sample.scores.append(np.asarray(out[score_class or scorer.class_names_[0]], dtype=np.float64))
        if progress is not None:
            progress(len(chunk))
    return sample


def _plots(sim_values, cms_values, dist, sim_scores, cms_scores, score_label, layout, out: Path) -> list[str]:
    from coffea_hepfm.model.reference import histogram
    from coffea_hepfm.score.plots import Panel, save_grid

    def panel(name):
        a, b = sim_values[name], cms_values[name]
        edges, _ = choose_edges(np.concatenate([a, b]), n_bins=30)
        d = dist[name]
        note = f"KS {d['ks']:.2f}" if "ks" in d else ""
        return Panel(name, edges, {"sim": histogram(a, edges), "CMS": histogram(b, edges)}, note)

    groups = {f"node_{t}": [n for n in sim_values if n.startswith(f"node/{t}/")] for t in layout.types}
    groups["globals"] = [n for n in sim_values if n.startswith("global/")]
    groups["counts"] = [n for n in sim_values if n.startswith("count/")]
    paths = []
    for group, names in groups.items():
        names = [n for n in names if sim_values[n].size and cms_values[n].size]
        if names:
            title = f"sim vs CMS: {group} (outer bins beyond dashed lines: under/overflow)"
            paths.append(save_grid([panel(n) for n in names], out / f"{group}.png", title))
    if sim_scores.size and cms_scores.size:
        edges = np.linspace(0.0, 1.0, 21)
        p = Panel(
            score_label,
            edges,
            {"sim": histogram(sim_scores, edges)[1:-1], "CMS": histogram(cms_scores, edges)[1:-1]},
        )
        paths.append(save_grid([p], out / "score.png", "model score"))
    return [os.fspath(p) for p in paths]


def domain_report(
    sim: Sequence[str | os.PathLike],
    cms: Sequence[str | os.PathLike],
    *,
    spec=None,
    model: str | None = None,
    score_class: str | None = None,
    preselection: str | None = None,
    sim_selection: str | None = None,
    cms_selection: str | None = None,
    out: str | os.PathLike | None = None,
    max_events: int = 50_000,
    chunk_size: int = 20_000,
    n_splits: int = 5,
    n_repeats: int = 5,
    seed: int = 0,
    plots: bool = True,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Compare simulated and CMS NanoAOD through a graph spec; returns (and with ``out`` writes) the summary.

    Parameters
    ----------
    sim, cms
        Files or folders (folders: every ``*.root`` inside).
    spec
        Graph spec (see :func:`resolve_spec`); default: ``model``'s, else ``GraphSpec()``.
    model
        Optional model (shipped name or file) whose mean score is reported per domain.
    score_class
        The model output to average (default: its first class, e.g. ``"ttH"``).
    preselection
        Graph-level selection applied to both domains (:class:`~coffea_hepfm.score.selection.Preselection`).
    sim_selection, cms_selection
        Generator-level selections (:class:`~coffea_hepfm.score.selection.GenSelection`); files without
        ``GenPart`` are taken as given and listed under ``gen_selection_not_applied_no_genpart``.
    out
        Folder for ``domain_report.json`` and the PNGs (``plots=True``).
    max_events, chunk_size
        Selected events kept per domain; events read per chunk (bounded memory).
    n_splits, n_repeats, seed
        Cross-validation of the domain classifier.
    progress
        Called with the number of events read after each chunk.
    """
    spec = resolve_spec(spec, model)
    layout = feature_layout(spec)
    pre = Preselection.parse(preselection, spec)
    sim_files, cms_files = expand_inputs(sim), expand_inputs(cms)
    scorer = None
    if model is not None:
        from coffea_hepfm.score.wrapper import HEPFMScore

        scorer = HEPFMScore(model, device="cpu")
        score_class = score_class or scorer.class_names_[0]
        if score_class not in scorer.class_names_:
            raise ValueError(f"model {model} has no output {score_class!r}; outputs: {scorer.class_names_}")
    kw = dict(
        scorer=scorer,
        score_class=score_class,
        max_events=max_events,
        chunk_size=chunk_size,
        progress=progress,
    )
    samples = {
        "sim": collect("sim", sim_files, spec, pre, GenSelection.parse(sim_selection), **kw),
        "cms": collect("cms", cms_files, spec, pre, GenSelection.parse(cms_selection), **kw),
    }
    arrays = {k: s.arrays() for k, s in samples.items()}
    values = {k: input_values(*a, layout) for k, a in arrays.items()}
    dist = distances(values["sim"], values["cms"])
    feats = {k: event_features(*a, spec) for k, a in arrays.items()}
    names = feats["sim"][1]
    clf = classifier_auc(feats["sim"][0], feats["cms"][0], n_splits=n_splits, n_repeats=n_repeats, seed=seed)
    clf["features"] = (
        "globals, node counts per type, per-type mean and leading-node features (event_features)"
    )
    clf["n_features"] = len(names)
    clf["univariate_auc_top"] = dict(
        list(univariate_auc(feats["sim"][0], feats["cms"][0], names).items())[:15]
    )
    summary = {
        "format": FORMAT,
        "format_version": 1,
        "graph_spec": spec.to_dict(),
        "preselection": pre.text or None,
        "sim_selection": sim_selection or None,
        "cms_selection": cms_selection or None,
        "weights": "unweighted (genWeight not applied)",
        "domains": {k: s.bookkeeping() for k, s in samples.items()},
        "domain_classifier": clf,
        "distances": dist,
        "distance_measures": {
            "wasserstein1": "scipy.stats.wasserstein_distance (feature units)",
            "wasserstein1_over_std": "wasserstein1 / std of the simulated sample",
            "ks": "scipy.stats.ks_2samp statistic (max CDF difference), with ks_pvalue",
        },
    }
    sim_scores = np.concatenate(samples["sim"].scores) if samples["sim"].scores else np.zeros(0)
    cms_scores = np.concatenate(samples["cms"].scores) if samples["cms"].scores else np.zeros(0)
    label = ""
    if scorer is not None:
        label = f"P({score_class})"
        summary["model_score"] = {
            "model": model,
            "class": score_class,
            "mean_sim": float(np.mean(sim_scores)) if sim_scores.size else None,
            "sem_sim": float(np.std(sim_scores) / np.sqrt(sim_scores.size)) if sim_scores.size else None,
            "mean_cms": float(np.mean(cms_scores)) if cms_scores.size else None,
            "sem_cms": float(np.std(cms_scores) / np.sqrt(cms_scores.size)) if cms_scores.size else None,
        }
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        if plots:
            summary["plots"] = _plots(
                values["sim"], values["cms"], dist, sim_scores, cms_scores, label, layout, out
            )
        target = out / "domain_report.json"
        tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
        tmp.write_text(json.dumps(summary, indent=1, default=float) + "\n")
        os.replace(tmp, target)
        summary["json"] = os.fspath(target)
    return summary
