"""``coffea-hepfm domain-report`` and ``coffea-hepfm check-inputs``: is the data in the model's domain?"""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer, bench: typer.Typer) -> None:
    @app.command("domain-report")
    def domain_report_cmd(
        sim: list[Path] = typer.Option(..., "--sim", help="Simulated NanoAOD files or folders (repeatable)."),
        cms: list[Path] = typer.Option(..., "--cms", help="CMS NanoAOD files or folders (repeatable)."),
        out: Path = typer.Option(..., "--out", "-o", help="Folder for domain_report.json and the PNGs."),
        model: str = typer.Option(None, "--model", "-m", help="Model whose mean score is compared."),
        score_class: str = typer.Option(
            None, "--score-class", help="Model output to average (default: first)."
        ),
        spec: str = typer.Option(
            None,
            "--spec",
            help="Graph spec: 'default' (this code's), a .json (spec or model sidecar) or a model (default: --model's).",
        ),
        preselection: str = typer.Option(
            None, "--preselection", "-p", help="Graph selection for both, e.g. 'n_jet>=4,n_lepton>=1'."
        ),
        sim_selection: str = typer.Option(
            None,
            "--sim-selection",
            help="GenPart selection of the simulated events, e.g. semileptonic, z-ll.",
        ),
        cms_selection: str = typer.Option(
            None,
            "--cms-selection",
            help="GenPart selection of CMS files that have GenPart (others: as given).",
        ),
        max_events: int = typer.Option(50_000, "--max-events", help="Selected events kept per domain."),
        chunk_size: int = typer.Option(20_000, "--chunk-size", "-c", help="Events read per chunk."),
        n_splits: int = typer.Option(5, "--folds", help="Cross-validation folds."),
        n_repeats: int = typer.Option(5, "--repeats", help="Cross-validation repeats."),
        seed: int = typer.Option(0, "--seed"),
        plots: bool = typer.Option(True, "--plots/--no-plots", help="Write the overlay PNGs."),
    ) -> None:
        """Simulated vs CMS NanoAOD through a graph spec: distances, domain-classifier AUC, model score, plots."""
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        from coffea_hepfm.graph import GraphError
        from coffea_hepfm.model.io import ModelFileError
        from coffea_hepfm.models import UnknownModel
        from coffea_hepfm.score.domain import domain_report, expand_inputs
        from coffea_hepfm.score.files import plan_chunks

        try:
            total = sum(len(c) for c in plan_chunks(expand_inputs(sim) + expand_inputs(cms), chunk_size))
            columns = (TextColumn("reading"), BarColumn(), MofNCompleteColumn(), TextColumn("events"))
            with Progress(*columns, TimeRemainingColumn()) as bar:
                task = bar.add_task("read", total=total)
                summary = domain_report(
                    sim,
                    cms,
                    spec=spec,
                    model=model,
                    score_class=score_class,
                    preselection=preselection,
                    sim_selection=sim_selection,
                    cms_selection=cms_selection,
                    out=out,
                    max_events=max_events,
                    chunk_size=chunk_size,
                    n_splits=n_splits,
                    n_repeats=n_repeats,
                    seed=seed,
                    plots=plots,
                    progress=lambda k: bar.advance(task, k),
                )
        except (UnknownModel, ModelFileError, GraphError, FileNotFoundError, KeyError, ValueError) as err:
            typer.secho(f"error: {err}", fg="red", err=True)
            raise typer.Exit(2) from None
        from coffea_hepfm.score.report import print_domain_summary

        print_domain_summary(summary, Console())

    @app.command("check-inputs")
    def check_inputs_cmd(
        files: list[Path] = typer.Argument(..., help="NanoAOD files to check."),
        model: str = typer.Option(..., "--model", "-m", help="Shipped model name or model file."),
        json_out: Path = typer.Option(None, "--json", help="Write the report as JSON here."),
        plots: Path = typer.Option(
            None, "--plots", help="Folder for the overlay PNG of the most drifted inputs."
        ),
        chunk_size: int = typer.Option(50_000, "--chunk-size", "-c", help="Events read per chunk."),
        top: int = typer.Option(12, "--top", help="Rows of the table (and panels of the plot)."),
    ) -> None:
        """Are FILES in MODEL's domain? Input drift (PSI) against the model's reference and the fraction of
        events its OOD score flags: a table, the verdict (ok / drift) and the most drifted features."""
        import json
        import os

        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        from coffea_hepfm.graph import GraphError
        from coffea_hepfm.model.io import ModelFileError
        from coffea_hepfm.models import UnknownModel
        from coffea_hepfm.score.drift import check_files
        from coffea_hepfm.score.files import plan_chunks
        from coffea_hepfm.score.report import print_drift_report

        try:
            total = sum(len(c) for c in plan_chunks(files, chunk_size))
            with Progress(
                TextColumn("checking"), BarColumn(), MofNCompleteColumn(), TextColumn("events")
            ) as bar:
                task = bar.add_task("check", total=total)
                report = check_files(
                    files,
                    model,
                    chunk_size=chunk_size,
                    plots=plots,
                    top=top,
                    progress=lambda k: bar.advance(task, k),
                )
        except (UnknownModel, ModelFileError, GraphError, FileNotFoundError, ValueError) as err:
            typer.secho(f"error: {err}", fg="red", err=True)
            raise typer.Exit(2) from None
        console = Console()
        console.print(
            f"{report['events']} events from {len(report['files'])} file(s), model {report['model']}"
        )
        print_drift_report(report, console, top=top)
        if json_out is not None:
            json_out.parent.mkdir(parents=True, exist_ok=True)
            tmp = json_out.with_name(f".{json_out.name}.tmp{os.getpid()}")
            tmp.write_text(json.dumps(report, indent=1, default=float) + "\n")
            os.replace(tmp, json_out)
            console.print(f"report: {json_out}")
