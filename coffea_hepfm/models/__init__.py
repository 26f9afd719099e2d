"""The models shipped inside the package: ``NAME.safetensors`` (+ ``NAME.json`` sidecar, ``NAME.md`` card).

>>> import coffea_hepfm
>>> "tth_vs_ttbar" in coffea_hepfm.models.available()
True
>>> coffea_hepfm.models.path("TTH_vs_ttbar")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
coffea_hepfm.models.UnknownModel: no shipped model 'TTH_vs_ttbar'; did you mean 'tth_vs_ttbar'? available: ...

Load one with ``coffea_hepfm.model.io.load_model(name)``, or score with ``HEPFMScore(name)``.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from coffea_hepfm.errors import HEPFMError

__all__ = ["MODELS_DIR", "UnknownModel", "available", "path"]

MODELS_DIR = Path(__file__).resolve().parent
SUFFIX = ".safetensors"


class UnknownModel(HEPFMError, LookupError):
    """No shipped model has this name; the message lists the available ones (and the closest name)."""


def available() -> list[str]:
    """Names of the shipped models (file stems of ``coffea_hepfm/models/*.safetensors``), sorted."""
    return sorted(p.name[: -len(SUFFIX)] for p in MODELS_DIR.glob("*" + SUFFIX) if p.is_file())


def suggest(name: str, names: list[str]) -> str:
    """``" did you mean 'x'?"`` for the closest of ``names`` (case-insensitive first), else ``""``.

    >>> suggest("ttH", ["tth", "ttbar"])
    " did you mean 'tth'?"
    >>> suggest("ttH", ["backbone", "tth_vs_ttbar"])
    " did you mean 'tth_vs_ttbar'?"
    >>> suggest("zzz", ["tth"])
    ''
    """
    lower = {n.lower(): n for n in names}
    close = [lower[name.lower()]] if name.lower() in lower else difflib.get_close_matches(name, names, 1)
    if not close:
        close = [lower[c] for c in difflib.get_close_matches(name.lower(), list(lower), 1)]
    if not close:  # a process name for a model name: "ttH" -> "tth_vs_ttbar"
        close = [n for low, n in lower.items() if low.startswith(name.lower() + "_")][:1]
    return f" did you mean {close[0]!r}?" if close else ""


def path(name: str) -> Path:
    """Path of the shipped model ``name`` (with or without the ``.safetensors`` suffix).

    Raises
    ------
    UnknownModel
        If there is no such model; the message suggests the closest name and lists :func:`available`.
    """
    stem = name[: -len(SUFFIX)] if name.endswith(SUFFIX) else name
    candidate = MODELS_DIR / (stem + SUFFIX)
    if "/" in stem or "\\" in stem or not candidate.is_file():
        names = available()
        listing = ", ".join(names) if names else "(none shipped in this installation)"
        hint = suggest(stem, names)
        raise UnknownModel(f"no shipped model {name!r};{hint} available: {listing}")
    return candidate
