"""Pythia 8 event generation into awkward arrays.

Events come out of Pythia through ``Pythia.nextBatch`` (pythia8mc >= 8.311), which fills awkward arrays in
C++: no Python loop over events or particles. The full event record (history included) is returned, so the
detector can match jets to B/C hadrons and build the GenPart record.

Default settings: pp at 13 TeV, parton shower, multiparton interactions (MPI) and hadronisation on
(``processes.MPI_DEFAULT``). MPI costs ~5x in generation time; it is on because the underlying event it adds is what
gives particle-level jets the mass CMS's GenJets have (docs/design.md, simulation). ``mpi=False`` (``simulate
--no-mpi``) turns it off.

Examples
--------
>>> from coffea_hepfm.simulation.generator import chunk_seed
>>> chunk_seed(1, "ttbar", 0) == chunk_seed(1, "ttbar", 0)
True
>>> 0 < chunk_seed(1, "ttbar", 0) < 900_000_000
True
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence

import awkward as ak

from coffea_hepfm.simulation.processes import MPI_DEFAULT, get_process

BASE_SETTINGS = (
    "Beams:idA = 2212",
    "Beams:idB = 2212",
    "Beams:eCM = 13000.",
    "Print:quiet = on",
    "Next:numberCount = 0",
    "Next:numberShowEvent = 0",
    "Next:numberShowInfo = 0",
    "Next:numberShowProcess = 0",
    # Long-lived particles decay only if c*tau < 10 mm, as in CMS generator settings.
    "ParticleDecays:limitTau0 = on",
    "ParticleDecays:tau0Max = 10.",
    "Random:setSeed = on",
)
# Pythia accepts seeds in [0, 900_000_000].
MAX_SEED = 900_000_000


def chunk_seed(seed: int, process: str, chunk: int) -> int:
    """Stable Pythia seed for one chunk, from ``(seed, process, chunk)``; independent of worker count."""
    digest = hashlib.sha256(f"coffea-hepfm/{seed}/{process}/{chunk}".encode()).digest()
    return int.from_bytes(digest[:8], "little") % (MAX_SEED - 1) + 1


def pythia_settings(process: str, seed: int, mpi: bool = MPI_DEFAULT, extra: Sequence[str] = ()) -> list[str]:
    """All ``readString`` lines for ``process`` with Pythia seed ``seed``; ``extra`` lines come last, so
    they override the defaults (``simulate --pythia``)."""
    proc = get_process(process)
    if not 0 < seed < MAX_SEED:
        raise ValueError(f"Pythia seed must be in (0, {MAX_SEED}), got {seed}")
    return [
        *BASE_SETTINGS,
        f"Random:seed = {seed}",
        f"PartonLevel:MPI = {'on' if mpi else 'off'}",
        *proc.settings,
        *extra,
    ]


def check_settings(extra: Sequence[str]) -> None:
    """Raise ``ValueError`` naming the first line of ``extra`` that Pythia does not accept (before any
    event is generated)."""
    if not extra:
        return
    import pythia8mc

    pythia = pythia8mc.Pythia("", False)
    for line in extra:
        if not isinstance(line, str) or not pythia.readString(line):
            raise ValueError(
                f"Pythia rejected setting {line!r}: write it as 'Key = value' with a name from the Pythia 8 "
                "manual, e.g. 'Beams:eCM = 13600.'"
            )


def make_pythia(process: str, seed: int, mpi: bool = MPI_DEFAULT, extra: Sequence[str] = ()):
    """An initialised ``pythia8mc.Pythia`` for ``process``; raises ``RuntimeError`` if init fails."""
    import pythia8mc

    pythia = pythia8mc.Pythia("", False)
    for line in pythia_settings(process, seed, mpi, extra):
        if not pythia.readString(line):
            raise RuntimeError(f"Pythia rejected setting {line!r} for process {process!r}")
    if not pythia.init():
        raise RuntimeError(f"Pythia initialisation failed for process {process!r}")
    return pythia


def generate_batches(pythia, n_events: int, batch_size: int = 250) -> Iterator[ak.Array]:
    """Yield the particle records (``events.prt``) of ``n_events`` events, ``batch_size`` at a time.

    Small batches bound memory: one ttbar event holds ~750 particles of ~20 fields.
    Failed events are regenerated; more than 10x failures raise (Pythia's ``errorMode=10``).
    """
    done = 0
    while done < n_events:
        n = min(batch_size, n_events - done)
        batch = pythia.nextBatch(n, 10.0)
        yield batch.prt
        done += n


def sigma_gen_pb(pythia) -> float:
    """Pythia's estimate of the generated cross-section so far, in pb (Pythia reports mb)."""
    return float(pythia.infoPython().sigmaGen()) * 1e9


def cross_section_pb(process: str, n_events: int = 200, seed: int = 1, mpi: bool = MPI_DEFAULT) -> float:
    """Pythia's ``sigmaGen`` for ``process`` after ``n_events`` events (statistical precision ~ a few %).

    ttH processes (``cp_alpha_deg`` set) return ``sigma_SM * <|M(alpha)|^2 / |M(0)|^2>`` from
    process-level events (:func:`coffea_hepfm.simulation.reweight.cross_section_pb`), as their files do.
    """
    if get_process(process).cp_alpha_deg is not None:
        from coffea_hepfm.simulation.reweight import cross_section_pb as reweighted_cross_section

        return reweighted_cross_section(process, max(n_events, 2000), seed)
    pythia = make_pythia(process, chunk_seed(seed, process, 999_999), mpi=mpi)
    for _ in generate_batches(pythia, n_events, batch_size=n_events):
        pass
    return sigma_gen_pb(pythia)
