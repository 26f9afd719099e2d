"""End to end: simulate -> ntuples -> fine-tune -> the analysis processor scores with the new model.

The steps are the documented command lines, run as subprocesses, plus the example analysis processor
(:mod:`analysis_processor`) in Python:

1. ``coffea-hepfm simulate SIG BKG`` twice: a training sample and, with another seed, a held-out sample
   that no training step sees;
2. ``coffea-hepfm ntuples OUT/fileset.json`` (fileset from :func:`coffea_hepfm.processors.simulated_fileset`,
   one class per process, Pythia's cross sections, saved by :func:`~coffea_hepfm.processors.write_fileset`
   with paths relative to the JSON's folder);
3. ``coffea-hepfm finetune --ntuples OUT/ntuples --from BACKBONE`` (the shipped pretrained backbone when
   this installation has it, else ``none``: from scratch);
4. ``ScoreHistProcessor`` (coffea ``Runner``, eager) with the fine-tuned model on the held-out sample:
   score histograms (``OUT/histograms.root``) and their plot (``OUT/score.png``); the per-event scores of
   the same processor give the held-out ROC curve and AUC (``OUT/heldout_roc.png``, ``OUT/summary.json``).

Usage::

    python examples/end_to_end.py --out runs/e2e --events 2000
    python examples/end_to_end.py --out runs/e2e_zp --events 300 --signal zprime_tt --background ttbar \\
        --example-corrections --time-budget 20

``--example-corrections`` weights the ntuples with the small example correctionlib files shipped in the
package (invented numbers, see :mod:`coffea_hepfm.processors.example_corrections`); ``--corrections DIR``
takes your own (CMS ``puWeights_2018_UL.json`` and ``muon_Z_2018_UL.json.gz``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

BACKBONE = "backbone"  # the shipped pretrained model, coffea_hepfm/models/backbone.safetensors


def default_pretrained() -> str:
    """The shipped backbone's name if this installation has it, else ``"none"`` (train from scratch)."""
    from coffea_hepfm import models

    return BACKBONE if BACKBONE in models.available() else "none"


def cli_prefix() -> list[str]:
    """``coffea-hepfm`` of this interpreter's environment (``python -m coffea_hepfm.cli`` without it)."""
    exe = Path(sys.executable).with_name("coffea-hepfm")
    found = exe if exe.is_file() else shutil.which("coffea-hepfm")
    return [os.fspath(found)] if found else [sys.executable, "-m", "coffea_hepfm.cli"]


def run_cli(args: Sequence[str], log: list[dict]) -> None:
    """Run one ``coffea-hepfm`` command; record it and its wall time in ``log``; fail loudly."""
    cmd = [*cli_prefix(), *map(str, args)]
    shown = "coffea-hepfm " + " ".join(map(str, args))
    print(f"$ {shown}", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, check=False)
    log.append({"command": shown, "wall_s": round(time.perf_counter() - t0, 2)})
    if proc.returncode != 0:
        raise RuntimeError(f"`{shown}` failed with exit code {proc.returncode}")


def heldout_scores(model: str, files: dict[str, list[Path]]) -> dict:
    """Per-event signal scores of the analysis processor (its selection and its ``HEPFMScore``).

    Returns ``{process: numpy array}``; files are read eagerly one at a time.
    """
    import awkward as ak
    import numpy as np
    from analysis_processor import ScoreHistProcessor

    from coffea_hepfm.nanoaod import open_events

    proc = ScoreHistProcessor(model)
    signal_class = proc.scorer.class_names_[0]
    out = {}
    for process, paths in files.items():
        parts = [proc.scorer(proc.select(open_events(p, mode="eager")))[signal_class] for p in paths]
        out[process] = np.concatenate([ak.to_numpy(s) for s in parts])
    return out


def write_histograms(output: dict, path: Path) -> None:
    """``{dataset: {"score": Hist}}`` -> ROOT file with one TH1 per dataset (uproot), written atomically."""
    import uproot

    tmp = path.with_name(f".{path.name}.tmp")
    with uproot.recreate(tmp) as f:
        for name, out in output.items():
            f[f"score_{name}"] = out["score"]
    os.replace(tmp, path)


def analyse_heldout(
    model: Path, heldout: dict[str, list[Path]], signal: str, out: Path, threads: int | None = None
) -> tuple[dict, dict, float]:
    """Step 4: the analysis processor with ``model`` on the held-out files.

    Writes ``histograms.root``, ``score.png`` and ``heldout_roc.png`` into ``out``; returns the processor
    output, the per-event signal scores per process and the held-out AUC (``signal`` vs the rest).
    ``threads`` sets torch's threads for the duration of the call only (default: the package's rule,
    :func:`coffea_hepfm.threads.default_threads`).
    """
    import numpy as np
    import run_analysis
    import torch
    from analysis_processor import plot_histograms
    from sklearn.metrics import roc_auc_score

    from coffea_hepfm.threads import default_threads
    from coffea_hepfm.training.evaluate import plot_roc

    before = torch.get_num_threads()
    torch.set_num_threads(threads or default_threads(before))
    try:
        output = run_analysis.run("eager", heldout, os.fspath(model), chunk_size=5000)
        scores = heldout_scores(os.fspath(model), heldout)
    finally:
        torch.set_num_threads(before)
    write_histograms(output, out / "histograms.root")
    others = ", ".join(k for k in heldout if k != signal)
    plot_histograms(output, out / "score.png", title=f"{signal} vs {others}, held-out sample", signal=signal)
    is_signal = np.concatenate([np.full(len(v), k == signal) for k, v in scores.items()])
    all_scores = np.concatenate(list(scores.values()))
    auc = float(roc_auc_score(is_signal, all_scores))
    plot_roc(
        {"fine-tuned from ntuples": (is_signal, all_scores)},
        out / "heldout_roc.png",
        f"{signal} vs {others}, held-out sample",
    )
    return output, scores, auc


def run_end_to_end(
    out: str | os.PathLike,
    events: int,
    signal: str = "tth",
    background: str = "ttbar",
    heldout_events: int | None = None,
    pretrained: str | None = None,
    seed: int = 1,
    epochs: int = 30,
    time_budget: float | None = None,
    corrections: str | os.PathLike | None = None,
    threads: int | None = None,
    example_corrections: bool = False,
) -> dict:
    """Run the whole chain into ``out``; returns (and writes to ``out/summary.json``) the summary.

    ``threads`` sets torch's CPU threads (fine-tuning and scoring); by default each step uses the
    package's rule (:mod:`coffea_hepfm.threads`: never more threads than free cores; on 2 busy cores a
    2-thread forward pass was measured 10-40x slower than a 1-thread one). ``corrections`` (a folder of
    CMS correctionlib files) or ``example_corrections`` (the package's example files) weight the ntuples.

    Raises
    ------
    RuntimeError
        A command failed (its output is on the terminal).
    ValueError
        ``signal == background``, ``events < 1``, or both kinds of corrections.
    """
    from coffea_hepfm.processors import simulated_fileset, write_fileset

    if signal == background:
        raise ValueError("signal and background must be different processes")
    if events < 1:
        raise ValueError(f"--events must be >= 1, got {events}")
    if corrections and example_corrections:
        raise ValueError("give --corrections DIR or --example-corrections, not both")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    heldout_events = heldout_events or events
    pretrained = pretrained or default_pretrained()
    procs = [signal, background]
    log: list[dict] = []

    # 1. Two independent samples: the held-out one has another master seed (other Pythia seeds).
    sim = {"train": out / "sim" / "train", "heldout": out / "sim" / "heldout"}
    for part, n, s in (("train", events, seed), ("heldout", heldout_events, seed + 1000)):
        chunk = min(n, 5000)
        run_cli(["simulate", *procs, "-n", n, "--seed", s, "-o", sim[part], "--chunk-size", chunk], log)

    # 2. Ntuples: one class per process, so the model's class names are the process names.
    fileset = out / "fileset.json"
    write_fileset(simulated_fileset(sim["train"], {p: p for p in procs}), fileset)
    ntuples = out / "ntuples"
    corr = ["--corrections", corrections] if corrections else []
    corr += ["--example-corrections"] if example_corrections else []
    if pretrained != "none":  # fine-tuning a backbone: its graph spec (version, objects) defines the ntuples
        from coffea_hepfm.model.io import read_metadata

        spec_file = out / "graph_spec.json"
        spec_file.write_text(json.dumps(read_metadata(pretrained)["graph_spec"]))
        corr += ["--spec", spec_file]
    run_cli(["ntuples", fileset, "--out", ntuples, *corr], log)

    # 3. Fine-tune on the ntuples (weighted loss, split by event ID).
    model = out / "model" / f"{signal}_vs_{background}.safetensors"
    budget = ["--time-budget", time_budget] if time_budget else []
    budget += ["--threads", threads] if threads else []
    run_cli(
        ["finetune", "--ntuples", ntuples, "--from", pretrained, "--out", model, "--signal", signal]
        + ["--epochs", epochs, *budget],
        log,
    )

    # 4. The analysis processor with the new model on the held-out sample.
    heldout = {p: sorted((sim["heldout"] / p).glob("[!.]*.root")) for p in procs}
    t0 = time.perf_counter()
    output, scores, auc = analyse_heldout(model, heldout, signal, out, threads)
    log.append(
        {"command": "analysis processor (eager) + held-out AUC", "wall_s": round(time.perf_counter() - t0, 2)}
    )

    train_metrics = json.loads(model.with_name(model.stem + "_metrics.json").read_text())["metrics"]
    summary = {
        "signal": signal,
        "background": background,
        "events_per_process": {"train": events, "heldout": heldout_events},
        "pretrained": pretrained,
        "model": os.fspath(model),
        "heldout_auc": auc,
        "heldout_events": {p: len(s) for p, s in scores.items()},
        "ntuple_test_auc": train_metrics["auc"],
        "histograms": {name: float(o["score"].sum().value) for name, o in output.items()},
        "outputs": ["histograms.root", "score.png", "heldout_roc.png"],
        "steps": log,
    }
    tmp = out / ".summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=1, default=float) + "\n")
    os.replace(tmp, out / "summary.json")
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--events", required=True, type=int, help="events per process (training sample)")
    parser.add_argument("--heldout-events", type=int, default=None, help="default: --events")
    parser.add_argument("--signal", default="tth", help="signal process (`coffea-hepfm processes`)")
    parser.add_argument("--background", default="ttbar", help="background process")
    parser.add_argument(
        "--from", dest="pretrained", default=None, help="pretrained model, or none (default: shipped)"
    )
    parser.add_argument("--seed", type=int, default=1, help="simulation seed (held-out: seed + 1000)")
    parser.add_argument("--epochs", type=int, default=30, help="maximum fine-tuning epochs")
    parser.add_argument("--time-budget", type=float, default=None, help="fine-tuning seconds cap")
    parser.add_argument("--corrections", default=None, help="your correctionlib folder for the weights")
    parser.add_argument(
        "--example-corrections",
        action="store_true",
        help="weight with the example correctionlib files shipped in the package (invented numbers)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: free cores, coffea_hepfm.threads)",
    )
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    summary = run_end_to_end(
        args.out,
        args.events,
        args.signal,
        args.background,
        args.heldout_events,
        args.pretrained,
        args.seed,
        args.epochs,
        args.time_budget,
        args.corrections,
        args.threads,
        args.example_corrections,
    )
    for step in summary["steps"]:
        print(f"{step['wall_s']:8.1f} s  {step['command']}")
    print(
        f"held-out AUC {summary['heldout_auc']:.4f} ({summary['heldout_events']}); total {time.perf_counter() - t0:.0f} s"
    )
    print(f"outputs in {args.out}: summary.json, " + ", ".join(summary["outputs"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
