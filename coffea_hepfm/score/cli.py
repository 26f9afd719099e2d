"""``coffea-hepfm score FILES... --model NAME --out scores.parquet`` and ``coffea-hepfm bench score``."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer, bench: typer.Typer) -> None:
    @app.command("score")
    def score_cmd(
        files: list[Path] = typer.Argument(
            ..., help="NanoAOD files (CMS or simulated): ROOT TTree or RNTuple, or parquet."
        ),
        model: str = typer.Option(..., "--model", "-m", help="Shipped model name or model file."),
        out: Path = typer.Option(..., "--out", "-o", help="Output parquet file."),
        workers: int = typer.Option(
            0, "--workers", "-w", min=0, help="0: in this process; N: N worker processes."
        ),
        chunk_size: int = typer.Option(100_000, "--chunk-size", "-c", help="Events read per chunk."),
        batch_size: int = typer.Option(
            None, "--batch-size", "-b", help="Events per network call (default: 1024 on CPU, 65536 on CUDA)."
        ),
        device: str = typer.Option("auto", "--device", help="auto | cpu | cuda"),
        embedding: bool = typer.Option(False, "--embedding/--no-embedding", help="Also write the embedding."),
    ) -> None:
        """Add the foundation-model score to every event: one parquet row per event, one column per class."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        from coffea_hepfm.score.files import plan_chunks, score_files
        from coffea_hepfm.score.wrapper import HEPFMScore

        # Errors (bad model, unreadable file, missing branch) end as one "error:" line and warnings are
        # summarised per kind and file: coffea_hepfm.cli_report does it for every command.
        HEPFMScore(model, device=device, batch_size=batch_size)  # bad model/options: fail before the bar
        total = sum(len(c) for c in plan_chunks(files, chunk_size))
        columns = (
            TextColumn("scoring"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("events"),
            TimeRemainingColumn(),
        )
        with Progress(*columns) as bar:
            task = bar.add_task("score", total=total)
            n = score_files(
                files,
                model,
                out,
                workers=workers,
                chunk_size=chunk_size,
                batch_size=batch_size,
                device=device,
                embedding=embedding,
                progress=lambda k: bar.advance(task, k),
            )
        typer.echo(f"{n} events scored -> {out}")

    @bench.command("score")
    def bench_score_cmd(
        model: str = typer.Option(
            None,
            "--model",
            "-m",
            help="Model (default: shipped tth_vs_ttbar, else a freshly initialised default-size network).",
        ),
        source: list[Path] = typer.Option(
            None, "--source", help="NanoAOD files to replicate (default: the shared CMS files)."
        ),
        events: int = typer.Option(1_000_000, "--events", "-n", help="Events in the benchmark file."),
        chunk_size: int = typer.Option(100_000, "--chunk-size", "-c", help="Events per chunk."),
        workdir: Path = typer.Option(Path("/tmp/coffea-hepfm-bench"), "--workdir", help="Scratch folder."),
        memory: bool = typer.Option(
            True,
            "--memory/--no-memory",
            help="Also measure peak RSS of `coffea-hepfm score` on the file at chunk sizes N/4 and N "
            "(fresh process each; per-chunk peaks).",
        ),
        dense_events: int = typer.Option(20_000, "--dense-events", help="Events for (d), the slow baseline."),
        network_events: int = typer.Option(
            50_000, "--network-events", help="Events for (e), the network alone."
        ),
        ood: bool = typer.Option(
            False, "--ood/--no-ood", help="Also time (c) with ood=True (needs a model with a reference)."
        ),
        json_path: Path = typer.Option(
            None, "--json", help="Also write every figure (and machine, command) here."
        ),
    ) -> None:
        """Events/CPU-s for (a) read, (b) read+graph, (c) read+graph+HEPFMScore, (d) coffea torch_wrapper
        on padded dense input, (e) the network alone vs the measured matmul rate, plus peak memory for
        two chunk sizes; prints the goals."""
        from coffea_hepfm.benchjson import machine_info, write_json
        from coffea_hepfm.score.bench import run_benchmark

        start = machine_info()
        res = run_benchmark(
            model=model,
            sources=source or None,
            n_events=events,
            chunk_size=chunk_size,
            workdir=workdir,
            memory=memory,
            dense_events=dense_events,
            network_events=network_events,
            ood=ood,
        )
        if json_path is not None:
            typer.echo(f"wrote {write_json(json_path, 'score', res, start)}")

    @bench.command("gpu")
    def bench_gpu_cmd(
        model: str = typer.Option("tth_vs_ttbar", "--model", "-m", help="Shipped model name or model file."),
        device: str = typer.Option("auto", "--device", help="auto | cuda | cpu (cpu: to try it out)."),
        batch_size: list[int] = typer.Option(
            None, "--batch-size", "-b", help="Events per forward to scan (default 4096..262144 on a GPU)."
        ),
        full_events: int = typer.Option(200_000, help="Events for the full path (read + nodes + score)."),
        triton_events: int = typer.Option(200_000, help="Events for Triton behind 2 Dask workers."),
        seconds: float = typer.Option(2.0, help="Timed seconds per measurement."),
        source: list[Path] = typer.Option(
            None, "--source", help="NanoAOD files (default: the shared CMS mix)."
        ),
        triton: bool = typer.Option(True, "--triton/--no-triton", help="Also measure Triton + Dask."),
        json_path: Path = typer.Option(
            None, "--json", help="Also write every figure (and machine, command) here."
        ),
    ) -> None:
        """HEPFMScore's local path on a GPU (network alone, from flat nodes, full path) and Triton on the
        GPU behind 2 Dask workers; same as `python -m coffea_hepfm.score.gpu` (which needs no coffea)."""
        from coffea_hepfm.benchjson import machine_info, write_json
        from coffea_hepfm.score.gpu import _table, run_gpu_check

        start = machine_info()
        res = run_gpu_check(
            model,
            device,
            tuple(batch_size or ()) or None,
            full_events,
            triton_events,
            seconds,
            source or None,
            triton,
        )
        typer.echo(_table(res))
        if json_path is not None:
            typer.echo(f"wrote {write_json(json_path, 'gpu', res, start)}")
