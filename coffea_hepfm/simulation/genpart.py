"""The pruned generator record written as NanoAOD ``GenPart``.

Like CMS's pruned GenParticles, only the interesting part of the Pythia record is kept: the hard process
(Pythia status 21-29, including resonance decay products), every copy of t, W, Z, H, A, H+ and Z', taus,
final-state leptons and neutrinos, and every particle a reconstructed electron, muon or photon came from
(so ``genPartIdx`` always points into GenPart). ``genPartIdxMother`` is remapped to the nearest kept
ancestor (-1 if none), so ``GenPart.parent`` / ``distinctParent`` work in coffea.

``statusFlags`` bits set (CMS meaning): 0 isPrompt (no hadron ancestor), 2 isTauDecayProduct,
6 isDirectHadronDecayProduct, 7 isHardProcess, 8 fromHardProcess, 12 isFirstCopy, 13 isLastCopy.
``status`` follows CMS: 1 final state, 2 decayed hadron or tau, otherwise Pythia's |status|.

Examples
--------
An event whose record has no kept particle gets ``nGenPart == 0``; a kept particle whose ancestors were
all dropped gets ``genPartIdxMother == -1``.
"""

from __future__ import annotations

import numpy as np

from coffea_hepfm.simulation.flat import FlatEvents, offsets_of

_HEAVY_BOSONS = (6, 23, 24, 25, 32, 36, 37)
_LEPTONS = (11, 12, 13, 14, 15, 16)


def _in_table(aid: np.ndarray, codes: tuple[int, ...]) -> np.ndarray:
    """Fast ``np.isin`` for small positive codes (a lookup table instead of per-code passes)."""
    table = np.zeros(max(codes) + 2, bool)
    table[list(codes)] = True
    return table[np.minimum(aid, len(table) - 1)]


def _ancestry(fe: FlatEvents, start: np.ndarray, kept: np.ndarray):
    """Walk each particle in ``start`` up its mother1 chain (vectorised over all walkers).

    Returns (nearest kept ancestor, flags) with flags ``from_hadron``, ``from_tau``, ``from_hard``,
    ``from_b``, ``from_c`` (has such an ancestor). The walk stops at the beams (Pythia entries 1, 2) or
    the system entry.
    """
    n = len(start)
    mother = np.full(n, -1, np.int64)
    flags = {k: np.zeros(n, bool) for k in ("from_hadron", "from_tau", "from_hard", "from_b", "from_c")}
    aid = np.abs(fe.pid)
    hard = (np.abs(fe.status) >= 21) & (np.abs(fe.status) <= 29)
    hflav = fe.hadron_flavour
    hadron, b_hadron, c_hadron = hflav > 0, hflav == 5, hflav == 4
    tau = aid == 15
    walker = np.arange(n)
    cur = fe.mother1[start]
    for _ in range(10_000):  # depth bound; Pythia chains are a few hundred deep at most
        alive = (cur >= 0) & (fe.local[np.maximum(cur, 0)] > 2)
        walker, cur = walker[alive], cur[alive]
        if walker.size == 0:
            break
        flags["from_hadron"][walker] |= hadron[cur]
        flags["from_tau"][walker] |= tau[cur]
        flags["from_hard"][walker] |= hard[cur]
        flags["from_b"][walker] |= b_hadron[cur]
        flags["from_c"][walker] |= c_hadron[cur]
        found = kept[cur] & (mother[walker] < 0)
        mother[walker[found]] = cur[found]
        cur = fe.mother1[cur]
    return mother, flags


def gen_flavour(fe: FlatEvents, src: np.ndarray) -> np.ndarray:
    """NanoAOD lepton ``genPartFlav`` of the generator particles ``src``: 1 prompt, 15 from a prompt tau,
    5 from a b hadron, 4 from a c hadron, 3 from a light hadron, 22 from a photon (conversion/splitting).
    Fakes (no generator electron/muon) get 0 from the caller."""
    _, f = _ancestry(fe, src, np.zeros(len(fe.pid), bool))
    mother_photon = np.abs(fe.pid[np.maximum(fe.mother1[src], 0)]) == 22
    return np.select(
        [f["from_b"], f["from_c"], f["from_hadron"], mother_photon, f["from_tau"]], [5, 4, 3, 22, 15], 1
    ).astype(np.uint8)


def select_genparts(fe: FlatEvents, must_keep: np.ndarray) -> dict[str, np.ndarray]:
    """Choose and describe the GenPart record.

    Parameters
    ----------
    fe
        The batch's flat event record.
    must_keep
        Global indices that must be kept (sources of reconstructed objects).

    Returns
    -------
    dict with ``index`` (kept global indices, event-sorted), ``counts`` per event, ``gen_local`` (global
    index -> GenPart index inside its event, -1 if dropped) and the NanoAOD fields.
    """
    aid = np.abs(fe.pid)
    ast = np.abs(fe.status)
    final = fe.status > 0
    kept = (ast >= 21) & (ast <= 29)
    kept |= _in_table(aid, _HEAVY_BOSONS)
    kept |= aid == 15
    kept |= final & _in_table(aid, _LEPTONS) & (fe.pt > 1.0)
    kept[must_keep] = True
    kept &= fe.local > 2  # never the system entry or the beams
    index = np.flatnonzero(kept)
    counts = np.bincount(fe.evt[index], minlength=fe.n)
    offsets = offsets_of(fe.evt[index], fe.n)

    gen_local = np.full(len(fe.pid), -1, np.int64)
    gen_local[index] = np.arange(len(index)) - offsets[fe.evt[index]]

    mother, f = _ancestry(fe, index, kept)
    from_hadron, from_tau, from_hard = f["from_hadron"], f["from_tau"], f["from_hard"]
    mother_idx = np.where(mother >= 0, gen_local[np.maximum(mother, 0)], -1)

    pid = fe.pid[index]
    m1 = fe.mother1[index]
    d1, d2 = fe.daughters(index)
    first_copy = ~((m1 >= 0) & (fe.pid[np.maximum(m1, 0)] == pid))
    last_copy = ~((d1 >= 0) & (d1 == d2) & (fe.pid[np.maximum(d1, 0)] == pid))
    hard = (ast[index] >= 21) & (ast[index] <= 29)
    direct_hadron = (m1 >= 0) & (fe.hadron_flavour[np.maximum(m1, 0)] > 0)
    flags = (
        (~from_hadron).astype(np.int64) << 0
        | from_tau.astype(np.int64) << 2
        | direct_hadron.astype(np.int64) << 6
        | hard.astype(np.int64) << 7
        | (from_hard | hard).astype(np.int64) << 8
        | first_copy.astype(np.int64) << 12
        | last_copy.astype(np.int64) << 13
    )
    decayed = ~final[index] & ((fe.hadron_flavour[index] > 0) | (np.abs(pid) == 15)) & (d1 >= 0)
    status = np.where(final[index], 1, np.where(decayed, 2, ast[index]))
    pt = fe.pt[index]
    eta, phi = fe.eta_phi(index)
    return {
        "index": index,
        "counts": counts,
        "gen_local": gen_local,
        "pt": pt.astype(np.float32),
        "eta": eta.astype(np.float32),
        "phi": phi.astype(np.float32),
        "mass": np.where(np.abs(fe.m[index]) < 1e-6, 0.0, fe.m[index]).astype(np.float32),
        "pdgId": pid.astype(np.int32),
        "status": status.astype(np.int32),
        "statusFlags": flags.astype(np.uint16),
        "genPartIdxMother": mother_idx.astype(np.int16),
    }
