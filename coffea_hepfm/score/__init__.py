"""The foundation-model score as a coffea column: :class:`HEPFMScore` (local torch or Triton backend).

>>> from coffea_hepfm import HEPFMScore
>>> out = HEPFMScore("tth_vs_ttbar")(events)      # doctest: +SKIP
>>> out["ttH"], out["ttbar"]                      # doctest: +SKIP
"""

from coffea_hepfm.score.backend import BackendSpec, parse_backend
from coffea_hepfm.score.wrapper import HEPFMScore, NonFiniteScore, resolve_model

__all__ = ["BackendSpec", "HEPFMScore", "NonFiniteScore", "parse_backend", "resolve_model"]
