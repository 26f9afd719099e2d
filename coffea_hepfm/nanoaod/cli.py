"""``coffea-hepfm validate-sim``: physics validation plots of (simulated) NanoAOD."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer, bench: typer.Typer) -> None:
    @app.command("validate-sim")
    def validate_cmd(
        sim_dir: Path = typer.Argument(..., help="Folder written by `coffea-hepfm simulate`."),
        out: Path = typer.Option(None, "--out", "-o", help="Plot folder (default SIM_DIR/plots)."),
    ) -> None:
        """Write validation plots per process and print resonance peaks."""
        from rich.console import Console
        from rich.table import Table

        from coffea_hepfm.nanoaod.validate import validate_dir

        try:
            summary = validate_dir(sim_dir, out)
        except FileNotFoundError as err:
            typer.secho(f"error: {err}", fg="red", err=True)
            raise typer.Exit(2) from None
        table = Table(title=f"validation of {sim_dir}")
        for col in ("process", "events", "<n jets>", "<n b>", "m_gg peak", "m_ll peak", "<MET>", "plot"):
            table.add_column(col)
        for name, s in summary.items():
            table.add_row(
                name,
                str(s["n_events"]),
                f"{s['mean_n_jets']:.2f}",
                f"{s['mean_n_bjets']:.2f}",
                f"{s['m_gg_peak']:.1f}",
                f"{s['m_ll_peak']:.1f}",
                f"{s['mean_met']:.1f}",
                s["plot"],
            )
        Console().print(table)
