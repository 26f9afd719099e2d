"""Refuse a dask-awkward NanoEvents collection whose files differ in the branches a computation reads.

A dask NanoEvents collection (``open_events(files, mode="dask")``, ``NanoEventsFactory.from_root``,
one dataset of coffea's ``apply_to_fileset``) has a single form, taken from its first file. When a later
file has other branches, what happens depends on the direction:

- the later file has a collection the first lacks (``Photon`` after a slimmed v12 file): its data is
  silently dropped, because the form says it does not exist;
- the later file lacks a branch of the form (``MET_pt`` in a v15 file after a v12 one): the run dies
  inside coffea/uproot with a bare ``KeyError: 'nPhoton'`` or ``'MET_phi'``.

:func:`check_uniform_inputs` opens every file of the collection's input layer (metadata only: the
branch names, no data), asks ``branches_of(names)`` which branches each one would be read with, and
raises :class:`MixedInputsError` naming the files and the differing branches before anything runs.

The graph builder calls it with :meth:`coffea_hepfm.graph.GraphSpec.required_branches`, so only the
branches the graph actually reads count: files that differ in branches nobody reads are fine.

Cost: one ``uproot.open`` per distinct file, on the client, in a few threads (results are cached per
file, path + size + modification time); nothing for a collection of one file.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

from coffea_hepfm.errors import HEPFMError

__all__ = ["MixedInputsError", "check_uniform_inputs", "input_files"]

_SHOW = 5  # files listed in a message


class MixedInputsError(HEPFMError, ValueError):
    """Files of one dask collection differ in branches that would be read; the message names them.

    ``differences`` maps each differing file to ``(branches only it has, branches only the form has)``,
    or to an error text when ``branches_of`` fails for it.
    """

    def __init__(self, message: str, differences: dict | None = None):
        super().__init__(message)
        self.differences = dict(differences or {})


def input_files(collection) -> list[tuple[str, str]] | None:
    """``(path, tree name)`` of every distinct file read by a dask-awkward collection, in input order.

    ``None`` when the collection's inputs are not files opened by uproot (e.g. built from arrays or
    parquet): nothing can be checked then.
    """
    graph = getattr(collection, "dask", None)
    layers = getattr(graph, "layers", None)
    if layers is None:
        return None
    found, seen = [], set()
    for layer in layers.values():
        io_func = getattr(layer, "io_func", None)
        if io_func is None:
            continue
        ttrees = getattr(io_func, "ttrees", None)
        if ttrees is not None:  # uproot.dask(open_files=True): the trees are already open
            entries = [(t.file.file_path, t.object_path) for t in ttrees]
        else:
            entries = []
            for item in getattr(layer, "inputs", None) or ():
                if not (
                    isinstance(item, tuple) and len(item) >= 2 and isinstance(item[0], (str, os.PathLike))
                ):
                    return None
                entries.append((os.fspath(item[0]), str(item[1])))
        if not entries and not ttrees:
            return None
        for e in entries:
            if e not in seen:
                seen.add(e)
                found.append(e)
    return found or None


def _stat_key(path: str):
    try:
        st = os.stat(path)
    except OSError:  # remote (root://, https://) or gone: key by path alone
        return None
    return (st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=4096)
def _keys_cached(path: str, tree: str, _stat) -> frozenset[str]:
    import uproot

    with uproot.open(path) as f:
        return frozenset(f[tree].keys())


def _keys(entry: tuple[str, str]) -> frozenset[str]:
    # Runs in threads: no warnings.catch_warnings (process-global) here, so not inputs.reading().
    from coffea_hepfm.nanoaod.inputs import InputFileError, is_read_error

    path, tree = entry
    try:
        return _keys_cached(path, tree, _stat_key(path))
    except Exception as err:
        if not is_read_error(err):
            raise
        raise InputFileError(
            f"cannot read {path}: {err}. The file may be missing, truncated or corrupt: check it, copy it "
            "again, or leave it out of the collection",
            path,
        ) from err


def _describe(names: Iterable[str]) -> str:
    names = sorted(names)
    return ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")


def check_uniform_inputs(collection, branches_of: Callable[[frozenset[str]], Iterable[str]]) -> None:
    """Raise :class:`MixedInputsError` if the files of ``collection`` would be read with different branches.

    Parameters
    ----------
    collection
        A dask-awkward NanoEvents collection (anything else, or one file, passes without a look).
    branches_of
        ``branch names of a file -> the branches read from it`` (may raise for a file that lacks a
        needed branch; that error is reported for that file). The collection's own form is resolved
        the same way: it is what every partition will be read with.

    Examples
    --------
    >>> events = open_events(["nano_tt_v12.root", "nano_dy.root"], mode="dask")   # doctest: +SKIP
    >>> check_uniform_inputs(events, GraphSpec().required_branches)               # doctest: +SKIP
    Traceback (most recent call last):
    ...
    MixedInputsError: 2 files of this dask collection differ in the branches the graph reads ...
    """
    files = input_files(collection)
    if files is None or len(files) < 2:
        return
    try:
        form = frozenset(branches_of(collection))
    except Exception:  # the form itself is unusable: the caller's own resolution reports it
        return
    with ThreadPoolExecutor(min(8, len(files))) as pool:
        keys = list(pool.map(_keys, files))
    diffs: dict[str, object] = {}
    for (path, _), names in zip(files, keys, strict=True):
        try:
            got = frozenset(branches_of(names))
        except Exception as err:  # e.g. MissingBranchError: this file lacks something the graph needs
            diffs[path] = f"{type(err).__name__}: {err}"
            continue
        if got != form:
            diffs[path] = (sorted(got - form), sorted(form - got))
    if not diffs:
        return
    lines = []
    for path, d in list(diffs.items())[:_SHOW]:
        if isinstance(d, str):
            lines.append(f"{path}: {d}")
            continue
        extra, lacks = d
        parts = []
        if extra:
            parts.append(
                f"would be read with {_describe(extra)}, which the collection does not read (dropped)"
            )
        if lacks:
            parts.append(f"lacks {_describe(lacks)}, which the collection reads (the run would fail)")
        lines.append(f"{path}: " + "; ".join(parts))
    if len(diffs) > _SHOW:
        lines.append(f"and {len(diffs) - _SHOW} more file(s)")
    raise MixedInputsError(
        f"{len(diffs)} of the {len(files)} files of this dask collection differ in the branches to read from "
        f"the collection's form, which comes from its first file ({files[0][0]}): "
        + "; ".join(lines)
        + ". Make one collection per group of files with the same branches: one dataset each in coffea's "
        "apply_to_fileset, or one open_events(files, mode='dask') per group.",
        diffs,
    )
