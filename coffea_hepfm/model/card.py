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


def render_card(meta: dict, name: str, sha256: str, n_parameters: int) -> str:
    """Markdown model card for the model file ``name`` from its ``"hepfm"`` metadata.

    Free-text overrides in ``meta``: ``"description"``, ``"intended_use"``, ``"limitations"``,
    ``"reproduce"`` (the command that rebuilds the model). Missing sections say "(not recorded)".
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
        f"| created | {meta.get('created', '(not recorded)')} with coffea-hepfm {meta.get('coffea_hepfm_version')} |",
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
        "## Reproduce",
        "",
        f"```\n{meta['reproduce']}\n```" if meta.get("reproduce") else "(not recorded)",
        "",
        "## Load",
        "",
        "```python",
        "from coffea_hepfm.model.io import load_model",
        f'loaded = load_model("{name}")  # checks format, sha256 and graph spec; never unpickles',
        "```",
        "",
        "## Graph spec",
        "",
        f"```json\n{json.dumps(spec, indent=2, sort_keys=True)}\n```",
        "",
    ]
    return "\n".join(lines)
