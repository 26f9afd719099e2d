"""Model cards: a Markdown page generated from a model file's metadata (``NAME.md`` next to the weights)."""

from __future__ import annotations

import json

__all__ = ["render_card"]

_INTENDED = {
    "classifier": "Binary (or few-class) event classification for a physics analysis, fine-tuned from the "
    "pretrained backbone. Use it through `coffea_hepfm.HEPFMScore` on NanoAOD events.",
    "multiclass": "Pretrained backbone (multiclass over simulated processes). Use it as the starting point "
    "for fine-tuning (`coffea-hepfm finetune --from ...`) or for its event embedding.",
    "multilabel": "Pretrained backbone (multilabel truth content). Use it as the starting point for "
    "fine-tuning (`coffea-hepfm finetune --from ...`) or for its event embedding.",
    "projection": "Self-supervised (contrastive) backbone. Its outputs are not class scores; use the "
    "embedding or fine-tune it (`coffea-hepfm finetune --from ...`).",
}

_LIMITATIONS = (
    "Trained on this project's Pythia8 simulation with a simplified detector response written as NanoAOD; "
    "it has not been validated on real collision data, and scores are not calibrated probabilities for "
    "real-data class fractions. Inputs must be built with exactly the graph spec below (checked at load "
    "time). Objects beyond the spec's capped counts are dropped."
)


def _value(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (dict, list)):
        return "`" + json.dumps(v, sort_keys=True) + "`"
    return str(v)


def _table(d: dict) -> list[str]:
    if not d:
        return ["(not recorded)"]
    lines = ["| key | value |", "|---|---|"]
    lines += [f"| {k} | {_value(v)} |" for k, v in d.items()]
    return lines


def _provenance(meta: dict) -> list[str]:
    """The "Provenance" table: when training finished, how it was trained, every re-save, the hashes."""
    integrity = meta.get("integrity") or {}
    finished = (meta.get("training") or {}).get("finished_at")
    when = "when training finished" if finished and finished == meta.get("created") else "when first saved"
    lines = [
        "| | |",
        "|---|---|",
        f"| created | {meta.get('created', '(not recorded)')} ({when}) |",
        f"| trained with | coffea-hepfm {meta.get('coffea_hepfm_version')}, torch {meta.get('torch_version')} |",
    ]
    study = meta.get("study")
    if study:
        lines.append(f"| study run | {_value(study)} |")
    for r in meta.get("resaves", []) or []:
        changed = (
            f"; changed: {', '.join(r['changed'])}"
            if r.get("changed")
            else "; weights and measurements unchanged"
        )
        lines.append(
            f"| re-saved | {r.get('at')}: from `{r.get('from')}` (sha256 `{r.get('from_sha256')}`): "
            f"{r.get('reason')}{changed} |"
        )
        if r.get("note"):
            lines.append(f"| note | {r['note']} |")
    if integrity:
        lines.append(
            f"| integrity | sha256 of the weights `{integrity.get('weights_sha256')}` and of the metadata "
            f"`{integrity.get('metadata_sha256')}` stored in the file, checked at every load |"
        )
    return lines


def _reproduce(meta: dict) -> str:
    """The route that made the file: the training command, then every re-save command."""
    steps = [meta["reproduce"]] if meta.get("reproduce") else []
    steps += [r["command"] for r in meta.get("resaves", []) or [] if r.get("command")]
    if not steps:
        return "(not recorded)"
    data = (meta.get("data") or {}).get("dataset")
    note = f"Training set: `{data}` (a `coffea-hepfm dataset` directory).\n\n" if data else ""
    return note + "```\n" + "\n".join(steps) + "\n```"


def render_card(meta: dict, name: str, sha256: str, n_parameters: int) -> str:
    """Markdown model card for the model file ``name`` from its ``"hepfm"`` metadata.

    Free-text overrides in ``meta``: ``"description"``, ``"intended_use"``, ``"limitations"``.
    ``"reproduce"`` (the training command, recorded by the training code) and the commands of
    ``"resaves"`` make the "Reproduce" section. Missing sections say "(not recorded)".
    """
    cfg = meta.get("model_config", {})
    spec = meta.get("graph_spec", {})
    kind = meta.get("head", cfg.get("head", "?"))
    data = meta.get("data", {}) or {}
    size = data.get("n_train", data.get("n_events", data.get("size")))
    lines = [
        f"# Model card: {name}",
        "",
        meta.get(
            "description", f"coffea-hepfm graph-network model, `{kind}` head, task `{meta.get('task')}`."
        ),
        "",
        "| | |",
        "|---|---|",
        f"| file | `{name}.safetensors` (sha256 `{sha256}`) |",
        f"| task | {meta.get('task')} |",
        f"| head | {kind} ({cfg.get('n_outputs')} outputs) |",
        f"| classes | {', '.join(map(str, meta.get('class_names', []))) or '(none)'} |",
        f"| graph spec | {spec.get('name')} v{spec.get('version')} |",
        f"| architecture | HEPFMNet hidden={cfg.get('hidden')}, n_proc_steps={cfg.get('n_proc_steps')}, "
        f"aggr={cfg.get('aggr')}; {n_parameters:,} parameters |",
        f"| training events | {size if size is not None else '(not recorded)'} |",
        "",
        "## Intended use",
        "",
        meta.get("intended_use", _INTENDED.get(kind, "(not recorded)")),
        "",
        "## Training data",
        "",
        *_table(data),
        "",
        "## Training recipe",
        "",
        *_table(meta.get("recipe", {}) or {}),
        "",
        "## Metrics",
        "",
        *_table(meta.get("metrics", {}) or {}),
        "",
        "## Limitations",
        "",
        meta.get("limitations", _LIMITATIONS),
        "",
        "## Provenance",
        "",
        *_provenance(meta),
        "",
        "## Reproduce",
        "",
        _reproduce(meta),
        "",
        "## Load",
        "",
        "```python",
        "from coffea_hepfm.model.io import load_model",
        f'loaded = load_model("{name}")  # checks format, stored hashes and graph spec; never unpickles',
        "```",
        "",
        "## Graph spec",
        "",
        f"```json\n{json.dumps(spec, indent=2, sort_keys=True)}\n```",
        "",
    ]
    return "\n".join(lines)
