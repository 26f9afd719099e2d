"""Companion coffea processors (installed as ``coffea_hepfm.processors``).

NanoAOD -> training ntuples -> fine-tuned model, with the analysis' own selection and corrections:

>>> from coffea_hepfm.processors import make_ntuples, default_corrections       # doctest: +SKIP
>>> make_ntuples(fileset, "ntuples", corrections=default_corrections(cdir))    # doctest: +SKIP
>>> arr = read_ntuples("ntuples")                                               # doctest: +SKIP

Modules: :mod:`.corrections` (correctionlib pileup / muon SF), :mod:`.weights` (genWeight x xsec x lumi /
sumw x corrections), :mod:`.selection`, :mod:`.ntuple` (``NtupleProcessor``), :mod:`.writer` (parquet
chunks + manifest), :mod:`.make` (executors), :mod:`.fileset`, :mod:`.split` (validation split), :mod:`.lhe_weight`
(one ``LHEReweightingWeight`` entry as a weight factor).
"""

from __future__ import annotations

import importlib

# Lazy attributes: ``coffea-hepfm --help`` imports processors.cli, which must not pull in coffea/awkward.
_EXPORTS = {
    "CorrectionKeyError": "corrections",
    "MuonScaleFactor": "corrections",
    "PileupCorrection": "corrections",
    "default_corrections": "corrections",
    "load_correction": "corrections",
    "load_fileset": "fileset",
    "simulated_fileset": "fileset",
    "write_fileset": "fileset",
    "make_ntuples": "make",
    "FilesetError": "ntuple",
    "LHEWeightError": "lhe_weight",
    "NtupleProcessor": "ntuple",
    "ntuple_record": "ntuple",
    "Selection": "selection",
    "NotMCError": "weights",
    "Normalisation": "weights",
    "event_weights": "weights",
    "sum_genweights": "weights",
    "EmptySelectionWarning": "writer",
    "IncompleteNtuplesError": "writer",
    "IncompleteNtuplesWarning": "writer",
    "NtupleConfigMismatch": "writer",
    "read_manifest": "writer",
    "read_ntuples": "writer",
    "validation_mask": "split",
}

__all__ = sorted([*_EXPORTS, "launch_finetune"])


def __getattr__(name: str):
    if name == "launch_finetune":
        # Fine-tuning consumes ntuples, so it lives downstream in coffea_hepfm.training; offered here
        # because analysts look for it next to the processor that writes their ntuples.
        from coffea_hepfm.training.ntuples import launch_finetune

        return launch_finetune
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"coffea_hepfm.processors.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'coffea_hepfm.processors' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
