"""CMS proton-proton data-taking eras and their run ranges (13 and 13.6 TeV).

An analyst's NanoAOD file does not say its era. Collision data carry their run number, which fixes it;
simulation has ``run == 1`` and says nothing (see ``coffea_hepfm.graph`` for the rule applied then).

Run ranges are those of the CMS certification ("golden") JSON files, whose names give the first and last
certified run of each year (https://cms-service-dqmdc.web.cern.ch/CAF/certification/):

- 2015: ``Cert_246908-260627_13TeV_PromptReco_Collisions15_25ns_JSON``;
- 2016: ``Cert_271036-284044_13TeV_Legacy2016_Collisions16_JSON``; the split into ``2016preVFP`` (APV/HIPM)
  and ``2016postVFP`` at run 278769 follows the UL run ranges of the JME MET-phi corrections in
  jsonpog-integration (``POG/JME/*_UL/met.json``: preVFP 272007-278771, postVFP 278769-284045; the
  boundary run is counted as postVFP here);
- 2017: ``Cert_294927-306462_13TeV_UL2017_Collisions17_GoldenJSON``;
- 2018: ``Cert_314472-325175_13TeV_Legacy2018_Collisions18_JSON``;
- 2022: ``Cert_Collisions2022_355100_362760_Golden``; ``2022EE`` (eras E, F, G) starts at run 359022
  (``Cert_Collisions2022_eraE_359022_360331``);
- 2023: ``Cert_Collisions2023_366442_370790_Golden``; ``2023BPix`` (era D) starts at run 369803;
- 2024: ``Cert_Collisions2024_378981_386951_Golden``.
"""

from __future__ import annotations

import numpy as np

#: Era names, in time order. Run 2 eras follow the Ultra-Legacy (UL) reprocessing.
ERAS = (
    "2015",
    "2016preVFP",
    "2016postVFP",
    "2017",
    "2018",
    "2022",
    "2022EE",
    "2023",
    "2023BPix",
    "2024",
)

#: ``era -> (first run, last run)``, inclusive (sources in the module docstring).
RUN_RANGES: dict[str, tuple[int, int]] = {
    "2015": (246908, 260627),
    "2016preVFP": (271036, 278768),
    "2016postVFP": (278769, 284044),
    "2017": (294927, 306462),
    "2018": (314472, 325175),
    "2022": (355100, 359021),
    "2022EE": (359022, 362760),
    "2023": (366442, 369802),
    "2023BPix": (369803, 370790),
    "2024": (378981, 386951),
}

_FIRST = np.array([RUN_RANGES[e][0] for e in ERAS], dtype=np.int64)
_LAST = np.array([RUN_RANGES[e][1] for e in ERAS], dtype=np.int64)


def era_index_of_run(run) -> np.ndarray:
    """Index into :data:`ERAS` of each run number, ``-1`` outside every certified range (e.g. ``run == 1``
    in simulation, or a run between two years).

    Examples
    --------
    >>> era_index_of_run([1, 315267, 359022, 359021]).tolist()
    [-1, 4, 6, 5]
    """
    run = np.asarray(run, dtype=np.int64)
    i = np.searchsorted(_FIRST, run, side="right") - 1
    ok = (i >= 0) & (run <= _LAST[np.clip(i, 0, None)])
    return np.where(ok, i, -1)


def era_of_run(run: int) -> str | None:
    """The era of one run number, or ``None`` if it is in no certified range.

    Examples
    --------
    >>> era_of_run(315267), era_of_run(1)
    ('2018', None)
    """
    i = int(era_index_of_run([run])[0])
    return ERAS[i] if i >= 0 else None
