"""Pretraining of the backbone: multiclass over the pretraining processes, multilabel over hard-process
truth content, or self-supervised contrastive learning (SimCLR NT-Xent with physics augmentations).

Examples
--------
>>> pretrain("data/train", "runs/backbone.safetensors", task="multiclass", time_budget_s=900)  # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence

import numpy as np

from coffea_hepfm.training.dataset import DatasetError, read_meta
from coffea_hepfm.training.loop import LoopConfig, run_loop
from coffea_hepfm.training.table import GraphTable, load_classes, make_batch

PRETRAIN_TASKS = ("multiclass", "multilabel", "contrastive")


def nt_xent(z1, z2, temperature: float = 0.1):
    """SimCLR's normalised-temperature cross-entropy (Chen et al. 2020) for two views ``[B, D]`` each.

    Each event's positive is its other view; the other ``2B - 2`` views in the batch are negatives.

    Examples
    --------
    >>> z = torch.randn(8, 4)
    >>> float(nt_xent(z, z)) < float(nt_xent(z, torch.randn(8, 4)))  # doctest: +SKIP
    True
    """
    import torch
    import torch.nn.functional as F

    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = z1.shape[0]
    sim = z @ z.T / temperature
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(sim, target)


def pretraining_process_names(data_dir) -> list[str]:
    """Pretraining processes (simulation registry) present in the dataset, registry order."""
    from coffea_hepfm.simulation.processes import pretraining_processes

    present = set(read_meta(data_dir).get("processes", {}))
    return [p for p in pretraining_processes() if p in present]


def split_validation(table: GraphTable, fraction: float, seed: int) -> tuple[GraphTable, GraphTable]:
    """Random (train, validation) split of a table; the validation part gets ``fraction`` of events."""
    perm = np.random.default_rng(seed + 1000).permutation(len(table))
    n_val = max(1, int(round(fraction * len(table))))
    return table.subset(np.sort(perm[n_val:])), table.subset(np.sort(perm[:n_val]))


def build_pretrain_model(spec, task: str, n_outputs: int, hidden: int = 64, n_proc_steps: int = 4):
    """A fresh backbone plus the head of a pretraining ``task``."""
    from coffea_hepfm.model import HEPFMClassifier, HEPFMNet
    from coffea_hepfm.model.heads import MulticlassHead, MultilabelHead, ProjectionHead

    backbone = HEPFMNet(
        spec.n_node_features,
        spec.n_edge_features,
        spec.n_global_features,
        hidden=hidden,
        n_proc_steps=n_proc_steps,
    )
    head = {
        "multiclass": lambda: MulticlassHead(n_outputs, in_channels=hidden),
        "multilabel": lambda: MultilabelHead(n_outputs, in_channels=hidden),
        "contrastive": lambda: ProjectionHead(n_outputs, in_channels=hidden),
    }[task]()
    return HEPFMClassifier(backbone, head)


def pretrain(
    data_dir: str | os.PathLike,
    out: str | os.PathLike,
    task: str = "multiclass",
    processes: Sequence[str] | None = None,
    max_events: int | None = None,
    epochs: int = 20,
    batch_size: int = 256,
    lr: float = 1e-3,
    time_budget_s: float = math.inf,
    hidden: int = 64,
    n_proc_steps: int = 4,
    seed: int = 0,
    val_fraction: float = 0.05,
    temperature: float = 0.1,
    patience: int = 8,
    progress: bool = True,
) -> dict:
    """Pretrain a backbone on the pretraining fold of ``data_dir`` and save it to ``out``.

    Parameters
    ----------
    task
        ``"multiclass"`` (cross-entropy over ``processes``), ``"multilabel"`` (binary cross-entropy over
        the truth labels of :mod:`coffea_hepfm.training.truth`) or ``"contrastive"`` (NT-Xent between two
        augmented views of each event; labels unused).
    processes
        Default: every pretraining process of the simulation registry present in the dataset.
    max_events
        Cap on events per process.
    time_budget_s
        Wall-clock cap on training (validation not counted).

    Returns
    -------
    dict
        The metadata saved with the model (recipe, data sizes, metrics, loop history).

    Raises
    ------
    DatasetError
        Unknown task, fewer than two processes, or a process missing from the data.
    """
    import torch
    import torch.nn.functional as F

    from coffea_hepfm.graph import GraphSpec
    from coffea_hepfm.training.augment import Augmenter
    from coffea_hepfm.training.truth import TRUTH_LABELS

    if task not in PRETRAIN_TASKS:
        raise DatasetError(f"unknown pretraining task {task!r}; known: {', '.join(PRETRAIN_TASKS)}")
    meta = read_meta(data_dir)
    spec = GraphSpec.from_dict(meta["graph_spec"]) if "graph_spec" in meta else GraphSpec()
    processes_arg, processes = processes, list(processes or pretraining_process_names(data_dir))
    if len(processes) < 2:
        raise DatasetError(f"pretraining needs >= 2 processes, found {processes} in {data_dir}")
    torch.manual_seed(seed)
    table = load_classes(
        data_dir,
        processes,
        fold="pretrain",
        downstream_every=meta.get("downstream_every"),
        max_per_class=max_events,
    )
    train, val = split_validation(table, val_fraction, seed)
    if task == "multiclass":
        n_out, class_names = len(processes), processes
    elif task == "multilabel":
        n_out, class_names = len(TRUTH_LABELS), list(TRUTH_LABELS)
    else:
        n_out, class_names = 32, [f"z{k}" for k in range(32)]
    model = build_pretrain_model(spec, task, n_out, hidden, n_proc_steps)
    augment = Augmenter(spec)
    val_rng_seed = seed + 2000

    def forward(m, tab, idx, rng=None, aug=None):
        return m(*make_batch(tab, idx, spec, aug, rng))

    def loss_on(m, tab, idx, rng):
        if task == "multiclass":
            return F.cross_entropy(forward(m, tab, idx), torch.from_numpy(tab.y[idx]))
        if task == "multilabel":
            return F.binary_cross_entropy_with_logits(forward(m, tab, idx), torch.from_numpy(tab.truth[idx]))
        return nt_xent(forward(m, tab, idx, rng, augment), forward(m, tab, idx, rng, augment), temperature)

    def score(m) -> float:
        rng = np.random.default_rng(val_rng_seed)  # same views every validation
        losses = [float(loss_on(m, val, idx, rng)) * len(idx) for idx in val.batches(max(batch_size, 1024))]
        return -sum(losses) / len(val)

    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    config = LoopConfig(
        batch_size=batch_size,
        max_epochs=epochs,
        time_budget_s=time_budget_s,
        seed=seed,
        patience=patience,
        schedule="cosine",
    )
    from coffea_hepfm.training.modelfile import utc_now

    started_at = utc_now()
    t0 = time.perf_counter()
    result = run_loop(
        model,
        optimizer,
        train,
        lambda m, idx, rng: loss_on(m, train, idx, rng),
        score,
        config,
        description=f"pretrain {task}",
        progress=progress,
    )
    finished_at = utc_now()
    metrics = {"val_loss": -result.best_score}
    if task == "multiclass":
        from coffea_hepfm.training.loop import predict

        pred = predict(model, val, spec).argmax(1)
        metrics["val_accuracy"] = float((pred == val.y).mean())
    info = {
        "task": f"pretrain-{task}",
        "class_names": class_names,
        "recipe": {
            "stage": "pretrain",
            "task": task,
            "epochs_max": epochs,
            "batch_size": batch_size,
            "lr": lr,
            "optimizer": "AdamW(weight_decay=1e-4)",
            "schedule": "cosine to 0 over max(epochs, time budget)",
            "patience_validations": patience,
            "time_budget_s": None if math.isinf(time_budget_s) else time_budget_s,
            "seed": seed,
            "augmentations": list(augment.ops) if task == "contrastive" else [],
            "temperature": temperature if task == "contrastive" else None,
            "torch_threads": torch.get_num_threads(),
        },
        "data": {
            "dataset": os.fspath(data_dir),
            "processes": processes,
            "fold": "pretrain",
            "n_train": len(train),
            "val_events": len(val),
            "events_per_process": {p: int((table.y == k).sum()) for k, p in enumerate(processes)},
        },
        "metrics": metrics,
        "training": {
            **result.to_dict(),
            "wall_s": round(time.perf_counter() - t0, 2),
            "started_at": started_at,
            "finished_at": finished_at,
        },
    }
    from coffea_hepfm.training.modelfile import cli_command, python_call, save_trained, table_reference

    python_only = {"processes": (processes_arg, None), "val_fraction": (val_fraction, 0.05)}
    python_only["temperature"] = (temperature, 0.1)
    if any(v != d for v, d in python_only.values()):  # not expressible on the command line
        kwargs = {
            "task": task,
            "max_events": max_events,
            "epochs": epochs,
            "batch_size": batch_size,
            "lr": lr,
        }
        kwargs |= {"time_budget_s": time_budget_s, "hidden": hidden, "n_proc_steps": n_proc_steps}
        kwargs |= {"seed": seed, "patience": patience} | {k: v for k, (v, d) in python_only.items() if v != d}
        command = python_call(__name__, "pretrain", (data_dir, out), kwargs, torch.get_num_threads())
    else:
        budget = None if math.isinf(time_budget_s) else time_budget_s
        command = cli_command(
            "coffea-hepfm pretrain",
            [("--task", task), ("--data", data_dir), ("--out", out), ("--epochs", epochs)]
            + [("--batch-size", batch_size), ("--max-events", max_events), ("--seed", seed), ("--lr", lr)]
            + [("--time-budget", budget), ("--hidden", hidden), ("--n-proc-steps", n_proc_steps)]
            + [("--patience", patience), ("--threads", torch.get_num_threads())],
        )
    # Reference distributions of the pretraining data (inputs, embedding, OOD calibration on the
    # validation events, classes = the pretraining processes whatever the head).
    source = {"what": "pretraining data", "dataset": os.fspath(data_dir), "fold": "pretrain"}
    reference = table_reference(model, spec, train, val, processes, source)
    save_trained(out, model, spec, head=model.kind, reproduce=command, reference=reference, **info)
    return info
