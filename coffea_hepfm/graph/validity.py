"""Which input values are unusable: NaN/inf and values no detector can produce.

A value is *bad* when it is NaN/inf, or

- a transverse momentum (object pT, MET) below 0 or above :data:`PT_MAX` (10 TeV: above the 6.8 TeV a
  Run 3 beam carries; a value like 1e20 would overflow the float32 edge features);
- a pseudorapidity with ``|eta| > ETA_MAX`` (10: CMS reconstructs objects up to |eta| 5.2);
- an azimuth with ``|phi| > PHI_MAX`` (2 pi; NanoAOD stores [-pi, pi]);
- a mass below ``MASS_MIN`` (-1 GeV; NanoAOD jets carry tiny negative masses from float rounding, ~-1e-5)
  or above :data:`PT_MAX`.

Any other float input (isolation, energy fractions, b-tag scores) is bad only when NaN/inf. What then
happens is ``GraphSpec.nonfinite``: drop the object, zero the value, or raise. The same rule applies to both
graph spec versions; it changes nothing for valid inputs.
"""

from __future__ import annotations

import numpy as np

from coffea_hepfm.graph.errors import NonFiniteInput

PT_MAX = 1.0e4
ETA_MAX = 10.0
PHI_MAX = float(2 * np.pi)
MASS_MIN = -1.0
RULE = "NaN/inf, pT < 0 or > 1e4 GeV, |eta| > 10, |phi| > 2 pi, mass < -1 GeV"


def ok_values(key: str, a: np.ndarray) -> np.ndarray:
    """Boolean mask of the usable values of input ``key`` (``"pt"``, ``"eta"``, ``"phi"``, ``"mass"`` or
    any other float). NaN compares false, so every rule also catches NaN/inf.

    Examples
    --------
    >>> ok_values("pt", np.array([10.0, -50.0, np.nan, 1e30])).tolist()
    [True, False, False, False]
    >>> ok_values("mass", np.array([-1e-5, -500.0])).tolist()
    [True, False]
    """
    if key == "pt":
        return (a >= 0) & (a <= PT_MAX)
    if key == "eta":
        return np.abs(a) <= ETA_MAX
    if key == "phi":
        return np.abs(a) <= PHI_MAX
    if key == "mass":
        return (a >= MASS_MIN) & (a <= PT_MAX)
    return np.isfinite(a)


def apply_rule(
    arrays: dict[str, np.ndarray], branches: dict[str, str], rule: str, what: str, source: str | None
) -> tuple[np.ndarray | None, dict[str, int], int]:
    """Check every float array of one object type and apply ``GraphSpec.nonfinite`` ``rule``.

    ``arrays`` maps input keys to flat arrays (modified in place by ``"zero"``), ``branches`` the keys to
    NanoAOD branch names for messages. Returns ``(objects to drop or None, {branch: number of bad values},
    number of objects with a bad value)``; ``(None, {}, 0)`` when every value is usable (one pass per array). Raises :class:`NonFiniteInput` for
    ``rule == "raise"``, naming the branches, an example value and the file.
    """
    ok = None
    per_key = {}
    for k, a in arrays.items():
        if a.dtype.kind != "f" or len(a) == 0:
            continue
        m = ok_values(k, a)
        per_key[k] = m
        ok = m if ok is None else ok & m
    if ok is None or ok.all():
        return None, {}, 0
    n_objects = len(ok) - int(np.count_nonzero(ok))
    counts = {}
    examples = {}
    for k, m in per_key.items():
        n = len(m) - int(np.count_nonzero(m))
        if n:
            counts[branches.get(k, k)] = n
            examples[branches.get(k, k)] = arrays[k][np.argmin(m)]
    if rule == "raise":
        detail = ", ".join(f"{b} ({n}, e.g. {examples[b]:g})" for b, n in counts.items())
        where = f"{source}: " if source else ""
        raise NonFiniteInput(
            f"{where}{n_objects} {what} object(s) with unusable values ({RULE}) in "
            f"{detail} (GraphSpec(nonfinite='raise')); fix the input, or use nonfinite='drop' to drop such "
            "objects or 'zero' to zero the bad values"
        )
    if rule == "zero":
        for k, m in per_key.items():
            if not m.all():
                arrays[k] = np.where(m, arrays[k], arrays[k].dtype.type(0))
        return None, counts, n_objects
    return ~ok, counts, n_objects


def source_of(events) -> str | None:
    """The file NanoEvents were read from, when coffea says (eager/virtual ROOT files); else ``None``."""
    try:
        return str(events.attrs["@events_factory"].file_handle.file_path)
    except Exception:
        return None
