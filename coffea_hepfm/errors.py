"""Base classes of every error and warning that coffea-hepfm raises itself.

Each stage defines its own specific classes (``coffea_hepfm.graph.errors`` and so on) on top of these, so
a user (or a test suite) can catch or filter *this package's* problems in one line without touching
warnings from coffea, awkward or torch::

    import warnings
    from coffea_hepfm.errors import HEPFMWarning
    warnings.simplefilter("error", HEPFMWarning)   # every coffea-hepfm warning becomes an error

The test suite runs with exactly that filter (``pyproject.toml``), so a package warning that a test does
not assert with ``pytest.warns`` fails the test.

This module imports nothing from the package: every stage may import it.
"""

from __future__ import annotations

__all__ = ["HEPFMError", "HEPFMWarning"]


class HEPFMError(Exception):
    """Base class of the errors coffea-hepfm raises on bad input or bad state."""


class HEPFMWarning(UserWarning):
    """Base class of every warning coffea-hepfm emits (missing collections, dropped objects, drift...)."""
