"""``coffea-hepfm demo``: the whole flow on an embedded default, for a first look on a fresh machine.

Simulates a few hundred ttH and ttbar events with the project's Pythia8 engine, writes them as NanoAOD,
and scores them with the shipped ``tth_vs_ttbar`` model through :class:`~coffea_hepfm.HEPFMScore`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import typer


def register(app: typer.Typer, bench: typer.Typer) -> None:
    @app.command()
    def demo(
        events: int = typer.Option(500, "--events", "-n", min=1, help="Events per process."),
        seed: int = typer.Option(2026, help="Generator seed."),
        out: Path | None = typer.Option(
            None, help="Keep the simulated NanoAOD in this folder (default: a temporary one, deleted)."
        ),
        threads: int | None = typer.Option(
            None, min=1, help="torch CPU threads (default: the free cores, see coffea_hepfm.threads)."
        ),
    ) -> None:
        """Simulate ttH and ttbar, score them with the shipped tth_vs_ttbar model, print the AUC."""
        import awkward as ak
        import numpy as np
        from rich.console import Console
        from rich.table import Table
        from sklearn.metrics import roc_auc_score

        from coffea_hepfm import HEPFMScore
        from coffea_hepfm.nanoaod import open_events
        from coffea_hepfm.simulation import simulate
        from coffea_hepfm.threads import set_torch_threads

        console = Console()
        set_torch_threads(threads)
        with tempfile.TemporaryDirectory() as tmp:
            where = Path(out) if out else Path(tmp)
            files = simulate(["tth", "ttbar"], n_events=events, seed=seed, out_dir=where, chunk_size=events)
            score = HEPFMScore("tth_vs_ttbar")
            table = Table(title="HEPFMScore('tth_vs_ttbar') on freshly simulated NanoAOD")
            for col in ("process", "events", "mean P(ttH)"):
                table.add_column(col)
            values, labels = [], []
            for label, process in ((1, "tth"), (0, "ttbar")):
                p = np.concatenate([ak.to_numpy(score(open_events(f))["ttH"]) for f in files[process]])
                values.append(p)
                labels.append(np.full(len(p), label))
                table.add_row(process, str(len(p)), f"{p.mean():.3f}")
            console.print(table)
            auc = roc_auc_score(np.concatenate(labels), np.concatenate(values))
            console.print(f"ROC AUC ttH vs ttbar: [bold]{auc:.3f}[/bold]")
        # Only a folder that still exists is named: the temporary one is gone by now.
        if out:
            console.print(f"simulated NanoAOD kept in {out}")
        else:
            console.print("the simulated files were temporary and are deleted; keep them with --out DIR")
