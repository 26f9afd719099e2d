"""Deterministic train/validation split by event identity.

An event's side of the split is a function of ``(run, luminosityBlock, event)`` and a seed only, never of
its position in a file or chunk, so the split is the same however the ntuples were chunked, ordered or
executed (eager, dask, cluster), and the same event never leaks from validation into training.
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser: a bijective, well-mixed 64-bit hash (wrap-around arithmetic on purpose)."""
    with np.errstate(over="ignore"):
        z = x + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def event_hash(run, luminosity_block, event, seed: int = 0) -> np.ndarray:
    """64-bit hash of each event's identity (uint64 array).

    Examples
    --------
    >>> event_hash([1], [2], [3]) == event_hash([1], [2], [3])
    array([ True])
    >>> bool(event_hash([1], [2], [3])[0] == event_hash([1], [3], [2])[0])
    False
    """
    h = _splitmix64(np.full(np.shape(run), np.uint64(seed) & np.uint64(0xFFFFFFFFFFFFFFFF), dtype=np.uint64))
    for part in (run, luminosity_block, event):
        h = _splitmix64(h ^ np.asarray(part).astype(np.uint64))
    return h


def validation_mask(run, luminosity_block, event, fraction: float = 0.2, seed: int = 0) -> np.ndarray:
    """Boolean mask: ``True`` for events in the validation set (about ``fraction`` of them).

    Parameters
    ----------
    run, luminosity_block, event
        Event-ID columns of the ntuples (any integer arrays of equal length).
    fraction
        Expected validation fraction in [0, 1]; 0 gives an all-``False`` mask, 1 all ``True``.
    seed
        Changes which events are held out.

    Examples
    --------
    >>> m = validation_mask(np.ones(10000), np.ones(10000), np.arange(10000), fraction=0.25)
    >>> round(float(m.mean()), 2)
    0.25
    >>> validation_mask([1], [1], [7], fraction=0.0).tolist()
    [False]
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    u = (event_hash(run, luminosity_block, event, seed) >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    return u < fraction


def split_by_event(
    run, luminosity_block, event, val_fraction: float = 0.2, test_fraction: float = 0.0, seed: int = 0
) -> np.ndarray:
    """Split index per event: 0 train, 1 validation, 2 test (fractions of events, by event ID only).

    Examples
    --------
    >>> s = split_by_event(np.ones(10000), np.ones(10000), np.arange(10000), 0.2, 0.1)
    >>> [round(float((s == k).mean()), 1) for k in (0, 1, 2)]
    [0.7, 0.2, 0.1]
    >>> split_by_event([1], [1], [1], 0.7, 0.7)
    Traceback (most recent call last):
    ...
    ValueError: val_fraction + test_fraction must be in [0, 1], got 1.4
    """
    if min(val_fraction, test_fraction) < 0 or val_fraction + test_fraction > 1:
        raise ValueError(
            f"val_fraction + test_fraction must be in [0, 1], got {val_fraction + test_fraction:g}"
        )
    u = (event_hash(run, luminosity_block, event, seed) >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    out = np.zeros(len(u), dtype=np.int8)
    out[u < val_fraction + test_fraction] = 2
    out[u < val_fraction] = 1
    return out
