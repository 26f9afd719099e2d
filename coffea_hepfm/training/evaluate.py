"""Evaluation of binary classifiers: AUC, accuracy, background rejection at fixed signal efficiency
(scikit-learn's ROC), ROC and score plots, and ``coffea-hepfm evaluate MODEL --task NAME``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from coffea_hepfm.training.figures import save_figure

#: signal efficiencies at which the background rejection 1 / epsilon_B is reported
WORKING_POINTS = (0.3, 0.5)

#: One colour per role in every score plot of the package (here and in the examples' score
#: histograms): the first two colours of mplhep's CMS palette, signal always blue, background orange.
SIGNAL_COLOR = "#5790fc"
BACKGROUND_COLOR = "#f89c20"
#: Further backgrounds (a signal against several processes), in order.
OTHER_COLORS = ("#e42536", "#964a8b", "#9c9ca1", "#7a21dd")


def role_colors(names, signal: str | None) -> dict[str, str]:
    """``{name: colour}``: ``signal`` blue, the first other name orange, then the rest of the palette.

    >>> role_colors(["ttbar", "tth"], signal="tth")
    {'tth': '#5790fc', 'ttbar': '#f89c20'}
    """
    names = list(names)
    others = [n for n in names if n != signal]
    palette = (
        [BACKGROUND_COLOR, *OTHER_COLORS]
        if signal in names
        else [SIGNAL_COLOR, BACKGROUND_COLOR, *OTHER_COLORS]
    )
    out = {signal: SIGNAL_COLOR} if signal in names else {}
    out.update({n: palette[i % len(palette)] for i, n in enumerate(others)})
    return out


def background_rejection(fpr: np.ndarray, tpr: np.ndarray, signal_efficiency: float) -> float:
    """``1 / epsilon_B`` at ``signal_efficiency``, interpolated on a ROC curve (``inf`` if no background
    passes).

    Examples
    --------
    >>> background_rejection(np.array([0.0, 0.1, 1.0]), np.array([0.0, 0.5, 1.0]), 0.5)
    10.0
    """
    eff_b = float(np.interp(signal_efficiency, tpr, fpr))
    return float("inf") if eff_b <= 0 else 1.0 / eff_b


def binary_metrics(is_signal: np.ndarray, score: np.ndarray, threshold: float = 0.5) -> dict:
    """AUC, accuracy (at ``threshold``) and background rejection at :data:`WORKING_POINTS`.

    Parameters
    ----------
    is_signal
        Boolean truth per event.
    score
        Signal score per event (higher = more signal-like), e.g. the softmax probability of class 0.

    Raises
    ------
    ValueError
        If only one class is present (AUC undefined) or a score is not finite.

    Examples
    --------
    >>> m = binary_metrics(np.array([1, 1, 0, 0], bool), np.array([0.9, 0.6, 0.4, 0.1]))
    >>> m["auc"], m["accuracy"]
    (1.0, 1.0)
    """
    from sklearn.metrics import accuracy_score, roc_auc_score, roc_curve

    is_signal = np.asarray(is_signal, dtype=bool)
    score = np.asarray(score, dtype=np.float64)
    if not np.isfinite(score).all():
        raise ValueError(f"{int((~np.isfinite(score)).sum())} non-finite scores")
    if is_signal.all() or not is_signal.any():
        raise ValueError("binary_metrics needs both signal and background events")
    fpr, tpr, _ = roc_curve(is_signal, score)
    out = {
        "auc": float(roc_auc_score(is_signal, score)),
        "accuracy": float(accuracy_score(is_signal, score >= threshold)),
        "n_signal": int(is_signal.sum()),
        "n_background": int((~is_signal).sum()),
    }
    for eff in WORKING_POINTS:
        out[f"rejection_at_{int(eff * 100)}"] = background_rejection(fpr, tpr, eff)
    return out


def signal_scores(model, table, spec, batch_size: int = 2048) -> np.ndarray:
    """Softmax probability of class 0 (the signal) for every event of ``table``."""
    from coffea_hepfm.training.loop import predict

    logits = predict(model, table, spec, batch_size)
    logits = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return p[:, 0] / p.sum(axis=1)


def plot_roc(
    curves: dict[str, tuple[np.ndarray, np.ndarray]], path: str | os.PathLike, title: str = ""
) -> Path:
    """Background rejection vs signal efficiency for ``{label: (is_signal, score)}``, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep
    from sklearn.metrics import roc_auc_score, roc_curve

    plt.style.use(mplhep.style.CMS)
    fig, ax = plt.subplots(figsize=(7, 6))
    for label, (y, s) in curves.items():
        fpr, tpr, _ = roc_curve(y, s)
        keep = fpr > 0
        ax.plot(tpr[keep], 1.0 / fpr[keep], label=f"{label} (AUC {roc_auc_score(y, s):.3f})")
    ax.set_yscale("log")
    ax.set_xlabel("signal efficiency")
    ax.set_ylabel("background rejection $1/\\epsilon_B$")
    ax.set_title(title, fontsize=14)
    ax.legend(fontsize=12)
    return save_figure(fig, path)


def plot_scores(is_signal: np.ndarray, score: np.ndarray, class_names, path, title: str = "") -> Path:
    """Normalised score histograms of signal and background (hist + mplhep), as a PNG."""
    import hist
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep

    plt.style.use(mplhep.style.CMS)
    h = hist.Hist(
        hist.axis.StrCategory(list(class_names), name="cls"), hist.axis.Regular(40, 0, 1, name="score")
    )
    h.fill(cls=class_names[0], score=score[is_signal])
    h.fill(cls=class_names[1], score=score[~is_signal])
    fig, ax = plt.subplots(figsize=(7, 6))
    colors = role_colors(class_names, signal=class_names[0])
    for name in class_names:
        mplhep.histplot(h[name, :], ax=ax, density=True, label=name, color=colors[name])
    ax.set_xlabel(f"P({class_names[0]})")
    ax.set_ylabel("normalised events")
    ax.set_yscale("log")
    ax.set_title(title, fontsize=14)
    ax.legend(fontsize=12)
    return save_figure(fig, path)


def evaluate_model(model_path, data_dir, task: str | None = None, out_dir=None) -> dict:
    """Score the test split of ``task`` (default: the model's own task) and write metrics + plots.

    Returns the metrics dict; with ``out_dir`` also writes ``<task>_metrics.json``, ``<task>_roc.png``
    and ``<task>_scores.png``.

    Raises
    ------
    DatasetError
        If the task is unknown or its classes are missing from ``data_dir``.
    ModelFileError
        If the model is not a 2-class classifier.
    """
    from coffea_hepfm.model import ModelFileError, load_model
    from coffea_hepfm.training.tasks import get_task, task_splits

    loaded = load_model(model_path)
    task = task or loaded.meta.get("task")
    tsk = get_task(task)
    if loaded.kind != "classifier" or len(loaded.class_names) != 2:
        raise ModelFileError(
            f"{model_path} is a {loaded.kind} model with classes {loaded.class_names}; "
            "evaluate needs a 2-class fine-tuned classifier"
        )
    spec = loaded.spec
    splits = task_splits(data_dir, tsk, None)
    y = splits.test.y == 0
    score = signal_scores(loaded.module, splits.test, spec)
    metrics = binary_metrics(y, score)
    metrics.update(task=task, model=os.fspath(model_path))
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        plot_roc({Path(model_path).stem: (y, score)}, out_dir / f"{task}_roc.png", tsk.description)
        plot_scores(y, score, tsk.class_names, out_dir / f"{task}_scores.png", tsk.description)
        (out_dir / f"{task}_metrics.json").write_text(json.dumps(metrics, indent=1))
    return metrics
