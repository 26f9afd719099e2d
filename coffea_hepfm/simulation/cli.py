"""``coffea-hepfm simulate | processes | cp-validate`` and ``coffea-hepfm bench simulate``."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import typer

from coffea_hepfm.simulation.processes import MPI_DEFAULT

_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "coffea-hepfm" / "xsec.json"


def _cached_xsecs(names: list[str], n_events: int) -> dict[str, float]:
    """Cross-sections keyed by a hash of each process's settings, cached on disk (Pythia init is slow)."""
    from rich.progress import track

    from coffea_hepfm.simulation.generator import cross_section_pb, pythia_settings
    from coffea_hepfm.simulation.processes import get_process

    cache = json.loads(_CACHE.read_text()) if _CACHE.exists() else {}
    out = {}
    for name in track(names, description="cross-sections"):
        alpha = get_process(name).cp_alpha_deg  # ttH samples share settings, not cross-sections
        key = hashlib.sha256(json.dumps([pythia_settings(name, 1), n_events, alpha]).encode()).hexdigest()[
            :16
        ]
        if key not in cache:
            cache[key] = cross_section_pb(name, n_events)
        out[name] = cache[key]
    try:
        _CACHE.parent.mkdir(parents=True, exist_ok=True)
        _CACHE.write_text(json.dumps(cache, indent=1))
    except OSError:
        pass  # a read-only home only costs the cache
    return out


def register(app: typer.Typer, bench: typer.Typer) -> None:
    @app.command("simulate")
    def simulate_cmd(
        processes: list[str] = typer.Argument(
            ..., help="Process names, any letter case (see `coffea-hepfm processes`)."
        ),
        events: int = typer.Option(..., "--events", "-n", help="Events per process."),
        seed: int = typer.Option(1, "--seed", "-s", help="Master seed."),
        out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
        workers: int = typer.Option(
            0, "--workers", "-w", min=0, help="0: in this process; N: N Dask workers (LocalCluster)."
        ),
        chunk_size: int = typer.Option(1000, "--chunk-size", "-c", help="Events per output file."),
        scheduler: str = typer.Option(None, "--scheduler", help="Address of an existing Dask scheduler."),
        mpi: bool = typer.Option(
            MPI_DEFAULT, "--mpi/--no-mpi", help="Pythia multiparton interactions (default on)."
        ),
        pythia: list[str] = typer.Option(
            None,
            "--pythia",
            help="Extra Pythia setting 'Key = value', applied after the defaults and stored in each file "
            "(repeatable; not for ttH processes), e.g. --pythia 'Beams:eCM = 13600.'",
        ),
    ) -> None:
        """Generate Pythia 8 events, run the detector, write NanoAOD chunk files (a rerun resumes)."""
        from coffea_hepfm.simulation import simulate
        from coffea_hepfm.simulation.processes import canonical_name
        from coffea_hepfm.simulation.runner import plan

        try:
            names = [canonical_name(p) for p in processes]
            tasks = plan(names, events, seed, out, chunk_size, mpi, pythia or ())
            todo = [t for t in tasks if not Path(t.path).exists()]
            files = simulate(
                names,
                events,
                seed,
                out,
                workers=workers,
                chunk_size=chunk_size,
                client=scheduler,
                mpi=mpi,
                pythia=pythia or (),
                progress=bool(todo),
            )
        except (KeyError, ValueError, OSError) as err:
            # KeyError's str() adds quotes and an OSError's args[0] is its errno: pick the message
            message = str(err) if isinstance(err, OSError) or not err.args else err.args[0]
            typer.secho(f"error: {message}", fg="red", err=True)
            raise typer.Exit(2) from None
        if not todo:  # said after simulate() has checked that the files are of this request
            typer.echo(
                f"already done: all {len(tasks)} chunk file(s) exist in {out} with this seed and "
                "size; nothing to simulate"
            )
        for name, paths in files.items():
            typer.echo(f"{name}: {len(paths)} file(s) in {out / name}")

    @app.command("processes")
    def processes_cmd(
        fast: bool = typer.Option(False, "--fast", help="Skip the cross-section estimate."),
        events: int = typer.Option(200, "--events", help="Events per process for the estimate."),
    ) -> None:
        """List the simulated processes with Pythia's cross-section estimate."""
        from rich.console import Console
        from rich.table import Table

        from coffea_hepfm.simulation.processes import PROCESSES

        xsec = {} if fast else _cached_xsecs(list(PROCESSES), events)
        table = Table(title="coffea-hepfm processes (pp, 13 TeV)")
        # rich reads "[pb]" as markup and drops it: the unit goes with each value instead
        for col in ("name", "role", "sigma (Pythia)", "description"):
            table.add_column(col, justify="right" if col.startswith("sigma") else "left")
        for p in PROCESSES.values():
            sigma = f"{xsec[p.name]:.4g} pb" if p.name in xsec else "-"
            table.add_row(p.name, p.role, sigma, p.description)
        Console().print(table)

    @app.command("cp-validate")
    def cp_validate_cmd(
        events: int = typer.Option(50_000, "--events", "-n", help="SM ttH hard processes (process level)."),
        odd_events: int = typer.Option(
            3000, "--odd-events", help="Accepted events of the CP-odd check sample."
        ),
        seed: int = typer.Option(1, "--seed", "-s", help="Master seed."),
        out_dir: Path = typer.Option(Path("docs/figures"), "--out-dir", "-o", help="Figures and JSON."),
        sim: Path = typer.Option(
            None, "--sim", help="Simulation folder with tth_aa/ and tta_aa/ for the NanoAOD-level check."
        ),
        route_check: int = typer.Option(
            0, "--route-check", help="Events per route for the internal-vs-LHE SM ttH check (0: skip)."
        ),
    ) -> None:
        """Validate the CP-mixed ttH matrix-element reweighting; write the figures of docs/results.md."""
        from coffea_hepfm.simulation.cp_validate import validate

        if events <= 0 or odd_events <= 0:
            typer.secho("error: --events and --odd-events must be positive", fg="red", err=True)
            raise typer.Exit(2)
        try:
            s = validate(events, odd_events, seed, out_dir, sim, route_check)
        except (FileNotFoundError, ValueError) as err:
            typer.secho(f"error: {err}", fg="red", err=True)
            raise typer.Exit(2) from None
        r = s["sigma_ratio_90_over_0"]
        for name in ("all", "gg", "qqbar"):
            typer.echo(f"sigma(ttA)/sigma(ttH) [{name:5s}]: {r[name]['ratio']:.4f} +- {r[name]['error']:.4f}")
        typer.echo(f"sigma(alpha=45)/sigma(ttH):       {s['sigma_ratio_45_over_0']:.4f}")
        auc = s["auc_me_ratio"]
        typer.echo(
            f"ME-ratio ROC AUC even vs odd:     {auc['even_vs_odd']:.4f} (vs mixed 45: {auc['even_vs_mixed45']:.4f})"
        )
        u = s["unweighting"]
        typer.echo(
            f"CP-odd unweighting efficiency:    {u['efficiency']:.4f} ({u['n_overweight']} overweight)"
        )
        for name, m in s["means"].items():
            typer.echo(
                f"<{name}>: even {m['even'][0]:.3f}  odd reweighted {m['odd_reweighted'][0]:.3f} "
                f"+- {m['odd_reweighted'][1]:.3f}  odd accept-reject {m['odd_unweighted'][0]:.3f} "
                f"+- {m['odd_unweighted'][1]:.3f}"
            )
        for name, c in s.get("route_check", {}).items():
            typer.echo(
                f"route check <{name}>: internal {c['internal']:.3f}  LHE {c['lhe']:.3f}  KS p = {c['ks_pvalue']:.3f}"
            )
        typer.echo(f"wrote {', '.join(s['figures'])} and {out_dir / 'cp_validation.json'}")

    @bench.command("simulate")
    def bench_cmd(
        process: str = typer.Option("ttbar", help="Process to benchmark."),
        events: int = typer.Option(2000, "--events", help="Events per measurement."),
        workers: int = typer.Option(2, "--workers", help="Dask workers for the speed-up."),
        mpi: bool = typer.Option(
            MPI_DEFAULT, "--mpi/--no-mpi", help="Pythia multiparton interactions (default on)."
        ),
        json_path: Path = typer.Option(
            None, "--json", help="Also write the figures (and machine, command) here."
        ),
    ) -> None:
        """Full-chain events/s/core vs raw Pythia, and the Dask speed-up."""
        from coffea_hepfm.benchjson import machine_info, write_json
        from coffea_hepfm.simulation.bench import bench_simulation

        start = machine_info()
        r = bench_simulation(process, events, workers, mpi=mpi)
        mpi_text = "on" if mpi else "off"
        typer.echo(
            f"process {process}, {events} events, Pythia MPI {mpi_text}, {os.cpu_count()} CPUs visible"
        )
        typer.echo(f"raw Pythia (pythia.next):         {r['raw_eps']:8.1f} events/s")
        typer.echo(f"full chain (1 core, init excl.):  {r['chain_eps']:8.1f} events/s/core")
        typer.echo(f"full chain / raw Pythia:          {r['chain_over_raw']:8.2f}x   (goal >= 0.8x)")
        typer.echo(f"in-process, 4 chunks:             {r['serial_eps']:8.1f} events/s")
        typer.echo(f"Dask, {workers} workers, 4 chunks:        {r['dask_eps']:8.1f} events/s")
        typer.echo(f"speed-up with {workers} workers:          {r['speedup']:8.2f}x   (goal >= 1.8x)")
        if json_path is not None:
            typer.echo(
                f"wrote {write_json(json_path, 'simulate', {'process': process, 'mpi': mpi, **r}, start)}"
            )
