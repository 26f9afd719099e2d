"""``launch_finetune``: fine-tune a pretrained backbone on the analysis' own ntuples.

The ntuples (``make_ntuples``) carry the graph node record, the class label and the per-event weights.
This module turns them into the training stage's :class:`~coffea_hepfm.training.table.GraphTable` and
reuses the training stage's loop, model construction, metrics, plots and model-file writer, imported
lazily (processors are upstream of training in the data flow).

Choices
-------
- Split by event identity: :func:`~coffea_hepfm.processors.split.split_by_event` on (run, lumi, event),
  so it does not depend on chunking or executor. Validation drives early stopping; the test part gives
  the reported metrics and plots.
- Weighted loss: per-event weights from ``weight_column`` (``"weight"``, or a variation such as
  ``"weight_pu_up"``), rescaled per class so each class has the same total weight and the mean weight is
  1. The cross-section normalisation would otherwise make a rare signal invisible in the loss, while
  the shape within a class (pileup, scale factors, negative generator weights) is kept.
- Signal is class 0 of the saved model (the training stage's convention); the other class is background.
- Device: ``"auto"`` uses CUDA when the process (e.g. a Dask worker) has a GPU.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np


def _device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def balanced_weights(w: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Rescale ``w`` per class so every class sums to ``len(w) / n_classes`` (mean weight 1).

    Examples
    --------
    >>> balanced_weights(np.array([1.0, 1.0, 1.0, 100.0]), np.array([0, 0, 0, 1])).tolist()
    [0.6666666666666666, 0.6666666666666666, 0.6666666666666666, 2.0]
    """
    w = np.asarray(w, dtype=np.float64)
    out = np.empty_like(w)
    classes = np.unique(y)
    for k in classes:
        m = y == k
        total = w[m].sum()
        if not np.isfinite(total) or total <= 0:
            raise ValueError(f"class {k}: sum of weights is {total}; cannot weight the loss")
        out[m] = w[m] * (len(w) / len(classes)) / total
    return out


def load_ntuple_tables(
    ntuples_dir: str | os.PathLike,
    signal: str | None = None,
    weight_column: str = "weight",
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    split_seed: int = 0,
):
    """Read the ntuples as (train, val, test) ``GraphTable`` s with signal as class 0.

    Returns
    -------
    tuple
        ``(tables, class_names, spec, manifest)`` with ``tables = {"train", "val", "test"}``.

    Raises
    ------
    ValueError
        Not exactly two classes, an unknown ``signal`` or ``weight_column``, or an empty split.
    """
    import awkward as ak

    from coffea_hepfm.graph import GraphSpec
    from coffea_hepfm.processors.split import split_by_event
    from coffea_hepfm.processors.writer import read_manifest, read_ntuples
    from coffea_hepfm.training.table import GraphTable, table_from_record

    manifest = read_manifest(ntuples_dir)
    classes = list(manifest["classes"])
    if len(classes) != 2:
        raise ValueError(f"launch_finetune trains binary classifiers; the ntuples have classes {classes}")
    signal = signal if signal is not None else ("signal" if "signal" in classes else classes[0])
    if signal not in classes:
        raise ValueError(f"signal class {signal!r} is not among the ntuple classes {classes}")
    background = next(c for c in classes if c != signal)
    rows = read_ntuples(ntuples_dir)
    if weight_column not in rows.fields:
        weights = [f for f in rows.fields if f.startswith("weight")]
        raise ValueError(f"weight column {weight_column!r} not in the ntuples; available: {weights}")
    rows = ak.with_field(rows, rows[weight_column], "weight")
    part = split_by_event(rows.run, rows.luminosityBlock, rows.event, val_fraction, test_fraction, split_seed)
    label = ak.to_numpy(rows.label)
    names = (signal, background)
    tables = {}
    for k, name in enumerate(("train", "val", "test")):
        per_class = []
        for new_index, cls in enumerate(names):
            sel = rows[(part == k) & (label == classes.index(cls))]
            if len(sel) == 0 and not (name == "test" and test_fraction == 0):
                raise ValueError(f"the {name} split has no {cls!r} events; make more ntuples")
            if len(sel):
                per_class.append(table_from_record(sel, new_index, names))
        tables[name] = GraphTable.concatenate(per_class) if per_class else None
    tables["train"].weight = balanced_weights(tables["train"].weight, tables["train"].y).astype(np.float32)
    return tables, names, GraphSpec.from_dict(manifest["graph_spec"]), manifest


def _scores(model, table, spec, device: str, batch_size: int = 2048) -> np.ndarray:
    """Softmax probability of class 0 (signal), computed on ``device``."""
    import torch

    from coffea_hepfm.training.table import make_batch

    out = []
    model.eval()
    with torch.no_grad():
        for idx in table.batches(batch_size):
            logits = model(*(t.to(device) for t in make_batch(table, idx, spec)))
            out.append(torch.softmax(logits, dim=1)[:, 0].cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def launch_finetune(
    ntuples_dir: str | os.PathLike,
    pretrained: str | os.PathLike | None,
    out: str | os.PathLike,
    *,
    signal: str | None = None,
    task: str | None = None,
    weight_column: str = "weight",
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    strategy: str = "full",
    lr: float = 5e-4,
    head_lr_mult: float = 10.0,
    batch_size: int | None = None,
    max_epochs: int = 50,
    time_budget_s: float = math.inf,
    patience: int = 6,
    seed: int = 0,
    hidden: int = 64,
    n_proc_steps: int = 4,
    device: str = "auto",
    client=None,
    progress: bool = False,
):
    """Fine-tune ``pretrained`` (or train from scratch with ``None``) on the ntuples in ``ntuples_dir``.

    Writes ``out`` (``.safetensors`` + ``.json`` + ``.md``, loadable by ``HEPFMScore``), and next to it
    ``<stem>_metrics.json``, ``<stem>_roc.png`` and ``<stem>_scores.png`` (test split).

    Parameters
    ----------
    client
        A ``distributed.Client``: the job is submitted to a worker (``client.submit``) and a ``Future``
        is returned; ``ntuples_dir`` and ``out`` must be on a file system the worker sees.
    strategy
        ``"full"`` (all parameters), ``"frozen"`` (head only) or ``"head"`` (head, then all); see
        :mod:`coffea_hepfm.training.finetune`.
    hidden, n_proc_steps
        Architecture of a scratch backbone (``pretrained=None``); ignored otherwise.

    Returns
    -------
    dict or distributed.Future
        ``{"model": path, "metrics": {...}, "training": {...}, "data": {...}, "plots": [...]}``.

    Examples
    --------
    >>> launch_finetune("ntuples", "hepfm-backbone.safetensors", "mytth.safetensors")  # doctest: +SKIP
    >>> fut = launch_finetune("ntuples", "backbone.safetensors", "m.safetensors", client=client)  # doctest: +SKIP
    >>> fut.result()["metrics"]["auc"]                                                           # doctest: +SKIP
    """
    kwargs = {k: v for k, v in locals().items() if k not in ("ntuples_dir", "pretrained", "out", "client")}
    if client is not None:
        return client.submit(launch_finetune, ntuples_dir, pretrained, out, **kwargs, pure=False)
    return _finetune(ntuples_dir, pretrained, out, **kwargs)


def _finetune(ntuples_dir, pretrained, out, *, signal, task, weight_column, val_fraction, test_fraction,
              split_seed, strategy, lr, head_lr_mult, batch_size, max_epochs, time_budget_s, patience, seed,
              hidden, n_proc_steps, device, progress) -> dict:  # fmt: skip
    import torch
    import torch.nn.functional as F

    from coffea_hepfm.training.evaluate import binary_metrics, plot_roc, plot_scores
    from coffea_hepfm.training.finetune import STRATEGIES, build_finetune_model, default_batch_size
    from coffea_hepfm.training.loop import LoopConfig, run_loop
    from coffea_hepfm.training.modelfile import save_trained, table_reference
    from coffea_hepfm.training.table import GraphTable, make_batch

    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; known: {', '.join(STRATEGIES)}")
    if pretrained is None and strategy != "full":
        raise ValueError(f"strategy {strategy!r} needs a pretrained backbone")
    tables, names, spec, manifest = load_ntuple_tables(
        ntuples_dir, signal, weight_column, val_fraction, test_fraction, split_seed
    )
    train, val = tables["train"], tables["val"]
    test = tables["test"] if tables["test"] is not None else val
    dev = _device(device)
    torch.manual_seed(seed)
    model = build_finetune_model(pretrained, spec, hidden, n_proc_steps).to(dev)
    batch_size = batch_size or default_batch_size(len(train))

    def loss_fn(m, idx, rng):
        logits = m(*(t.to(dev) for t in make_batch(train, idx, spec)))
        y = torch.from_numpy(train.y[idx]).to(dev)
        w = torch.from_numpy(train.weight[idx]).to(dev)
        return (F.cross_entropy(logits, y, reduction="none") * w).sum() / w.sum().clamp_min(1e-12)

    def val_auc(m) -> float:
        from sklearn.metrics import roc_auc_score

        return float(roc_auc_score(val.y == 0, _scores(m, val, spec, dev)))

    head_lr = lr * head_lr_mult if pretrained is not None else lr
    for p in model.backbone.parameters():
        p.requires_grad_(strategy != "frozen")
    groups = [{"params": list(model.head.parameters()), "lr": head_lr}]
    if strategy != "frozen":
        groups.append({"params": list(model.backbone.parameters()), "lr": lr})
    optimizer = torch.optim.AdamW(groups, weight_decay=1e-4)
    config = LoopConfig(
        batch_size=batch_size,
        max_epochs=max_epochs,
        time_budget_s=time_budget_s,
        patience=patience,
        seed=seed,
    )
    result = run_loop(model, optimizer, train, loss_fn, val_auc, config, f"finetune {names[0]}", progress)
    for p in model.parameters():
        p.requires_grad_(True)
    is_signal = test.y == 0
    scores = _scores(model, test, spec, dev)
    metrics = {**binary_metrics(is_signal, scores), "val_auc": result.best_score}
    model = model.cpu()
    out = Path(out)
    info = {
        "task": task or f"{names[0]}_vs_{names[1]}",
        "class_names": list(names),
        "recipe": {
            "stage": "finetune-ntuples",
            "from": os.fspath(pretrained) if pretrained is not None else "none",
            "strategy": strategy,
            "lr": lr,
            "head_lr_mult": head_lr_mult if pretrained is not None else 1.0,
            "optimizer": "AdamW(weight_decay=1e-4)",
            "loss": f"cross entropy weighted by {weight_column}, balanced per class",
            "batch_size": batch_size,
            "max_epochs": max_epochs,
            "seed": seed,
            "device": dev,
        },
        "data": {
            "ntuples": os.fspath(ntuples_dir),
            "split": {
                "by": "hash(run, luminosityBlock, event)",
                "val": val_fraction,
                "test": test_fraction,
                "seed": split_seed,
            },  # fmt: skip
            "n_train": len(train),
            "n_val": len(val),
            "n_test": len(test),
            "selection": manifest.get("selection"),
            "corrections": manifest.get("corrections"),
        },
        "metrics": metrics,
        "training": result.to_dict(),
    }
    heldout = GraphTable.concatenate([val, test]) if tables["test"] is not None else val
    source = {"what": "fine-tuning ntuples", "ntuples": os.fspath(ntuples_dir)}
    reference = table_reference(model, spec, train, heldout, names, source)
    save_trained(out, model, spec, head=model.kind, reference=reference, **info)
    title = f"{names[0]} vs {names[1]} (test split)"
    plots = [
        plot_roc({"fine-tuned": (is_signal, scores)}, out.with_name(out.stem + "_roc.png"), title),
        plot_scores(is_signal, scores, names, out.with_name(out.stem + "_scores.png"), title),
    ]
    summary = {"model": os.fspath(out), "plots": [os.fspath(p) for p in plots], **info}
    metrics_path = out.with_name(out.stem + "_metrics.json")
    tmp = metrics_path.with_name("." + metrics_path.name + ".tmp")
    tmp.write_text(json.dumps(summary, indent=2, default=float) + "\n")
    os.replace(tmp, metrics_path)
    return summary
