"""correctionlib corrections used for training-ntuple weights: pileup and muon scale factors.

A correction is configured by a small frozen dataclass (file, key, variation names) so a user can point
at their own JSON files. :func:`load_correction` opens the file, checks the key and returns the
correctionlib object together with the domain of its real-valued inputs.

Inputs outside a correction's domain
------------------------------------
Binned corrections declare, per input, what happens outside the bin edges (``flow``). Where a file says
``"error"`` (for example the muon scale factors: ``abseta`` in [0, 2.4), ``pt`` in [15, inf)), the inputs
are **clamped into the domain** before evaluation: a 10 GeV muon gets the 15-20 GeV scale factor and a
muon at ``|eta| = 2.45`` gets the last ``abseta`` bin. ``flow="clamp"`` and ``"overflow ok"`` inputs are
passed as they are (correctionlib clamps them itself). The domain is the intersection over all branches of
the correction tree, so a clamped value is valid in every category (e.g. every year).
"""

from __future__ import annotations

import functools
import gzip
import json
import math
import os
from dataclasses import asdict, dataclass

import awkward as ak
import numpy as np

from coffea_hepfm.errors import HEPFMError

PILEUP_FILE = "puWeights_2018_UL.json"
MUON_FILE = "muon_Z_2018_UL.json.gz"


class CorrectionKeyError(HEPFMError, KeyError):
    """The correction file does not hold the requested correction (message lists the ones it has)."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


@dataclass(frozen=True)
class PileupCorrection:
    """Per-event pileup reweighting from the number of true interactions.

    Parameters
    ----------
    file
        correctionlib JSON (``.json`` or ``.json.gz``).
    key
        Name of the correction in ``file``.
    variations
        ``(nominal, up, down)`` values of the correction's string input.
    branch
        NanoAOD branch holding the true number of interactions.
    name
        Short name; the systematic weight columns are ``weight_{name}_up`` / ``weight_{name}_down``.
    """

    file: str
    key: str = "Collisions18_UltraLegacy_goldenJSON"
    variations: tuple[str, str, str] = ("nominal", "up", "down")
    branch: str = "Pileup_nTrueInt"
    name: str = "pu"

    def to_dict(self) -> dict:
        return {"kind": "pileup", **asdict(self)}


@dataclass(frozen=True)
class MuonScaleFactor:
    """Per-muon scale factor, multiplied over the selected muons of each event.

    Parameters
    ----------
    file, key
        correctionlib file and correction name, e.g. ``NUM_TightID_DEN_TrackerMuons``.
    year
        Value for a string input named ``year`` when the correction has one (``"2018_UL"``).
    variations
        ``(nominal, up, down)`` values of the ``ValType`` input (``"sf", "systup", "systdown"``).
    name
        Short name of the weight columns (``weight_muon_up``...).

    Notes
    -----
    An event without selected muons gets a factor of exactly 1 in every variation.
    """

    file: str
    key: str = "NUM_TightID_DEN_TrackerMuons"
    year: str | None = "2018_UL"
    variations: tuple[str, str, str] = ("sf", "systup", "systdown")
    name: str = "muon"

    def to_dict(self) -> dict:
        return {"kind": "muon", **asdict(self)}


Correction = PileupCorrection | MuonScaleFactor


def default_corrections(directory: str | os.PathLike) -> tuple[Correction, ...]:
    """The 2018 UL pileup and tight-ID muon corrections from ``directory`` (file names as in CMS jsonpog).

    Examples
    --------
    >>> pu, mu = default_corrections("../shared/data/corrections")
    >>> mu.key, mu.variations
    ('NUM_TightID_DEN_TrackerMuons', ('sf', 'systup', 'systdown'))
    """
    d = os.fspath(directory)
    return (PileupCorrection(os.path.join(d, PILEUP_FILE)), MuonScaleFactor(os.path.join(d, MUON_FILE)))


def _read_json(path: str) -> dict:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as f:
        return json.load(f)


def _edge(x) -> float:
    return float(x)  # handles "inf"/"-inf" strings of schema v2


def _domain(node, out: dict[str, list[float]]) -> None:
    """Intersect, per input, the ranges of ``flow="error"`` binnings found under ``node``."""
    if not isinstance(node, dict):
        return
    kind = node.get("nodetype")
    if kind in ("binning", "multibinning"):
        inputs = [node["input"]] if kind == "binning" else node["inputs"]
        edges = [node["edges"]] if kind == "binning" else node["edges"]
        if node.get("flow") == "error":
            for name, e in zip(inputs, edges, strict=True):
                lo, hi = (_edge(e[0]), _edge(e[-1])) if isinstance(e, list) else (e["low"], e["high"])
                cur = out.setdefault(name, [-math.inf, math.inf])
                cur[0], cur[1] = max(cur[0], lo), min(cur[1], hi)
        for child in node["content"]:
            _domain(child, out)
        if isinstance(node.get("flow"), dict):
            _domain(node["flow"], out)
    elif kind == "category":
        for item in node["content"]:
            _domain(item["value"], out)
        _domain(node.get("default"), out)
    elif kind == "transform":
        _domain(node.get("content"), out)


@dataclass(frozen=True)
class LoadedCorrection:
    """A correctionlib ``Correction`` with its input names and the clamp domain of its real inputs."""

    evaluator: object
    inputs: tuple[str, ...]
    domain: dict[str, tuple[float, float]]

    def clamp(self, name: str, values):
        """Clip ``values`` of input ``name`` into ``[low, high)``; a no-op for unbounded inputs.

        Examples
        --------
        >>> sf = load_correction(MuonScaleFactor("muon_Z_2018_UL.json.gz"))  # doctest: +SKIP
        >>> sf.clamp("pt", ak.Array([[10.0, 30.0], []])).tolist()          # doctest: +SKIP
        [[15.0, 30.0], []]
        """
        lo, hi = self.domain.get(name, (-math.inf, math.inf))
        if math.isinf(lo) and math.isinf(hi):
            return values
        # bins are [low, high): the upper edge itself is out of range
        upper = np.nextafter(hi, -np.inf) if math.isfinite(hi) else hi
        # ufuncs, not np.clip: they broadcast through jagged and typetracer arrays
        return np.minimum(np.maximum(values, lo), upper)


@functools.lru_cache(maxsize=16)
def _load(file: str, key: str) -> LoadedCorrection:
    import correctionlib

    if not os.path.exists(file):
        raise FileNotFoundError(f"correction file not found: {file}")
    data = _read_json(file)
    available = sorted(c["name"] for c in data.get("corrections", []))
    if key not in available:
        raise CorrectionKeyError(
            f"correction {key!r} not found in {file}; available corrections: {', '.join(available) or 'none'}"
        )
    raw = next(c for c in data["corrections"] if c["name"] == key)
    names = [i["name"] for i in raw["inputs"]]
    bounds: dict[str, list[float]] = {}
    _domain(raw["data"], bounds)
    evaluator = correctionlib.CorrectionSet.from_file(file)[key]
    return LoadedCorrection(evaluator, tuple(names), {k: (v[0], v[1]) for k, v in bounds.items()})


@functools.lru_cache(maxsize=16)
def load_correction(config: Correction) -> LoadedCorrection:
    """Open ``config.file`` and return its ``config.key`` correction (cached per process).

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    CorrectionKeyError
        The key is not in the file; the message lists the available keys.
    ValueError
        The correction does not accept the configured variation names.
    """
    loaded = _load(os.fspath(config.file), config.key)
    if isinstance(config, PileupCorrection) and len(loaded.inputs) != 2:
        raise ValueError(
            f"pileup correction {config.key!r} takes inputs {loaded.inputs}; expected (NumTrueInteractions, variation)"
        )
    if isinstance(config, MuonScaleFactor) and not {"abseta", "pt"} <= set(loaded.inputs):
        raise ValueError(
            f"muon correction {config.key!r} takes inputs {loaded.inputs}; expected abseta and pt"
        )
    _check_variations(config, loaded)
    return loaded


def _probe(loaded: LoadedCorrection, name: str) -> float:
    lo, hi = loaded.domain.get(name, (0.0, math.inf))
    return lo if math.isfinite(lo) else 0.0


def _check_variations(config: Correction, loaded: LoadedCorrection) -> None:
    """Evaluate once inside the domain per variation, so a wrong variation name fails before any work."""
    for var in config.variations:
        if isinstance(config, PileupCorrection):
            args = [_probe(loaded, loaded.inputs[0]), var]
        else:
            args = [
                config.year if n.lower() == "year" else _probe(loaded, n) if n in ("abseta", "pt") else var
                for n in loaded.inputs
            ]
        try:
            loaded.evaluator.evaluate(*args)
        except Exception as err:
            raise ValueError(
                f"correction {config.key!r} in {config.file} rejects variation {var!r} "
                f"(configured variations {config.variations}): {err}"
            ) from err


def pileup_factors(events, config: PileupCorrection) -> dict[str, ak.Array]:
    """Per-event pileup weights ``{"nominal", "up", "down"}`` (float64), inputs clamped into the domain."""
    loaded = load_correction(config)
    if config.branch not in events.fields and "_" in config.branch:
        coll, field = config.branch.split("_", 1)
        ntrue = events[coll][field]
    else:
        ntrue = events[config.branch]
    ntrue = loaded.clamp(loaded.inputs[0], ak.values_astype(ntrue, np.float64))
    return {
        v: loaded.evaluator.evaluate(ntrue, var)
        for v, var in zip(("nominal", "up", "down"), config.variations, strict=True)
    }


def muon_factors(muons, config: MuonScaleFactor) -> dict[str, ak.Array]:
    """Per-event product of the muon scale factors over ``muons`` (jagged), per variation.

    Examples
    --------
    An event with no muons gets 1.0; a muon below 15 GeV gets the first pt bin's scale factor:

    >>> muon_factors(events.Muon[:, :0], cfg)["nominal"].tolist()[:2]  # doctest: +SKIP
    [1.0, 1.0]
    """
    loaded = load_correction(config)
    values = {
        "abseta": loaded.clamp("abseta", ak.values_astype(abs(muons.eta), np.float64)),
        "pt": loaded.clamp("pt", ak.values_astype(muons.pt, np.float64)),
    }
    out = {}
    for label, var in zip(("nominal", "up", "down"), config.variations, strict=True):
        args = []
        for name in loaded.inputs:
            if name in values:
                args.append(values[name])
            elif name.lower() == "year":
                args.append(config.year)
            else:  # the variation input (ValType / scale_factor ...)
                args.append(var)
        out[label] = ak.prod(loaded.evaluator.evaluate(*args), axis=1)
    return out
