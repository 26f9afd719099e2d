"""Use one ``LHEReweightingWeight`` entry as an extra event-weight factor.

NanoAOD stores per-event reweighting weights ``LHEReweightingWeight[i] = w_i / w_nominal`` (CMS
convention, ``nLHEReweightingWeight`` entries per event). With a weight spec, an ntuple's ``weight``
(and every systematic variation) becomes::

    genWeight * xsec * lumi / sumw * corrections * LHEReweightingWeight[i]

``sumw`` stays the nominal sum of ``genWeight``, so the weights sum to ``sigma_i * lumi`` where
``sigma_i = xsec * <LHEReweightingWeight[i]>``: the sample is reweighted *and* renormalised to
hypothesis ``i``. Two datasets on the same files with different specs give, for example, CP-even and
CP-odd classes from one simulated ttH sample (the events are the same, so the ID-hash split puts each in
the same train/validation/test part for both classes).

Specs (fileset metadata ``"lhe_weight"``, or ``coffea-hepfm ntuples --weight`` for every dataset):

``lhe:IDX``
    entry ``IDX`` of ``LHEReweightingWeight``;
``lhe:alpha=DEG``
    the entry for CP-mixing angle ``DEG`` in the grid that this project's simulated ttH files document in
    ``hepfm_meta["lhe_reweighting"]`` (``0, 15, ..., 90``).

Examples
--------
>>> parse_lhe_weight("lhe:6")
LHEWeightSpec(index=6, alpha_deg=None)
>>> parse_lhe_weight("lhe:alpha=90")
LHEWeightSpec(index=None, alpha_deg=90.0)
>>> parse_lhe_weight("pdf:3")                         # doctest: +IGNORE_EXCEPTION_DETAIL
Traceback (most recent call last):
LHEWeightError: weight spec 'pdf:3' is not 'lhe:IDX' or 'lhe:alpha=DEG'
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

import awkward as ak
import numpy as np

from coffea_hepfm.errors import HEPFMError

BRANCH = "LHEReweightingWeight"


class LHEWeightError(HEPFMError, ValueError):
    """A weight spec is malformed, or the files lack the ``LHEReweightingWeight`` entry it asks for."""


@dataclass(frozen=True)
class LHEWeightSpec:
    """A parsed spec: an entry ``index`` or a mixing angle ``alpha_deg`` (resolved per dataset)."""

    index: int | None = None
    alpha_deg: float | None = None


_SPEC = re.compile(r"^lhe:(?:(?P<idx>\d+)|alpha=(?P<alpha>[-+]?\d+(?:\.\d*)?))$")


def parse_lhe_weight(spec: str | int | LHEWeightSpec | None) -> LHEWeightSpec | None:
    """Parse ``"lhe:IDX"`` / ``"lhe:alpha=DEG"`` (an ``int`` means an index); ``None`` stays ``None``."""
    if spec is None or isinstance(spec, LHEWeightSpec):
        return spec
    if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
        if spec < 0:
            raise LHEWeightError(f"{BRANCH} index must be >= 0, got {spec}")
        return LHEWeightSpec(index=int(spec))
    m = _SPEC.match(str(spec).strip())
    if m is None:
        raise LHEWeightError(f"weight spec {spec!r} is not 'lhe:IDX' or 'lhe:alpha=DEG'")
    if m["idx"] is not None:
        return LHEWeightSpec(index=int(m["idx"]))
    return LHEWeightSpec(alpha_deg=float(m["alpha"]))


def _file_info(path: str) -> tuple[int | None, dict | None]:
    """(smallest ``nLHEReweightingWeight`` over the file's events, its ``hepfm_meta`` grid) of one file."""
    import uproot

    with uproot.open(path) as f:
        tree = f["Events"]
        counter = f"n{BRANCH}"
        if counter not in tree.keys():
            return None, None
        counts = tree[counter].array(library="np")
        grid = json.loads(str(f["hepfm_meta"])).get("lhe_reweighting") if "hepfm_meta" in f else None
    return (int(counts.min()) if len(counts) else None), grid


def resolve_lhe_index(spec: LHEWeightSpec, files: Sequence[str | os.PathLike], dataset: str) -> int:
    """The ``LHEReweightingWeight`` entry of ``spec`` for ``files``, checked in every file.

    Raises
    ------
    LHEWeightError
        A file has no ``LHEReweightingWeight`` branch or fewer entries than needed; for an ``alpha``
        spec, a file without the ``hepfm_meta`` grid, grids that differ between files, or an angle
        missing from the grid.
    """
    index, grids = spec.index, []
    for path in map(os.fspath, files):
        n_min, grid = _file_info(path)
        if n_min is None and grid is None:
            raise LHEWeightError(
                f"dataset {dataset!r}: {path} has no {BRANCH} branch (n{BRANCH}); a weight spec needs "
                "per-event reweighting weights: drop the spec for this dataset"
            )
        if spec.alpha_deg is not None:
            if not grid or "alpha_deg" not in grid:
                raise LHEWeightError(
                    f"dataset {dataset!r}: {path} does not document its {BRANCH} grid in hepfm_meta "
                    "['lhe_reweighting']; use 'lhe:IDX' with the index from the sample's documentation"
                )
            grids.append((path, list(grid["alpha_deg"])))
        if n_min is not None and index is not None and n_min <= index:
            raise LHEWeightError(
                f"dataset {dataset!r}: {path} has only {n_min} {BRANCH} entries in some events; "
                f"entry {index} does not exist"
            )
    if spec.alpha_deg is None:
        return int(index)
    first_path, first = grids[0]
    for path, grid in grids[1:]:
        if grid != first:
            raise LHEWeightError(
                f"dataset {dataset!r}: {BRANCH} grids differ between {first_path} ({first}) and {path} ({grid})"
            )
    matches = [i for i, a in enumerate(first) if abs(a - spec.alpha_deg) < 1e-9]
    if not matches:
        raise LHEWeightError(
            f"dataset {dataset!r}: alpha = {spec.alpha_deg:g} deg is not in the {BRANCH} grid {first} of {first_path}"
        )
    return resolve_lhe_index(LHEWeightSpec(index=matches[0]), files, dataset)


def lhe_factor(events, index: int) -> ak.Array:
    """``LHEReweightingWeight[:, index]`` as float64 (eager, virtual or typetracer events)."""
    if BRANCH not in events.fields:
        raise LHEWeightError(f"events have no {BRANCH}: the weight spec lhe:{index} cannot be applied")
    return ak.values_astype(events[BRANCH][:, index], np.float64)
