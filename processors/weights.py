"""Per-event MC weights: generator weight, cross-section normalisation and correctionlib corrections.

``weight = genWeight * xsec * lumi / sumw * prod(corrections, nominal)``

``sumw`` is the sum of ``genWeight`` over *all* events of the dataset (before any selection), so it cannot
be computed chunk by chunk. The choice made here: ``sumw`` travels in the dataset metadata of the
fileset. :func:`sum_genweights` fills it in a cheap preprocessing pass (it reads only the ``genWeight``
branch with uproot), and :func:`coffea_hepfm.processors.make_ntuples` calls it for every dataset that
does not bring its own ``sumw`` (bring your own when running on a subset of a larger sample).

Systematic variations are extra columns ``weight_{name}_up`` / ``weight_{name}_down``: one correction
varied, all others nominal.

coffea's ``analysis_tools.Weights`` is not used because it accepts numpy or dask-awkward arrays only,
while this code also runs inside ``dask_awkward.map_partitions`` on typetracers; the arithmetic is the
same (products of factors, one varied at a time).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import awkward as ak
import numpy as np

from coffea_hepfm.errors import HEPFMError
from coffea_hepfm.processors.corrections import (
    Correction,
    MuonScaleFactor,
    PileupCorrection,
    muon_factors,
    pileup_factors,
)


class NotMCError(HEPFMError, ValueError):
    """MC weights were requested for collision data (no ``genWeight``, or ``is_mc=False``)."""


@dataclass(frozen=True)
class Normalisation:
    """Cross-section normalisation of one dataset.

    Parameters
    ----------
    xsec
        Cross section in pb; must be a finite number > 0.
    sumw
        Sum of ``genWeight`` over the whole dataset; must be finite and > 0 (samples with negative
        generator weights still have a positive sum; a sum <= 0 means the files are not the sample).
    lumi
        Integrated luminosity in pb^-1 (2018: 59830); must be finite and > 0.

    Examples
    --------
    >>> Normalisation(xsec=2.0, sumw=4.0, lumi=10.0).scale
    5.0
    >>> Normalisation(xsec=2.0, sumw=0.0, lumi=10.0).scale
    Traceback (most recent call last):
    ...
    ValueError: sum of generator weights is 0.0: cannot normalise to the cross section
    >>> Normalisation(xsec=-800.0, sumw=4.0).scale
    Traceback (most recent call last):
    ...
    ValueError: cross section is -800.0 pb: it must be a finite number > 0
    """

    xsec: float
    sumw: float
    lumi: float = 59830.0

    @property
    def scale(self) -> float:
        for name, value, what in (
            ("cross section", self.xsec, "pb: it must be a finite number > 0"),
            ("luminosity", self.lumi, "pb^-1: it must be a finite number > 0"),
        ):
            if not np.isfinite(value) or value <= 0:
                raise ValueError(f"{name} is {value} {what}")
        if not np.isfinite(self.sumw) or self.sumw <= 0:
            raise ValueError(
                f"sum of generator weights is {self.sumw}: cannot normalise to the cross section"
            )
        return self.xsec * self.lumi / self.sumw


def scan_files(
    files: Sequence[str | os.PathLike], treename: str = "Events"
) -> list[tuple[float | None, int]]:
    """Per file, in one open: ``(sum of genWeight or None for data, number of entries)``.

    Examples
    --------
    >>> scan_files(["nano_dy.root", "nano_dimuon.root"])  # doctest: +SKIP
    [(578762.435546875, 40), (None, 40)]
    """
    import uproot

    out: list[tuple[float | None, int]] = []
    for path in files:
        with uproot.open(os.fspath(path)) as f:
            tree = f[treename]
            has = "genWeight" in tree.keys()
            w = float(np.sum(tree["genWeight"].array(library="np"), dtype=np.float64)) if has else None
            out.append((w, int(tree.num_entries)))
    return out


def genweight_sums(files: Sequence[str | os.PathLike], treename: str = "Events") -> list[float | None]:
    """Per file: the sum of ``genWeight`` (float64), or ``None`` for a file without it (data).

    Examples
    --------
    >>> genweight_sums(["nano_dy.root", "nano_dimuon.root"])  # doctest: +SKIP
    [578762.435546875, None]
    """
    return [w for w, _ in scan_files(files, treename)]


def sum_genweights(files: Sequence[str | os.PathLike], treename: str = "Events") -> float:
    """Sum of ``genWeight`` over all entries of ``files`` (float64), reading only that branch.

    Raises
    ------
    NotMCError
        A file has no ``genWeight`` branch (collision data).

    Examples
    --------
    >>> sum_genweights(["nano_dy.root"])   # doctest: +SKIP
    1040320.0
    >>> sum_genweights(["nano_dy_empty.root"])  # a file with 0 events adds 0  # doctest: +SKIP
    0.0
    """
    sums = genweight_sums(files, treename)
    for path, w in zip(files, sums, strict=True):
        if w is None:
            raise NotMCError(
                f"{path} has no genWeight branch: it is collision data, but MC weights were requested"
            )
    return float(sum(sums))


def event_weights(
    events, norm: Normalisation, corrections: Sequence[Correction], muons=None
) -> dict[str, ak.Array]:
    """Nominal weight and systematic variations for each event (float32 columns).

    Parameters
    ----------
    events
        NanoEvents (eager, virtual or a typetracer partition).
    norm
        Cross-section normalisation of the events' dataset.
    corrections
        Pileup and/or muon corrections; empty for generator weight x normalisation only.
    muons
        The selected muons the muon scale factor applies to (default: all muons).

    Returns
    -------
    dict
        ``{"weight": ..., "weight_pu_up": ..., "weight_pu_down": ..., "weight_muon_up": ...}``.

    Raises
    ------
    NotMCError
        The events have no ``genWeight`` field.
    """
    if "genWeight" not in events.fields:
        raise NotMCError("events have no genWeight: collision data cannot get MC weights")
    base = ak.values_astype(events.genWeight, np.float64) * norm.scale
    factors = {}
    for corr in corrections:
        if isinstance(corr, PileupCorrection):
            factors[corr.name] = pileup_factors(events, corr)
        elif isinstance(corr, MuonScaleFactor):
            factors[corr.name] = muon_factors(events.Muon if muons is None else muons, corr)
        else:
            raise TypeError(f"unknown correction type {type(corr).__name__}")

    def product(varied: str | None, direction: str):
        w = base
        for name, f in factors.items():
            w = w * f[direction if name == varied else "nominal"]
        return ak.values_astype(w, np.float32)

    out = {"weight": product(None, "nominal")}
    for name in factors:
        out[f"weight_{name}_up"] = product(name, "up")
        out[f"weight_{name}_down"] = product(name, "down")
    return out
