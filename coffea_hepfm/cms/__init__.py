"""CMS reference tables: b-tag working points, data-taking eras, object-ID definitions.

Every number here is a published CMS value with its source cited next to it. The package imports nothing
from ``coffea_hepfm`` (only numpy), so every stage may import it: the graph spec uses it to define
analysis-level objects, the simulation to calibrate the branches it writes.

- :mod:`coffea_hepfm.cms.btag`: ``WorkingPoints``, ``WORKING_POINTS``, ``working_points(branch, era)``,
  ``TAGGER_PREFERENCE``, ``REFERENCE_ERA`` (the era simulation stands for).
- :mod:`coffea_hepfm.cms.eras`: ``ERAS``, ``RUN_RANGES``, ``era_of_run(run)``.
- :mod:`coffea_hepfm.cms.objects`: jet ID (NanoAOD bits, the NanoAOD v12 fix, the Run 3 recipe from
  energy fractions), electron / photon cut-based levels, muon IDs and isolation working points.
"""

from coffea_hepfm.cms.btag import (
    BTAG_ETA_MAX,
    REFERENCE_ERA,
    TAGGER_PREFERENCE,
    TAGGERS,
    WORKING_POINTS,
    WorkingPoints,
    working_points,
)
from coffea_hepfm.cms.eras import ERAS, RUN_RANGES, era_of_run

__all__ = [
    "BTAG_ETA_MAX",
    "ERAS",
    "REFERENCE_ERA",
    "RUN_RANGES",
    "TAGGERS",
    "TAGGER_PREFERENCE",
    "WORKING_POINTS",
    "WorkingPoints",
    "era_of_run",
    "working_points",
]
