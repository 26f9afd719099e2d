"""``coffea-hepfm bench graph``: graph-building throughput on the shared NanoAOD (replicated)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer, bench: typer.Typer) -> None:
    @app.command("graph-info")
    def graph_info_cmd(
        file: Path = typer.Argument(..., help="A NanoAOD file."),
        spec: Path = typer.Option(
            None, "--spec", help="GraphSpec JSON (GraphSpec.to_dict()); default GraphSpec()."
        ),
        era: str = typer.Option(
            None, "--era", help="GraphSpec.era (v2): 'auto' or a CMS era, e.g. 2022EE; default: the spec's."
        ),
    ) -> None:
        """Show how the graph spec reads FILE: ID recipes and fallbacks, b-tag candidates, era rule, MET,
        the branches read. Nothing is computed; per-chunk choices (tagger, era) are listed as rules."""
        import json

        from rich.console import Console
        from rich.table import Table

        from coffea_hepfm.graph import GraphSpec, resolve
        from coffea_hepfm.graph.errors import GraphError
        from coffea_hepfm.nanoaod import open_events
        from coffea_hepfm.nanoaod.inputs import reading

        try:
            graph_spec = GraphSpec.from_dict(json.loads(spec.read_text())) if spec else GraphSpec()
            if era is not None:
                graph_spec = graph_spec.replace(era=era)
            # Package warnings (e.g. an absent Photon collection) name the file and are summarised by the
            # CLI at the end (coffea_hepfm.cli_report); nothing is filtered here.
            with reading(file):
                plan = resolve(graph_spec, open_events(file, mode="virtual"))
                plan.warn_absent()
        except (GraphError, OSError, ValueError, KeyError) as err:
            typer.secho(f"error: {err}", fg="red", err=True)
            raise typer.Exit(2) from None
        table = Table(title=f"{file} with graph spec v{graph_spec.version}")
        table.add_column("input")
        table.add_column("read as")
        describe = plan.describe() if hasattr(plan, "describe") else {"b-tag": f"Jet_{plan.btag_branch}"}
        for key, value in describe.items():
            table.add_row(key, value)
        table.add_row("branches", ", ".join(plan.branches()))
        Console().print(table)

    @bench.command("graph")
    def bench_graph_cmd(
        files: list[Path] = typer.Argument(..., help="NanoAOD files; their needed branches are replicated."),
        events: int = typer.Option(500_000, "--events", "-n", help="Events to time."),
        batch_size: int = typer.Option(10_000, "--batch-size", help="Events per GraphBatch (edges)."),
        max_photons: int = typer.Option(4, help="GraphSpec.max_photons (0 for files without Photon)."),
        spec_version: int = typer.Option(
            2, "--spec-version", help="Graph spec version (2: default, 1: old)."
        ),
        compression: str = typer.Option(None, help="Skim codec, e.g. lzma:9, zstd:5 (default: as input)."),
        json_path: Path = typer.Option(
            None, "--json", help="Also write the figures (and machine, command) here."
        ),
    ) -> None:
        """Time reading the needed columns, building node records, and building edge batches."""
        from rich.console import Console
        from rich.table import Table

        from coffea_hepfm.benchjson import machine_info, write_json
        from coffea_hepfm.graph import GraphSpec
        from coffea_hepfm.graph.bench import bench_graph

        start = machine_info()
        spec = GraphSpec(version=spec_version, max_photons=max_photons)
        r = bench_graph(files, spec, n_events=events, batch_size=batch_size, compression=compression)
        table = Table(
            title=f"graph spec v{spec.version}, {r['n_events']} events, {r['n_edges']} edges, skim {r['compression']}"
        )
        table.add_column("step")
        for clock in ("cpu", "wall"):
            table.add_column(f"{clock} s")
            table.add_column(f"events/s ({clock})")
        labels = {
            "read": "read columns",
            "record": "graph build (nodes, globals)",
            "batches": "edges (GraphBatch)",
        }
        for step in ("read", "record", "batches"):
            row = [labels[step]]
            for clock in ("cpu", "wall"):
                row += [f"{r[f'{step}_{clock}_s']:.3f}", f"{r[f'events_per_s_{step}_{clock}']:,.0f}"]
            table.add_row(*row)
        console = Console()
        console.print(table)
        console.print(
            f"graph build alone: {r['graph_ev_per_cpu_s']:,.0f} events/CPU-s, one thread, best of {r['repeat']} "
            f"(first run per chunk {r['graph_first_run_ev_per_cpu_s']:,.0f}; goal >= 1,000,000); "
            f"{r['record_over_read_cpu']:.2f} x the read time. Load average {r['load_avg_1min']:.1f} on "
            f"{r['cores']} cores."
        )
        if json_path is not None:
            figures = {"graph_spec": spec.to_dict(), **r}
            console.print(f"wrote {write_json(json_path, 'graph', figures, start)}")
