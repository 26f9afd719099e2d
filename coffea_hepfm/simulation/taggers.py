"""b-tagging discriminants for every tagger a NanoAOD file may carry, with per-flavour efficiencies at
their working points and the taggers' real default values.

Each tagger's score is drawn, per hadron flavour (b = 5, c = 4, light = 0), from a piecewise-linear
survival function ``P(score > knot)`` through its working points, so the tagging efficiency at every
working point is the tabulated one by construction. The taggers of one jet are correlated through one
latent "b-ness" per jet (a Gaussian copula: ``z_t = a_t z + sqrt(1 - a_t^2) eps_t``), with loadings that
reproduce the rank correlations of DeepJet, ParticleNet and RobustParT scores in CMS simulation
(``nano_tt_v12.root``, Spearman: b jets 0.87-0.92; light jets 0.89 DeepJet-ParT, 0.43 with PNet).

Eras emulated (the simulation as a whole emulates Run 3 2022, NanoAOD v12) are the reference eras the
graph stage assigns to simulation (``graph.btagging.MC_ERA`` / ``MC_ERA_RUN3``, docs/design.md): the working
points come from :mod:`coffea_hepfm.cms.btag` for that era, so a category read by the graph means what the
efficiencies below say.

``btagDeepFlavB`` (DeepJet), ``btagPNetB`` (ParticleNet), ``btagRobustParTAK4B`` (RobustParT): 2022
    (Summer22, pre-EE; loose/medium/tight are defined by 10 %, 1 %, 0.1 % light-jet misidentification,
    CMS BTV). The extra knots XT/XXT are the ``*_wp_values`` of ``shared/data/corrections/btv/
    2022_Summer22_btagging.json``. b- and c-jet efficiencies and light-jet rates at L/M are measured in
    CMS's own Run3Summer22 ttbar simulation (``nano_tt_v12.root``, jets pT > 20 GeV, |eta| < 2.5, 397 b /
    137 c / 620 light jets; statistical errors 1-2 % for b, 4 % for c, 0.5-1.5 % for light). In ttbar the
    light-jet rates exceed the WP definitions (ParticleNet: 4.2 % at M, 35 % at L); that is what CMS ttbar
    looks like, so that is what is emulated. Light-jet rates at T/XT/XXT, where the file has too few jets,
    are the definitions (0.1 %, 0.05 %, 0.01 %). Cross-check: the ordering UParT >= RobustParT ~
    ParticleNet > DeepJet of CMS DP notes (CDS 2904702, DP-2025-081) holds.
``btagUParTAK4B`` (UParT): 2024 (NanoAOD v15); efficiencies taken equal to RobustParT's at the same
    working points (UParT performs at least as well, DP-2025-081), an approximation.
``btagDeepB`` (DeepCSV): 2018 UL working points; ``btagCSVV2``: 2017 working points. Efficiencies of
    CMS-BTV-16-002 (JINST 13 (2018) P05011) for ttbar jets with pT > 20 GeV in 2016: DeepCSV L/M/T b
    84/68/50 %, c 39/12/2.4 %, udsg 11/1.1/0.1 %; CSVv2 b 81/63/41 %, c 37/12/2.2 %, udsg 8.9/0.9/0.1 %
    (the Phase-1 pixel detector of 2017-2018 did better; these taggers are fallbacks for Run 2 files).

Defaults (the taggers' real behaviour outside tracker acceptance, seen in CMS files): DeepJet is evaluated
for every jet and gives forward jets (|eta| >= 2.5) a light-like value (distribution of
``nano_tt_v12.root``'s forward jets); ParticleNet gives -1 and RobustParT -3 when |eta| >= 2.5 or the raw
(uncorrected) jet pT is below 15 GeV; UParT -1 likewise; DeepCSV gives -2 and CSVv2 -10 for jets without
tracks (|eta| >= 2.5, or no charged hadron; as in ``nano_dy.root``).

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(3)
>>> flav = np.repeat([5, 4, 0], 20000)
>>> s = scores(flav, np.zeros(len(flav)), np.full(len(flav), 50.0), np.ones(len(flav), bool), rng)
>>> m = TAGGERS["btagDeepFlavB"].wp[1]
>>> abs(float((s["btagDeepFlavB"][:20000] > m).mean()) - 0.869) < 0.01   # b jets at medium
True
>>> fwd = scores(np.array([5]), np.array([3.0]), np.array([50.0]), np.array([True]), rng, TAGGERS)
>>> fwd["btagPNetB"].tolist(), fwd["btagRobustParTAK4B"].tolist(), fwd["btagDeepB"].tolist()
([-1.0], [-3.0], [-2.0])
>>> sorted(scores(np.array([5]), np.array([0.0]), np.array([50.0]), np.array([True]), rng))  # WRITTEN
['btagDeepFlavB', 'btagPNetB', 'btagRobustParTAK4B']
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr

from coffea_hepfm.cms.btag import working_points


@dataclass(frozen=True)
class TaggerModel:
    """One tagger's emulation.

    ``knots`` are increasing scores (the WPs loose, medium, tight, then extra knots); ``survival[f]`` is
    P(score > knot) for hadron flavour ``f``; ``loading[f]`` the copula loading; ``default`` the value of
    jets the tagger does not evaluate; ``min_raw_pt`` the raw-pT threshold below which it is not evaluated
    (``None``: always evaluated inside the tracker); ``needs_tracks``: not evaluated for jets without a
    charged hadron.
    """

    branch: str
    era: str
    wp: tuple[float, float, float]
    knots: tuple[float, ...]
    survival: dict[int, tuple[float, ...]]
    loading: dict[int, float]
    default: float | None
    min_raw_pt: float | None = None
    needs_tracks: bool = False
    source: str = ""


def _run3(branch, xt, extra, b, c, light, load_b, load_l, default, min_raw_pt, era="2022"):
    wp = working_points(branch, era).cuts
    return TaggerModel(
        branch=branch,
        era=era,
        wp=wp,
        knots=(0.01, 0.02, *wp, *xt, *extra),
        survival={5: b, 4: c, 0: light},
        loading={5: load_b, 4: load_b, 0: load_l},
        default=default,
        min_raw_pt=min_raw_pt,
        source="WPs: BTV 2022_Summer22 json; efficiencies: CMS Run3Summer22 ttbar (nano_tt_v12.root)",
    )


# Survival at knots (0.01, 0.02, L, M, T, XT, XXT, then extra shape knots 0.99, 0.998); XT, XXT from the
# BTV 2022_Summer22 json.
TAGGERS: dict[str, TaggerModel] = {
    "btagDeepFlavB": _run3(
        "btagDeepFlavB",
        (0.8111, 0.9512),
        (0.99, 0.998),
        b=(0.995, 0.985, 0.962, 0.869, 0.723, 0.665, 0.499, 0.343, 0.199),
        c=(0.934, 0.854, 0.620, 0.241, 0.029, 0.022, 0.002, 0.0, 0.0),
        light=(0.663, 0.418, 0.158, 0.0177, 0.001, 0.0005, 0.0001, 0.0, 0.0),
        load_b=0.965,
        load_l=0.95,
        default=None,  # evaluated everywhere (forward jets: FORWARD_DEEPJET)
        min_raw_pt=None,
    ),
    "btagPNetB": _run3(
        "btagPNetB",
        (0.7862, 0.961),
        (0.99, 0.998),
        b=(0.992, 0.990, 0.985, 0.897, 0.766, 0.720, 0.542, 0.416, 0.237),
        c=(0.927, 0.832, 0.620, 0.153, 0.029, 0.015, 0.002, 0.0, 0.0),
        light=(0.666, 0.495, 0.352, 0.0419, 0.001, 0.0005, 0.0001, 0.0, 0.0),
        load_b=0.91,
        load_l=0.46,
        default=-1.0,
        min_raw_pt=15.0,
    ),
    "btagRobustParTAK4B": _run3(
        "btagRobustParTAK4B",
        (0.9151, 0.9874),
        (0.99, 0.998),
        b=(0.998, 0.992, 0.967, 0.882, 0.748, 0.703, 0.572, 0.549, 0.466),
        c=(0.956, 0.869, 0.620, 0.183, 0.029, 0.029, 0.003, 0.0, 0.0),
        light=(0.658, 0.448, 0.144, 0.0113, 0.001, 0.0005, 0.0001, 0.0, 0.0),
        load_b=0.965,
        load_l=0.95,
        default=-3.0,
        min_raw_pt=15.0,
    ),
}
# UParT (2024 WPs, NanoAOD v15): RobustParT's efficiencies at the same working points (see module notes);
# RobustParT's shape knots (0.01, 0.02, 0.99, 0.998) mean nothing on UParT's scale and are dropped.
_parT = TAGGERS["btagRobustParTAK4B"]
_upart = working_points("btagUParTAK4B", "2024").cuts
TAGGERS["btagUParTAK4B"] = TaggerModel(
    branch="btagUParTAK4B",
    era="2024",
    wp=_upart,
    knots=(*_upart, 0.6298, 0.9739),  # XT, XXT: BTV Run3Summer24 UParTAK4_wp_values
    survival={f: s[2:7] for f, s in _parT.survival.items()},
    loading=_parT.loading,
    default=-1.0,
    min_raw_pt=15.0,
    source="WPs: BTV 2024 (NanoAOD v15); efficiencies: RobustParT's (approximation)",
)


def _btv16002(branch, era, b, c, light, load):
    wp = working_points(branch, era).cuts
    return TaggerModel(
        branch=branch,
        era=era,
        wp=wp,
        knots=wp,
        survival={5: b, 4: c, 0: light},
        loading={5: load, 4: load, 0: load},
        default=-2.0 if branch == "btagDeepB" else -10.0,
        needs_tracks=True,
        source=f"WPs: BTV {era}; efficiencies: CMS-BTV-16-002 (2016), ttbar jets pT > 20 GeV",
    )


TAGGERS["btagDeepB"] = _btv16002(
    "btagDeepB", "2018", (0.84, 0.68, 0.50), (0.39, 0.12, 0.024), (0.11, 0.011, 0.001), 0.85
)
TAGGERS["btagCSVV2"] = _btv16002(
    "btagCSVV2", "2017", (0.81, 0.63, 0.41), (0.37, 0.12, 0.022), (0.089, 0.009, 0.001), 0.8
)

# DeepJet on jets outside the tracker: quantiles of nano_tt_v12.root's jets with |eta| > 2.5 (228 jets).
FORWARD_DEEPJET = (
    (0.006, 0.0176, 0.0384, 0.0529, 0.0709, 0.206, 0.57),
    (1.0, 0.95, 0.75, 0.50, 0.25, 0.05, 0.0),
)
TRACKER_ETA = 2.5

# What a simulated file carries: the b-taggers of CMS NanoAOD v12 (as nano_tt_v12.root), the version the
# simulation emulates. Writing the v15-only UParT (or Run 2's DeepCSV/CSVv2) would make the graph pick a
# tagger on simulation that CMS v12 files never have: the v2 domain classifier's AUC was 0.815 with UParT
# on the simulation and PNet on CMS, 0.764 with PNet on both (docs/results.md).
WRITTEN = ("btagDeepFlavB", "btagPNetB", "btagRobustParTAK4B")


def _inverse_survival(u: np.ndarray, knots, survival) -> np.ndarray:
    """Score s with P(score > s) = u, linear between knots (survival 1 at 0, 0 at 1)."""
    x = np.r_[0.0, knots, 1.0]
    s = np.r_[1.0, survival, 0.0]
    # np.interp needs increasing x-coordinates: survival decreases with the score
    return np.interp(u, s[::-1], x[::-1])


def scores(
    flavour: np.ndarray,
    eta: np.ndarray,
    raw_pt: np.ndarray,
    has_tracks: np.ndarray,
    rng: np.random.Generator,
    taggers: dict[str, TaggerModel] | None = None,
) -> dict[str, np.ndarray]:
    """Tagger branches (float32; by default those of :data:`WRITTEN`) for jets of hadron flavour
    ``flavour`` (5, 4 or 0).

    Parameters
    ----------
    flavour, eta, raw_pt
        Per jet; ``raw_pt`` is the uncorrected pT (the PNet/ParT evaluation threshold applies to it).
    has_tracks
        False for jets without a charged hadron (DeepCSV/CSVv2 defaults).
    """
    taggers = {k: TAGGERS[k] for k in WRITTEN} if taggers is None else taggers
    n = len(flavour)
    flav = np.where(np.isin(flavour, (4, 5)), flavour, 0)
    inside = np.abs(eta) < TRACKER_ETA
    z = rng.standard_normal(n)
    out = {}
    for name, t in taggers.items():
        a = np.select([flav == 5, flav == 4], [t.loading[5], t.loading[4]], t.loading[0])
        u = ndtr(a * z + np.sqrt(1.0 - a**2) * rng.standard_normal(n))
        s = np.empty(n)
        for f in (5, 4, 0):
            sel = flav == f
            s[sel] = _inverse_survival(u[sel], t.knots, t.survival[f])
        valid = inside.copy()
        if t.min_raw_pt is not None:
            valid &= raw_pt >= t.min_raw_pt
        if t.needs_tracks:
            valid &= has_tracks
        if t.default is None:  # DeepJet: a light-like value beyond the tracker
            s = np.where(valid, s, _inverse_survival(u, *FORWARD_DEEPJET))
        else:
            s = np.where(valid, s, t.default)
        out[name] = s.astype(np.float32)
    return out


def efficiency_table() -> dict[str, dict[str, dict[int, float]]]:
    """``{branch: {"loose"|"medium"|"tight": {flavour: efficiency}}}`` as tabulated (for tests/docs)."""
    out = {}
    for name, t in TAGGERS.items():
        pos = [t.knots.index(w) for w in t.wp]
        out[name] = {
            wp: {f: t.survival[f][p] for f in (5, 4, 0)}
            for wp, p in zip(("loose", "medium", "tight"), pos, strict=True)
        }
    return out
