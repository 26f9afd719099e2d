"""``coffea-hepfm ntuples``: NanoAOD fileset -> training ntuples (graph features, label, weights, IDs)."""

from __future__ import annotations

from pathlib import Path

import typer


def _fail(err: BaseException) -> None:
    # an OSError's args[0] is its errno: print the whole message
    message = str(err) if isinstance(err, OSError) or not err.args else err.args[0]
    typer.secho(f"error: {message}", fg="red", err=True)
    raise typer.Exit(2) from None


def register(app: typer.Typer, bench: typer.Typer) -> None:
    @app.command("ntuples")
    def ntuples_cmd(
        fileset: Path = typer.Argument(
            ..., help="Fileset JSON: {dataset: {files, metadata: {label, xsec}}}."
        ),
        out: Path = typer.Option(..., "--out", "-o", help="Output folder (parquet chunks + ntuple.json)."),
        workers: int = typer.Option(
            0, "--workers", "-w", min=0, help="0: in this process; N: N Dask workers (LocalCluster)."
        ),
        executor: str = typer.Option(
            None, "--executor", help="'iterative' (eager) or 'dask'; default: dask when --workers > 0."
        ),
        scheduler: str = typer.Option(None, "--scheduler", help="Address of an existing Dask scheduler."),
        task_classes: str = typer.Option(
            None,
            "--task-classes",
            help="Comma-separated class names in label order (default: sorted labels).",
        ),
        chunksize: int = typer.Option(100_000, "--chunksize", "-c", help="Entries per chunk (parquet file)."),
        corrections: Path = typer.Option(
            None, "--corrections", help="Folder with puWeights_2018_UL.json and muon_Z_2018_UL.json.gz."
        ),
        example_corrections: bool = typer.Option(
            False,
            "--example-corrections",
            help="Weight with the small example corrections shipped with coffea-hepfm (invented "
            "numbers, for the examples; not CMS).",
        ),
        muon_key: str = typer.Option(
            None, "--muon-key", help="Muon SF correction (default: NUM_TightID_DEN_TrackerMuons)."
        ),
        spec: Path = typer.Option(
            None, "--spec", help="GraphSpec JSON (GraphSpec.to_dict()); default GraphSpec()."
        ),
        lumi: float = typer.Option(59830.0, "--lumi", help="Integrated luminosity in pb^-1."),
        allow_data: bool = typer.Option(False, "--allow-data", help="Accept data datasets (unit weights)."),
        weight: str = typer.Option(
            None,
            "--weight",
            help="Multiply MC weights by one LHEReweightingWeight entry: 'lhe:IDX' or 'lhe:alpha=DEG' "
            "(datasets with their own 'lhe_weight' metadata keep it).",
        ),
    ) -> None:
        """Write training ntuples with correctionlib weights; a rerun writes only the missing chunks."""
        import dataclasses
        import json

        from rich.console import Console
        from rich.table import Table

        from coffea_hepfm.graph import GraphSpec
        from coffea_hepfm.processors import default_corrections, load_fileset, make_ntuples

        try:
            if corrections is not None and example_corrections:
                raise ValueError("give --corrections DIR or --example-corrections, not both")
            fs = load_fileset(fileset)
            graph_spec = GraphSpec.from_dict(json.loads(spec.read_text())) if spec else GraphSpec()
            corrs = ()
            if corrections is not None:
                corrs = default_corrections(corrections)
            elif example_corrections:
                from coffea_hepfm.processors.example_corrections import LABEL
                from coffea_hepfm.processors.example_corrections import example_corrections as example

                corrs = example()
                typer.secho(f"note: --example-corrections: {LABEL}", fg="yellow", err=True)
            if muon_key is not None:
                if not corrs:
                    raise ValueError("--muon-key needs --corrections DIR")
                corrs = (corrs[0], dataclasses.replace(corrs[1], key=muon_key))
        except (KeyError, ValueError, OSError) as err:
            _fail(err)
        classes = [c.strip() for c in task_classes.split(",")] if task_classes else None
        mode = executor or ("dask" if workers > 0 or scheduler else "iterative")
        kwargs = dict(
            executor=mode,
            chunksize=chunksize,
            classes=classes,
            corrections=corrs,
            lumi=lumi,
            require_mc=not allow_data,
            progress=True,
            lhe_weight=weight,
        )
        try:
            if workers > 0 or scheduler:
                from distributed import Client, LocalCluster

                if scheduler:
                    with Client(scheduler) as client:
                        result = make_ntuples(fs, out, graph_spec, client=client, **kwargs)
                else:
                    with (
                        LocalCluster(
                            n_workers=workers, threads_per_worker=1, dashboard_address=":0"
                        ) as cluster,
                        Client(cluster) as client,
                    ):
                        result = make_ntuples(fs, out, graph_spec, client=client, **kwargs)
            else:
                result = make_ntuples(fs, out, graph_spec, **kwargs)
        except (KeyError, ValueError, OSError) as err:
            _fail(err)
        table = Table(title=f"ntuples in {out}")
        for col in ("dataset", "chunks written", "chunks skipped", "events read", "selected"):
            table.add_column(col, justify="left" if col == "dataset" else "right")
        for name, c in result.items():
            table.add_row(
                name, *(str(c[k]) for k in ("chunks_written", "chunks_skipped", "events", "selected"))
            )
        Console().print(table)
