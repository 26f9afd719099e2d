r"""CP-odd and CP-mixed ttH by matrix-element reweighting of Pythia's SM ttH hard process, before the shower.

Pythia 8's ``HiggsBSM:gg2A3ttbar`` uses the CP-even production matrix element, so it cannot make a CP-odd
ttA sample. Here every ttH process (``tth``, ``tth_aa``, ``tta_aa``, ``ttmix_aa``) goes through one route:

1. **Process level.** Pythia generates SM ``g g / q qbar -> t tbar H`` without showers, remnants or
   resonance decays (``nextBatch``: the hard process of a whole batch as arrays; ~1,850 events/s/core).
2. **Weights.** For each event the tree-level ``|M|^2`` of :mod:`~coffea_hepfm.simulation.ttphi_me` is
   evaluated in one vectorised call, on the event's own momenta (tops put on shell, see
   :func:`~coffea_hepfm.simulation.ttphi_me.on_shell_tops`) and initial state (``gg`` or ``q qbar``).
   The weight of mixing angle ``alpha`` is ``w(alpha) = |M(alpha)|^2 / |M(0)|^2``: the parton
   densities, flux and phase space cancel, so SM events weighted by ``w`` are distributed as the CP-mixed
   process. With ``kappa = kappa_tilde = 1``, ``w = cos^2(alpha) + sin^2(alpha) R`` with
   ``R = |M(90)|^2 / |M(0)|^2`` (the CP-even/odd interference vanishes without top spins).
3. **Unweighting.** An event is kept with probability ``w(alpha_gen) / w_max`` with
   ``w_max = cos^2 + sin^2 * R_MAX``. ``R`` is unbounded in principle; the rare events above the bound
   keep ``genWeight = w / w_max > 1`` (exact, counted in ``hepfm_meta``), all others ``genWeight = 1``.
4. **Shower.** Accepted hard processes go to a Les Houches file (:mod:`~coffea_hepfm.simulation.lhe`)
   that a second Pythia (``Beams:frameType = 4``) decays (top, ``H -> gamma gamma``...), showers and
   hadronises like any other sample. Events come back matched to their hard process by ``(x1, x2)``.

Every file gets ``LHEReweightingWeight[i] = |M(alpha_i)|^2 / |M(alpha_gen)|^2`` for the angles
``ALPHA_GRID_DEG`` (NanoAOD convention: ``w_var / w_nominal``), so any angle can be studied from any sample:
``sum(genWeight * LHEReweightingWeight[i]) / sum(genWeight) = sigma(alpha_i) / sigma(alpha_gen)``.
The sample cross-section is ``sigma_SM(Pythia) * <w(alpha_gen)>`` over all process-level events.

The CP-odd ``phi`` keeps PDG id 25 (the same scalar with another Yukawa), and its decays are the SM ones.
Limits: top-spin correlations from production are not kept (Pythia decays unpolarised tops: the same
for every ttH sample here, so they carry no CP information); ``alpha_s``, PDFs and scales are Pythia's.

Examples
--------
>>> weights_for(np.array([0.5, 4.0]), alpha_gen_deg=0.0, grid=(0.0, 90.0)).tolist()
[[1.0, 0.5], [1.0, 4.0]]
>>> weights_for(np.array([0.5, 4.0]), alpha_gen_deg=90.0, grid=(0.0, 90.0)).tolist()   # 1/R, 1
[[2.0, 1.0], [0.25, 1.0]]
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import awkward as ak
import numpy as np

from coffea_hepfm.simulation.generator import BASE_SETTINGS, MAX_SEED
from coffea_hepfm.simulation.lhe import LHERecord, write_lhe
from coffea_hepfm.simulation.processes import MPI_DEFAULT, get_process
from coffea_hepfm.simulation.ttphi_me import ME2Components, me2_components, on_shell_tops

#: Mixing angles (degrees) of ``LHEReweightingWeight``, in index order; kappa = kappa_tilde = 1.
ALPHA_GRID_DEG = (0.0, 15.0, 30.0, 45.0, 60.0, 75.0, 90.0)
#: Unweighting bound on R = |M(90)|^2 / |M(0)|^2 (largest seen: 16.9 in 20,000 Pythia SM ttH events).
R_MAX = 20.0
#: Pythia switches of the SM ttH hard process (the shower Pythia gets every other setting of a process).
TTH_HARD = ("HiggsSM:gg2Httbar = on", "HiggsSM:qqbar2Httbar = on")
PROCESS_LEVEL = (
    "PartonLevel:ISR = off",
    "PartonLevel:FSR = off",
    "PartonLevel:MPI = off",
    "PartonLevel:Remnants = off",
    "HadronLevel:all = off",
    "ProcessLevel:resonanceDecays = off",
    "Check:event = off",
)
_ORDER = (6, -6, 25)  # outgoing t, tbar, H in LHE order, after the two incoming partons


def weights_for(r: np.ndarray, alpha_gen_deg: float, grid=ALPHA_GRID_DEG) -> np.ndarray:
    """``[N, len(grid)]`` weights ``w(alpha_i) / w(alpha_gen)`` from ``R = |M(90)|^2 / |M(0)|^2``."""
    grid = np.deg2rad(np.asarray(grid, dtype=float))
    num = np.cos(grid) ** 2 + np.sin(grid) ** 2 * np.asarray(r)[:, None]
    gen = np.cos(np.deg2rad(alpha_gen_deg)) ** 2 + np.sin(np.deg2rad(alpha_gen_deg)) ** 2 * np.asarray(r)
    return num / gen[:, None]


def w_max(alpha_gen_deg: float) -> float:
    """The unweighting bound of ``w(alpha_gen) = cos^2 + sin^2 R``."""
    a = np.deg2rad(alpha_gen_deg)
    return float(np.cos(a) ** 2 + np.sin(a) ** 2 * R_MAX)


@dataclass(frozen=True)
class HardEvents:
    """Pythia hard processes ``[in1, in2, t, tbar, H]`` of ``n`` events (arrays with leading dim ``n``)."""

    pid: np.ndarray  # [n, 5]
    colours: np.ndarray  # [n, 5, 2]
    p: np.ndarray  # [n, 5, 4] (E, px, py, pz)
    m: np.ndarray  # [n, 5]
    scale: np.ndarray
    alpha_s: np.ndarray
    alpha_em: np.ndarray

    def __len__(self) -> int:
        return len(self.pid)

    @property
    def is_gg(self) -> np.ndarray:
        return (self.pid[:, 0] == 21) & (self.pid[:, 1] == 21)

    @property
    def x(self) -> tuple[np.ndarray, np.ndarray]:
        """Momentum fractions of the two incoming partons at 13 TeV (beam A along +z)."""
        return self.p[:, 0, 0] / 6500.0, self.p[:, 1, 0] / 6500.0

    def subset(self, index: np.ndarray) -> HardEvents:
        return HardEvents(*(getattr(self, f)[index] for f in self.__dataclass_fields__))

    def components(self) -> ME2Components:
        """Matrix-element coefficients with the tops on a common mass shell."""
        k1, k2, m = on_shell_tops(self.p[:, 2], self.p[:, 3])
        return me2_components(self.p[:, 0], self.p[:, 1], k1, k2, self.p[:, 4], self.is_gg, m_top=m)

    def ratio(self) -> np.ndarray:
        """``R = |M(90)|^2 / |M(0)|^2`` per event."""
        c = self.components()
        return c.odd / c.even

    def to_lhe(self) -> LHERecord:
        n = len(self)
        mothers = np.zeros((n, 5, 2), np.int64)
        mothers[:, 2:] = (1, 2)
        status = np.tile([-1, -1, 1, 1, 1], (n, 1))
        return LHERecord(
            self.pid, status, mothers, self.colours, self.p, self.m, self.scale, self.alpha_em, self.alpha_s
        )


def hard_events(batch) -> HardEvents:
    """The hard processes of a process-level ``Pythia.nextBatch`` result (record entries 3-7).

    Raises ``RuntimeError`` if an event is not ``2 -> t tbar H`` (a changed Pythia record layout).
    """
    prt, info = batch.prt, batch.info
    hard = prt[:, 3:8]
    if len(prt) and not (ak.all(ak.num(hard) == 5)):
        raise RuntimeError("process-level ttH record: expected entries 3-7 = 2 incoming + t tbar H")
    pid = np.asarray(ak.to_numpy(ak.to_regular(hard.id)), np.int64).reshape(-1, 5)
    key = np.select([pid[:, 2:] == c for c in _ORDER], [0, 1, 2], 9)
    if np.any(np.sort(key, axis=1) != [0, 1, 2]):
        raise RuntimeError(f"process-level ttH record: outgoing ids {np.unique(pid[:, 2:])} are not t tbar H")
    idx = np.concatenate([np.tile([0, 1], (len(pid), 1)), 2 + np.argsort(key, axis=1)], axis=1)

    def arr(x) -> np.ndarray:
        a = np.asarray(ak.to_numpy(ak.to_regular(x)), dtype=float).reshape(len(pid), 5)
        return np.take_along_axis(a, idx, axis=1)

    p = np.stack([arr(hard.p.e), arr(hard.p.px), arr(hard.p.py), arr(hard.p.pz)], axis=-1)
    colours = np.stack([arr(hard.col), arr(hard.acol)], axis=-1).astype(np.int64)
    return HardEvents(
        np.take_along_axis(pid, idx, axis=1),
        colours,
        p,
        arr(hard.m),
        np.asarray(ak.to_numpy(hard.scale[:, 0]), dtype=float),
        np.asarray(ak.to_numpy(info.alphaS), dtype=float),
        np.asarray(ak.to_numpy(info.alphaEM), dtype=float),
    )


def derived_seed(seed: int, stream: str) -> int:
    """A second Pythia seed from ``seed`` (e.g. for the shower Pythia of the same chunk)."""
    digest = hashlib.sha256(f"coffea-hepfm/{seed}/{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") % (MAX_SEED - 1) + 1


def process_level_pythia(process: str, seed: int):
    """Pythia for the SM ttH hard process of ``process`` (its decay settings included: sigmaGen then
    contains the branching ratios of restricted decays)."""
    import pythia8mc

    pythia = pythia8mc.Pythia("", False)
    for line in (*BASE_SETTINGS, f"Random:seed = {seed}", *get_process(process).settings, *PROCESS_LEVEL):
        if not pythia.readString(line):
            raise RuntimeError(f"Pythia rejected setting {line!r} for process {process!r}")
    if not pythia.init():
        raise RuntimeError(f"Pythia process-level initialisation failed for {process!r}")
    return pythia


def shower_pythia(process: str, lhe_path: str | Path, seed: int, mpi: bool = MPI_DEFAULT):
    """Pythia that reads ``lhe_path`` and decays, showers and hadronises it with ``process``'s settings."""
    import pythia8mc

    decays = [s for s in get_process(process).settings if s not in TTH_HARD]
    lines = (
        *BASE_SETTINGS,
        f"Random:seed = {seed}",
        f"PartonLevel:MPI = {'on' if mpi else 'off'}",
        "Beams:frameType = 4",
        f"Beams:LHEF = {lhe_path}",
        *decays,
    )
    pythia = pythia8mc.Pythia("", False)
    for line in lines:
        if not pythia.readString(line):
            raise RuntimeError(f"Pythia rejected setting {line!r} for process {process!r}")
    if not pythia.init():
        raise RuntimeError(f"Pythia initialisation from {lhe_path} failed for {process!r}")
    return pythia


@dataclass
class Unweighted:
    """Accepted hard processes of one chunk and the bookkeeping of the accept-reject step."""

    events: HardEvents
    r: np.ndarray  # R of each accepted event
    gen_weight: np.ndarray
    n_process_level: int
    sigma_sm_pb: float
    mean_weight: float  # <w(alpha_gen)> over all process-level events
    w_max: float
    n_overweight: int
    max_r: float
    n_accepted: int  # accepted before trimming to n_accept: the efficiency is n_accepted / n_process_level


def unweighted_hard_events(
    process: str, seed: int, n_accept: int, alpha_gen_deg: float, max_batch: int = 20_000
) -> Unweighted:
    """Generate SM ttH hard processes until ``n_accept`` pass the accept-reject step of ``alpha_gen_deg``."""
    pythia = process_level_pythia(process, seed)
    rng = np.random.default_rng([seed, 3])
    bound = w_max(alpha_gen_deg)
    a = np.deg2rad(alpha_gen_deg)
    # Expected acceptance, from <R> ~ 0.42 at 13 TeV: sizes the batches so little is generated in vain.
    expected = (np.cos(a) ** 2 + 0.42 * np.sin(a) ** 2) / bound
    kept, ratios, wsum, total, max_r, n_kept = [], [], 0.0, 0, 0.0, 0
    while n_kept < n_accept:
        size = int(min(max_batch, np.ceil((n_accept - n_kept) / expected * 1.05) + 16))
        ev = hard_events(pythia.nextBatch(size, 10.0))
        r = ev.ratio()
        w = np.cos(a) ** 2 + np.sin(a) ** 2 * r
        wsum, total, max_r = wsum + float(w.sum()), total + len(ev), max(max_r, float(r.max()))
        keep = np.flatnonzero(rng.uniform(size=len(ev)) * bound < w)
        kept.append(ev.subset(keep))
        ratios.append(r[keep])
        n_kept += len(keep)
    fields = HardEvents.__dataclass_fields__
    events = HardEvents(*(np.concatenate([getattr(k, f) for k in kept])[:n_accept] for f in fields))
    r = np.concatenate(ratios)[:n_accept]
    gen_weight = np.maximum(1.0, (np.cos(a) ** 2 + np.sin(a) ** 2 * r) / bound)
    return Unweighted(
        events,
        r,
        gen_weight,
        total,
        float(pythia.infoPython().sigmaGen()) * 1e9,
        wsum / total,
        bound,
        int(np.sum(gen_weight > 1.0)),
        max_r,
        n_kept,
    )


def _match(x1: np.ndarray, order: np.ndarray, bx1: np.ndarray) -> np.ndarray:
    """Index of the Les Houches event whose ``x1`` is nearest each showered event's ``x1``."""
    xs = x1[order]
    pos = np.clip(np.searchsorted(xs, bx1), 1, len(xs) - 1)
    left = np.abs(xs[pos - 1] - bx1) <= np.abs(xs[pos] - bx1)
    return order[np.where(left, pos - 1, pos)]


def reweighted_batches(
    process: str,
    seed: int,
    n_events: int,
    mpi: bool = MPI_DEFAULT,
    batch_size: int = 500,
    meta: dict | None = None,
    progress: Callable[[int], None] | None = None,
) -> Iterator[tuple[ak.Array, np.ndarray, np.ndarray]]:
    """Yield ``(particles, LHEReweightingWeight [b, K] float32, genWeight [b])`` for ``n_events`` showered
    events of a ttH ``process``; ``meta`` (if given) receives the generation bookkeeping."""
    proc = get_process(process)
    if proc.cp_alpha_deg is None:
        raise ValueError(f"process {process!r} is not a matrix-element reweighted ttH process")
    spare = max(20, n_events // 20)  # hard processes the shower may fail on
    uw = unweighted_hard_events(process, seed, n_events + spare, proc.cp_alpha_deg)
    weights = weights_for(uw.r, proc.cp_alpha_deg).astype(np.float32)
    x1, x2 = uw.events.x
    order = np.lexsort((x2, x1))
    workdir = Path(tempfile.mkdtemp(prefix="hepfm-lhe-"))
    try:
        lhe = write_lhe(workdir / f"{process}.lhe", uw.events.to_lhe(), uw.sigma_sm_pb * uw.mean_weight)
        pythia = shower_pythia(process, lhe, derived_seed(seed, "shower"), mpi)
        done = 0
        while done < n_events:
            batch = pythia.nextBatch(min(batch_size, n_events - done), 10.0)
            bx1, bx2 = (np.asarray(ak.to_numpy(batch.info[k]), dtype=float) for k in ("x1", "x2"))
            idx = _match(x1, order, bx1)
            if not (
                np.allclose(x1[idx], bx1, rtol=1e-8, atol=0) and np.allclose(x2[idx], bx2, rtol=1e-8, atol=0)
            ):
                raise RuntimeError(f"{process}: showered events do not match their Les Houches hard process")
            done += len(idx)
            if progress is not None:
                progress(len(idx))
            yield batch.prt, weights[idx], uw.gen_weight[idx]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if meta is not None:
        meta.update(
            sigma_gen_pb=uw.sigma_sm_pb * uw.mean_weight,
            lhe_reweighting=reweighting_meta(proc.cp_alpha_deg),
            generation={
                "route": "Pythia SM ttH process level -> |M|^2 reweighting + accept-reject -> LHE -> Pythia shower",
                "alpha_gen_deg": proc.cp_alpha_deg,
                "sigma_sm_pb": uw.sigma_sm_pb,
                "mean_weight": uw.mean_weight,
                "n_process_level": uw.n_process_level,
                "unweighting_efficiency": uw.n_accepted / uw.n_process_level,
                "w_max": uw.w_max,
                "r_max_seen": uw.max_r,
                "n_overweight": uw.n_overweight,
                "shower_seed": derived_seed(seed, "shower"),
            },
        )


def reweighting_meta(alpha_gen_deg: float) -> dict:
    """The ``hepfm_meta["lhe_reweighting"]`` entry that documents ``LHEReweightingWeight``."""
    return {
        "branch": "LHEReweightingWeight",
        "parameter": "alpha_deg",
        "alpha_deg": list(ALPHA_GRID_DEG),
        "kappa": 1.0,
        "kappa_tilde": 1.0,
        "alpha_gen_deg": alpha_gen_deg,
        "definition": "|M(alpha_i)|^2 / |M(alpha_gen)|^2, tree-level gg/qqbar -> t tbar phi, "
        "L = -(m_t/v) tbar (kappa cos(alpha) + i kappa_tilde sin(alpha) gamma5) t phi",
        "normalisation": "sum(genWeight * w_i) / sum(genWeight) = sigma(alpha_i) / sigma(alpha_gen)",
    }


def cross_section_pb(process: str, n_events: int = 2000, seed: int = 1) -> float:
    """``sigma_SM * <w(alpha)>`` of a reweighted ttH process from ``n_events`` process-level events."""
    from coffea_hepfm.simulation.generator import chunk_seed

    alpha = get_process(process).cp_alpha_deg
    pythia = process_level_pythia(process, chunk_seed(seed, process, 999_999))
    ev = hard_events(pythia.nextBatch(n_events, 10.0))
    a = np.deg2rad(alpha)
    w = np.cos(a) ** 2 + np.sin(a) ** 2 * ev.ratio()
    return float(pythia.infoPython().sigmaGen()) * 1e9 * float(w.mean())
