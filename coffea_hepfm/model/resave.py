"""Re-saving a model file (e.g. shipping a study's model under its task's name) with exact provenance.

A re-save keeps the weights and everything the training code recorded (``created``, ``recipe``, ``data``,
``metrics``, ``training``, ``reproduce``, the versions it was trained with) and appends one entry to
``"resaves"``::

    {"at": "<UTC time of the re-save>", "from": "<source path as given>", "from_sha256": "<sha256 of the
     source file>", "from_format_version": 1|2, "reason": "...", "changed": ["description", ...],
     "command": "coffea-hepfm ship SRC DST --reason ...", "coffea_hepfm_version": "..."}

Only free text may change (``description``, ``intended_use``, ``limitations``): a re-save cannot rewrite
what training measured. The model card's "Reproduce" section lists the training command and then every
re-save command, which together are the route that made the file.

Examples
--------
>>> resave_model("runs/study/models/tth_vs_ttbar_10000_pretrained_s0.safetensors",
...              "coffea_hepfm/models/tth_vs_ttbar.safetensors",
...              reason="seed-0 N=10000 model of the study, shipped under the task's name")  # doctest: +SKIP
"""

from __future__ import annotations

import datetime
import os
import shlex
from pathlib import Path

from coffea_hepfm.model.checks import ModelFileError
from coffea_hepfm.model.integrity import INTEGRITY_KEY

__all__ = ["TEXT_FIELDS", "resave_model", "ship_command"]

#: metadata a re-save may replace
TEXT_FIELDS = ("description", "intended_use", "limitations")
#: written afresh by save_model
_REWRITTEN = ("format", "format_version", "graph_spec", "model_config", "head", INTEGRITY_KEY)


def ship_command(src, dst, reason: str, **text: str | None) -> str:
    """The ``coffea-hepfm ship`` command line equivalent to :func:`resave_model` with these arguments."""
    args = ["coffea-hepfm", "ship", os.fspath(src), os.fspath(dst), "--reason", reason]
    for key in TEXT_FIELDS:
        if text.get(key) is not None:
            args += [f"--{key.replace('_', '-')}", str(text[key])]
    return shlex.join(args)


def resave_model(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    reason: str,
    *,
    description: str | None = None,
    intended_use: str | None = None,
    limitations: str | None = None,
    command: str | None = None,
) -> Path:
    """Write the model file ``src`` as ``dst`` (+ sidecar and card), recording the re-save.

    Parameters
    ----------
    src
        A model file (or shipped model name); loaded with every check of ``load_model``.
    dst
        The ``.safetensors`` file to write (may be ``src`` itself).
    reason
        Why the file is re-saved (required, stored and shown in the card).
    description, intended_use, limitations
        Replace the card's free text; listed in the entry's ``changed``.
    command
        The command that ran this re-save, as recorded; default: the equivalent ``coffea-hepfm ship``.

    Returns
    -------
    Path
        ``dst``.

    Raises
    ------
    ModelFileError
        An empty ``reason``, or any error of ``load_model`` on ``src`` (``ChecksumMismatch``...).
    """
    from coffea_hepfm import __version__
    from coffea_hepfm.model.io import load_model, save_model

    if not str(reason).strip():
        raise ModelFileError("a re-save needs a reason (what the copy is for)")
    loaded = load_model(src)
    meta = {k: v for k, v in loaded.meta.items() if k not in _REWRITTEN}
    text = {"description": description, "intended_use": intended_use, "limitations": limitations}
    changed = []
    for key, value in text.items():
        if value is not None and meta.get(key) != value:
            meta[key] = value
            changed.append(key)
    entry = {
        "at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "from": os.fspath(src),
        "from_sha256": loaded.sha256,
        "from_format_version": loaded.meta["format_version"],
        "reason": str(reason),
        "changed": changed,
        "command": command or ship_command(src, dst, reason, **text),
        "coffea_hepfm_version": __version__,
    }
    if loaded.meta["format_version"] < 2:
        entry["note"] = (
            "the source predates exact provenance: its 'created' may be the time it was saved, not the time "
            "training finished, and its 'reproduce' text was not necessarily the route that made it"
        )
    meta["resaves"] = [*meta.get("resaves", []), entry]
    return save_model(dst, loaded.module, loaded.graph_spec, meta)
