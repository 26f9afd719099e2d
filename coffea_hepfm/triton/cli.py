"""Commands of the Triton stage: ``triton-env``, ``export-triton``, ``serve`` and ``bench triton``."""

from __future__ import annotations

import signal
from pathlib import Path

import typer


def register(app: typer.Typer, bench: typer.Typer) -> None:
    @app.command("triton-env")
    def triton_env(
        path: Path = typer.Option(
            None, help="Where to create it (default $HEPFM_TRITON_ENV or ~/.cache/coffea-hepfm/triton-env)."
        ),
    ) -> None:
        """Create (once) the separate server environment: nvidia-pytriton's tritonserver, numpy<2, torch."""
        from rich.console import Console

        from coffea_hepfm.triton.env import ServerEnvError, ensure_server_env

        console = Console()
        try:
            env = ensure_server_env(path, log=lambda m: console.print(m, highlight=False))
        except ServerEnvError as err:
            console.print(f"[red]error:[/red] {err}", highlight=False)
            raise typer.Exit(1) from None
        console.print(
            f"server environment ready: {env.root}\ntritonserver: {env.tritonserver}", highlight=False
        )

    @app.command("export-triton")
    def export_triton(
        model: str = typer.Argument(..., help="Shipped model name or .safetensors model file."),
        repo: Path = typer.Option(..., "--repo", help="Triton model repository directory."),
        name: str = typer.Option(None, help="Model name on the server (default: the model's name)."),
        version: int = typer.Option(1, min=1, help="Model version directory."),
        backend: str = typer.Option("python", help="python | libtorch | onnx."),
        max_batch_size: int = typer.Option(4096, min=1, help="Largest batch per request (events)."),
        instances: int = typer.Option(1, min=1, help="Model instances (instance_group count)."),
        threads: int = typer.Option(0, min=0, help="torch threads per instance (python backend; 0 = all)."),
        compute_batch: int = typer.Option(
            512, min=0, help="Events per forward inside the server (0 = whole batch)."
        ),
        gpu: bool = typer.Option(False, help="Run the instances on a GPU (KIND_GPU)."),
        overwrite: bool = typer.Option(False, help="Replace an existing REPO/NAME/VERSION."),
    ) -> None:
        """Write a Triton model repository entry (config.pbtxt + model files) for a coffea-hepfm model."""
        from rich.console import Console

        from coffea_hepfm.triton.repository import export_model

        console = Console()
        try:
            out = export_model(
                model, repo, name=name, version=version, backend=backend, max_batch_size=max_batch_size,
                instances=instances, threads=threads, compute_batch=compute_batch, gpu=gpu,
                overwrite=overwrite,
            )  # fmt: skip
        except (ValueError, LookupError, OSError) as err:
            console.print(f"[red]error:[/red] {err}", highlight=False)
            raise typer.Exit(1) from None
        console.print(f"exported {backend} model to {out}/{version} (verified against the local model)")

    @app.command("serve")
    def serve(
        repo: Path = typer.Option(..., "--repo", help="Triton model repository directory."),
        grpc_port: int = typer.Option(8001, help="gRPC port (0 = pick a free one)."),
        http_port: int = typer.Option(8000, help="HTTP port (0 = pick a free one)."),
        metrics_port: int = typer.Option(None, help="Prometheus metrics port (default: metrics off)."),
        host: str = typer.Option("127.0.0.1", help="Address to bind (loopback by default)."),
        env: Path = typer.Option(None, help="Server environment (default: see `coffea-hepfm triton-env`)."),
        log: Path = typer.Option(None, help="Server log file (default: a temporary file)."),
        timeout: float = typer.Option(180.0, help="Seconds to wait for the models to load."),
    ) -> None:
        """Run tritonserver on REPO until Ctrl-C (or SIGTERM); prints the model URLs once ready."""
        from rich.console import Console

        from coffea_hepfm.triton.env import ServerEnvError, ensure_server_env
        from coffea_hepfm.triton.server import TritonServer, TritonServerError

        console = Console()
        try:
            server_env = ensure_server_env(env, log=lambda m: console.print(m, highlight=False))
            server = TritonServer(
                repo, grpc_port=grpc_port, http_port=http_port, metrics_port=metrics_port, host=host,
                env=server_env, startup_timeout=timeout, log_path=log,
            )  # fmt: skip

            def _stop(signum, frame):  # SIGTERM behaves like Ctrl-C
                raise KeyboardInterrupt

            # Ctrl-C too, explicitly: a process started with SIGINT ignored (a background job of a script,
            # as `cmd &` in bash is) inherits that, and Python then never raises KeyboardInterrupt
            signal.signal(signal.SIGINT, _stop)
            signal.signal(signal.SIGTERM, _stop)
            with console.status("starting tritonserver ..."):
                try:
                    server.start()
                except KeyboardInterrupt:
                    server.kill()
                    raise typer.Exit(130) from None
        except (ServerEnvError, TritonServerError) as err:
            console.print(f"[red]error:[/red] {err}", highlight=False)
            raise typer.Exit(1) from None
        try:
            console.print(
                f"Triton ready: grpc {server.grpc_address}, http {server.http_address} (log {server.log_path_})",
                highlight=False,
            )
            models = sorted(p for p in Path(repo).iterdir() if (p / "config.pbtxt").is_file())
            for m in models:
                versions = sorted((int(v.name) for v in m.iterdir() if v.name.isdigit()), reverse=True)
                v = versions[0] if versions else None
                console.print(f"  {server.model_url(m.name, v)}   {server.model_url(m.name, v, 'http')}")
            console.print("Ctrl-C stops the server.")
            code = server.wait()
            console.print(f"[red]tritonserver exited by itself with code {code}[/red]\n{server.log_tail()}")
            raise typer.Exit(1)
        except KeyboardInterrupt:
            console.print("stopping tritonserver ...")
            server.stop()
            console.print("stopped.")

    @bench.command("triton")
    def bench_triton(
        model: str = typer.Option(
            None, help="Model file or shipped name (default: an untrained default net)."
        ),
        events: int = typer.Option(16384, help="Events per measurement (real graphs replicated)."),
        batch_size: list[int] = typer.Option([4096], "--batch-size", "-b", help="Events per request."),
        rounds: int = typer.Option(5, min=1, help="Timed runs per path (round-robin; the median counts)."),
        threads: int = typer.Option(0, help="torch threads for in-process and server (0 = all cores)."),
        json_path: Path = typer.Option(
            None, "--json", help="Also write the figures (and machine, command) here."
        ),
    ) -> None:
        """In-process vs our Triton path (gRPC, HTTP) vs coffea's triton_wrapper, same server and weights."""
        from coffea_hepfm.benchjson import machine_info, write_json
        from coffea_hepfm.triton.bench import run_bench

        start = machine_info()
        rows = run_bench(model=model, events=events, batch_sizes=batch_size, rounds=rounds, threads=threads)
        if json_path is not None:
            figures = {
                "model": model or "untrained default network",
                "events": events,
                "threads": threads,
                "rows": rows,
            }
            typer.echo(f"wrote {write_json(json_path, 'triton', figures, start)}")
