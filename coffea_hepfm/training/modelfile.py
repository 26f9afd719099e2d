"""Saving trained models through the model stage's file format, with exact provenance attached.

The training code records *when* training ran (``training.started_at`` / ``training.finished_at``, UTC)
and *how*: ``reproduce`` is the command that made the file, the ``coffea-hepfm`` command line when the
run's parameters can be given on it, else the equivalent Python call. ``created`` in the file is
``training.finished_at``: saving later (or re-saving with ``coffea-hepfm ship``) never changes it.

Examples
--------
>>> cli_command("coffea-hepfm finetune", [("--task", "tth_vs_ttbar"), ("--seed", 0)])
'coffea-hepfm finetune --task tth_vs_ttbar --seed 0'
>>> python_call("coffea_hepfm.training.finetune", "finetune", ("data/train",), {"seed": 1}, threads=1)
"import torch; torch.set_num_threads(1)\\nfrom coffea_hepfm.training.finetune import finetune\\nfinetune('data/train', seed=1)"
"""

from __future__ import annotations

import datetime
import math
import os
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def utc_now() -> str:
    """The current UTC time, ISO 8601 to the second (the format of ``created``)."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def cli_command(program: str, options: Sequence[tuple[str, Any]]) -> str:
    """``program`` followed by ``(flag, value)`` pairs, shell-quoted; ``None`` values are left out."""

    def text(v) -> str:
        return repr(v) if isinstance(v, float) else os.fspath(v) if isinstance(v, os.PathLike) else str(v)

    args = shlex.split(program)
    for flag, value in options:
        if value is not None:
            args += [flag, text(value)]
    return shlex.join(args)


def python_call(module: str, function: str, args: Sequence, kwargs: dict, threads: int | None = None) -> str:
    """The Python statements that repeat a call, for runs whose parameters the command line cannot give."""

    def text(v) -> str:
        if isinstance(v, float) and not math.isfinite(v):
            return f"float({str(v)!r})"  # repr(inf) is not Python
        return repr(os.fspath(v) if isinstance(v, os.PathLike) else v)

    parts = [text(a) for a in args] + [f"{k}={text(v)}" for k, v in kwargs.items()]
    lines = [f"import torch; torch.set_num_threads({threads})"] if threads else []
    lines += [f"from {module} import {function}", f"{function}({', '.join(parts)})"]
    return "\n".join(lines)


def file_sha256(path_or_name) -> str | None:
    """sha256 of a model file (or shipped model) that a run started from; ``None`` for no file."""
    if path_or_name is None:
        return None
    from coffea_hepfm.model.checks import sha256_file
    from coffea_hepfm.model.io import resolve_model_path

    return sha256_file(resolve_model_path(path_or_name))


def save_trained(
    out: str | os.PathLike,
    model,
    spec,
    head: str,
    task: str,
    class_names,
    recipe: dict,
    data: dict,
    metrics: dict,
    training: dict | None = None,
    reproduce: str | None = None,
    description: str | None = None,
    extra: dict | None = None,
    reference: dict | None = None,
) -> Path:
    """Write ``out`` (``.safetensors`` + ``.json`` + ``.md``) with :func:`coffea_hepfm.model.save_model`.

    ``training`` (the loop record: steps, time, validation history, ``started_at`` / ``finished_at``) is
    stored next to the metrics, so time to reach a target AUC can be read back from the model file; its
    ``finished_at`` becomes the file's ``created``. ``extra`` adds top-level metadata (e.g. ``study``).
    ``reference`` (from :func:`table_reference`) is stored under the header's ``"reference"`` key.
    """
    from coffea_hepfm.model import save_model

    meta = {
        "task": task,
        "class_names": list(class_names),
        "recipe": recipe,
        "data": data,
        "metrics": metrics,
        **(extra or {}),
    }
    if training is not None:
        meta["training"] = training
        if training.get("finished_at"):
            meta["created"] = training["finished_at"]
    if reproduce is not None:
        meta["reproduce"] = reproduce
    if description is not None:
        meta["description"] = description
    if reference is not None:
        meta["reference"] = reference
    if head != model.kind:
        raise ValueError(f"head {head!r} does not match the model's head {model.kind!r}")
    return save_model(out, model, spec, meta)


def table_reference(model, spec, train, heldout, class_names, source: dict) -> dict:
    """Reference distributions and OOD calibration of a trained model from its training tables.

    ``train`` and ``heldout`` are :class:`~coffea_hepfm.training.table.GraphTable` s of the model's own
    training data (held out: validation/test events, never trained on); ``class_names`` name their ``y``.
    See :func:`coffea_hepfm.model.reference_build.build_reference`.
    """
    from coffea_hepfm.model.reference_build import build_reference

    def flat(t):
        return (t.x, t.counts, t.u, t.y)

    return build_reference(model, spec, flat(train), flat(heldout), class_names, source)
