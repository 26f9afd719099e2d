"""Project-wide rules on library code, checked on the source: warning filters, light imports."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ("coffea_hepfm", "processors", "examples")


#: Files another branch is changing right now (their filters are being narrowed there); remove an entry
#: once that branch is merged.
def _call_name(node: ast.Call) -> str:
    f = node.func
    return f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")


def _arg(node: ast.Call, pos: int, name: str):
    if len(node.args) > pos:
        return node.args[pos]
    return next((k.value for k in node.keywords if k.arg == name), None)


def blanket_filters(source: str) -> list[tuple[int, str]]:
    """``(line, why)`` for each warning filter that is not narrowed to one third-party warning: a
    ``simplefilter`` without a category or with ``"ignore"`` (no message can be given), and a
    ``filterwarnings("ignore", ...)`` without both a message and a category.

    >>> blanket_filters("import warnings\\nwarnings.simplefilter('ignore')")
    [(2, "simplefilter('ignore') acts on every warning")]
    >>> blanket_filters("warnings.filterwarnings('ignore', message='x', category=RuntimeWarning)")
    []
    """
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        name = _call_name(node)
        action = _arg(node, 0, "action")
        action = action.value if isinstance(action, ast.Constant) else None
        if name == "simplefilter":
            if _arg(node, 1, "category") is None:
                found.append((node.lineno, f"simplefilter({action!r}) acts on every warning"))
            elif action == "ignore":
                found.append(
                    (node.lineno, "simplefilter('ignore', category): no message, use filterwarnings")
                )
        elif name == "filterwarnings" and action == "ignore":
            message, category = _arg(node, 1, "message"), _arg(node, 2, "category")
            if (
                message is None
                or category is None
                or (isinstance(message, ast.Constant) and not message.value)
            ):
                found.append((node.lineno, "filterwarnings('ignore') without both message and category"))
    return found


def test_library_code_filters_only_specific_warnings():
    """HELPERS.md / docs/design.md: library code filters only a specific third-party warning (category and
    message), never with a blanket ``simplefilter``."""
    bad = []
    for top in LIBRARY:
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            bad += [f"{rel}:{line}: {why}" for line, why in blanket_filters(path.read_text())]
    assert not bad, "\n".join(bad)


def test_graph_info_reports_package_warnings_through_the_cli_summary(shared_nanoaod):
    """graph-info used to record *every* warning (``simplefilter("always")``) and print the text alone;
    now package warnings go through the CLI's summary (class, file, text) and ``--era`` shows the era."""
    from typer.testing import CliRunner

    from coffea_hepfm.cli import app

    path = shared_nanoaod / "nano_tt_v12.root"
    res = CliRunner().invoke(app, ["graph-info", str(path), "--era", "2022EE"], terminal_width=200)
    assert res.exit_code == 0, res.output
    assert "GraphSpec(era='2022EE')" in res.output
    assert f"warning: MissingCollectionWarning in {path}: Photon_pt not found" in res.output
    bad = CliRunner().invoke(app, ["graph-info", str(path), "--era", "2099"])
    assert bad.exit_code == 2 and "GraphSpec.era must be 'auto' or one of" in bad.output


HEAVY = ("torch", "coffea", "pythia8mc", "dask", "dask_awkward", "awkward", "uproot", "sklearn", "matplotlib")


@pytest.mark.parametrize(
    "code",
    [
        "import coffea_hepfm.cli",
        "import coffea_hepfm, coffea_hepfm.graph, coffea_hepfm.model, coffea_hepfm.simulation, coffea_hepfm.score",
        # what `coffea-hepfm --help` runs (through the reporting group)
        "import sys; from coffea_hepfm.cli import app; sys.argv = ['coffea-hepfm', '--help']\n"
        "try:\n    app()\nexcept SystemExit:\n    pass",
    ],
    ids=["import-cli", "import-stage-packages", "help"],
)
def test_cli_start_is_light(code):
    """Every ``coffea-hepfm`` launch imports ``coffea_hepfm.cli`` and the stage packages through their
    ``cli.py``: none of torch, coffea, pythia8mc (nor dask, awkward, uproot, ...) may load there; the stage
    ``__init__`` files load their names on first use (``coffea_hepfm.lazy``)."""
    probe = f"{code}\nimport sys\nprint('LOADED', sorted(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "LOADED []", out[-500:]


def test_lazy_stage_packages_keep_their_public_names():
    """``from coffea_hepfm.graph import GraphSpec`` and every other documented name still import."""
    import importlib

    for pkg in ("graph", "model", "nanoaod", "simulation", "score"):
        module = importlib.import_module(f"coffea_hepfm.{pkg}")
        for name in module.__all__:
            assert getattr(module, name) is not None, (pkg, name)
        if pkg != "score":  # score's __init__ is the speed branch's (no __dir__)
            assert set(module.__all__) <= set(dir(module)), pkg
    from coffea_hepfm.graph import GraphSpec, resolve
    from coffea_hepfm.graph.record import resolve_any
    from coffea_hepfm.graph.spec import GraphSpec as Defined

    assert resolve is resolve_any and GraphSpec is Defined
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        importlib.import_module("coffea_hepfm.graph").nope  # noqa: B018
