"""The downstream (fine-tuning) tasks and their fixed train / validation / test splits.

Each task is binary: class 0 is the signal, class 1 the background, and ``class_names`` are the output
names of the shipped model (``HEPFMScore`` returns ``out[class_name]``). Events of a process that was
used in pretraining come only from its held-out ``downstream`` fold, so fine-tuning and evaluation never
see events the backbone was pretrained on.

The validation and test events of a task are fixed (they do not depend on the seed or the training size);
the training events are the first ``N / 2`` per class of a seed-dependent permutation of the rest.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import numpy as np

from coffea_hepfm.training.dataset import DatasetError, read_meta
from coffea_hepfm.training.table import GraphTable, load_classes

SPLIT_SEED = 12345


@dataclass(frozen=True)
class Task:
    name: str
    signal: str
    background: str
    class_names: tuple[str, str]
    description: str

    @property
    def processes(self) -> tuple[str, str]:
        return (self.signal, self.background)


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task("tth_vs_ttbar", "tth", "ttbar", ("ttH", "ttbar"), "ttH (SM decays) vs ttbar"),
        Task("vbf_vs_ggf", "vbf_h", "ggf_h", ("VBF", "ggF"), "VBF Higgs vs gluon-fusion Higgs"),
        Task("wh_vs_zh", "wh", "zh", ("WH", "ZH"), "WH vs ZH"),
        Task(
            "cp_tth_vs_tta",
            "tth_aa",
            "tta_aa",
            ("ttH_CPeven", "ttA_CPodd"),
            "ttH(gamma gamma) CP-even vs ttA(gamma gamma) CP-odd (both unseen in pretraining)",
        ),
        Task(
            "zprime_vs_ttbar",
            "zprime_tt",
            "ttbar",
            ("Zprime", "ttbar"),
            "Z'(1.5 TeV) -> tt vs SM ttbar (BSM signal unseen in pretraining)",
        ),
    )
}


def get_task(name: str) -> Task:
    """Look up a downstream task; unknown names raise ``DatasetError`` listing the known ones."""
    try:
        return TASKS[name]
    except KeyError:
        raise DatasetError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}") from None


@functools.lru_cache(maxsize=8)
def _load_process(data_dir: str, process: str) -> GraphTable:
    # Cached: a study loads the same few processes for dozens of runs.
    every = read_meta(data_dir).get("downstream_every")
    return load_classes(data_dir, [process], fold=_fold_for(process), downstream_every=every)


def _fold_for(process: str) -> str:
    from coffea_hepfm.simulation.processes import PROCESSES

    proc = PROCESSES.get(process)
    return "downstream" if proc is not None and proc.pretraining else "all"


@dataclass
class TaskSplits:
    train: GraphTable
    val: GraphTable
    test: GraphTable
    pool_per_class: list[int]


def task_splits(
    data_dir,
    task: Task,
    train_size: int | None,
    seed: int = 0,
    n_val: int = 500,
    n_test: int = 2000,
) -> TaskSplits:
    """Train / validation / test tables of ``task`` (class 0 = signal).

    Parameters
    ----------
    train_size
        Total training events, split evenly between the classes; ``None`` takes the whole pool.
    n_val, n_test
        Validation and test events *per class*; each is at most 20 % of a class's events.

    Raises
    ------
    DatasetError
        If a class is missing from the data, or ``train_size`` is larger than the events left for
        training (the message gives the largest possible size).

    Examples
    --------
    >>> task_splits("data/train", get_task("tth_vs_ttbar"), 1000, seed=1).train.y.mean()  # doctest: +SKIP
    0.5
    >>> task_splits("data/train", get_task("tth_vs_ttbar"), 10**9)  # doctest: +SKIP
    DatasetError: train size 1000000000 is larger than the data: at most 2 x 5200 = 10400 events ...
    """
    tables = [_load_process(os.fspath(data_dir), p) for p in task.processes]
    trains, vals, tests, pools = [], [], [], []
    for k, t in enumerate(tables):
        t = GraphTable(
            t.x, t.offsets, t.u, np.full(len(t), k, np.int64), t.truth, t.weight, t.row, task.class_names
        )
        perm = np.random.default_rng(SPLIT_SEED + k).permutation(len(t))
        nt, nv = min(n_test, len(t) // 5), min(n_val, len(t) // 5)
        tests.append(t.subset(np.sort(perm[:nt])))
        vals.append(t.subset(np.sort(perm[nt : nt + nv])))
        pools.append(t.subset(perm[nt + nv :]))
    max_size = 2 * min(len(p) for p in pools)
    if train_size is not None:
        if train_size > max_size:
            raise DatasetError(
                f"train size {train_size} is larger than the data: at most 2 x {max_size // 2} = {max_size} "
                f"events of task {task.name!r} are left for training in {data_dir} "
                f"(pools: {dict(zip(task.processes, [len(p) for p in pools], strict=True))})"
            )
        if train_size < 2:
            raise DatasetError(f"train size must be >= 2 (one event per class), got {train_size}")
    rng = np.random.default_rng(seed)
    for k, pool in enumerate(pools):
        n = len(pool) if train_size is None else (train_size + 1 - k) // 2
        trains.append(pool.subset(np.sort(rng.permutation(len(pool))[:n])))
    return TaskSplits(
        GraphTable.concatenate(trains),
        GraphTable.concatenate(vals),
        GraphTable.concatenate(tests),
        [len(p) for p in pools],
    )
