"""Hard-process records as Les Houches event files, for Pythia to shower (``Beams:frameType = 4``).

The format is the Les Houches Accord event file of Alwall et al., Comput. Phys. Commun. 176 (2007) 300
(hep-ph/0609017): an ``<init>`` block (beams, ``IDWTUP = 3``: unit-weight events that Pythia accepts
as they come, one process with its cross section) and one ``<event>`` block per event. Text is formatted
column by column with numpy string operations (no Python loop over events).

Examples
--------
>>> import numpy as np
>>> rec = LHERecord(
...     pid=np.array([[21, 21, 6, -6, 25]]), status=np.array([[-1, -1, 1, 1, 1]]),
...     mothers=np.array([[[0, 0], [0, 0], [1, 2], [1, 2], [1, 2]]]),
...     colours=np.array([[[101, 102], [103, 101], [103, 0], [0, 102], [0, 0]]]),
...     p=np.zeros((1, 5, 4)), m=np.zeros((1, 5)), scale=np.array([100.0]),
...     alpha_qed=np.array([0.0078]), alpha_qcd=np.array([0.118]))
>>> text = lhe_text(rec, sigma_pb=0.5)
>>> text.count("<event>"), text.splitlines()[2].split()[8]
(1, '3')
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class LHERecord:
    """``n`` events of ``k`` particles each (fixed multiplicity), in LHE conventions.

    ``pid`` [n, k]; ``status`` [n, k] (-1 incoming, 1 outgoing); ``mothers`` [n, k, 2] (1-based);
    ``colours`` [n, k, 2] (colour, anticolour tags); ``p`` [n, k, 4] as (E, px, py, pz) in GeV;
    ``m`` [n, k]; ``scale`` (SCALUP), ``alpha_qed``, ``alpha_qcd`` [n].
    """

    pid: np.ndarray
    status: np.ndarray
    mothers: np.ndarray
    colours: np.ndarray
    p: np.ndarray
    m: np.ndarray
    scale: np.ndarray
    alpha_qed: np.ndarray
    alpha_qcd: np.ndarray

    def __len__(self) -> int:
        return len(self.pid)


def _columns(*cols: np.ndarray) -> np.ndarray:
    """Join formatted columns (arrays of str) with single spaces, element-wise."""
    return functools.reduce(lambda a, b: np.char.add(np.char.add(a, " "), b), cols)


def _int(a) -> np.ndarray:
    return np.char.mod("%d", np.asarray(a, dtype=np.int64))


def _real(a) -> np.ndarray:
    return np.char.mod("%.12e", np.asarray(a, dtype=np.float64))


def lhe_text(rec: LHERecord, sigma_pb: float, e_beam: float = 6500.0, beam_id: int = 2212) -> str:
    """The complete event file as a string (unit weights ``XWGTUP = 1``)."""
    n, k = rec.pid.shape
    header = _columns(
        _int(np.full(n, k)),
        _int(np.ones(n)),
        _real(np.ones(n)),
        _real(rec.scale),
        _real(rec.alpha_qed),
        _real(rec.alpha_qcd),
    )
    flat = lambda a: a.reshape(n * k, *a.shape[2:])  # noqa: E731
    mothers, colours, p = flat(rec.mothers), flat(rec.colours), flat(rec.p)
    lines = _columns(
        _int(flat(rec.pid)),
        _int(flat(rec.status)),
        _int(mothers[:, 0]),
        _int(mothers[:, 1]),
        _int(colours[:, 0]),
        _int(colours[:, 1]),
        _real(p[:, 1]),
        _real(p[:, 2]),
        _real(p[:, 3]),
        _real(p[:, 0]),
        _real(flat(rec.m)),
        _real(np.zeros(n * k)),
        _real(np.full(n * k, 9.0)),
    ).reshape(n, k)
    blocks = np.concatenate(
        [np.full((n, 1), "<event>"), header[:, None], lines, np.full((n, 1), "</event>")], axis=1
    )
    init = (
        '<LesHouchesEvents version="1.0">\n<init>\n'
        f"{beam_id} {beam_id} {e_beam:.6e} {e_beam:.6e} 0 0 0 0 3 1\n"
        f"{sigma_pb:.10e} 0.0 1.0 1\n</init>\n"
    )
    return init + "\n".join(blocks.ravel().tolist()) + "\n</LesHouchesEvents>\n"


def write_lhe(path: str | os.PathLike, rec: LHERecord, sigma_pb: float, e_beam: float = 6500.0) -> Path:
    """Write :func:`lhe_text` to ``path`` (via a temporary name and a rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(lhe_text(rec, sigma_pb, e_beam))
    os.replace(tmp, path)
    return path
