"""``coffea-hepfm bench graph``: graph-building throughput on the shared NanoAOD (replicated)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer, bench: typer.Typer) -> None:
    @bench.command("graph")
    def bench_graph_cmd(
        files: list[Path] = typer.Argument(..., help="NanoAOD files; their needed branches are replicated."),
        events: int = typer.Option(500_000, "--events", "-n", help="Events to time."),
        batch_size: int = typer.Option(10_000, "--batch-size", help="Events per GraphBatch (edges)."),
        max_photons: int = typer.Option(4, help="GraphSpec.max_photons (0 for files without Photon)."),
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
        spec = GraphSpec(max_photons=max_photons)
        r = bench_graph(files, spec, n_events=events, batch_size=batch_size, compression=compression)
        table = Table(
            title=f"graph build, {r['n_events']} events, {r['n_edges']} edges, skim {r['compression']}"
        )
        table.add_column("step")
        for clock in ("cpu", "wall"):
            table.add_column(f"{clock} s")
            table.add_column(f"events/s ({clock})")
        for step in ("read", "record", "batches"):
            row = [step]
            for clock in ("cpu", "wall"):
                row += [f"{r[f'{step}_{clock}_s']:.3f}", f"{r[f'events_per_s_{step}_{clock}']:,.0f}"]
            table.add_row(*row)
        console = Console()
        console.print(table)
        console.print(
            f"record / read: {r['record_over_read_cpu']:.2f} (cpu), {r['record_over_read_wall']:.2f} (wall); "
            f"goal <= 0.2. Load average {r['load_avg_1min']:.1f} on {r['cores']} cores."
        )
        if json_path is not None:
            figures = {"graph_spec": spec.to_dict(), **r}
            console.print(f"wrote {write_json(json_path, 'graph', figures, start)}")
