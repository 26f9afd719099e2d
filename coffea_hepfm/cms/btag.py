"""AK4 b-tagging working points (loose / medium / tight) per NanoAOD tagger branch and CMS era.

A working point is a cut on the tagger's b score: a jet is tagged if ``score > cut``. The loose, medium and
tight points of every tagger here are defined by the same light-jet misidentification rates, 10 %, 1 % and
0.1 % (BTV's definition, e.g. the ``description`` of the ``*_wp_values`` corrections in the BTV
correctionlib files), so a working-point *category* means the same thing whichever tagger a file has. The
numeric cuts differ per era because each era's simulation is calibrated separately.

Sources (BTV pages; numbers checked against the public jsonpog-integration ``POG/BTV`` correctionlib files
where we have them, ``tests/test_cms.py``):

- Run 2 Ultra-Legacy, DeepJet (``btagDeepFlavB``) and DeepCSV (``btagDeepB``):
  https://btv-wiki.docs.cern.ch/ScaleFactors/UL2016preVFP/, .../UL2016postVFP/, .../UL2017/, .../UL2018/
  (formerly twiki BtagRecommendation106XUL16preVFP, 106XUL16postVFP, 106XUL17, 106XUL18).
- Run 3, DeepJet, ParticleNet (``btagPNetB``) and RobustParT (``btagRobustParTAK4B``):
  https://btv-wiki.docs.cern.ch/ScaleFactors/Run3Summer22/, .../Run3Summer22EE/, .../Run3Summer23/,
  .../Run3Summer23BPix/; 2022 and 2022EE equal ``2022_Summer22{,EE}/btagging.json`` (``deepJet_wp_values``,
  ``particleNet_wp_values``, ``robustParticleTransformer_wp_values``).
- 2024, UParT (``btagUParTAK4B``): https://btv-wiki.docs.cern.ch/ScaleFactors/Run3Summer24/
  (correction ``UParTAK4_wp_values``). BTV published no DeepJet / PNet / RobustParT points for 2024.
- CSVv2 (``btagCSVV2``): 2015 from twiki BtagRecommendation76X; 2016 from BtagRecommendation2016Legacy
  (80X ReReco; CSVv2 was not recalibrated for UL, so the values apply to both 2016 UL eras); 2017 from
  BtagRecommendation94X.
"""

from __future__ import annotations

from dataclasses import dataclass

from coffea_hepfm.cms.eras import ERAS

#: NanoAOD ``Jet_<branch>`` b-tag discriminants this table knows, with their common names.
TAGGERS = {
    "btagUParTAK4B": "UParT (Unified Particle Transformer, Run 3 from 2024, NanoAOD v15)",
    "btagPNetB": "ParticleNet (Run 3, NanoAOD v12+)",
    "btagRobustParTAK4B": "RobustParT (Robust Particle Transformer, Run 3, NanoAOD v12+)",
    "btagDeepFlavB": "DeepJet (Run 2 UL and Run 3)",
    "btagDeepB": "DeepCSV (Run 2)",
    "btagCSVV2": "CSVv2 (2015-2017)",
}

#: Default order of preference: newest tagger first. A graph spec takes the first tagger of its list that
#: the file has, whose scores are not placeholders, and that has working points for the era.
TAGGER_PREFERENCE = (
    "btagUParTAK4B",
    "btagPNetB",
    "btagRobustParTAK4B",
    "btagDeepFlavB",
    "btagDeepB",
    "btagCSVV2",
)

#: Reference era of each tagger for simulation, whose files do not say their era: the era of the tagger's
#: first (or only) calibrated simulation campaign of its Run. ``coffea_hepfm.graph`` uses it for
#: simulated files under ``GraphSpec(era="auto")``; a simulation that writes tagger scores calibrated at
#: working points should use the same eras, so both agree.
REFERENCE_ERA = {
    "btagUParTAK4B": "2024",
    "btagPNetB": "2022",
    "btagRobustParTAK4B": "2022",
    "btagDeepFlavB": "2018",
    "btagDeepB": "2018",
    "btagCSVV2": "2017",
}
#: In Run 3 files (NanoAOD v12+) DeepJet is the Run 3 retraining: its reference era there is 2022.
REFERENCE_ERA_RUN3 = {**REFERENCE_ERA, "btagDeepFlavB": "2022"}

#: |eta| up to which AK4 jets are b-tagged (tracker acceptance): 2.4 with the Phase-0 pixel detector
#: (2015-2016), 2.5 from 2017 (Phase-1 pixel). BTV calibrates working points in that range only.
BTAG_ETA_MAX = {era: (2.4 if era.startswith(("2015", "2016")) else 2.5) for era in ERAS}


@dataclass(frozen=True)
class WorkingPoints:
    """Loose / medium / tight cuts of one tagger branch in one era (tagged if ``score > cut``).

    Examples
    --------
    >>> wp = working_points("btagDeepFlavB", "2018")
    >>> wp.medium, wp.cuts
    (0.2783, (0.049, 0.2783, 0.71))
    """

    branch: str
    era: str
    loose: float
    medium: float
    tight: float
    source: str

    @property
    def cuts(self) -> tuple[float, float, float]:
        """``(loose, medium, tight)``."""
        return (self.loose, self.medium, self.tight)


_BTV = "https://btv-wiki.docs.cern.ch/ScaleFactors/"
_PAGES = {
    "2016preVFP": _BTV + "UL2016preVFP/",
    "2016postVFP": _BTV + "UL2016postVFP/",
    "2017": _BTV + "UL2017/",
    "2018": _BTV + "UL2018/",
    "2022": _BTV + "Run3Summer22/",
    "2022EE": _BTV + "Run3Summer22EE/",
    "2023": _BTV + "Run3Summer23/",
    "2023BPix": _BTV + "Run3Summer23BPix/",
    "2024": _BTV + "Run3Summer24/",
}
_TWIKI = "https://twiki.cern.ch/twiki/bin/viewauth/CMS/"

# (branch, era): (loose, medium, tight, source)
_TABLE: dict[tuple[str, str], tuple[float, float, float, str]] = {
    # DeepJet, Run 2 UL
    ("btagDeepFlavB", "2016preVFP"): (0.0508, 0.2598, 0.6502, _PAGES["2016preVFP"]),
    ("btagDeepFlavB", "2016postVFP"): (0.0480, 0.2489, 0.6377, _PAGES["2016postVFP"]),
    ("btagDeepFlavB", "2017"): (0.0532, 0.3040, 0.7476, _PAGES["2017"]),
    ("btagDeepFlavB", "2018"): (0.0490, 0.2783, 0.7100, _PAGES["2018"]),
    # DeepJet, Run 3
    ("btagDeepFlavB", "2022"): (0.0583, 0.3086, 0.7183, _PAGES["2022"]),
    ("btagDeepFlavB", "2022EE"): (0.0614, 0.3196, 0.7300, _PAGES["2022EE"]),
    ("btagDeepFlavB", "2023"): (0.0479, 0.2431, 0.6553, _PAGES["2023"]),
    ("btagDeepFlavB", "2023BPix"): (0.0480, 0.2435, 0.6563, _PAGES["2023BPix"]),
    # ParticleNet, Run 3
    ("btagPNetB", "2022"): (0.0470, 0.2450, 0.6734, _PAGES["2022"]),
    ("btagPNetB", "2022EE"): (0.0499, 0.2605, 0.6915, _PAGES["2022EE"]),
    ("btagPNetB", "2023"): (0.0358, 0.1917, 0.6172, _PAGES["2023"]),
    ("btagPNetB", "2023BPix"): (0.0359, 0.1919, 0.6133, _PAGES["2023BPix"]),
    # RobustParT, Run 3
    ("btagRobustParTAK4B", "2022"): (0.0849, 0.4319, 0.8482, _PAGES["2022"]),
    ("btagRobustParTAK4B", "2022EE"): (0.0897, 0.4510, 0.8604, _PAGES["2022EE"]),
    ("btagRobustParTAK4B", "2023"): (0.0681, 0.3487, 0.7969, _PAGES["2023"]),
    ("btagRobustParTAK4B", "2023BPix"): (0.0683, 0.3494, 0.7994, _PAGES["2023BPix"]),
    # UParT, 2024
    ("btagUParTAK4B", "2024"): (0.0246, 0.1272, 0.4648, _PAGES["2024"]),
    # DeepCSV, Run 2 UL
    ("btagDeepB", "2016preVFP"): (0.2027, 0.6001, 0.8819, _PAGES["2016preVFP"]),
    ("btagDeepB", "2016postVFP"): (0.1918, 0.5847, 0.8767, _PAGES["2016postVFP"]),
    ("btagDeepB", "2017"): (0.1355, 0.4506, 0.7738, _PAGES["2017"]),
    ("btagDeepB", "2018"): (0.1208, 0.4168, 0.7665, _PAGES["2018"]),
    # CSVv2
    ("btagCSVV2", "2015"): (0.460, 0.800, 0.935, _TWIKI + "BtagRecommendation76X"),
    ("btagCSVV2", "2016preVFP"): (0.5426, 0.8484, 0.9535, _TWIKI + "BtagRecommendation2016Legacy"),
    ("btagCSVV2", "2016postVFP"): (0.5426, 0.8484, 0.9535, _TWIKI + "BtagRecommendation2016Legacy"),
    ("btagCSVV2", "2017"): (0.5803, 0.8838, 0.9693, _TWIKI + "BtagRecommendation94X"),
}

#: ``(branch, era) -> WorkingPoints`` for every published combination.
WORKING_POINTS: dict[tuple[str, str], WorkingPoints] = {
    key: WorkingPoints(key[0], key[1], lo, me, ti, src) for key, (lo, me, ti, src) in _TABLE.items()
}


def eras_of(branch: str) -> tuple[str, ...]:
    """Eras (in :data:`~coffea_hepfm.cms.eras.ERAS` order) with working points for ``branch``.

    Examples
    --------
    >>> eras_of("btagUParTAK4B")
    ('2024',)
    """
    return tuple(e for e in ERAS if (branch, e) in WORKING_POINTS)


def working_points(branch: str, era: str) -> WorkingPoints:
    """The working points of tagger ``branch`` (NanoAOD name without ``Jet_``) in ``era``.

    Raises ``KeyError`` naming what exists when the combination was never published.

    Examples
    --------
    >>> working_points("btagPNetB", "2022EE").tight
    0.6915
    >>> working_points("btagPNetB", "2018")
    Traceback (most recent call last):
    ...
    KeyError: 'no b-tag working points for btagPNetB in era 2018; btagPNetB has 2022, 2022EE, 2023, 2023BPix'
    """
    branch = branch.removeprefix("Jet_")
    try:
        return WORKING_POINTS[(branch, era)]
    except KeyError:
        if branch not in TAGGERS:
            raise KeyError(f"unknown b-tag branch {branch!r}; known: {', '.join(TAGGERS)}") from None
        if era not in ERAS:
            raise KeyError(f"unknown era {era!r}; known: {', '.join(ERAS)}") from None
        raise KeyError(
            f"no b-tag working points for {branch} in era {era}; {branch} has {', '.join(eras_of(branch))}"
        ) from None
