"""``GraphSpec``: what an event graph is made of, saved in every model file and checked at load time."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from coffea_hepfm.graph.errors import GraphSpecMismatch

SPEC_NAME = "hepfm-graph"
SPEC_VERSION = 1

#: Object types in node order; each type's one-hot feature is ``is_<type>``.
OBJECT_TYPES = ("jet", "electron", "muon", "photon", "met")
#: NanoAOD collection of each object type (MET is resolved from ``GraphSpec.met_sources``).
COLLECTIONS = {"jet": "Jet", "electron": "Electron", "muon": "Muon", "photon": "Photon"}

NODE_FEATURES = (
    "log_pt",  # log1p(pT / GeV)
    "eta",
    "sin_phi",
    "cos_phi",
    "log_energy",  # log1p(E / GeV)
    "log_mass",  # log1p(max(m, 0) / GeV)
    "charge",  # leptons: +-1; jets, photons, MET: 0
    "btag",  # jets: b-tag score clipped to [0, 1]; others: 0
    "is_jet",
    "is_electron",
    "is_muon",
    "is_photon",
    "is_met",
)
EDGE_FEATURES = (
    "delta_eta",  # eta[target] - eta[source]
    "delta_phi",  # phi[target] - phi[source], wrapped to [-pi, pi)
    "delta_r",  # hypot(delta_eta, delta_phi)
    "log_mass_pair",  # log1p(m(source + target) / GeV)
)
GLOBAL_FEATURES = (
    "log_n_jets",  # log1p of counts after pT threshold and NaN rule, before the cap
    "log_n_bjets",  # jets with b-tag score > the medium working point of the b-tagger used
    "log_n_electrons",
    "log_n_muons",
    "log_n_photons",
    "log_ht",  # log1p(scalar sum of jet pT), all jets above threshold (not only the capped ones)
    "log_met",  # log1p(MET pT); 0 if spec.met is False
)

# Fields that describe *behaviour on bad input*, not the features: not compared by check_compatible.
POLICY_FIELDS = ("missing", "nonfinite")

Missing = Literal["empty", "error"]
NonFinite = Literal["raise", "zero", "drop"]


@dataclass(frozen=True)
class GraphSpec:
    """The definition of an event graph built from NanoAOD.

    Nodes are reconstructed objects: jets, electrons, muons, photons (each above ``min_pt_*``, sorted by
    pT within their type and capped at ``max_*``) and, if ``met``, one MET node. Node order in an event
    is jets, electrons, muons, photons, MET. Edges are fully connected, directed, no self loops.

    Parameters
    ----------
    name, version
        Identify the feature definition; a model file stores them and refuses another spec.
    max_jets, max_electrons, max_muons, max_photons
        Caps on the number of nodes per type (the hardest objects are kept). ``0`` drops a type and its
        branches are not read (its global count is then 0 too).
    met
        Add a MET node (pt, phi; eta = 0, mass = 0).
    min_pt_jet, min_pt_electron, min_pt_muon, min_pt_photon
        pT thresholds in GeV, so CMS files and simulated files select comparable objects.
    btag
        ``(branch, medium working point)`` pairs in order of preference; the first ``Jet_<branch>``
        present in a file is used (NanoAOD v9: DeepJet; v12+: PNet/RobustParT; v15: UParT).
    met_sources
        MET collections in order of preference. ``("MET", "PuppiMET")`` falls back to ``PuppiMET``
        for NanoAOD v15 files, where ``MET`` no longer exists.
    missing
        A whole object collection absent from the file (e.g. ``Photon`` in slimmed NanoAOD v12):
        ``"empty"`` (default) treats it as zero objects and warns with
        :class:`~coffea_hepfm.graph.errors.MissingCollectionWarning` naming the branch; ``"error"``
        raises :class:`~coffea_hepfm.graph.errors.MissingBranchError`. A collection that exists but lacks
        a needed branch, no b-tag branch, or no MET source always raises.
    nonfinite
        NaN/inf in an object's inputs (or an overflowing energy): ``"drop"`` (default) drops that object
        (a MET node is dropped and ``log_met`` = 0) and warns with the count; ``"zero"`` replaces the
        bad values by 0 and warns; ``"raise"`` raises :class:`~coffea_hepfm.graph.errors.NonFiniteInput`.
        Output features are never NaN.

    Examples
    --------
    >>> spec = GraphSpec()
    >>> spec.n_node_features, spec.n_edge_features, spec.n_global_features
    (13, 4, 7)
    >>> GraphSpec.from_dict(spec.to_dict()) == spec
    True
    >>> GraphSpec(max_photons=0).check_compatible(spec)
    Traceback (most recent call last):
    ...
    coffea_hepfm.graph.errors.GraphSpecMismatch: graph spec mismatch: max_photons: expected 0, got 4
    """

    name: str = SPEC_NAME
    version: int = SPEC_VERSION
    max_jets: int = 10
    max_electrons: int = 4
    max_muons: int = 4
    max_photons: int = 4
    met: bool = True
    min_pt_jet: float = 20.0
    min_pt_electron: float = 10.0
    min_pt_muon: float = 10.0
    min_pt_photon: float = 20.0
    btag: tuple[tuple[str, float], ...] = (
        ("btagDeepFlavB", 0.2783),
        ("btagPNetB", 0.245),
        ("btagRobustParTAK4B", 0.4319),
        ("btagUParTAK4B", 0.4648),
        ("btagDeepB", 0.4168),
    )
    met_sources: tuple[str, ...] = ("MET", "PuppiMET")
    missing: Missing = "empty"
    nonfinite: NonFinite = "drop"

    def __post_init__(self) -> None:
        # Normalise lists (e.g. from JSON) to tuples so the spec stays hashable and comparable.
        object.__setattr__(self, "btag", tuple((str(b), float(w)) for b, w in self.btag))
        sources = (self.met_sources,) if isinstance(self.met_sources, str) else self.met_sources
        object.__setattr__(self, "met_sources", tuple(str(m) for m in sources))
        if self.name != SPEC_NAME:
            raise ValueError(f"GraphSpec name must be {SPEC_NAME!r}, got {self.name!r}")
        if self.version != SPEC_VERSION:
            raise ValueError(
                f"GraphSpec version {self.version} is not supported by this coffea-hepfm "
                f"(supports version {SPEC_VERSION}); upgrade coffea-hepfm or use a matching model"
            )
        for t in ("jets", "electrons", "muons", "photons"):
            cap = getattr(self, f"max_{t}")
            if not isinstance(cap, int) or isinstance(cap, bool) or cap < 0:
                raise ValueError(f"GraphSpec.max_{t} must be an int >= 0, got {cap!r}")
        if self.missing not in ("empty", "error"):
            raise ValueError(f"GraphSpec.missing must be 'empty' or 'error', got {self.missing!r}")
        if self.nonfinite not in ("raise", "zero", "drop"):
            raise ValueError(f"GraphSpec.nonfinite must be 'raise', 'zero' or 'drop', got {self.nonfinite!r}")
        if self.max_jets > 0 and not self.btag:
            raise ValueError("GraphSpec.btag must name at least one b-tag branch when max_jets > 0")
        if self.met and not self.met_sources:
            raise ValueError("GraphSpec.met_sources must name at least one MET collection when met=True")

    # -- feature names -------------------------------------------------------------------------------
    @property
    def node_features(self) -> tuple[str, ...]:
        return NODE_FEATURES

    @property
    def edge_features(self) -> tuple[str, ...]:
        return EDGE_FEATURES

    @property
    def global_features(self) -> tuple[str, ...]:
        return GLOBAL_FEATURES

    @property
    def n_node_features(self) -> int:
        return len(NODE_FEATURES)

    @property
    def n_edge_features(self) -> int:
        return len(EDGE_FEATURES)

    @property
    def n_global_features(self) -> int:
        return len(GLOBAL_FEATURES)

    @property
    def max_nodes(self) -> int:
        """Largest possible number of nodes in one event."""
        return self.max_jets + self.max_electrons + self.max_muons + self.max_photons + int(self.met)

    def cap(self, obj: str) -> int:
        """Node cap of object type ``obj`` (one of ``OBJECT_TYPES`` without ``"met"``)."""
        return getattr(self, f"max_{obj}s")

    def min_pt(self, obj: str) -> float:
        return getattr(self, f"min_pt_{obj}")

    # -- serialisation -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (lists instead of tuples); inverse of :meth:`from_dict`."""
        d = dataclasses.asdict(self)
        d["btag"] = [[b, w] for b, w in self.btag]
        d["met_sources"] = list(self.met_sources)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GraphSpec:
        """Rebuild a spec from :meth:`to_dict` output; unknown keys are an error (never ignored).

        Examples
        --------
        >>> GraphSpec.from_dict({"name": "hepfm-graph", "version": 1, "max_jets": 6}).max_jets
        6
        >>> GraphSpec.from_dict({"max_taus": 2})
        Traceback (most recent call last):
        ...
        ValueError: GraphSpec.from_dict: unknown field(s) ['max_taus']
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"GraphSpec.from_dict: unknown field(s) {unknown}")
        return cls(**dict(d))

    def replace(self, **changes: Any) -> GraphSpec:
        """A copy with ``changes`` (e.g. ``spec.replace(missing="error")``)."""
        return dataclasses.replace(self, **changes)

    def check_compatible(self, other: GraphSpec | Mapping[str, Any]) -> None:
        """Raise :class:`GraphSpecMismatch` if ``other`` defines different features than ``self``.

        ``self`` is the expected spec (e.g. the one in a model file). The policy fields ``missing`` and
        ``nonfinite`` are not compared: they change what happens on bad input, not the features.
        """
        if isinstance(other, Mapping):
            other = GraphSpec.from_dict(other)
        if not isinstance(other, GraphSpec):
            raise TypeError(f"check_compatible needs a GraphSpec or dict, got {type(other).__name__}")
        diffs = {
            f.name: (getattr(self, f.name), getattr(other, f.name))
            for f in dataclasses.fields(self)
            if f.name not in POLICY_FIELDS and getattr(self, f.name) != getattr(other, f.name)
        }
        if diffs:
            text = "; ".join(f"{k}: expected {a!r}, got {b!r}" for k, (a, b) in diffs.items())
            raise GraphSpecMismatch(f"graph spec mismatch: {text}", diffs)

    # -- branches ------------------------------------------------------------------------------------
    def required_branches(self, available: Iterable[str] | Any | None = None) -> list[str]:
        """Sorted NanoAOD branch names this spec reads, including counters (``nJet``).

        Parameters
        ----------
        available
            ``None``: assume the first choice of ``btag`` and ``met_sources``. Otherwise the branch names
            of a file (e.g. ``uproot`` ``tree.keys()``) or NanoEvents (eager, virtual or dask; only the
            form is used): b-tag and MET are resolved as the builder resolves them, and absent
            collections are left out (as with ``missing="empty"``).

        Examples
        --------
        >>> GraphSpec(max_electrons=0, max_muons=0, max_photons=0, met=False).required_branches()
        ['Jet_btagDeepFlavB', 'Jet_eta', 'Jet_mass', 'Jet_phi', 'Jet_pt', 'nJet']
        """
        from coffea_hepfm.graph.columns import resolve

        return resolve(self, available).branches()
