"""Training commands: ``dataset``, ``pretrain``, ``finetune``, ``evaluate``, ``study``, ``cka``.

Heavy imports (torch, awkward, coffea) happen inside the command bodies.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer


def _threads(n: int | None) -> None:
    """``--threads N``, or the package's default (never more than the free cores; threads.py)."""
    from coffea_hepfm.threads import set_torch_threads

    set_torch_threads(n)


THREADS_HELP = (
    "torch CPU threads (default: the free cores available to this process, see coffea_hepfm.threads)"
)


def _fail(err: Exception) -> None:
    typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _ints(text: str) -> list[int]:
    return [int(float(t)) for t in text.split(",") if t.strip()]


def _finetune_ntuples(data, from_, out, signal, options: dict, scheduler: str | None = None) -> None:
    """``finetune --ntuples DIR``: the processors' ``launch_finetune`` on `coffea-hepfm ntuples` output."""
    from coffea_hepfm.model import ModelFileError
    from coffea_hepfm.training.ntuples import launch_finetune

    if out is None:
        _fail(ValueError("--out is required with --ntuples"))
    pretrained = None if from_.lower() == "none" else from_
    try:
        if scheduler:
            from distributed import Client

            with Client(scheduler) as client:
                info = launch_finetune(
                    data, pretrained, out, signal=signal, client=client, **options
                ).result()
        else:
            info = launch_finetune(data, pretrained, out, signal=signal, progress=True, **options)
    except (ModelFileError, KeyError, ValueError, OSError) as err:
        _fail(err)
    t = info["training"]
    summary = {"out": str(out), "metrics": info["metrics"], "plots": info["plots"]}
    summary.update(train_time_s=t["train_time_s"], steps=t["steps"], stopped=t["stopped"])
    typer.echo(json.dumps(summary, indent=1, default=float))


def register(app: typer.Typer, bench: typer.Typer) -> None:
    @app.command("dataset")
    def dataset_cmd(
        sim_dir: Path = typer.Argument(..., help="output directory of `coffea-hepfm simulate`"),
        out_dir: Path = typer.Argument(..., help="training-set directory (parquet per process)"),
        processes: str | None = typer.Option(None, help="comma-separated processes (default: all found)"),
        max_events: int | None = typer.Option(None, help="cap per process"),
    ):
        """Make the training set once from simulated NanoAOD: one parquet file per process."""
        from rich.console import Console

        from coffea_hepfm.training.dataset import DatasetError, build_dataset

        console = Console()
        try:
            meta = build_dataset(
                sim_dir,
                out_dir,
                processes.split(",") if processes else None,
                max_events=max_events,
                progress=lambda p, n: console.log(f"{p}: {n} events"),
            )
        except (DatasetError, FileNotFoundError) as err:
            _fail(err)
        for p, m in meta["processes"].items():
            console.print(f"{p:>12}: {m['events']:>7} events ({m['dropped_nonfinite']} dropped, non-finite)")

    @app.command("pretrain")
    def pretrain_cmd(
        task: str = typer.Option("multiclass", help="multiclass | multilabel | contrastive"),
        data: Path = typer.Option(..., help="training-set directory from `coffea-hepfm dataset`"),
        out: Path = typer.Option(..., help="output model file (.safetensors)"),
        epochs: int = typer.Option(20),
        batch_size: int = typer.Option(256),
        max_events: int | None = typer.Option(None, help="cap on events per process"),
        seed: int = typer.Option(0),
        lr: float = typer.Option(1e-3),
        time_budget: float | None = typer.Option(None, help="training wall-clock budget in seconds"),
        hidden: int = typer.Option(64),
        n_proc_steps: int = typer.Option(4),
        patience: int = typer.Option(8, help="early stopping: validations without improvement"),
        threads: int | None = typer.Option(None, min=1, help=THREADS_HELP),
    ):
        """Pretrain the backbone (multiclass, multilabel truth, or contrastive)."""
        from coffea_hepfm.training.dataset import DatasetError
        from coffea_hepfm.training.pretrain import pretrain

        _threads(threads)
        try:
            info = pretrain(
                data,
                out,
                task=task,
                max_events=max_events,
                epochs=epochs,
                batch_size=batch_size,
                lr=lr,
                time_budget_s=time_budget or float("inf"),
                hidden=hidden,
                n_proc_steps=n_proc_steps,
                seed=seed,
                patience=patience,
            )
        except DatasetError as err:
            _fail(err)
        typer.echo(json.dumps({"out": str(out), "metrics": info["metrics"], "data": info["data"]}, indent=1))

    @app.command("finetune")
    def finetune_cmd(
        from_: str = typer.Option(
            ..., "--from", help="pretrained model file or shipped name (e.g. backbone), or `none` for scratch"
        ),
        task: str | None = typer.Option(
            None,
            help="tth_vs_ttbar | vbf_vs_ggf | wh_vs_zh | cp_tth_vs_tta | zprime_vs_ttbar "
            "(required unless --ntuples holds `coffea-hepfm ntuples` output)",
        ),
        train_size: int | None = typer.Option(
            None, help="training events (split evenly between the classes); required with --data"
        ),
        data: Path = typer.Option(..., "--data", "--ntuples", help="training-set / ntuple directory"),
        out: Path | None = typer.Option(None, "--out", "-o", help="output model file (.safetensors)"),
        strategy: str = typer.Option("full", help="full | frozen | head"),
        head_lr_mult: float = typer.Option(10.0),
        lr: float = typer.Option(5e-4),
        seed: int = typer.Option(0),
        epochs: int = typer.Option(
            200, "--epochs", "--max-epochs", help="maximum epochs (early stopping on validation AUC)"
        ),
        time_budget: float | None = typer.Option(None, help="training wall-clock budget in seconds"),
        threads: int | None = typer.Option(None, min=1, help=THREADS_HELP),
        signal: str | None = typer.Option(
            None, help="ntuples only: the signal class (default 'signal' or the first class)"
        ),
        weight_column: str = typer.Option("weight", help="ntuples only: weight column of the loss"),
        val_fraction: float = typer.Option(0.2, help="ntuples only: validation fraction (by event ID)"),
        test_fraction: float = typer.Option(0.2, help="ntuples only: test fraction (by event ID)"),
        device: str = typer.Option("auto", help="ntuples only: auto | cpu | cuda"),
        scheduler: str | None = typer.Option(
            None, help="ntuples only: run on a worker of this Dask scheduler"
        ),
    ):
        """Fine-tune a pretrained backbone (or train from scratch with --from none).

        --data DIR from `coffea-hepfm dataset` (with --task, --train-size), or --ntuples DIR from
        `coffea-hepfm ntuples` (has ntuple.json): weighted loss, split by event ID, via launch_finetune.
        """
        from coffea_hepfm.model import ModelFileError
        from coffea_hepfm.training.dataset import DatasetError
        from coffea_hepfm.training.finetune import finetune

        _threads(threads)
        if (data / "ntuple.json").is_file():
            options = dict(
                weight_column=weight_column,
                val_fraction=val_fraction,
                test_fraction=test_fraction,
                strategy=strategy,
                lr=lr,
                head_lr_mult=head_lr_mult,
                seed=seed,
                max_epochs=epochs,
                time_budget_s=time_budget or float("inf"),
                device=device,
            )
            _finetune_ntuples(data, from_, out, signal, options, scheduler)
            return
        if task is None or train_size is None:
            _fail(ValueError(f"--task and --train-size are required: {data} holds no ntuple.json"))
        try:
            info = finetune(
                data,
                task,
                train_size,
                pretrained=None if from_.lower() == "none" else from_,
                strategy=strategy,
                out=out,
                seed=seed,
                lr=lr,
                head_lr_mult=head_lr_mult,
                max_epochs=epochs,
                time_budget_s=time_budget or float("inf"),
            )
        except (DatasetError, ModelFileError, FileNotFoundError) as err:
            _fail(err)
        t = info["training"]
        typer.echo(
            json.dumps(
                {
                    "out": str(out) if out else None,
                    "metrics": info["metrics"],
                    "train_time_s": t["train_time_s"],
                    "steps": t["steps"],
                    "stopped": t["stopped"],
                },
                indent=1,
            )
        )

    @app.command("evaluate")
    def evaluate_cmd(
        model: str = typer.Argument(..., help="model file or shipped model name"),
        data: Path = typer.Option(..., "--data", "--ntuples", help="training-set / ntuple directory"),
        task: str | None = typer.Option(None, help="default: the model's task"),
        out_dir: Path | None = typer.Option(None, help="write metrics JSON and ROC/score PNGs here"),
        threads: int | None = typer.Option(None, min=1, help=THREADS_HELP),
    ):
        """AUC, accuracy and background rejection at 30 % / 50 % signal efficiency on the test split."""
        from coffea_hepfm.model import ModelFileError
        from coffea_hepfm.training.dataset import DatasetError
        from coffea_hepfm.training.evaluate import evaluate_model

        _threads(threads)
        try:
            metrics = evaluate_model(model, data, task, out_dir)
        except (DatasetError, ModelFileError, FileNotFoundError) as err:
            _fail(err)
        typer.echo(json.dumps(metrics, indent=1))

    @app.command("study")
    def study_cmd(
        data: Path = typer.Option(..., help="training-set directory"),
        from_: str = typer.Option(..., "--from", help="pretrained model file"),
        out: Path = typer.Option(Path("runs/study"), help="results directory (study.json + PNGs)"),
        tasks: str | None = typer.Option(None, help="comma-separated tasks (default: all five)"),
        sizes: str = typer.Option("100,1000,10000"),
        seeds: str = typer.Option("0,1,2"),
        budgets: str | None = typer.Option(None, help="per-size training budget, e.g. 100:10,1000:20"),
        strategy: str = typer.Option("full"),
        inits: str = typer.Option("pretrained,scratch", help="which arms to run"),
        threads: int | None = typer.Option(None, min=1, help=THREADS_HELP),
    ):
        """Learning curves: pretrained + fine-tuned vs scratch over training sizes and seeds (resumable)."""
        from coffea_hepfm.training.study import markdown_table, run_study
        from coffea_hepfm.training.tasks import TASKS

        _threads(threads)
        budget = (
            {int(k): float(v) for k, v in (b.split(":") for b in budgets.split(","))} if budgets else None
        )
        results = run_study(
            data,
            from_,
            out,
            tasks.split(",") if tasks else tuple(TASKS),
            _ints(sizes),
            _ints(seeds),
            budget,
            strategy,
            inits=tuple(inits.split(",")),
        )
        typer.echo(markdown_table(results["summary"]))

    @app.command("study-report")
    def study_report_cmd(
        dirs: list[Path] = typer.Argument(..., help="study result directories to merge"),
        out: Path = typer.Option(..., help="output directory (merged study.json + PNGs)"),
    ):
        """Merge study results (e.g. from parallel runs), redraw the plots and print the table."""
        from coffea_hepfm.training.study import markdown_table, merge_results

        typer.echo(markdown_table(merge_results(dirs, out)["summary"]))

    @app.command("cka")
    def cka_cmd(
        data: Path = typer.Option(..., help="training-set directory"),
        task: str = typer.Option(..., help="downstream task whose test events are used"),
        models: list[str] = typer.Argument(
            ..., help="NAME=MODEL_FILE pairs, e.g. pretrained=backbone.safetensors"
        ),
        out: Path = typer.Option(Path("runs/cka"), help="output directory (cka.json + heatmaps)"),
        max_events: int = typer.Option(2000),
        threads: int | None = typer.Option(None, min=1, help=THREADS_HELP),
    ):
        """Linear CKA (Kornblith et al. 2019) between the layer representations of several models."""
        from coffea_hepfm.model import load_model
        from coffea_hepfm.training.cka import compare_models
        from coffea_hepfm.training.tasks import get_task, task_splits

        _threads(threads)
        pairs = dict(m.split("=", 1) for m in models)
        loaded = {name: load_model(p) for name, p in pairs.items()}
        spec = next(iter(loaded.values())).spec
        test = task_splits(data, get_task(task), None).test
        result = compare_models(
            {k: v.module for k, v in loaded.items()}, test, spec, out, max_events, f"{task}_"
        )
        out.mkdir(parents=True, exist_ok=True)
        (out / f"cka_{task}.json").write_text(json.dumps(result, indent=1))
        typer.echo(json.dumps({k: v["diagonal"] for k, v in result.items()}, indent=1))

    @app.command("finetune-ntuples", hidden=True, deprecated=True)
    def finetune_ntuples_cmd(
        ntuples: Path = typer.Argument(..., help="Ntuple folder written by `coffea-hepfm ntuples`."),
        from_: str = typer.Option(..., "--from", help="Pretrained model file, or `none` for scratch."),
        out: Path = typer.Option(..., "--out", "-o", help="Model file to write (.safetensors)."),
        signal: str = typer.Option(None, "--signal"),
        weight_column: str = typer.Option("weight", "--weight-column"),
        strategy: str = typer.Option("full", "--strategy"),
        max_epochs: int = typer.Option(50, "--max-epochs"),
        time_budget: float = typer.Option(None, "--time-budget"),
        val_fraction: float = typer.Option(0.2, "--val-fraction"),
        test_fraction: float = typer.Option(0.2, "--test-fraction"),
        seed: int = typer.Option(0, "--seed"),
        device: str = typer.Option("auto", "--device"),
        scheduler: str = typer.Option(None, "--scheduler"),
        threads: int | None = typer.Option(None, min=1, help=THREADS_HELP),
    ) -> None:
        """Deprecated: use `coffea-hepfm finetune --ntuples DIR` (same options)."""
        typer.secho(
            "note: `coffea-hepfm finetune-ntuples DIR` is deprecated and will be removed; use "
            "`coffea-hepfm finetune --ntuples DIR` (same options; --max-epochs is also --epochs)",
            fg="yellow",
            err=True,
        )
        _threads(threads)
        if not (ntuples / "ntuple.json").is_file():
            _fail(ValueError(f"{ntuples} holds no ntuple.json: not a `coffea-hepfm ntuples` folder"))
        options = dict(
            weight_column=weight_column,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            strategy=strategy,
            seed=seed,
            max_epochs=max_epochs,
            time_budget_s=time_budget if time_budget is not None else float("inf"),
            device=device,
        )
        _finetune_ntuples(ntuples, from_, out, signal, options, scheduler)
