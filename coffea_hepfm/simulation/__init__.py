"""Simulation engine: Pythia 8 events through a parametrised detector, written as NanoAOD.

>>> from coffea_hepfm.simulation import simulate                     # doctest: +SKIP
>>> files = simulate(["ttbar"], n_events=200, seed=1, out_dir="sim")  # doctest: +SKIP
>>> files["ttbar"][0].name                                            # doctest: +SKIP
'ttbar_00000.root'
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from coffea_hepfm.lazy import attach

if TYPE_CHECKING:
    from coffea_hepfm.simulation.processes import (
        PROCESSES,
        downstream_processes,
        get_process,
        known_processes,
        pretraining_processes,
    )
    from coffea_hepfm.simulation.runner import simulate

__all__ = [
    "PROCESSES",
    "downstream_processes",
    "get_process",
    "known_processes",
    "pretraining_processes",
    "simulate",
]

# Names load their submodule on first use (coffea_hepfm.lazy): `coffea-hepfm --help` imports this
# package through its cli.py and must not pay for numpy/awkward/torch/coffea/pythia8mc.
_EXPORTS = {
    "PROCESSES": "processes",
    "downstream_processes": "processes",
    "get_process": "processes",
    "known_processes": "processes",
    "pretraining_processes": "processes",
    "simulate": "runner",
}
__getattr__, __dir__ = attach(__name__, _EXPORTS)
