"""Fine-tuning a pretrained backbone (or training the identical architecture from scratch) on a downstream
binary task, with early stopping on the validation AUC.

Strategies
----------
``full``
    Every parameter trains; the new head's learning rate is ``lr * head_lr_mult``.
``frozen``
    The backbone is frozen (a probe): only the new head trains.
``head``
    Head first, then everything (LP-FT, Kumar et al. 2022): the first quarter of the epochs and time
    budget trains the head on the frozen backbone, the rest is ``full``. The returned model is the best
    on the validation set over both phases; ``training["phases"]`` records each phase and the backbone's
    weights hash after it.

``--from none`` is the scratch baseline: a freshly initialised backbone of the same architecture, every
parameter at learning rate ``lr_scratch`` (the head multiplier only applies to a pretrained backbone).

Examples
--------
>>> finetune("data/train", "tth_vs_ttbar", 1000, pretrained="backbone.safetensors", out="tth.safetensors")
... # doctest: +SKIP
>>> finetune("data/train", "tth_vs_ttbar", 10**9, pretrained=None)  # doctest: +SKIP
DatasetError: train size 1000000000 is larger than the data: ...
"""

from __future__ import annotations

import copy
import math
import os
import time

from coffea_hepfm.training.dataset import DatasetError, read_meta
from coffea_hepfm.training.evaluate import binary_metrics, signal_scores
from coffea_hepfm.training.loop import LoopConfig, LoopResult, run_loop
from coffea_hepfm.training.tasks import get_task, task_splits

STRATEGIES = ("full", "frozen", "head")


def default_batch_size(train_size: int) -> int:
    """Small sets get small batches (enough optimiser steps per epoch); capped at 256.

    >>> default_batch_size(100), default_batch_size(1000), default_batch_size(100000)
    (32, 125, 256)
    """
    return int(min(256, max(32, train_size // 8)))


def build_finetune_model(pretrained, spec, hidden: int = 64, n_proc_steps: int = 4):
    """Backbone (loaded from ``pretrained`` or fresh when it is None) + a new 2-class ``ClassifierHead``."""
    from coffea_hepfm.model import ClassifierHead, HEPFMClassifier, HEPFMNet, load_backbone

    if pretrained is None:
        backbone = HEPFMNet(
            spec.n_node_features,
            spec.n_edge_features,
            spec.n_global_features,
            hidden=hidden,
            n_proc_steps=n_proc_steps,
        )
    else:
        backbone = load_backbone(pretrained, expected_spec=spec)
    return HEPFMClassifier(backbone, ClassifierHead(2, in_channels=backbone.hidden))


def finetune(
    data_dir: str | os.PathLike,
    task: str,
    train_size: int | None,
    pretrained: str | os.PathLike | None = None,
    strategy: str = "full",
    out: str | os.PathLike | None = None,
    seed: int = 0,
    lr: float = 5e-4,
    lr_scratch: float = 1e-3,
    head_lr_mult: float = 10.0,
    batch_size: int | None = None,
    max_epochs: int = 200,
    time_budget_s: float = math.inf,
    patience: int = 8,
    hidden: int = 64,
    n_proc_steps: int = 4,
    progress: bool = True,
    route: dict | None = None,
) -> dict:
    """Fine-tune (or train from scratch) on ``task`` with ``train_size`` events; evaluate on the test split.

    Parameters
    ----------
    pretrained
        A pretrained model file (its backbone is used) or ``None`` for the scratch baseline.
    strategy
        ``"full"``, ``"frozen"`` or ``"head"`` (see the module docstring).
    out
        Where to save the model (``.safetensors``; ``.json`` and ``.md`` are written next to it).
    time_budget_s
        Cap on training wall-clock seconds (validation passes are not counted).
    route
        How this call was made, for the saved file's provenance, when not through ``coffea-hepfm
        finetune``: ``{"reproduce": command, **extra metadata}`` (the study passes its own command and
        ``{"study": {...}}``). Default: the equivalent ``coffea-hepfm finetune`` command.

    Returns
    -------
    dict
        ``metrics`` (test AUC, accuracy, background rejections), ``training`` (loop record with the
        validation-AUC history in training seconds), ``data`` sizes and the ``recipe``.

    Raises
    ------
    DatasetError
        Unknown task or strategy, a class missing from the data, ``train_size`` larger than the data,
        or ``frozen``/``head`` without a pretrained backbone.
    """
    call = {k: v for k, v in locals().items() if k not in ("progress", "route")}  # for the provenance
    import torch
    import torch.nn.functional as F

    from coffea_hepfm.graph import GraphSpec

    tsk = get_task(task)
    if strategy not in STRATEGIES:
        raise DatasetError(f"unknown strategy {strategy!r}; known: {', '.join(STRATEGIES)}")
    if pretrained is None and strategy != "full":
        raise DatasetError(
            f"strategy {strategy!r} needs a pretrained backbone (--from FILE), not --from none"
        )
    meta = read_meta(data_dir)
    spec = GraphSpec.from_dict(meta["graph_spec"]) if "graph_spec" in meta else GraphSpec()
    splits = task_splits(data_dir, tsk, train_size, seed=seed)
    n_train = len(splits.train)
    batch_size = batch_size or default_batch_size(n_train)
    torch.manual_seed(seed)
    model = build_finetune_model(pretrained, spec, hidden, n_proc_steps)

    def loss_fn(m, idx, rng):
        from coffea_hepfm.training.table import make_batch

        return F.cross_entropy(m(*make_batch(splits.train, idx, spec)), torch.from_numpy(splits.train.y[idx]))

    def val_auc(m) -> float:
        from sklearn.metrics import roc_auc_score

        return float(roc_auc_score(splits.val.y == 0, signal_scores(m, splits.val, spec)))

    def optimizer_for(train_backbone: bool):
        backbone_lr = lr if pretrained is not None else lr_scratch
        head_lr = lr * head_lr_mult if pretrained is not None else lr_scratch
        for p in model.backbone.parameters():
            p.requires_grad_(train_backbone)
        groups = [{"params": list(model.head.parameters()), "lr": head_lr}]
        if train_backbone:
            groups.append({"params": list(model.backbone.parameters()), "lr": backbone_lr})
        return torch.optim.AdamW(groups, weight_decay=1e-4)

    def config(epochs: int, budget: float) -> LoopConfig:
        return LoopConfig(
            batch_size=batch_size, max_epochs=epochs, time_budget_s=budget, patience=patience, seed=seed
        )

    label = f"{task} N={n_train} {'pretrained' if pretrained else 'scratch'}"
    from coffea_hepfm.training.modelfile import utc_now

    started_at = utc_now()
    t0 = time.perf_counter()
    phases = None
    if strategy == "head":
        first = run_loop(
            model,
            optimizer_for(False),
            splits.train,
            loss_fn,
            val_auc,
            config(max(1, max_epochs // 4), time_budget_s / 4),
            f"{label} head",
            progress,
        )
        after_head = copy.deepcopy(model.state_dict())
        second = run_loop(
            model,
            optimizer_for(True),
            splits.train,
            loss_fn,
            val_auc,
            config(max_epochs, time_budget_s - first.train_time_s),
            f"{label} full",
            progress,
        )
        phases = [_phase("head", first, after_head), _phase("full", second, model.state_dict())]
        if first.best_score > second.best_score:  # return the best model of both phases, as reported
            model.load_state_dict(after_head)
        phases[0 if first.best_score > second.best_score else 1]["returned"] = True
        result = _chain(first, second)
    else:
        result = run_loop(
            model,
            optimizer_for(strategy == "full"),
            splits.train,
            loss_fn,
            val_auc,
            config(max_epochs, time_budget_s),
            label,
            progress,
        )
    for p in model.parameters():
        p.requires_grad_(True)
    finished_at = utc_now()
    wall = time.perf_counter() - t0
    scores = signal_scores(model, splits.test, spec)
    metrics = binary_metrics(splits.test.y == 0, scores)
    metrics["val_auc"] = result.best_score
    from coffea_hepfm.training.modelfile import file_sha256

    info = {
        "task": task,
        "class_names": list(tsk.class_names),
        "recipe": {
            "stage": "finetune",
            "from": os.fspath(pretrained) if pretrained is not None else "none",
            "from_sha256": file_sha256(pretrained),
            "strategy": strategy,
            "lr": lr if pretrained is not None else lr_scratch,
            "head_lr_mult": head_lr_mult if pretrained is not None else 1.0,
            "optimizer": "AdamW(weight_decay=1e-4)",
            "batch_size": batch_size,
            "max_epochs": max_epochs,
            "patience_validations": patience,
            "time_budget_s": None if math.isinf(time_budget_s) else time_budget_s,
            "seed": seed,
            "early_stopping": "best validation AUC",
            "torch_threads": torch.get_num_threads(),
        },
        "data": {
            "dataset": os.fspath(data_dir),
            "signal": tsk.signal,
            "background": tsk.background,
            "n_train": n_train,
            "n_val": len(splits.val),
            "n_test": len(splits.test),
            "pool_per_class": splits.pool_per_class,
        },
        "metrics": metrics,
        "training": {
            **result.to_dict(),
            "wall_s": round(wall, 2),
            "started_at": started_at,
            "finished_at": finished_at,
            **({"phases": phases} if phases else {}),
        },
    }
    if out is not None:
        from coffea_hepfm.training.modelfile import save_trained, table_reference
        from coffea_hepfm.training.table import GraphTable

        route = dict(route or {})
        command = route.pop("reproduce", None) or _command(call)
        save_trained(
            out,
            model,
            spec,
            head=model.kind,
            reproduce=command,
            description=f"coffea-hepfm classifier for {tsk.description}; outputs {list(tsk.class_names)}.",
            extra=route,
            reference=table_reference(
                model,
                spec,
                splits.train,
                GraphTable.concatenate([splits.val, splits.test]),
                tsk.class_names,
                {"what": "fine-tuning data", "dataset": os.fspath(data_dir), "task": task},
            ),
            **info,
        )
    info["model"] = model
    info["spec"] = spec
    info["splits"] = splits
    return info


#: finetune() parameters that `coffea-hepfm finetune` takes, as (option, parameter)
_CLI = (
    ("--data", "data_dir"),
    ("--from", "pretrained"),
    ("--task", "task"),
    ("--train-size", "train_size"),
    ("--strategy", "strategy"),
    ("--seed", "seed"),
    ("--lr", "lr"),
    ("--head-lr-mult", "head_lr_mult"),
    ("--epochs", "max_epochs"),
    ("--time-budget", "time_budget_s"),
    ("--threads", None),
    ("--out", "out"),
)


def _command(call: dict) -> str:
    """The exact command behind the call ``finetune(**call)``: ``coffea-hepfm finetune`` when every
    parameter can be given on the command line, else the equivalent Python call."""
    import inspect

    import torch

    from coffea_hepfm.training.modelfile import cli_command, python_call

    threads = torch.get_num_threads()
    defaults = {k: p.default for k, p in inspect.signature(finetune).parameters.items()}
    on_cli = {name for _, name in _CLI}
    python_only = {k: v for k, v in call.items() if k not in on_cli and v != defaults[k]}
    if python_only or call["train_size"] is None:
        args = (call["data_dir"], call["task"], call["train_size"])
        kwargs = {k: v for k, v in call.items() if k not in ("data_dir", "task", "train_size")}
        kwargs = {k: v for k, v in kwargs.items() if k in on_cli or k in python_only}
        return python_call(__name__, "finetune", args, kwargs, threads)
    values = {**call, "pretrained": "none" if call["pretrained"] is None else call["pretrained"]}
    values["time_budget_s"] = None if math.isinf(call["time_budget_s"]) else call["time_budget_s"]
    return cli_command(
        "coffea-hepfm finetune", [(opt, threads if k is None else values[k]) for opt, k in _CLI]
    )


def _phase(name: str, result: LoopResult, state) -> dict:
    """One LP-FT phase: its steps, best validation AUC, and the hash of the backbone's weights at its best
    (``coffea_hepfm.model.integrity.weights_digest`` of ``backbone.state_dict()``)."""
    from coffea_hepfm.model.integrity import weights_digest

    backbone = weights_digest(
        {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
    )
    return {
        "phase": name,
        "steps": result.steps,
        "best_score": round(result.best_score, 5),
        "backbone_sha256": backbone,
    }


def _chain(first: LoopResult, second: LoopResult) -> LoopResult:
    """One record for a two-phase run: the second phase's times and steps continue the first's."""
    out = LoopResult()
    out.history = list(first.history) + [
        (t + first.train_time_s, s + first.steps, loss, v) for t, s, loss, v in second.history
    ]
    best = max(range(len(out.history)), key=lambda k: out.history[k][3])
    out.best_score, out.best_step = out.history[best][3], out.history[best][1]
    out.steps = first.steps + second.steps
    out.epochs = first.epochs + second.epochs
    out.train_time_s = first.train_time_s + second.train_time_s
    out.stopped = second.stopped
    return out
