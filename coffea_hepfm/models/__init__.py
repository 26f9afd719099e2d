"""The models shipped inside the package: ``NAME.safetensors`` (+ ``NAME.json`` sidecar, ``NAME.md`` card).

>>> from coffea_hepfm import models
>>> models.available()  # doctest: +SKIP
['hepfm-pretrained', 'tth-vs-ttbar']
>>> models.path("no-such-model")  # doctest: +SKIP
UnknownModel: no shipped model 'no-such-model'; available: hepfm-pretrained, tth-vs-ttbar

Load one with ``coffea_hepfm.model.io.load_model(name)``.
"""

from __future__ import annotations

from pathlib import Path

from coffea_hepfm.errors import HEPFMError

__all__ = ["MODELS_DIR", "UnknownModel", "available", "path"]

MODELS_DIR = Path(__file__).resolve().parent
SUFFIX = ".safetensors"


class UnknownModel(HEPFMError, LookupError):
    """No shipped model has this name; the message lists the available ones."""


def available() -> list[str]:
    """Names of the shipped models (file stems of ``coffea_hepfm/models/*.safetensors``), sorted."""
    return sorted(p.name[: -len(SUFFIX)] for p in MODELS_DIR.glob("*" + SUFFIX) if p.is_file())


def path(name: str) -> Path:
    """Path of the shipped model ``name`` (with or without the ``.safetensors`` suffix).

    Raises
    ------
    UnknownModel
        If there is no such model; the message lists :func:`available`.
    """
    stem = name[: -len(SUFFIX)] if name.endswith(SUFFIX) else name
    candidate = MODELS_DIR / (stem + SUFFIX)
    if "/" in stem or "\\" in stem or not candidate.is_file():
        names = available()
        listing = ", ".join(names) if names else "(none shipped in this installation)"
        raise UnknownModel(f"no shipped model {name!r}; available: {listing}")
    return candidate
