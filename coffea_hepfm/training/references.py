"""Adding reference distributions to an existing model file by a recorded re-save.

New models get their references at training time (:func:`coffea_hepfm.training.modelfile.table_reference`,
called by ``pretrain``, ``finetune`` and ``launch_finetune``). A model trained before that, such as a
shipped one, gets them here: its weights are copied unchanged into a new file whose reference is built
from events of the model's training processes, and whose header records the re-save like every other
(:mod:`coffea_hepfm.model.resave`): one more ``"resaves"`` entry with the source file and its sha256, the
reason, ``"changed": ["reference"]``, the data and the command; the model card lists that command::

    coffea-hepfm reference tth_vs_ttbar --data data/train --out tth_vs_ttbar_ref.safetensors

The processes are the model's own (``data.signal``/``data.background`` of a fine-tuned model,
``data.processes`` of a backbone) unless ``processes`` is given; each is read from the dataset directory
(``coffea-hepfm dataset`` output) with the fold the training used (the downstream fold of a pretraining
process for a fine-tuned model; the pretraining fold for a backbone; ``fold="all"`` takes every event). A random ``heldout_fraction`` of
the events calibrates the OOD threshold, the rest fits it. An ntuple folder (``ntuple.json``) is read
with the split ``launch_finetune`` uses.
"""

from __future__ import annotations

import datetime
import os
import shlex
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["add_reference"]


def _model_processes(meta: dict) -> tuple[list[str], str]:
    data = meta.get("data") or {}
    if data.get("signal") and data.get("background"):
        return [data["signal"], data["background"]], "finetune"
    if data.get("processes"):
        return list(data["processes"]), "pretrain"
    raise ValueError(
        "the model file does not record its training processes (data.signal/background or data.processes); "
        "pass them with --processes"
    )


def _dataset_tables(data_dir, processes: Sequence[str], stage: str, max_events, heldout_fraction, seed, fold):
    from coffea_hepfm.training.dataset import read_meta
    from coffea_hepfm.training.table import GraphTable, load_classes
    from coffea_hepfm.training.tasks import _fold_for

    every = read_meta(data_dir).get("downstream_every")
    parts, folds = [], {}
    for k, p in enumerate(processes):
        f = fold or ("pretrain" if stage == "pretrain" else _fold_for(p))
        folds[p] = f
        t = load_classes(data_dir, [p], fold=f, downstream_every=every, max_per_class=max_events)
        t.y[:] = k
        parts.append(t)
    table = GraphTable.concatenate(parts)
    perm = np.random.default_rng(seed).permutation(len(table))
    n_held = max(1, int(round(heldout_fraction * len(table))))
    return table.subset(np.sort(perm[n_held:])), table.subset(np.sort(perm[:n_held])), folds


def add_reference(
    model: str | os.PathLike,
    data: str | os.PathLike,
    out: str | os.PathLike,
    *,
    processes: Sequence[str] | None = None,
    fold: str | None = None,
    max_events: int | None = None,
    heldout_fraction: float = 0.2,
    seed: int = 0,
) -> Path:
    """Re-save ``model`` as ``out`` with reference distributions built from ``data``; returns ``out``.

    Raises ``ValueError`` if ``out`` is the model file itself (a re-save never overwrites its source) or
    the training processes are unknown; ``DatasetError`` if a process is missing from ``data``.
    """
    from coffea_hepfm import __version__
    from coffea_hepfm.model import load_model, save_model
    from coffea_hepfm.model.integrity import INTEGRITY_KEY
    from coffea_hepfm.model.io import resolve_model_path, sha256_file

    _REWRITTEN = ("format", "format_version", "graph_spec", "model_config", "head", INTEGRITY_KEY)
    from coffea_hepfm.training.modelfile import table_reference

    src = resolve_model_path(model)
    out = Path(out)
    if out.resolve() == src.resolve():
        raise ValueError(f"--out must be a new file, not the model file itself ({src})")
    loaded = load_model(src)
    spec = loaded.spec
    if (Path(data) / "ntuple.json").exists():
        from coffea_hepfm.training.ntuples import load_ntuple_tables

        tables, names, nt_spec, _ = load_ntuple_tables(
            data, signal=loaded.class_names[0] if processes is None else processes[0]
        )
        spec.check_compatible(nt_spec)
        from coffea_hepfm.training.table import GraphTable

        train = tables["train"]
        held = [t for t in (tables["val"], tables["test"]) if t is not None]
        heldout = GraphTable.concatenate(held)
        class_names, folds, what = list(names), {}, "ntuples"
        used = list(names)
    else:
        from coffea_hepfm.graph import GraphSpec
        from coffea_hepfm.training.dataset import read_meta

        data_spec = read_meta(data).get("graph_spec")
        if data_spec is not None:  # the features must be the model's (GraphSpecMismatch names the fields)
            spec.check_compatible(GraphSpec.from_dict(data_spec))
        procs, stage = (list(processes), "finetune") if processes else _model_processes(loaded.meta)
        train, heldout, folds = _dataset_tables(data, procs, stage, max_events, heldout_fraction, seed, fold)
        # the model's own classes (signal first) keep its output names; other processes keep theirs
        own = processes is None and stage == "finetune" and len(loaded.class_names) == len(procs)
        class_names, what = (list(loaded.class_names) if own else procs), "dataset"
        used = procs
    source = {
        "what": f"re-save: events of the model's training processes from a {what} directory",
        "data": os.fspath(data),
        "processes": used,
        "folds": folds,
    }
    reference = table_reference(loaded.module, spec, train, heldout, class_names, source)
    command = shlex.join(
        ["coffea-hepfm", "reference", os.fspath(model), "--data", os.fspath(data), "--out", os.fspath(out)]
        + ["--seed", str(seed)]
        + (["--processes", ",".join(processes)] if processes else [])
        + (["--fold", fold] if fold else [])
        + (["--max-events", str(max_events)] if max_events else [])
    )
    # Recorded like every re-save (coffea_hepfm.model.resave): one more "resaves" entry; only the
    # reference is new, the weights and everything training recorded are kept.
    meta = {k: v for k, v in loaded.meta.items() if k not in _REWRITTEN}
    meta["reference"] = reference
    entry = {
        "at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "from": os.fspath(model),
        "from_sha256": loaded.sha256 or sha256_file(src),
        "from_format_version": loaded.meta["format_version"],
        "reason": "add reference distributions and the OOD calibration (weights unchanged)",
        "changed": ["reference"],
        "command": command,
        "data": os.fspath(data),
        "note": "the reference is built from the data given, not necessarily the original training events",
        "coffea_hepfm_version": __version__,
    }
    meta["resaves"] = [*meta.get("resaves", []), entry]
    return save_model(out, loaded.module, loaded.graph_spec, meta)
