"""Reading NanoAOD: one code path for CMS files and for the files this project simulates.

Every downstream stage (graph, score, processors, training) opens NanoAOD through
:func:`open_events`, so a schema mismatch between simulated and real files shows up everywhere at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from coffea_hepfm.lazy import attach

if TYPE_CHECKING:
    from coffea_hepfm.nanoaod.reader import open_events

__all__ = ["open_events"]

# Names load their submodule on first use (coffea_hepfm.lazy): `coffea-hepfm --help` imports this
# package through its cli.py and must not pay for numpy/awkward/torch/coffea/pythia8mc.
_EXPORTS = {
    "open_events": "reader",
}
__getattr__, __dir__ = attach(__name__, _EXPORTS)
