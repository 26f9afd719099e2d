"""Package attributes that load their submodule on first use (PEP 562), so imports stay cheap.

``import coffea_hepfm.cli`` (every ``coffea-hepfm`` launch) imports each stage's ``cli.py``, and with it the
stage package's ``__init__``. If those imported their submodules eagerly, every launch would load torch,
coffea and Pythia (seconds of CPU) before ``--help`` could print. With :func:`attach` a stage package
keeps its public names (``from coffea_hepfm.graph import GraphSpec`` works as before) but imports the
defining submodule only when a name is first used.

This module imports nothing from the package: every stage may use it.

Examples
--------
In ``coffea_hepfm/graph/__init__.py``::

    __getattr__, __dir__ = attach(__name__, {"GraphSpec": "spec", "resolve": "record:resolve_any"})
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["attach"]


def attach(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` whose names come from submodules on first use.

    Parameters
    ----------
    package
        The package's ``__name__``.
    exports
        ``{public name: "submodule"}`` (same name there) or ``"submodule:name"`` (another name there).

    Examples
    --------
    >>> getattr_, dir_ = attach("json", {"dumps_again": "encoder:JSONEncoder"})
    >>> getattr_("dumps_again").__name__
    'JSONEncoder'
    >>> getattr_("nothing")
    Traceback (most recent call last):
    ...
    AttributeError: module 'json' has no attribute 'nothing'
    """

    def __getattr__(name: str) -> Any:
        try:
            module, _, attr = exports[name].partition(":")
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(f"{package}.{module}"), attr or name)
        setattr(sys.modules[package], name, value)  # later lookups skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *exports})

    return __getattr__, __dir__
