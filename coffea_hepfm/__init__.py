"""coffea-hepfm: a pretrained graph-network foundation model for collider events, as a coffea plugin.

The package follows the data flow, one folder per stage::

    simulation -> nanoaod -> graph -> model -> score      (HEPFMScore, local or Triton)
                                          \\-> processors (ntuples) -> training

Users need one import::

    from coffea_hepfm import HEPFMScore
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["HEPFMScore", "GraphSpec", "__version__"]


def __getattr__(name: str):
    # Lazy: importing coffea_hepfm must not pull torch/coffea until they are used.
    if name == "HEPFMScore":
        from coffea_hepfm.score import HEPFMScore

        return HEPFMScore
    if name == "GraphSpec":
        from coffea_hepfm.graph import GraphSpec

        return GraphSpec
    raise AttributeError(f"module 'coffea_hepfm' has no attribute {name!r}")
