"""Saving trained models through the model stage's file format, with the training record attached."""

from __future__ import annotations

import os
from pathlib import Path

#: the simulation and dataset commands behind the shipped models (``{command}``: the training step)
SIMULATE = (
    "coffea-hepfm simulate ggf_h vbf_h wh zh tth single_top tw ttbar zjets wjets diboson qcd gammajets "
    "tth_aa tta_aa zprime_tt hplus_tb --events 30000 --seed 1 --workers 1 --chunk-size 2000 --out data/sim"
)
REPRODUCE = SIMULATE + "\ncoffea-hepfm dataset data/sim data/train\n{command}"


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
    reference: dict | None = None,
) -> Path:
    """Write ``out`` (``.safetensors`` + ``.json`` + ``.md``) with :func:`coffea_hepfm.model.save_model`.

    ``training`` (the loop record: steps, time, validation history) is stored next to the metrics, so time
    to reach a target AUC can be read back from the model file. ``reference`` (from
    :func:`table_reference`) is stored under the header's ``"reference"`` key.
    """
    from coffea_hepfm.model import save_model

    meta = {
        "task": task,
        "class_names": list(class_names),
        "recipe": recipe,
        "data": data,
        "metrics": metrics,
    }
    if training is not None:
        meta["training"] = training
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


def ship_model(
    src: str | os.PathLike, dst: str | os.PathLike, reproduce: str | None = None, **replace
) -> Path:
    """Re-save the model file ``src`` as ``dst`` (weights, metadata, sidecar and card under the new name).

    ``replace`` overrides top-level metadata entries (e.g. ``recipe``); ``reproduce`` replaces the
    reproduction command shown in the model card.
    """
    from coffea_hepfm.model import load_model, save_model

    loaded = load_model(src)
    reserved = {"format", "format_version", "graph_spec", "model_config", "head", "created"}
    reserved |= {"coffea_hepfm_version", "torch_version", "sha256", "weights_file", "n_parameters"}
    meta = {k: v for k, v in loaded.meta.items() if k not in reserved}
    meta["class_names"] = loaded.class_names
    meta.update(replace)
    if reproduce is not None:
        meta["reproduce"] = reproduce
    return save_model(dst, loaded.module, loaded.graph_spec, meta)
