"""Reading NanoAOD: one code path for CMS files and for the files this project simulates.

Every downstream stage (graph, score, processors, training) opens NanoAOD through
:func:`open_events`, so a schema mismatch between simulated and real files shows up everywhere at once.
"""

from coffea_hepfm.nanoaod.reader import open_events

__all__ = ["open_events"]
