"""The learning-curve study: pretrained + fine-tuned vs from scratch, over training sizes and seeds.

Every run is appended to a JSON results file as soon as it finishes, so a study can be stopped and resumed
(runs already in the file are skipped). The summary gives, per task and training size, the mean and
standard deviation of the test AUC over seeds, and the wall-clock training time the fine-tuned model
needs to reach the scratch model's final validation AUC.

Examples
--------
>>> run_study("data/train", "runs/backbone.safetensors", "runs/study", sizes=(100, 1000), seeds=(0, 1, 2))
... # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from coffea_hepfm.training.figures import save_figure
from coffea_hepfm.training.loop import train_seconds_to_reach
from coffea_hepfm.training.tasks import TASKS

RESULTS = "study.json"
INITS = ("pretrained", "scratch")


def _key(run: dict) -> tuple:
    return (run["task"], run["train_size"], run["seed"], run["init"])


def _load(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {"runs": []}


def _write(path: Path, results: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(results, indent=1))
    os.replace(tmp, path)


def run_study(
    data_dir,
    pretrained,
    out_dir,
    tasks: Sequence[str] = tuple(TASKS),
    sizes: Sequence[int] = (100, 1000, 10000),
    seeds: Sequence[int] = (0, 1, 2),
    budgets: dict[int, float] | None = None,
    strategy: str = "full",
    save_models: bool = True,
    inits: Sequence[str] = INITS,
    progress: bool = True,
    log=print,
) -> dict:
    """Fine-tune ``pretrained`` and train scratch baselines for every (task, size, seed); write JSON + PNGs.

    Parameters
    ----------
    budgets
        ``{train_size: seconds}`` wall-clock training budget per run (default: unlimited; early stopping
        still applies).
    save_models
        Save the first seed's model of every (task, size, init) under ``out_dir/models/`` (for CKA, and
        to ship with ``coffea-hepfm ship``). Each file records the study command that made it
        (``reproduce``) and its run (``study``: out, task, train_size, seed, init).
    inits
        ``("pretrained", "scratch")`` by default; ``("pretrained",)`` compares another backbone only.

    Returns
    -------
    dict
        ``{"config": ..., "runs": [...], "summary": {...}}`` as written to ``out_dir/study.json``.
    """
    from coffea_hepfm.training.finetune import finetune
    from coffea_hepfm.training.modelfile import file_sha256

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / RESULTS
    results = _load(path)
    results["config"] = {
        "data": os.fspath(data_dir),
        "pretrained": os.fspath(pretrained),
        "pretrained_sha256": file_sha256(pretrained),
        "tasks": list(tasks),
        "sizes": list(sizes),
        "seeds": list(seeds),
        "budgets_s": {str(k): v for k, v in (budgets or {}).items()},
        "strategy": strategy,
        "inits": list(inits),
        "torch_threads": __import__("torch").get_num_threads(),
    }
    done = {_key(r) for r in results["runs"]}
    command = study_command(data_dir, pretrained, out_dir, tasks, sizes, seeds, budgets, strategy, inits)
    for size in sizes:
        for task in tasks:
            for seed in seeds:
                for init in inits:
                    key = (task, size, seed, init)
                    if key in done:
                        continue
                    model_out = out_dir / "models" / f"{task}_{size}_{init}_s{seed}.safetensors"
                    t0 = time.perf_counter()
                    info = finetune(
                        data_dir,
                        task,
                        size,
                        pretrained=pretrained if init == "pretrained" else None,
                        strategy=strategy if init == "pretrained" else "full",
                        out=model_out if (save_models and seed == seeds[0]) else None,
                        seed=seed,
                        time_budget_s=(budgets or {}).get(size, math.inf),
                        progress=progress,
                        route={
                            "reproduce": command,
                            "study": {
                                "out": os.fspath(out_dir),
                                "task": task,
                                "train_size": size,
                                "seed": seed,
                                "init": init,
                            },
                        },
                    )
                    run = {
                        "task": task,
                        "train_size": size,
                        "seed": seed,
                        "init": init,
                        "metrics": info["metrics"],
                        "training": info["training"],
                        "wall_s": round(time.perf_counter() - t0, 2),
                    }
                    results["runs"].append(run)
                    results["summary"] = summarize(results["runs"])
                    _write(path, results)
                    log(
                        f"{task} N={size} seed={seed} {init}: test AUC {info['metrics']['auc']:.4f} "
                        f"({info['training']['train_time_s']:.1f} s training, {info['training']['stopped']})"
                    )
    results["summary"] = summarize(results["runs"])
    _write(path, results)
    plot_learning_curves(results, out_dir / "learning_curves.png")
    plot_time_to_target(results, out_dir / "time_to_target.png")
    return results


def study_command(data_dir, pretrained, out_dir, tasks, sizes, seeds, budgets, strategy, inits) -> str:
    """The ``coffea-hepfm study`` command line of these parameters (with this process's torch threads)."""
    import torch

    from coffea_hepfm.training.modelfile import cli_command

    budget = ",".join(f"{k}:{v:g}" for k, v in (budgets or {}).items() if math.isfinite(v)) or None
    return cli_command(
        "coffea-hepfm study",
        [
            ("--data", data_dir),
            ("--from", pretrained),
            ("--out", out_dir),
            ("--tasks", ",".join(tasks)),
            ("--sizes", ",".join(map(str, sizes))),
            ("--seeds", ",".join(map(str, seeds))),
            ("--budgets", budget),
            ("--strategy", strategy),
            ("--inits", ",".join(inits)),
            ("--threads", torch.get_num_threads()),
        ],
    )


def merge_results(dirs: Sequence[str | os.PathLike], out_dir: str | os.PathLike) -> dict:
    """Merge the runs of several study directories (e.g. studies run in parallel processes) into
    ``out_dir/study.json`` and redraw the plots. A run present in several inputs is kept once (first)."""
    merged: dict = {"runs": [], "config": {"merged_from": [os.fspath(d) for d in dirs]}}
    seen = set()
    for d in dirs:
        part = _load(Path(d) / RESULTS)
        merged["config"].setdefault("parts", []).append(part.get("config", {}))
        for run in part["runs"]:
            if _key(run) not in seen:
                seen.add(_key(run))
                merged["runs"].append(run)
    merged["summary"] = summarize(merged["runs"])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _write(out_dir / RESULTS, merged)
    plot_learning_curves(merged, out_dir / "learning_curves.png")
    plot_time_to_target(merged, out_dir / "time_to_target.png")
    return merged


def summarize(runs: list[dict]) -> dict:
    """Per task and size: AUC mean/std per init, and time for the fine-tuned model to reach the scratch
    model's final validation AUC (paired by seed)."""
    by = {}
    for r in runs:
        by.setdefault((r["task"], r["train_size"]), {}).setdefault(r["init"], {})[r["seed"]] = r
    summary: dict = {}
    for (task, size), inits in sorted(by.items()):
        entry = {}
        for init, seeds in inits.items():
            aucs = np.array([s["metrics"]["auc"] for s in seeds.values()])
            times = np.array([s["training"]["train_time_s"] for s in seeds.values()])
            entry[init] = {
                "auc_mean": float(aucs.mean()),
                "auc_std": float(aucs.std(ddof=1)) if len(aucs) > 1 else 0.0,
                "n_seeds": len(aucs),
                "rejection_at_50_mean": float(
                    np.mean([s["metrics"]["rejection_at_50"] for s in seeds.values()])
                ),
                "train_time_s_mean": float(times.mean()),
            }
        pre, scr = inits.get("pretrained", {}), inits.get("scratch", {})
        paired = sorted(set(pre) & set(scr))
        reach_ft, reach_scr = [], []
        for seed in paired:
            target = scr[seed]["training"]["best_score"]
            t_ft = train_seconds_to_reach(pre[seed]["training"]["history"], target)
            reach_ft.append(np.nan if t_ft is None else t_ft)
            reach_scr.append(train_seconds_to_reach(scr[seed]["training"]["history"], target))
        if paired:
            reached = [t for t in reach_ft if not np.isnan(t)]
            entry["time_to_scratch_auc"] = {
                "finetuned_s_mean": float(np.mean(reached)) if reached else None,
                "finetuned_reached": f"{len(reached)}/{len(paired)}",
                "scratch_s_mean": float(np.mean(reach_scr)),
            }
        summary.setdefault(task, {})[str(size)] = entry
    return summary


def plot_learning_curves(results: dict, path) -> Path | None:
    """Test AUC vs training size (mean +- std over seeds), pretrained vs scratch, one panel per task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = results.get("summary", {})
    if not summary:
        return None
    tasks = list(summary)
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.8), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        for init, color in (("pretrained", "tab:blue"), ("scratch", "tab:orange")):
            pts = sorted((int(n), e[init]) for n, e in summary[task].items() if init in e)
            if not pts:
                continue
            n = np.array([p[0] for p in pts])
            m = np.array([p[1]["auc_mean"] for p in pts])
            s = np.array([p[1]["auc_std"] for p in pts])
            label = "pretrained + fine-tuned" if init == "pretrained" else "from scratch"
            ax.plot(n, m, "o-", color=color, label=label)
            ax.fill_between(n, m - s, m + s, color=color, alpha=0.25)
        ax.set_xscale("log")
        ax.set_xlabel("training events")
        ax.set_title(task, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test AUC")
    axes[0][0].legend(fontsize=8)
    return save_figure(fig, path)


def plot_time_to_target(results: dict, path) -> Path | None:
    """Training seconds to reach the scratch model's final validation AUC, per task and size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [
        (f"{task}\nN={n}", e["time_to_scratch_auc"])
        for task, sizes in results.get("summary", {}).items()
        for n, e in sorted(sizes.items(), key=lambda kv: int(kv[0]))
        if "time_to_scratch_auc" in e
    ]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(rows)), 4))
    x = np.arange(len(rows))
    ft = [r[1]["finetuned_s_mean"] or np.nan for r in rows]
    sc = [r[1]["scratch_s_mean"] for r in rows]
    ax.bar(x - 0.2, ft, 0.4, label="pretrained + fine-tuned")
    ax.bar(x + 0.2, sc, 0.4, label="from scratch")
    ax.set_xticks(x, [r[0] for r in rows], fontsize=6, rotation=90)
    ax.set_ylabel("training s to reach scratch AUC")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def markdown_table(summary: dict) -> str:
    """The learning-curve table of ``summary`` as Markdown (AUC mean +- std, time to scratch AUC)."""
    lines = [
        "| task | N train | scratch AUC | pretrained+FT AUC | delta | FT s to scratch AUC | scratch s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for task, sizes in summary.items():
        for n, e in sorted(sizes.items(), key=lambda kv: int(kv[0])):
            if "pretrained" not in e or "scratch" not in e:
                continue
            p, s = e["pretrained"], e["scratch"]
            t = e.get("time_to_scratch_auc", {})
            ft = t.get("finetuned_s_mean")
            lines.append(
                f"| {task} | {n} | {s['auc_mean']:.4f} ± {s['auc_std']:.4f} | {p['auc_mean']:.4f} ± "
                f"{p['auc_std']:.4f} | {p['auc_mean'] - s['auc_mean']:+.4f} | "
                f"{'-' if ft is None else f'{ft:.1f}'} ({t.get('finetuned_reached', '')}) | "
                f"{t.get('scratch_s_mean', float('nan')):.1f} |"
            )
    return "\n".join(lines)
