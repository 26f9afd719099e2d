"""``GraphSpec``: what an event graph is made of, saved in every model file and checked at load time.

Two versions exist. Version 2 (the default) builds nodes from *analysis-level* objects as a CMS analysis
defines them (jet ID, lepton ID and isolation, photon ID, Delta-R cleaning, b-tag working-point categories);
version 1 (the first shipped models) takes every object above a pT threshold and the raw b-tag score.
A model file stores its spec, and ``GraphSpec.from_dict`` rebuilds exactly that version, so v1 model
files keep scoring with v1 features. See ``docs/design.md`` (section graph) for the definitions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from coffea_hepfm.cms.btag import TAGGER_PREFERENCE, TAGGERS
from coffea_hepfm.cms.eras import ERAS
from coffea_hepfm.graph.errors import GraphSpecMismatch, UnsupportedGraphSpec

SPEC_NAME = "hepfm-graph"
SPEC_VERSION = 2  # the default
SUPPORTED_VERSIONS = (1, 2)

#: Object types in node order; each type's one-hot feature is ``is_<type>``.
OBJECT_TYPES = ("jet", "electron", "muon", "photon", "met")
#: NanoAOD collection of each object type (MET is resolved from ``GraphSpec.met_sources``).
COLLECTIONS = {"jet": "Jet", "electron": "Electron", "muon": "Muon", "photon": "Photon"}

_KINEMATICS = (
    "log_pt",  # log1p(pT / GeV)
    "eta",
    "sin_phi",
    "cos_phi",
    "log_energy",  # log1p(E / GeV)
    "log_mass",  # log1p(max(m, 0) / GeV)
    "charge",  # leptons: +-1; jets, photons, MET: 0
)
_ONE_HOT = ("is_jet", "is_electron", "is_muon", "is_photon", "is_met")
#: Version 1 node features: the raw b-tag score clipped to [0, 1].
NODE_FEATURES_V1 = (*_KINEMATICS, "btag", *_ONE_HOT)
#: Version 2 node features: b-tag working-point category as a thermometer code (a tight-tagged jet has all
#: three set); 0 for non-jets, jets outside the tracker and jets failing the loose point.
NODE_FEATURES_V2 = (*_KINEMATICS, "btag_loose", "btag_medium", "btag_tight", *_ONE_HOT)
EDGE_FEATURES = (
    "delta_eta",  # eta[target] - eta[source]
    "delta_phi",  # phi[target] - phi[source], wrapped to [-pi, pi)
    "delta_r",  # hypot(delta_eta, delta_phi)
    "log_mass_pair",  # log1p(m(source + target) / GeV)
)
GLOBAL_FEATURES = (
    "log_n_jets",  # log1p of counts of selected objects (threshold, ID, cleaning), before the cap
    "log_n_bjets",  # v1: b-tag score > the medium point given in spec.btag; v2: medium working point
    "log_n_electrons",
    "log_n_muons",
    "log_n_photons",
    "log_ht",  # log1p(scalar sum of selected jet pT), all selected jets (not only the capped ones)
    "log_met",  # log1p(MET pT); 0 if spec.met is False
)
#: The default spec's node features (version 2). Code that must also read v1 records uses
#: ``spec.node_features`` instead.
NODE_FEATURES = NODE_FEATURES_V2

# Fields that describe *behaviour on bad input or the input's era*, not the features: not compared by
# check_compatible, and a user may change them when scoring (e.g. spec.replace(era="2016postVFP")).
POLICY_FIELDS = ("missing", "nonfinite", "era")

Missing = Literal["empty", "error"]
NonFinite = Literal["raise", "zero", "drop"]

#: Per-version defaults of the fields whose value depends on the version (``None`` in the dataclass).
_V1_DEFAULTS: dict[str, Any] = {
    "min_pt_jet": 20.0,
    "btag": (
        ("btagDeepFlavB", 0.2783),
        ("btagPNetB", 0.245),
        ("btagRobustParTAK4B", 0.4319),
        ("btagUParTAK4B", 0.4648),
        ("btagDeepB", 0.4168),
    ),
    "met_sources": ("MET", "PuppiMET"),
}
_V2_DEFAULTS: dict[str, Any] = {
    "min_pt_jet": 25.0,
    "met_sources": ("PuppiMET", "MET", "PFMET"),
    "min_pt_jet_forward": 30.0,
    "eta_jet_central": 2.5,
    "max_eta_jet": 4.7,
    "max_eta_electron": 2.5,
    "max_eta_muon": 2.4,
    "max_eta_photon": 2.5,
    "jet_id": "tight",
    "electron_id": "medium",
    "muon_id": "tight",
    "muon_iso": "tight",
    "photon_id": "medium",
    "clean_dr": 0.4,
    "taggers": TAGGER_PREFERENCE,
    "era": "auto",
}
_V1_ONLY = ("btag",)
_V2_ONLY = tuple(k for k in _V2_DEFAULTS if k not in _V1_DEFAULTS)
_CHOICES = {
    "jet_id": ("tight", "tightLepVeto"),
    "electron_id": ("veto", "loose", "medium", "tight"),
    "muon_id": ("loose", "medium", "tight"),
    "muon_iso": ("loose", "tight"),
    "photon_id": ("loose", "medium", "tight"),
    "missing": ("empty", "error"),
    "nonfinite": ("raise", "zero", "drop"),
}


@dataclass(frozen=True)
class GraphSpec:
    """The definition of an event graph built from NanoAOD.

    Nodes are reconstructed objects: jets, electrons, muons, photons (sorted by pT within their type and
    capped at ``max_*``) and, if ``met``, one MET node. Node order in an event is jets, electrons, muons,
    photons, MET. Edges are fully connected, directed, no self loops. Fields left at ``None`` take the
    version's default.

    Parameters
    ----------
    name, version
        Identify the feature definition; a model file stores them and refuses another spec.
        ``version=2`` (default): analysis-level objects; ``version=1``: the first shipped models.
    max_jets, max_electrons, max_muons, max_photons
        Caps on the number of nodes per type (the hardest objects are kept). ``0`` drops a type and its
        branches are not read (its global count is then 0 too).
    met
        Add a MET node (pt, phi; eta = 0, mass = 0).
    min_pt_jet, min_pt_electron, min_pt_muon, min_pt_photon
        pT thresholds in GeV (v2 jet default 25; v1 20).
    btag
        v1 only: ``(branch, medium cut)`` pairs in order of preference; the raw score is a node feature.
    met_sources
        MET collections in order of preference; the first one in the file is used. v2: ``("PuppiMET",
        "MET", "PFMET")``: PUPPI MET is CMS's Run 3 recommendation and exists in every NanoAOD version
        (v15 has no ``MET``); v1: ``("MET", "PuppiMET")``.
    min_pt_jet_forward, eta_jet_central, max_eta_jet
        v2: jets with ``|eta| < eta_jet_central`` (2.5, tracker) need ``pT > min_pt_jet``; forward jets up to
        ``max_eta_jet`` (4.7: VBF tagging jets) need ``pT > min_pt_jet_forward`` (30, pileup-dominated region).
    max_eta_electron, max_eta_muon, max_eta_photon
        v2 acceptances (2.5, 2.4, 2.5).
    jet_id, electron_id, muon_id, muon_iso, photon_id
        v2 identification working points (``coffea_hepfm.cms.objects``): jets ``"tight"`` or
        ``"tightLepVeto"``; electrons cut-based ``"veto" | "loose" | "medium" | "tight"`` (isolation
        included); muons ``"loose" | "medium" | "tight"`` ID and ``"loose" | "tight"`` PF isolation;
        photons cut-based ``"loose" | "medium" | "tight"``. Where a file lacks a branch, the documented
        fallback of ``docs/design.md`` applies, or :class:`MissingBranchError` is raised.
    clean_dr
        v2: jets within Delta R < ``clean_dr`` of a selected lepton or photon, and photons within it of a
        selected lepton, are removed.
    taggers
        v2: b-tag branches (``coffea_hepfm.cms.btag.TAGGERS``) in order of preference. Per chunk the first
        one present, not holding placeholder scores and with working points for the era is used; the
        node features are its working-point categories.
    missing
        A whole object collection absent from the file (e.g. ``Photon`` in slimmed NanoAOD v12):
        ``"empty"`` (default) treats it as zero objects and warns with
        :class:`~coffea_hepfm.graph.errors.MissingCollectionWarning`; ``"error"`` raises
        :class:`~coffea_hepfm.graph.errors.MissingBranchError`.
    nonfinite
        NaN/inf or unphysical values (pT < 0 or > 10 TeV, |eta| > 10, |phi| > 2 pi, mass < -1 GeV) in an
        object's inputs: ``"drop"`` (default) drops that object (a bad MET drops the MET node, ``log_met``
        = 0) and warns with the counts per branch; ``"zero"`` replaces the bad values by 0 and warns;
        ``"raise"`` raises :class:`~coffea_hepfm.graph.errors.NonFiniteInput`.
    era
        v2: era of the b-tag working points (``coffea_hepfm.cms.ERAS``), or ``"auto"``: collision data
        take it from their run numbers; simulation (``genWeight`` present, or ``run == 1``) uses the
        chosen tagger's reference era (``coffea_hepfm.graph.btagging.MC_ERA``). A policy field: it
        describes the input file, so it is not compared between specs.

    Examples
    --------
    >>> spec = GraphSpec()
    >>> spec.version, spec.n_node_features, spec.n_edge_features, spec.n_global_features
    (2, 15, 4, 7)
    >>> GraphSpec.from_dict(spec.to_dict()) == spec
    True
    >>> GraphSpec(version=1).n_node_features
    13
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
    min_pt_jet: float | None = None
    min_pt_electron: float = 10.0
    min_pt_muon: float = 10.0
    min_pt_photon: float = 20.0
    btag: tuple[tuple[str, float], ...] | None = None
    met_sources: tuple[str, ...] | None = None
    missing: Missing = "empty"
    nonfinite: NonFinite = "drop"
    # -- version 2 only ---------------------------------------------------------------------------------
    min_pt_jet_forward: float | None = None
    eta_jet_central: float | None = None
    max_eta_jet: float | None = None
    max_eta_electron: float | None = None
    max_eta_muon: float | None = None
    max_eta_photon: float | None = None
    jet_id: str | None = None
    electron_id: str | None = None
    muon_id: str | None = None
    muon_iso: str | None = None
    photon_id: str | None = None
    clean_dr: float | None = None
    taggers: tuple[str, ...] | None = None
    era: str | None = None

    def __post_init__(self) -> None:
        if self.name != SPEC_NAME:
            raise UnsupportedGraphSpec(f"GraphSpec name must be {SPEC_NAME!r}, got {self.name!r}")
        if self.version not in SUPPORTED_VERSIONS:
            raise UnsupportedGraphSpec(
                f"GraphSpec version {self.version!r} is not supported by this coffea-hepfm (supports "
                f"versions {', '.join(map(str, SUPPORTED_VERSIONS))}); upgrade coffea-hepfm, or use a model "
                "trained with a supported graph spec"
            )
        defaults, foreign = (_V1_DEFAULTS, _V2_ONLY) if self.version == 1 else (_V2_DEFAULTS, _V1_ONLY)
        given = [k for k in foreign if getattr(self, k) is not None]
        if given:
            other = 2 if self.version == 1 else 1
            raise UnsupportedGraphSpec(
                f"GraphSpec field(s) {given} exist only in graph spec version {other}, not {self.version}"
            )
        for k, v in defaults.items():
            if getattr(self, k) is None:
                object.__setattr__(self, k, v)
        self._normalise()
        self._validate()

    def _normalise(self) -> None:
        # Lists (e.g. from JSON) become tuples so the spec stays hashable and comparable.
        if self.btag is not None:
            object.__setattr__(self, "btag", tuple((str(b), float(w)) for b, w in self.btag))
        sources = (self.met_sources,) if isinstance(self.met_sources, str) else self.met_sources
        object.__setattr__(self, "met_sources", tuple(str(m) for m in sources))
        if self.taggers is not None:
            taggers = (self.taggers,) if isinstance(self.taggers, str) else self.taggers
            object.__setattr__(self, "taggers", tuple(str(t).removeprefix("Jet_") for t in taggers))
        for k in ("min_pt_jet", "min_pt_electron", "min_pt_muon", "min_pt_photon", *_V2_FLOATS):
            if getattr(self, k) is not None:
                object.__setattr__(self, k, float(getattr(self, k)))

    def _validate(self) -> None:
        for t in ("jets", "electrons", "muons", "photons"):
            cap = getattr(self, f"max_{t}")
            if not isinstance(cap, int) or isinstance(cap, bool) or cap < 0:
                raise ValueError(f"GraphSpec.max_{t} must be an int >= 0, got {cap!r}")
        for k, allowed in _CHOICES.items():
            v = getattr(self, k)
            if v is not None and v not in allowed:
                raise ValueError(f"GraphSpec.{k} must be one of {allowed}, got {v!r}")
        if self.met and not self.met_sources:
            raise ValueError("GraphSpec.met_sources must name at least one MET collection when met=True")
        if self.version == 1:
            if self.max_jets > 0 and not self.btag:
                raise ValueError("GraphSpec.btag must name at least one b-tag branch when max_jets > 0")
            return
        if self.max_jets > 0 and not self.taggers:
            raise ValueError("GraphSpec.taggers must name at least one b-tag branch when max_jets > 0")
        unknown = [t for t in self.taggers if t not in TAGGERS]
        if unknown:
            raise ValueError(
                f"GraphSpec.taggers: unknown b-tag branch(es) {unknown}; known: {', '.join(TAGGERS)}"
            )
        if self.era != "auto" and self.era not in ERAS:
            raise ValueError(f"GraphSpec.era must be 'auto' or one of {', '.join(ERAS)}, got {self.era!r}")
        if not 0 < self.eta_jet_central <= self.max_eta_jet:
            raise ValueError("GraphSpec needs 0 < eta_jet_central <= max_eta_jet")
        if self.clean_dr < 0:
            raise ValueError(f"GraphSpec.clean_dr must be >= 0, got {self.clean_dr}")

    # -- feature names -------------------------------------------------------------------------------
    @property
    def node_features(self) -> tuple[str, ...]:
        return NODE_FEATURES_V1 if self.version == 1 else NODE_FEATURES_V2

    @property
    def edge_features(self) -> tuple[str, ...]:
        return EDGE_FEATURES

    @property
    def global_features(self) -> tuple[str, ...]:
        return GLOBAL_FEATURES

    @property
    def n_node_features(self) -> int:
        return len(self.node_features)

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
        """JSON-safe dict (lists instead of tuples) of this version's fields; inverse of :meth:`from_dict`.
        A v1 spec gives exactly the dict v1 model files store."""
        skip = _V2_ONLY if self.version == 1 else _V1_ONLY
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in skip}
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = [list(x) if isinstance(x, tuple) else x for x in v]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GraphSpec:
        """Rebuild a spec from :meth:`to_dict` output; unknown keys or versions are an error (never
        ignored). A dict without ``version`` is read as the current default version.

        Examples
        --------
        >>> GraphSpec.from_dict({"name": "hepfm-graph", "version": 1, "max_jets": 6}).max_jets
        6
        >>> GraphSpec.from_dict({"max_taus": 2})
        Traceback (most recent call last):
        ...
        coffea_hepfm.graph.errors.UnsupportedGraphSpec: GraphSpec.from_dict: unknown field(s) ['max_taus']; this coffea-hepfm builds graph spec versions 1, 2: upgrade it, or use a model trained with a supported spec
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise UnsupportedGraphSpec(
                f"GraphSpec.from_dict: unknown field(s) {unknown}; this coffea-hepfm builds graph spec "
                f"versions {', '.join(map(str, SUPPORTED_VERSIONS))}: upgrade it, or use a model trained "
                "with a supported spec"
            )
        return cls(**dict(d))

    def replace(self, **changes: Any) -> GraphSpec:
        """A copy with ``changes`` (e.g. ``spec.replace(missing="error")``)."""
        return dataclasses.replace(self, **changes)

    def check_compatible(self, other: GraphSpec | Mapping[str, Any]) -> None:
        """Raise :class:`GraphSpecMismatch` if ``other`` defines different features than ``self``.

        ``self`` is the expected spec (e.g. the one in a model file). The policy fields ``missing``,
        ``nonfinite`` and ``era`` are not compared: they describe the input, not the features.
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
        """Sorted NanoAOD branch names this spec may read, including counters (``nJet``).

        Parameters
        ----------
        available
            ``None``: assume every first choice exists. Otherwise the branch names of a file (e.g.
            ``uproot`` ``tree.keys()``) or NanoEvents (eager, virtual or dask; only the form is used):
            fallbacks are resolved as the builder resolves them, and absent collections are left out (as
            with ``missing="empty"``). For v2 this includes every b-tag branch of ``taggers`` present in
            the file: which one is used is decided per chunk (placeholder scores, era).

        Examples
        --------
        >>> GraphSpec(version=1, max_electrons=0, max_muons=0, max_photons=0, met=False).required_branches()
        ['Jet_btagDeepFlavB', 'Jet_eta', 'Jet_mass', 'Jet_phi', 'Jet_pt', 'nJet']
        """
        from coffea_hepfm.graph.record import resolve_any

        return resolve_any(self, available).branches()


_V2_FLOATS = (
    "min_pt_jet_forward",
    "eta_jet_central",
    "max_eta_jet",
    "max_eta_electron",
    "max_eta_muon",
    "max_eta_photon",
    "clean_dr",
)
