"""How every ``coffea-hepfm`` command reports problems: a warning summary and one ``error:`` line.

Every command runs inside :func:`run_reported` (the top-level click group, :class:`ReportingGroup`,
calls it), so the rules hold for all of them without each command repeating them:

- **Warnings.** coffea-hepfm's own warnings (:class:`~coffea_hepfm.errors.HEPFMWarning`) are collected
  while the command runs and printed at the end to stderr, one line per kind (the warning class and
  the text before its first colon) with how many times it happened and the input file(s) it concerns::

      warning: MissingCollectionWarning x2 in nano_tt_v12.root: Photon_pt not found: treating Photon ...

  Warnings of other libraries are shown as Python shows them.
- **Errors.** An exception ends the command with one line ``error: <message>`` on stderr and no
  traceback. The exit code says what kind of failure it was:

  ==== ============================================================================================
  code meaning
  ==== ============================================================================================
  0    success (possibly with warnings)
  1    an unexpected error inside coffea-hepfm (a bug: the line says so; set ``HEPFM_TRACEBACK=1``
       to see the traceback and report it)
  2    bad input or options: a coffea-hepfm error (:class:`~coffea_hepfm.errors.HEPFMError`), a file
       that cannot be found or read (``OSError``), or a rejected value (``ValueError``, ``KeyError``,
       ``LookupError``); command-line usage errors (click) are 2 as well
  130  interrupted (Ctrl-C)
  ==== ============================================================================================

``HEPFM_TRACEBACK=1`` re-raises every error with its traceback (for debugging).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from typing import Any

import typer
from typer.core import TyperGroup

from coffea_hepfm.errors import HEPFMError

__all__ = ["EXIT_INPUT", "EXIT_INTERNAL", "ReportingGroup", "error_line", "run_reported", "summarise"]

EXIT_INTERNAL = 1
EXIT_INPUT = 2
EXIT_INTERRUPTED = 130
#: Errors that mean "the input or the options are wrong" rather than "coffea-hepfm has a bug".
INPUT_ERRORS = (HEPFMError, OSError, ValueError, KeyError, LookupError)
_MAX_FILES = 3
#: click's own outcomes (exit, abort, usage errors) pass through; typer may vendor click, so take its classes.
_CLICK_OUTCOMES = (
    typer.Exit,
    typer.Abort,
    *(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"),
)


def _kind(message: Warning) -> tuple[str, str]:
    detail = getattr(message, "detail", None) or str(message)
    return type(message).__name__, re.sub(r"\d+", "N", detail.split(": ")[0])


def summarise(records: list) -> list[str]:
    """One ``warning:`` line per kind of recorded warning, in order of first appearance.

    ``records`` holds ``(message, category, filename, lineno)`` as recorded by
    :func:`coffea_hepfm.nanoaod.inputs.collect`.

    Examples
    --------
    >>> from coffea_hepfm.errors import HEPFMWarning
    >>> w = HEPFMWarning("a.root: x_pt not found: treated as empty")
    >>> w.input_file, w.detail = "a.root", "x_pt not found: treated as empty"
    >>> summarise([(w, HEPFMWarning, "f.py", 1)] * 3)
    ['warning: HEPFMWarning x3 in a.root: x_pt not found: treated as empty']
    >>> summarise([])
    []
    """
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for message, *_ in records:
        g = groups.setdefault(_kind(message), {"count": 0, "files": [], "first": message})
        g["count"] += 1
        path = getattr(message, "input_file", None)
        if path is not None and path not in g["files"]:
            g["files"].append(path)
    lines = []
    for (name, _), g in groups.items():
        first = g["first"]
        text = getattr(first, "detail", None) or str(first)
        where = ""
        if g["files"]:
            shown = ", ".join(g["files"][:_MAX_FILES])
            more = len(g["files"]) - _MAX_FILES
            where = f" in {shown}" + (f" and {more} more file(s)" if more > 0 else "")
        count = f" x{g['count']}" if g["count"] > 1 else ""
        lines.append(f"warning: {name}{count}{where}: {text}")
    return lines


def error_line(err: BaseException) -> tuple[str, int]:
    """The ``error:`` line for ``err`` and the exit code (see the module docstring)."""
    if isinstance(err, KeyError) and len(err.args) == 1 and type(err).__str__ is KeyError.__str__:
        text = str(err.args[0])  # KeyError would print the message in quotes
    else:
        text = str(err) or type(err).__name__
    path = getattr(err, "input_file", None)
    if path is not None and str(path) not in text:
        entries = getattr(err, "entries", None)
        where = path if entries is None else f"{path}, entries {entries[0]}-{entries[1]}"
        text = f"{text} (in {where})"
    text = " ".join(text.split())  # one line, whatever the message's layout
    if isinstance(err, INPUT_ERRORS):
        return f"error: {text}", EXIT_INPUT
    return (
        f"error: unexpected {type(err).__name__}: {text} (a bug in coffea-hepfm: run again with "
        "HEPFM_TRACEBACK=1 to see the traceback, and report it)",
        EXIT_INTERNAL,
    )


def _echo(line: str, color: str) -> None:
    typer.secho(line, fg=color, err=True)


def run_reported(fn: Callable[[], Any]) -> Any:
    """Run a command body with the warning summary and the one-line error rule."""
    from coffea_hepfm.nanoaod.inputs import collect

    records: list = []
    try:
        with collect() as records:
            result = fn()
    except _CLICK_OUTCOMES:
        _report(records)
        raise
    except KeyboardInterrupt:
        _report(records)
        _echo("error: interrupted", "red")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except Exception as err:
        _report(records)
        if os.environ.get("HEPFM_TRACEBACK"):
            raise
        line, code = error_line(err)
        _echo(line, "red")
        raise typer.Exit(code) from None
    _report(records)
    return result


def _report(records: list) -> None:
    for line in summarise(records):
        _echo(line, "yellow")
    sys.stderr.flush()


class ReportingGroup(TyperGroup):
    """The top-level click group: runs every (sub)command through :func:`run_reported`."""

    def invoke(self, ctx: typer.Context) -> Any:
        return run_reported(lambda: super(ReportingGroup, self).invoke(ctx))
