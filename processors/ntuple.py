"""``NtupleProcessor``: NanoAOD -> training ntuples (graph node record, label, weights, event IDs).

One chunk of events becomes one parquet file (see :mod:`coffea_hepfm.processors.writer`). The same
:func:`ntuple_record` runs on eager/virtual NanoEvents (coffea ``Runner``) and, through
``dask_awkward.map_partitions``, on dask-awkward NanoEvents (``coffea.dataset_tools.apply_to_fileset``,
locally or on a ``distributed`` cluster), so every executor writes identical ntuples.

Dataset metadata read by the processor (``fileset[name]["metadata"]``)::

    label        class name of every event of the dataset (required; must be one of the task's classes)
    xsec         cross section in pb (required for MC)
    is_mc        default True; False marks collision data
    lhe_weight   optional "lhe:IDX" or "lhe:alpha=DEG": multiply the weights by one LHEReweightingWeight
                 entry (see :mod:`coffea_hepfm.processors.lhe_weight`); default: the processor's lhe_weight
    sumw         sum of genWeight over the dataset (filled by ``prepare`` when absent)
    label_index  filled by ``prepare``: index of ``label`` in the class list
    chunks       dask only, filled by ``make_ntuples``: [file, start, stop] of each partition
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import awkward as ak
import numpy as np
from coffea import processor

from coffea_hepfm.errors import HEPFMError
from coffea_hepfm.nanoaod.consistency import MixedInputsError, check_uniform_inputs
from coffea_hepfm.nanoaod.inputs import reading
from coffea_hepfm.processors.corrections import Correction, load_correction
from coffea_hepfm.processors.lhe_weight import LHEWeightError, lhe_factor, parse_lhe_weight, resolve_lhe_index
from coffea_hepfm.processors.selection import Selection, as_mask, describe, selected_muons
from coffea_hepfm.processors.weights import (
    Normalisation,
    NotMCError,
    event_weights,
    scan_files,
)
from coffea_hepfm.processors.writer import (
    chunk_path,
    expected_chunks,
    prepare_output,
    read_manifest,
    remove_stale_temps,
    write_chunk,
)

#: Event-ID columns, with the dtypes NanoAOD uses.
ID_COLUMNS = {"run": np.uint32, "luminosityBlock": np.uint32, "event": np.uint64}


class FilesetError(HEPFMError, ValueError):
    """The fileset cannot be turned into ntuples (no label, unknown class, no cross section...)."""


def _number(meta: dict, key: str, dataset: str) -> float:
    try:
        value = float(meta[key])
    except (TypeError, ValueError):
        raise FilesetError(
            f"dataset {dataset!r}: metadata {key!r} is {meta[key]!r}, not a number; fix it in the fileset"
        ) from None
    return value


def _positive_number(meta: dict, key: str, dataset: str, what: str) -> float:
    """``meta[key]`` as a finite float > 0, or a :class:`FilesetError` naming the dataset and the value."""
    if meta.get(key) is None:
        raise FilesetError(f"dataset {dataset!r}: MC needs metadata {key!r} ({what})")
    value = _number(meta, key, dataset)
    if not np.isfinite(value) or value <= 0:
        raise FilesetError(
            f"dataset {dataset!r}: metadata {key!r} is {meta[key]!r}; {what} must be a finite number > 0. "
            "Fix it in the fileset (data needs none: mark it is_mc=False)"
        )
    return value


@dataclass(frozen=True)
class ChunkConfig:
    """What one chunk needs to know about its dataset (small and picklable, shipped to workers)."""

    label: int
    norm: Normalisation | None  # None: collision data, unit weights
    lhe_index: int | None = None  # LHEReweightingWeight entry multiplying every weight column


def ntuple_record(events, spec, selection: Callable, corrections: Sequence[Correction], cfg: ChunkConfig):
    """Selected events as one ntuple record per event (works on eager, virtual and typetracer events).

    Fields: ``nodes`` (var * F float32), ``globals`` (G float32), ``label`` (int64), ``weight`` and its
    variations (float32), ``run``, ``luminosityBlock``, ``event``.
    """
    from coffea_hepfm.graph import build_node_record

    sel = events[as_mask(selection(events))]
    graph = build_node_record(sel, spec)
    if cfg.norm is not None:
        weights = event_weights(sel, cfg.norm, corrections, selected_muons(selection, sel))
        if cfg.lhe_index is not None:
            factor = lhe_factor(sel, cfg.lhe_index)
            weights = {k: ak.values_astype(w * factor, np.float32) for k, w in weights.items()}
    else:
        one = ak.values_astype(ak.ones_like(sel.event), np.float32)
        weights = {
            "weight": one,
            **{f"weight_{c.name}_{d}": one for c in corrections for d in ("up", "down")},
        }
    fields = {
        "nodes": graph.nodes,
        "globals": graph.globals,
        "label": ak.values_astype(ak.zeros_like(sel.event), np.int64) + cfg.label,
        **weights,
        **{k: ak.values_astype(sel[k], t) for k, t in ID_COLUMNS.items()},
    }
    # drop NanoAOD's per-branch parameters (__doc__, typename): the ntuple schema is ours
    fields = {k: ak.without_parameters(v) for k, v in fields.items()}
    return ak.zip(fields, depth_limit=1)


def _write_partition(record, path: str, n_input: int) -> dict:
    if os.path.exists(path):  # written by an earlier run
        return {"chunks_written": 0, "chunks_skipped": 1, "events": 0, "selected": 0, "empty_chunks": 0}
    n = write_chunk(record, path)
    return {
        "chunks_written": 1,
        "chunks_skipped": 0,
        "events": n_input,
        "selected": n,
        "empty_chunks": int(n == 0),
    }


def _sum(summaries: list[dict]) -> dict:
    keys = ("chunks_written", "chunks_skipped", "events", "selected", "empty_chunks")
    return {k: sum(s[k] for s in summaries) for k in keys}


class NtupleProcessor(processor.ProcessorABC):
    """Write training ntuples of each chunk of a labelled fileset.

    Parameters
    ----------
    spec
        :class:`coffea_hepfm.graph.GraphSpec` of the node record.
    out_dir
        Output folder (a shared file system when running on a cluster).
    classes
        The task's class names in label order; default: the sorted labels of the fileset.
    selection
        ``events -> bool mask``; default :class:`~coffea_hepfm.processors.selection.Selection` (>= 1
        jet or lepton).
    corrections
        correctionlib corrections (pileup, muon SF); see
        :func:`~coffea_hepfm.processors.corrections.default_corrections`.
    lumi
        Integrated luminosity in pb^-1 for the cross-section normalisation.
    require_mc
        ``True``: a data dataset is an error. ``False``: data gets unit weights.
    chunksize
        Entries per chunk, recorded in the manifest: a rerun with another chunking would write the same
        events under other chunk names, so it is refused.
    lhe_weight
        ``"lhe:IDX"`` or ``"lhe:alpha=DEG"`` for every MC dataset without its own ``lhe_weight``
        metadata (see :mod:`~coffea_hepfm.processors.lhe_weight`); ``None``: no such factor.

    Examples
    --------
    >>> proc = NtupleProcessor(GraphSpec(), "ntuples", corrections=default_corrections(cdir))  # doctest: +SKIP
    >>> fileset = proc.prepare(fileset)         # validate, fill sumw, write ntuple.json  # doctest: +SKIP
    >>> Runner(IterativeExecutor(), schema=NanoAODSchema)(fileset, proc)  # doctest: +SKIP
    """

    def __init__(
        self,
        spec,
        out_dir: str | os.PathLike,
        classes: Sequence[str] | None = None,
        selection: Callable | None = None,
        corrections: Sequence[Correction] = (),
        lumi: float = 59830.0,
        require_mc: bool = True,
        chunksize: int | None = None,
        lhe_weight: str | None = None,
    ):
        self.spec = spec
        self.out_dir = os.fspath(out_dir)
        self.classes = classes
        self.selection = selection
        self.corrections = tuple(corrections)
        self.lumi = lumi
        self.require_mc = require_mc
        self.chunksize = chunksize
        self.lhe_weight = lhe_weight

    @property
    def selection_(self) -> Callable:
        return self.selection if self.selection is not None else Selection()

    # -- before any work -----------------------------------------------------------------------------
    def resolve_classes(self, fileset: dict) -> list[str]:
        """Check every dataset has a label in the task's classes; return the class list."""
        unlabelled = [n for n, d in fileset.items() if not (d.get("metadata") or {}).get("label")]
        if unlabelled:
            raise FilesetError(
                f"dataset(s) {unlabelled} have no label: add metadata {{'label': <class name>}} to each dataset"
            )
        labels = {n: str(d["metadata"]["label"]) for n, d in fileset.items()}
        classes = list(self.classes) if self.classes is not None else sorted(set(labels.values()))
        unknown = {n: lab for n, lab in labels.items() if lab not in classes}
        if unknown:
            raise FilesetError(f"label(s) {unknown} are not among the task's classes {classes}")
        return classes

    def prepare(self, fileset: dict) -> dict:
        """Validate ``fileset`` and the corrections, fill ``sumw``/``label_index``, write the manifest.

        Nothing is written unless everything checks out. Returns the fileset to run on.

        Raises
        ------
        FilesetError, NotMCError, CorrectionKeyError, NtupleConfigMismatch
        """
        classes = self.resolve_classes(fileset)
        for corr in self.corrections:
            load_correction(corr)
        out, datasets = {}, {}
        for name, ds in fileset.items():
            meta = dict(ds.get("metadata") or {})
            files = list(ds["files"]) if isinstance(ds["files"], dict) else list(ds["files"])
            for f in files:
                if not os.path.exists(f):
                    raise FileNotFoundError(f"dataset {name!r}: file not found: {f}")
            is_mc = bool(meta.get("is_mc", True))
            scan = scan_files(files)  # one open per file: entries, and for MC the check and sum(genWeight)
            sums = [w for w, _ in scan]
            if is_mc:
                data_files = [f for f, w in zip(files, sums, strict=True) if w is None]
                if data_files and self.require_mc:
                    raise NotMCError(
                        f"dataset {name!r}: {data_files} have no genWeight branch (collision data), but the "
                        "ntuples need MC weights; mark the dataset is_mc=False with require_mc=False"
                    )
                is_mc = not data_files
            elif self.require_mc:
                raise NotMCError(f"dataset {name!r} is data (is_mc=False) but the ntuples need MC weights")
            if is_mc:
                meta["xsec"] = _positive_number(meta, "xsec", name, "the cross section in pb")
                if meta.get("sumw") is None:
                    meta["sumw"] = float(sum(sums))
                    given = "summed over the files"
                else:
                    meta["sumw"] = _number(meta, "sumw", name)
                    given = "given in the metadata"
                if not np.isfinite(meta["sumw"]) or meta["sumw"] <= 0:
                    raise FilesetError(
                        f"dataset {name!r}: sum of generator weights is {meta['sumw']} ({given}): "
                        "cannot normalise to the cross section (no events, or weights summing to <= 0); "
                        "give metadata 'sumw' (> 0) when these files are a subset of a larger sample"
                    )
                try:
                    Normalisation(meta["xsec"], meta["sumw"], self.lumi).scale  # noqa: B018
                except ValueError as err:  # the luminosity
                    raise FilesetError(f"dataset {name!r}: {err}") from None
            spec = parse_lhe_weight(meta.get("lhe_weight", self.lhe_weight))
            if spec is not None and not is_mc:
                raise LHEWeightError(f"dataset {name!r} is collision data: it cannot take lhe_weight {spec}")
            if spec is not None:
                meta["lhe_index"] = resolve_lhe_index(spec, files, name)
                meta["lhe_weight"] = meta.get("lhe_weight", self.lhe_weight)
            meta.update(is_mc=is_mc, label_index=classes.index(str(meta["label"])))
            out[name] = {**ds, "metadata": meta}
            keys = ("label", "label_index", "is_mc", "xsec", "sumw", "lhe_weight", "lhe_index")
            datasets[name] = {k: meta.get(k) for k in keys}
            if self.chunksize is not None:  # what a complete run writes: read_ntuples checks it
                datasets[name]["chunks"] = expected_chunks(
                    self.out_dir, name, files, [n for _, n in scan], self.chunksize
                )
        prepare_output(
            self.out_dir,
            {
                "graph_spec": self.spec.to_dict(),
                "classes": classes,
                "selection": describe(self.selection_),
                "corrections": [c.to_dict() for c in self.corrections],
                "lumi": self.lumi,
                "chunksize": self.chunksize,
                "datasets": datasets,
            },
        )
        remove_stale_temps(self.out_dir)
        return out

    # -- per chunk -----------------------------------------------------------------------------------
    def chunk_config(self, metadata: dict) -> ChunkConfig:
        if "label_index" not in metadata:
            raise FilesetError(
                f"dataset {metadata.get('dataset')!r} was not prepared: call NtupleProcessor.prepare(fileset) "
                "first (make_ntuples does)"
            )
        norm = None
        if metadata.get("is_mc", True):
            norm = Normalisation(float(metadata["xsec"]), float(metadata["sumw"]), self.lumi)
        lhe_index = metadata.get("lhe_index")
        return ChunkConfig(int(metadata["label_index"]), norm, None if lhe_index is None else int(lhe_index))

    def process(self, events):
        meta = dict(events.metadata)
        cfg = self.chunk_config(meta)
        dataset = meta["dataset"]
        args = (self.spec, self.selection_, self.corrections, cfg)
        if hasattr(events, "to_delayed"):  # dask-awkward: one writer task per partition
            return {dataset: self._process_dask(events, meta, args)}
        read_manifest(self.out_dir)
        path = chunk_path(self.out_dir, dataset, meta["filename"], meta["entrystart"], meta["entrystop"])
        if path.exists():
            return {dataset: _write_partition(None, os.fspath(path), 0)}
        # warnings name the file, an unreadable file raises InputFileError naming it and the entries
        with reading(meta["filename"], meta["entrystart"], meta["entrystop"]):
            record = ntuple_record(events, *args)
            return {dataset: _write_partition(record, os.fspath(path), len(events))}

    def _process_dask(self, events, meta: dict, args: tuple):
        import dask
        import dask_awkward as dak

        chunks = meta.get("chunks")
        if chunks is None or len(chunks) != events.npartitions:
            raise FilesetError(
                f"dataset {meta['dataset']!r}: dask mode needs metadata 'chunks' ([file, start, stop] per "
                f"partition, {events.npartitions} partitions); run through make_ntuples"
            )
        try:  # the collection's form is its first file's: refuse files that differ in what the spec reads
            check_uniform_inputs(events, self.spec.required_branches)
        except MixedInputsError as err:
            raise MixedInputsError(f"dataset {meta['dataset']!r}: {err}", err.differences) from None
        record = dak.map_partitions(ntuple_record, events, *args, label="hepfm-ntuple")
        writes = [
            dask.delayed(_write_partition)(
                part, os.fspath(chunk_path(self.out_dir, meta["dataset"], f, a, b)), b - a
            )
            for part, (f, a, b) in zip(record.to_delayed(), chunks, strict=True)
        ]
        return dask.delayed(_sum)(writes)

    def postprocess(self, accumulator):
        return accumulator
