"""``coffea-hepfm reference MODEL --data DIR --out NEW``: add reference distributions by a recorded re-save."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer, bench: typer.Typer) -> None:
    @app.command("reference")
    def reference_cmd(
        model: str = typer.Argument(..., help="Model file or shipped model name."),
        data: Path = typer.Option(
            ..., "--data", "-d", help="Dataset folder (coffea-hepfm dataset) or ntuples."
        ),
        out: Path = typer.Option(
            ..., "--out", "-o", help="New model file (.safetensors) with the reference."
        ),
        processes: str = typer.Option(
            None, "--processes", help="Comma-separated training processes (default: the model's own)."
        ),
        fold: str = typer.Option(
            None, "--fold", help="pretrain | downstream | all (default: the fold the model was trained on)."
        ),
        max_events: int = typer.Option(None, "--max-events", help="Events per process at most."),
        seed: int = typer.Option(0, "--seed", help="Seed of the fit / calibration split."),
        threads: int = typer.Option(None, "--threads", help="torch threads."),
    ) -> None:
        """Copy MODEL (weights unchanged) to OUT with reference distributions of its inputs and embedding and
        the OOD calibration, built from events of its training processes; OUT records the re-save."""
        from coffea_hepfm.model import ModelFileError
        from coffea_hepfm.training.dataset import DatasetError
        from coffea_hepfm.training.references import add_reference

        if threads:
            import torch

            torch.set_num_threads(threads)
        try:
            path = add_reference(
                model,
                data,
                out,
                processes=[p.strip() for p in processes.split(",") if p.strip()] if processes else None,
                fold=fold,
                max_events=max_events,
                seed=seed,
            )
        except (ModelFileError, DatasetError, FileNotFoundError, KeyError, ValueError) as err:
            typer.secho(f"error: {err}", fg="red", err=True)
            raise typer.Exit(2) from None
        typer.echo(f"wrote {path} (re-save of {model} with reference distributions)")
