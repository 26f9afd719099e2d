"""coffea-hepfm: a pretrained graph-network foundation model for collider events, as a coffea plugin.

The package follows the data flow, one folder per stage::

    simulation -> nanoaod -> graph -> model -> score      (HEPFMScore, local or Triton)
                                          \\-> processors (ntuples) -> training

Users need one import::

    from coffea_hepfm import HEPFMScore

The stage sub-packages load on first use, so ``import coffea_hepfm; coffea_hepfm.models.available()``
works without importing torch or coffea.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

__all__ = ["HEPFMScore", "GraphSpec", "__version__"]

# Sub-packages reachable as attributes (``coffea_hepfm.models``) without an explicit import.
_SUBPACKAGES = (
    "errors",
    "graph",
    "model",
    "models",
    "nanoaod",
    "processors",
    "score",
    "simulation",
    "threads",
    "training",
    "triton",
)


def __getattr__(name: str):
    # Lazy: importing coffea_hepfm must not pull torch/coffea until they are used.
    if name == "HEPFMScore":
        from coffea_hepfm.score import HEPFMScore

        return HEPFMScore
    if name == "GraphSpec":
        from coffea_hepfm.graph import GraphSpec

        return GraphSpec
    if name in _SUBPACKAGES:
        return importlib.import_module(f"coffea_hepfm.{name}")
    raise AttributeError(f"module 'coffea_hepfm' has no attribute {name!r}")
