"""The registry of physics processes the simulation engine knows, as Pythia 8 settings.

Every process is a list of Pythia ``readString`` lines on top of the common beam settings (pp at 13 TeV,
see :mod:`coffea_hepfm.simulation.generator`). Names are lowercase and stable: they are directory names
in the output and class labels in training.

Roles
-----
``pretraining``
    The 13 Standard-Model processes the foundation model is pretrained on (multiclass labels).
``downstream``
    Processes never seen in pretraining, for fine-tuning studies: SM ttH(gamma gamma) against ttH(gamma
    gamma) with a CP-odd (``tta_aa``) or CP-mixed (``ttmix_aa``) top Yukawa, a Z' -> tt and a charged Higgs
    H+ -> tb.
``validation``
    Decay-forced samples whose resonance peaks the tests check (Z -> ee/mumu).

Notes
-----
Every ttH process has ``cp_alpha_deg`` set: it is made from Pythia's SM ttH hard process by matrix-element
reweighting to the top-Yukawa mixing angle ``alpha`` before the shower, and its files carry
``LHEReweightingWeight`` (see :mod:`coffea_hepfm.simulation.reweight`). Pythia's own
``HiggsBSM:gg2A3ttbar`` is not used: it has the CP-even production matrix element.

Pythia 8 has no internal tW process. ``tw`` is modelled with Pythia's ``gb -> H+ t`` matrix element with
the charged scalar given the W mass, width and branching ratios: the event topology (one top plus one W-like
boson decaying to the W final states) is right, the spin correlations of a vector W are not. Its GenPart
record therefore carries pdgId +-37 for the "W".

Examples
--------
>>> from coffea_hepfm.simulation.processes import get_process, pretraining_processes
>>> get_process("ttbar").pretraining
True
>>> get_process("nope")                                  # doctest: +IGNORE_EXCEPTION_DETAIL
Traceback (most recent call last):
KeyError: "unknown process 'nope'; known processes: ggf_h, vbf_h, ..."
>>> canonical_name("ttH")                                # the command line accepts any letter case
'tth'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from difflib import get_close_matches
from typing import Literal

# Multiparton interactions for every process: on since 2026-12-01 (jet mass; docs/design.md, simulation).
# Here rather than in ``generator`` so the CLI can show the default without importing awkward.
MPI_DEFAULT = True

Role = Literal["pretraining", "downstream", "validation"]

# Z -> ll forced decays, used by the validation sample.
_Z_TO_LL = ("23:onMode = off", "23:onIfAny = 11 13")
_H_TO_AA = ("25:onMode = off", "25:onIfMatch = 22 22")  # onIfAny = 22 would keep H -> Z gamma
# The SM ttH hard process; every ttH sample starts from it (see the module notes).
_TTH = ("HiggsSM:gg2Httbar = on", "HiggsSM:qqbar2Httbar = on")
# W decay table (PDG branching ratios) given to the charged scalar that stands in for the W in `tw`;
# meMode 100 makes Pythia keep these branching ratios instead of recomputing Yukawa-like ones.
_W_LIKE_HPLUS = (
    "37:m0 = 80.379",
    "37:mWidth = 2.085",
    "37:mMin = 60.0",
    "37:mMax = 100.0",
    "37:oneChannel = 1 0.1071 100 -11 12",
    "37:addChannel = 1 0.1063 100 -13 14",
    "37:addChannel = 1 0.1138 100 -15 16",
    "37:addChannel = 1 0.3364 100 2 -1",
    "37:addChannel = 1 0.3364 100 4 -3",
)


@dataclass(frozen=True)
class Process:
    """One simulated process.

    Parameters
    ----------
    name
        Lowercase identifier, used as directory name and class label.
    description
        One line for ``coffea-hepfm processes``.
    settings
        Pythia ``readString`` lines selecting the hard process and decays.
    role
        ``"pretraining"``, ``"downstream"`` or ``"validation"``.
    cp_alpha_deg
        ttH only: the top-Yukawa CP-mixing angle the sample is unweighted to (0 = SM, 90 = CP-odd, with
        ``kappa = kappa_tilde = 1``); ``None`` for every other process.
    """

    name: str
    description: str
    settings: tuple[str, ...]
    role: Role = "pretraining"
    tags: tuple[str, ...] = field(default_factory=tuple)
    cp_alpha_deg: float | None = None

    @property
    def pretraining(self) -> bool:
        return self.role == "pretraining"


_PROCESSES: tuple[Process, ...] = (
    Process("ggf_h", "gluon-fusion Higgs, SM decays", ("HiggsSM:gg2H = on",)),
    Process(
        "vbf_h",
        "vector-boson-fusion Higgs, SM decays",
        ("HiggsSM:ff2Hff(t:WW) = on", "HiggsSM:ff2Hff(t:ZZ) = on"),
    ),
    Process("wh", "W-associated Higgs, SM decays", ("HiggsSM:ffbar2HW = on",)),
    Process("zh", "Z-associated Higgs, SM decays", ("HiggsSM:ffbar2HZ = on",)),
    Process("tth", "ttH, SM decays", _TTH, cp_alpha_deg=0.0),
    Process("single_top", "single top, t-channel", ("Top:qq2tq(t:W) = on",)),
    Process(
        "tw",
        "tW (gb -> tW via a W-like charged scalar, see module notes)",
        ("Higgs:useBSM = on", "HiggsBSM:bg2H+-t = on", *_W_LIKE_HPLUS),
    ),
    Process("ttbar", "top-pair production, inclusive decays", ("Top:gg2ttbar = on", "Top:qqbar2ttbar = on")),
    Process(
        "zjets",
        "Z + jet (Z only, no gamma*), inclusive Z decays, pTHat > 20 GeV",
        (
            "WeakBosonAndParton:qqbar2gmZg = on",
            "WeakBosonAndParton:qg2gmZq = on",
            "WeakZ0:gmZmode = 2",
            "PhaseSpace:pTHatMin = 20.",
        ),
    ),
    Process(
        "wjets",
        "W + jet, inclusive W decays, pTHat > 20 GeV",
        ("WeakBosonAndParton:qqbar2Wg = on", "WeakBosonAndParton:qg2Wq = on", "PhaseSpace:pTHatMin = 20."),
    ),
    Process(
        "diboson", "WW, WZ, ZZ (Z only), inclusive decays", ("WeakDoubleBoson:all = on", "WeakZ0:gmZmode = 2")
    ),
    Process("qcd", "QCD 2 -> 2 multijet, pTHat > 50 GeV", ("HardQCD:all = on", "PhaseSpace:pTHatMin = 50.")),
    Process(
        "gammajets",
        "prompt photon + jet, pTHat > 30 GeV",
        ("PromptPhoton:all = on", "PhaseSpace:pTHatMin = 30."),
    ),
    # Downstream-only processes.
    Process(
        "tth_aa", "SM ttH with H -> gamma gamma", (*_TTH, *_H_TO_AA), role="downstream", cp_alpha_deg=0.0
    ),
    Process(
        "tta_aa",
        "ttH, CP-odd top Yukawa (alpha = 90 deg, ME-reweighted), H -> gamma gamma",
        (*_TTH, *_H_TO_AA),
        role="downstream",
        cp_alpha_deg=90.0,
    ),
    Process(
        "ttmix_aa",
        "ttH, CP-mixed top Yukawa (alpha = 45 deg, ME-reweighted), H -> gamma gamma",
        (*_TTH, *_H_TO_AA),
        role="downstream",
        cp_alpha_deg=45.0,
    ),
    Process(
        "zprime_tt",
        "Z' (1.5 TeV, SM-like couplings) -> tt",
        (
            "NewGaugeBoson:ffbar2gmZZprime = on",
            "Zprime:gmZmode = 3",
            "32:m0 = 1500.",
            "32:onMode = off",
            "32:onIfAny = 6",
            "PhaseSpace:mHatMin = 1000.",
        ),
        role="downstream",
    ),
    Process(
        "hplus_tb",
        "charged Higgs H+ (500 GeV) from gb -> H+ t, H+ -> tb",
        ("Higgs:useBSM = on", "HiggsBSM:bg2H+-t = on", "37:m0 = 500.", "37:onMode = off", "37:onIfAny = 6"),
        role="downstream",
    ),
    # Validation samples with forced decays, for resonance-peak checks.
    Process(
        "zll",
        "Z + jet with Z -> ee/mumu (validation)",
        (
            "WeakBosonAndParton:qqbar2gmZg = on",
            "WeakBosonAndParton:qg2gmZq = on",
            "WeakZ0:gmZmode = 2",
            "PhaseSpace:pTHatMin = 20.",
            *_Z_TO_LL,
        ),
        role="validation",
    ),
)

PROCESSES: dict[str, Process] = {p.name: p for p in _PROCESSES}


def known_processes() -> list[str]:
    """All process names, registry order."""
    return list(PROCESSES)


def pretraining_processes() -> list[str]:
    """Names of the processes used in pretraining."""
    return [p.name for p in _PROCESSES if p.role == "pretraining"]


def downstream_processes() -> list[str]:
    """Names of the processes never used in pretraining."""
    return [p.name for p in _PROCESSES if p.role == "downstream"]


def _suggestion(name: str) -> str:
    lower = {p.lower(): p for p in PROCESSES}
    close = (
        [lower[name.lower()]] if name.lower() in lower else get_close_matches(name.lower(), list(lower), 1)
    )
    return f" did you mean {close[0]!r}?" if close else ""


def get_process(name: str) -> Process:
    """Look up a process by its exact (lowercase) name.

    Unknown names raise ``KeyError`` suggesting the closest name and listing the known ones:

    >>> get_process("ttH")
    Traceback (most recent call last):
    ...
    KeyError: "unknown process 'ttH'; did you mean 'tth'? known processes: ggf_h, vbf_h, wh, zh, tth, ..."
    """
    try:
        return PROCESSES[name]
    except KeyError:
        raise KeyError(
            f"unknown process {name!r};{_suggestion(name)} known processes: {', '.join(PROCESSES)}"
        ) from None


def canonical_name(name: str) -> str:
    """The registered name of a process given in any letter case (``"ttH"`` -> ``"tth"``).

    Names are directory names and enter the chunk seeds, so the command line maps them to the one
    registered spelling; a name that matches nothing raises :func:`get_process`'s ``KeyError``.

    >>> canonical_name("ttH"), canonical_name("ZPrime_TT")
    ('tth', 'zprime_tt')
    """
    lower = {p.lower(): p for p in PROCESSES}
    return lower.get(name.lower()) or get_process(name).name
