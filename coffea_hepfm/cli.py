"""The ``coffea-hepfm`` command line.

Each stage of the data flow owns its commands in its own ``cli.py`` (``simulation/cli.py``,
``graph``..., ``training/cli.py``, ``score/cli.py``, ``triton/cli.py``, ``processors/cli.py``) and exposes
``register(app, bench)``. Those modules import heavy packages (torch, pythia8) inside the command bodies,
so ``coffea-hepfm --help`` stays fast.

Every command reports problems the same way (:mod:`coffea_hepfm.cli_report`): the package's warnings
summarised at the end, one line per kind with a count and the file(s), and errors as one ``error:``
line without a traceback, exit code 2 for bad input and 1 for a bug.
"""

from __future__ import annotations

import importlib

import typer

from coffea_hepfm.cli_report import ReportingGroup

app = typer.Typer(
    cls=ReportingGroup,
    name="coffea-hepfm",
    help="A pretrained graph-network foundation model for collider events, as a coffea plugin.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
bench = typer.Typer(
    help="Benchmarks: print throughput figures and ratios from one run.", no_args_is_help=True
)
app.add_typer(bench, name="bench")

# Order follows the data flow: simulation -> NanoAOD -> graph -> model -> score | ntuples -> training.
_STAGES = (
    "coffea_hepfm.simulation.cli",
    "coffea_hepfm.nanoaod.cli",
    "coffea_hepfm.graph.cli",
    "coffea_hepfm.model.cli",
    "coffea_hepfm.training.cli",
    "coffea_hepfm.training.reference_cli",
    "coffea_hepfm.score.cli",
    "coffea_hepfm.score.domain_cli",
    "coffea_hepfm.triton.cli",
    "coffea_hepfm.processors.cli",
    "coffea_hepfm.demo",
)


def _register_all() -> None:
    for name in _STAGES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name == name:  # stage not written yet
                continue
            raise
        module.register(app, bench)


_register_all()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
