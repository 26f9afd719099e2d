"""The training loop shared by pretraining and fine-tuning: mini-batches, a wall-clock budget, periodic
validation, early stopping on the validation score and a rich progress bar."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from coffea_hepfm.training.table import GraphTable, make_batch


@dataclass
class LoopConfig:
    """How long and how to train.

    ``max_epochs`` and ``time_budget_s`` both cap the run (whichever comes first); validation runs every
    ``eval_every`` optimiser steps (default: once per epoch, at least every 10 steps apart) and training
    stops after ``patience`` validations without improvement.
    """

    batch_size: int = 256
    max_epochs: int = 50
    time_budget_s: float = math.inf
    patience: int = 6
    eval_every: int | None = None
    min_steps: int = 0
    seed: int = 0
    #: ``"constant"`` or ``"cosine"``: learning rates decay to 0 along the run, whose length is the larger
    #: of the fraction of ``max_epochs`` and of ``time_budget_s`` used so far
    schedule: str = "constant"


@dataclass
class LoopResult:
    best_score: float = -math.inf
    best_step: int = 0
    steps: int = 0
    epochs: float = 0.0
    train_time_s: float = 0.0
    stopped: str = ""
    #: one entry per validation: (seconds of training so far, step, train loss, validation score)
    history: list[tuple[float, int, float, float]] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "best_score": round(self.best_score, 5),
            "best_step": self.best_step,
            "steps": self.steps,
            "epochs": round(self.epochs, 3),
            "train_time_s": round(self.train_time_s, 3),
            "stopped": self.stopped,
            "history": [[round(t, 3), s, round(loss, 5), round(v, 5)] for t, s, loss, v in self.history],
        }


def run_loop(
    model,
    optimizer,
    table: GraphTable,
    loss_fn: Callable[[object, np.ndarray, np.random.Generator], object],
    score_fn: Callable[[object], float],
    config: LoopConfig,
    description: str = "training",
    progress: bool = True,
) -> LoopResult:
    """Train ``model`` in place and leave it at its best validation score.

    Parameters
    ----------
    loss_fn
        ``loss_fn(model, event_indices, rng) -> scalar tensor`` for one mini-batch.
    score_fn
        ``score_fn(model) -> float``, higher is better (e.g. validation AUC or minus validation loss);
        called with the model in eval mode under ``torch.no_grad()``. Its run time is not counted as
        training time.

    Returns
    -------
    LoopResult
        With the validation history used for time-to-target measurements.
    """
    import torch
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    rng = np.random.default_rng(config.seed)
    steps_per_epoch = max(1, math.ceil(len(table) / config.batch_size))
    eval_every = config.eval_every or max(steps_per_epoch, 10)
    total_steps = config.max_epochs * steps_per_epoch
    result = LoopResult()
    best_state = copy.deepcopy(model.state_dict())
    bad_evals, train_time, running = 0, 0.0, []
    log = None

    def validate() -> bool:
        nonlocal best_state, bad_evals
        model.eval()
        with torch.no_grad():
            score = float(score_fn(model))
        model.train()
        loss = float(np.mean(running)) if running else float("nan")
        running.clear()
        result.history.append((train_time, result.steps, loss, score))
        if log is not None:
            log(
                f"{description}: step {result.steps} train loss {loss:.4f} validation {score:.4f} ({train_time:.1f} s)"
            )
        if score > result.best_score:
            result.best_score, result.best_step = score, result.steps
            best_state = copy.deepcopy(model.state_dict())
            bad_evals = 0
        else:
            bad_evals += 1
        return bad_evals >= config.patience and result.steps >= config.min_steps

    base_lrs = [g["lr"] for g in optimizer.param_groups]

    def set_lr() -> None:
        if config.schedule != "cosine":
            return
        done = result.steps / total_steps
        if math.isfinite(config.time_budget_s):
            done = max(done, train_time / config.time_budget_s)
        factor = 0.5 * (1.0 + math.cos(math.pi * min(done, 1.0)))
        for group, base in zip(optimizer.param_groups, base_lrs, strict=True):
            group["lr"] = base * factor

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, disable=not progress, transient=False) as bar:
        task = bar.add_task(description, total=total_steps)
        if progress and not bar.console.is_terminal:  # in a log file: one line per validation instead
            log = bar.console.log
        model.train()
        stop = ""
        while not stop:
            for idx in table.batches(config.batch_size, rng):
                t0 = time.perf_counter()
                set_lr()
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(model, idx, rng)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"non-finite loss at step {result.steps}: {float(loss)}")
                loss.backward()
                optimizer.step()
                train_time += time.perf_counter() - t0
                running.append(float(loss.detach()))
                result.steps += 1
                bar.update(task, advance=1, description=f"{description} loss={running[-1]:.4f}")
                if result.steps % eval_every == 0 and validate():
                    stop = "early stopping"
                elif train_time >= config.time_budget_s:
                    stop = "time budget"
                elif result.steps >= total_steps:
                    stop = "max epochs"
                if stop:
                    break
        if running or not result.history:
            validate()
    result.epochs = result.steps / steps_per_epoch
    result.train_time_s = train_time
    result.stopped = stop
    model.load_state_dict(best_state)
    model.eval()
    return result


def predict(model, table: GraphTable, spec, batch_size: int = 2048, method: str = "forward") -> np.ndarray:
    """Model outputs for every event of ``table`` (``forward`` logits, or ``embed``), as numpy."""
    import torch

    out = []
    model.eval()
    fn = getattr(model, method)
    with torch.no_grad():
        for idx in table.batches(batch_size):
            out.append(fn(*make_batch(table, idx, spec)).numpy())
    if not out:
        return np.zeros((0, 0), np.float32)
    return np.concatenate(out)


def layer_outputs(model, table: GraphTable, spec, batch_size: int = 2048) -> list[np.ndarray]:
    """Per-layer graph representations (``backbone.layer_outputs``) for every event of ``table``."""
    import torch

    backbone = getattr(model, "backbone", model)
    chunks: list[list[np.ndarray]] = []
    backbone.eval()
    with torch.no_grad():
        for idx in table.batches(batch_size):
            chunks.append([t.numpy() for t in backbone.layer_outputs(*make_batch(table, idx, spec))])
    return [np.concatenate([c[k] for c in chunks]) for k in range(len(chunks[0]))]


def train_seconds_to_reach(history: list, target: float) -> float | None:
    """Training seconds until the validation score first reached ``target`` (None if never).

    Examples
    --------
    >>> train_seconds_to_reach([(1.0, 10, 0.5, 0.70), (2.0, 20, 0.4, 0.80)], 0.75)
    2.0
    >>> train_seconds_to_reach([(1.0, 10, 0.5, 0.70)], 0.75) is None
    True
    """
    for t, _step, _loss, score in history:
        if score >= target - 1e-6:  # histories are stored rounded to 5 decimals
            return float(t)
    return None
