"""The foundation-model score as a coffea column: :class:`HEPFMScore` (local torch or Triton backend).

>>> from coffea_hepfm import HEPFMScore
>>> out = HEPFMScore("tth_vs_ttbar")(events)      # doctest: +SKIP
>>> out["ttH"], out["ttbar"]                      # doctest: +SKIP
"""

from coffea_hepfm.score.backend import BackendSpec, parse_backend

__all__ = ["BackendSpec", "HEPFMScore", "NonFiniteScore", "parse_backend", "resolve_model"]


def __getattr__(name: str):
    # Lazy: coffea is imported with the wrapper only, so coffea_hepfm.score.local (and the GPU check,
    # coffea_hepfm.score.gpu) run where only torch, numpy and awkward are installed.
    if name in ("HEPFMScore", "NonFiniteScore", "resolve_model"):
        from coffea_hepfm.score import wrapper

        return getattr(wrapper, name)
    raise AttributeError(f"module 'coffea_hepfm.score' has no attribute {name!r}")
