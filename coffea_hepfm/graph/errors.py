"""Errors and warnings raised while turning NanoAOD events into graphs.

All of them name what went wrong precisely (the branch, the spec field, the number of bad values), so a
user can fix the input or pick the documented fallback.
"""

from __future__ import annotations

from coffea_hepfm.errors import HEPFMError, HEPFMWarning


class GraphError(HEPFMError):
    """Base class of every error raised by :mod:`coffea_hepfm.graph`."""


class GraphSpecMismatch(GraphError, ValueError):
    """Two graph specs differ in a field that changes the features (e.g. a model file from another spec).

    ``differences`` maps field name to ``(expected, got)``.
    """

    def __init__(self, message: str, differences: dict | None = None):
        super().__init__(message)
        self.differences = dict(differences or {})


class MissingBranchError(GraphError, KeyError):
    """A NanoAOD branch the graph spec needs is not in the file.

    ``branch`` is the first missing branch name (e.g. ``"Photon_pt"``); the message adds a NanoAOD
    version hint and the spec option that avoids the error.
    """

    def __init__(self, message: str, branch: str):
        super().__init__(message)
        self.branch = branch

    def __str__(self) -> str:  # KeyError would otherwise print the message in quotes
        return str(self.args[0])


class UnsupportedGraphSpec(GraphSpecMismatch):
    """A graph spec this code cannot build: unknown version or field (e.g. from a newer coffea-hepfm).
    A :class:`GraphSpecMismatch` (and so a ``ValueError``), so code that refuses mismatched specs refuses
    these too."""


class NonFiniteInput(GraphError, ValueError):
    """NaN/inf or an unphysical value (negative pT, |eta| > 10, ...) in an input branch while
    ``nonfinite="raise"``."""


class NoValidTagger(GraphError, ValueError):
    """No b-tag branch of ``GraphSpec.taggers`` is usable in a chunk: absent, placeholder scores, or no
    working points for the era. The message lists why each one was refused."""


class MissingCollectionWarning(HEPFMWarning):
    """A whole object collection is absent and is treated as empty (``missing="empty"``)."""


class NonFiniteWarning(HEPFMWarning, RuntimeWarning):
    """Objects with NaN/inf or unphysical inputs were dropped (``nonfinite="drop"``) or zeroed
    (``"zero"``); the message gives the counts per branch and the file."""


class TaggerFallbackWarning(HEPFMWarning):
    """A preferred b-tag branch holds placeholder scores ("not computed") or has no working points for
    the era, and the next tagger of ``GraphSpec.taggers`` is used; names the branches and the file."""


class EraWarning(HEPFMWarning):
    """Collision-data run numbers outside every known era: the b-tag working points of the tagger's
    reference era are used; pass ``GraphSpec(era=...)`` to choose."""
