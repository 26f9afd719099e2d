"""Commands of the model stage: ``coffea-hepfm bench model`` and ``coffea-hepfm model-info``."""

from __future__ import annotations

import os
from pathlib import Path

import typer

BACKENDS = ("eager", "fused", "script", "onnx", "compile")


def _default_nanoaod() -> Path:
    root = Path(__file__).resolve().parents[2]
    return Path(os.environ.get("HEPFM_SHARED", root.parent / "shared")) / "data" / "nanoaod"


def _onnx_runner(module, threads: int, tmp: Path):
    import onnxruntime as ort

    from coffea_hepfm.model.export import INPUT_NAMES, export_onnx

    path = export_onnx(module, tmp / "model.onnx")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def run(*inputs):
        return session.run(None, {k: v.numpy() for k, v in zip(INPUT_NAMES, inputs, strict=True)})

    return run


def register(app: typer.Typer, bench: typer.Typer) -> None:
    @bench.command("model")
    def bench_model(
        events: int = typer.Option(50_000, help="Events to run over (real graphs are replicated to this)."),
        batch_size: list[int] = typer.Option(
            [256, 1024, 4096], "--batch-size", "-b", help="Events per forward."
        ),
        threads: int = typer.Option(1, help="torch / onnxruntime threads (1 = per-core numbers)."),
        source: str = typer.Option("auto", help="auto | nanoaod | random (random: 5-15 nodes per event)."),
        nanoaod: Path = typer.Option(None, help="Folder of NanoAOD files (default ../shared/data/nanoaod)."),
        model: str = typer.Option(None, help="Model file or shipped name; default: untrained default net."),
        backend: list[str] = typer.Option(
            ["eager", "fused"],
            "--backend",
            help="eager | fused (the local scoring path) | script | onnx | compile (torch.compile).",
        ),
        seconds: float = typer.Option(3.0, help="Minimum timed CPU seconds per configuration."),
        json_path: Path = typer.Option(
            None, "--json", help="Also write the figures (and machine, command) here."
        ),
    ) -> None:
        """CPU inference events/CPU-s and the fraction of the measured matmul FLOP/s the model reaches."""
        import tempfile
        import warnings

        import torch
        from rich.console import Console
        from rich.table import Table

        from coffea_hepfm.benchjson import machine_info, write_json
        from coffea_hepfm.model import bench as B
        from coffea_hepfm.model.fused import FusedScoringModule
        from coffea_hepfm.model.heads import ClassifierHead, HEPFMClassifier, ScoringModule
        from coffea_hepfm.model.io import load_model
        from coffea_hepfm.model.network import HEPFMNet

        start = machine_info()
        console = Console()
        bad = sorted(set(backend) - set(BACKENDS))
        if bad or source not in ("auto", "nanoaod", "random"):
            raise typer.BadParameter(
                f"backend must be in {BACKENDS}, source in auto|nanoaod|random (got {bad or source})"
            )
        torch.set_num_threads(threads)
        from coffea_hepfm.graph import GraphSpec

        if model:
            loaded = load_model(model)
            clf, spec = loaded.module, loaded.spec
        else:
            spec = GraphSpec()
            torch.manual_seed(0)
            clf = HEPFMClassifier(HEPFMNet.from_spec(spec), ClassifierHead(2)).eval()
        scoring = ScoringModule(clf).eval()
        cfg = clf.backbone.get_config()
        files = sorted((nanoaod or _default_nanoaod()).glob("*.root"))
        if source == "nanoaod" and not files:
            raise typer.BadParameter(f"no NanoAOD files in {nanoaod or _default_nanoaod()}")
        with console.status("building graphs"):
            if source != "random" and files:
                graphs, info = B.nanoaod_graphs(files, events, spec)
                what = f"real NanoAOD graphs ({info['source_events']} events from {len(info['files'])} files, replicated)"
            else:
                graphs = B.random_graphs(events, cfg["n_node"], cfg["n_edge"], cfg["n_global"])
                what = "random graphs, 5-15 nodes per event"
        summary = B.node_count_summary(graphs)
        with console.status("measuring matmul peak"):
            peaks = [B.matmul_gflops()]
        head = [(m.in_features, m.out_features) for m in clf.head.modules() if isinstance(m, torch.nn.Linear)]
        flops = B.model_flops(cfg, graphs[0].size(0), graphs[1].size(1), graphs[3].size(0), head)
        per_event = flops["total"] / graphs[3].size(0)

        rows = []
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            # "script" measures TorchScript for comparison only; torch 2.13 deprecates it (expected here).
            warnings.filterwarnings("ignore", r"`torch\.jit\.\w+` is deprecated", DeprecationWarning)
            for bs in batch_size:
                batches = list(B.iter_batches(graphs, bs))
                for name in backend:
                    with console.status(f"{name}, batch {bs}"):
                        if name == "eager":
                            fn = scoring
                        elif name == "fused":
                            fn = FusedScoringModule(scoring)
                        elif name == "script":
                            fn = torch.jit.freeze(torch.jit.script(scoring))
                        elif name == "compile":  # Inductor; the first call compiles (not timed)
                            fn = torch.compile(scoring, dynamic=True)
                        else:
                            fn = _onnx_runner(scoring, threads, Path(tmp))
                        cpu, n = B.time_model(fn, batches, seconds)
                    rows.append({"backend": name, "batch": bs, "ev_per_cpu_s": n / cpu})
                    peaks.append(B.matmul_gflops())
        # Peak measured before and after each configuration (the best counts): the load changes.
        peak = max(peaks)
        table = Table(
            title=f"HEPFMNet CPU inference, {threads} thread(s), hidden={cfg['hidden']}, steps={cfg['n_proc_steps']}"
        )
        for col in ("backend", "batch", "events/CPU-s", "us/event", "GFLOP/s", "% of matmul peak"):
            table.add_column(col, justify="right")
        for row in rows:
            row["gflops"] = per_event * row["ev_per_cpu_s"] / 1e9
            row["fraction_of_matmul_peak"] = row["gflops"] / peak
            table.add_row(
                row["backend"],
                str(row["batch"]),
                f"{row['ev_per_cpu_s']:,.0f}",
                f"{1e6 / row['ev_per_cpu_s']:.0f}",
                f"{row['gflops']:.1f}",
                f"{100 * row['fraction_of_matmul_peak']:.1f}",
            )
        console.print(
            f"graphs: {what}; mean {summary['mean_nodes']:.1f} nodes, {summary['mean_edges']:.1f} edges per event"
        )
        console.print(f"matmul peak (float32 1024x1024, {threads} thread(s), CPU time): {peak:.1f} GFLOP/s")
        console.print(
            f"model: {per_event / 1e6:.2f} MFLOP/event (Linear layers, 2*in*out per row); the "
            f"concatenation form would need {flops['total_concat'] / flops['total']:.2f}x that"
        )
        console.print(table)
        if json_path is not None:
            figures = {
                "model": model or "untrained default network",
                "graphs": what,
                "threads": threads,
                "node_counts": summary,
                "mflop_per_event": per_event / 1e6,
                "matmul_peak_gflops": peak,
                "matmul_gflops_samples": peaks,
                "rows": rows,
                "best": max(rows, key=lambda r: r["ev_per_cpu_s"]) if rows else None,
            }
            console.print(f"wrote {write_json(json_path, 'model', figures, start)}")

    @app.command("model-info")
    def model_info(model: str = typer.Argument(..., help="Model file or shipped model name.")) -> None:
        """Print a model file's metadata, checked (format, stored hashes or sidecar sha256, graph spec),
        without running it; "integrity_check" says what was verified."""
        import json

        from coffea_hepfm.model.io import load_model

        try:
            loaded = load_model(model)
        except (ValueError, LookupError, FileNotFoundError) as err:  # model-file, spec and name errors
            _fail(err)
        meta = {k: v for k, v in loaded.meta.items() if k != "graph_spec"}
        info = {
            "path": str(loaded.path),
            "sha256": loaded.sha256,
            "integrity_check": loaded.integrity_statement,
        }
        typer.echo(json.dumps({**info, **meta}, indent=2))  # plain JSON: never wrapped, pipes into jq

    @app.command("ship")
    def ship(
        src: str = typer.Argument(
            ..., help="Model file to ship, e.g. runs/study/models/TASK_10000_pretrained_s0.safetensors."
        ),
        dst: str = typer.Argument(
            ...,
            help="Shipped model name (writes coffea_hepfm/models/NAME.safetensors) or a .safetensors path.",
        ),
        reason: str = typer.Option(..., "--reason", help="Why this file is shipped / re-saved (recorded)."),
        description: str = typer.Option(None, "--description", help="Replace the card's description."),
        intended_use: str = typer.Option(None, "--intended-use", help="Replace the card's intended use."),
        limitations: str = typer.Option(None, "--limitations", help="Replace the card's limitations."),
    ) -> None:
        """Re-save a model file under a new name (weights and training record unchanged), recording the
        re-save: when, from which file (sha256), why, and this command."""
        from coffea_hepfm import models
        from coffea_hepfm.model.resave import resave_model, ship_command

        target = Path(dst)
        if target.suffix != ".safetensors" and target.parent == Path("."):
            target = models.MODELS_DIR / f"{dst}{models.SUFFIX}"
        text = {"description": description, "intended_use": intended_use, "limitations": limitations}
        try:
            out = resave_model(src, target, reason, command=ship_command(src, dst, reason, **text), **text)
        except (ValueError, LookupError, OSError) as err:
            _fail(err)
        typer.echo(f"wrote {out} (+ .json, .md) from {src}")


def _fail(err: Exception) -> None:
    """One ``error:`` line on stderr (no traceback), exit status 2 like every other command."""
    message = " ".join(str(err).split())
    typer.echo(f"error: {type(err).__name__}: {message}", err=True)
    raise typer.Exit(2) from None
