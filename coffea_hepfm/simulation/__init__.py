"""Simulation engine: Pythia 8 events through a parametrised detector, written as NanoAOD.

>>> from coffea_hepfm.simulation import simulate                     # doctest: +SKIP
>>> files = simulate(["ttbar"], n_events=200, seed=1, out_dir="sim")  # doctest: +SKIP
>>> files["ttbar"][0].name                                            # doctest: +SKIP
'ttbar_00000.root'
"""

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
