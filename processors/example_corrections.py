"""Example correctionlib files for the examples: **invented numbers, not CMS measurements**.

``coffea-hepfm ntuples --example-corrections`` (and ``examples/end_to_end.py --example-corrections``)
weight events with these two small files, so the examples show pileup and muon scale-factor weights with
their up/down variations on any machine. For an analysis, pass your own correctionlib files with
``--corrections DIR`` (CMS ``puWeights_2018_UL.json`` and ``muon_Z_2018_UL.json.gz`` from the
jsonpog-integration repository, see :func:`coffea_hepfm.processors.default_corrections`).

The files in ``processors/example_data/`` are written by this module (``python -m
coffea_hepfm.processors.example_corrections``), with correctionlib's schema v2 model; a test checks that
the shipped files are exactly what this code writes. They mimic the *structure* of the CMS files (inputs,
variation names, ``flow="error"`` muon binning that the ntuple code clamps into), with made-up values:

- ``example_pileup``: ``(NumTrueInteractions, weights)`` -> the ratio of two Gamma pdfs in 1-unit bins,
  "data" Gamma(k=8, theta=4.2 / 4.4 / 4.0 for nominal / up / down) over the simulation's own pileup
  profile Gamma(k=8, theta=4) (:mod:`coffea_hepfm.simulation.response`), capped at 10.
- ``example_muon_id``: ``(abseta, pt, ValType)`` -> 0.99 - 0.01 per |eta| bin - 0.002 per pt bin below
  30 GeV, ``systup`` / ``systdown`` = +- 0.005.

>>> pu, mu = example_corrections()
>>> pu.key, mu.key, mu.variations
('example_pileup', 'example_muon_id', ('sf', 'systup', 'systdown'))
"""

from __future__ import annotations

import math
import os
from pathlib import Path

EXAMPLE_DIR = Path(__file__).resolve().parent / "example_data"
PILEUP_FILE = "example_pileup.json"
MUON_FILE = "example_muon_sf.json"
LABEL = "EXAMPLE ONLY - invented numbers for the coffea-hepfm examples, not a CMS measurement"

_MC_K, _MC_THETA = 8.0, 4.0  # the simulation's pileup profile
_DATA_THETA = {"nominal": 4.2, "up": 4.4, "down": 4.0}
_ABSETA_EDGES = [0.0, 0.9, 1.2, 2.1, 2.4]
_PT_EDGES = [15.0, 20.0, 25.0, 30.0, 40.0, 50.0, 60.0, 120.0, "inf"]  # schema v2 spells infinity "inf"


def _gamma_pdf(x: float, k: float, theta: float) -> float:
    return math.exp((k - 1) * math.log(x) - x / theta - math.lgamma(k) - k * math.log(theta))


def _pileup_weights(theta: float) -> list[float]:
    # pdf ratio at bin centres 0.5, 1.5, ..., 99.5; rounded so the file is identical on every platform
    return [
        round(min(10.0, _gamma_pdf(n + 0.5, _MC_K, theta) / _gamma_pdf(n + 0.5, _MC_K, _MC_THETA)), 5)
        for n in range(100)
    ]


def pileup_correction():
    """The ``example_pileup`` correction (correctionlib schema v2 model)."""
    from correctionlib import schemav2 as cs

    edges = [float(n) for n in range(101)]
    content = [
        cs.CategoryItem(
            key=var,
            value=cs.Binning(
                nodetype="binning",
                input="NumTrueInteractions",
                edges=edges,
                content=_pileup_weights(theta),
                flow="clamp",
            ),
        )
        for var, theta in _DATA_THETA.items()
    ]
    return cs.Correction(
        name="example_pileup",
        description=f"{LABEL}. Pileup weight vs the true number of interactions.",
        version=1,
        inputs=[
            cs.Variable(name="NumTrueInteractions", type="real", description="Pileup_nTrueInt"),
            cs.Variable(name="weights", type="string", description="nominal, up or down"),
        ],
        output=cs.Variable(name="weight", type="real", description="event weight (example)"),
        data=cs.Category(nodetype="category", input="weights", content=content),
    )


def _muon_sf(i_eta: int, i_pt: int) -> float:
    return round(0.99 - 0.01 * i_eta - 0.002 * max(0, 3 - i_pt), 5)


def muon_correction():
    """The ``example_muon_id`` correction (correctionlib schema v2 model)."""
    from correctionlib import schemav2 as cs

    def by_valtype(sf: float):
        items = {"sf": sf, "systup": round(sf + 0.005, 5), "systdown": round(sf - 0.005, 5)}
        return cs.Category(
            nodetype="category",
            input="ValType",
            content=[cs.CategoryItem(key=k, value=v) for k, v in items.items()],
        )

    per_eta = [
        cs.Binning(
            nodetype="binning",
            input="pt",
            edges=_PT_EDGES,
            content=[by_valtype(_muon_sf(i_eta, i_pt)) for i_pt in range(len(_PT_EDGES) - 1)],
            flow="error",
        )
        for i_eta in range(len(_ABSETA_EDGES) - 1)
    ]
    return cs.Correction(
        name="example_muon_id",
        description=f"{LABEL}. Muon identification scale factor.",
        version=1,
        inputs=[
            cs.Variable(name="abseta", type="real", description="|eta| of the muon"),
            cs.Variable(name="pt", type="real", description="pT of the muon in GeV"),
            cs.Variable(name="ValType", type="string", description="sf, systup or systdown"),
        ],
        output=cs.Variable(name="weight", type="real", description="scale factor (example)"),
        data=cs.Binning(
            nodetype="binning", input="abseta", edges=_ABSETA_EDGES, content=per_eta, flow="error"
        ),
    )


def write_example_corrections(directory: str | os.PathLike = EXAMPLE_DIR) -> list[Path]:
    """Write both example files into ``directory`` (atomically); returns their paths."""
    from correctionlib import schemav2 as cs

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for name, correction in ((PILEUP_FILE, pileup_correction()), (MUON_FILE, muon_correction())):
        cset = cs.CorrectionSet(schema_version=2, description=LABEL, corrections=[correction])
        path = directory / name
        tmp = path.with_name(f".{name}.tmp{os.getpid()}")
        tmp.write_text(cset.model_dump_json(exclude_unset=True, indent=1) + "\n")
        os.replace(tmp, path)
        out.append(path)
    return out


def example_corrections(directory: str | os.PathLike = EXAMPLE_DIR):
    """``(PileupCorrection, MuonScaleFactor)`` configured for the example files (no year input)."""
    from coffea_hepfm.processors.corrections import MuonScaleFactor, PileupCorrection

    d = Path(directory)
    return (
        PileupCorrection(os.fspath(d / PILEUP_FILE), key="example_pileup"),
        MuonScaleFactor(os.fspath(d / MUON_FILE), key="example_muon_id", year=None),
    )


if __name__ == "__main__":
    for p in write_example_corrections():
        print(p)
