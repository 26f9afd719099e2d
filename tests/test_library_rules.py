"""Project-wide rules on library code, checked on the source: warning filters, light imports."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ("coffea_hepfm", "processors", "examples")
#: Files another branch is changing right now (their filters are being narrowed there); remove an entry
#: once that branch is merged.
PENDING_ELSEWHERE = {
    "coffea_hepfm/model/export.py",
    "coffea_hepfm/triton/repository.py",
    "coffea_hepfm/triton/bench.py",
    "coffea_hepfm/score/bench.py",
}


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
            if rel in PENDING_ELSEWHERE:
                continue
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
