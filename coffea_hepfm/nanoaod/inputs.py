"""Tie problems to the input file they come from: read errors and the package's warnings.

The graph builder cannot know which file its events came from, so a ``NonFiniteWarning`` or a
``MissingCollectionWarning`` raised while scoring one chunk of a long file list would not say where to
look. Code that loops over files wraps each chunk in :func:`reading`:

- coffea-hepfm warnings raised inside are re-emitted after the chunk, prefixed with the file, and carry
  ``.input_file`` / ``.entries`` / ``.detail`` (the original text) so the command line can summarise
  them per kind (``coffea_hepfm.cli_report``). The text names the file but not the entries, so Python's
  default filter shows a repeated warning once per file, not once per chunk;
- an exception raised while uproot reads the file (truncated file, corrupt basket, failed
  decompression) becomes :class:`InputFileError` naming the file and the entries;
- any other exception keeps its type and gets ``.input_file`` / ``.entries`` and a note.

Warnings of other libraries pass through untouched. Worker processes record with :func:`collect` and
the parent re-emits with :func:`replay`, so the caller's warning filters decide in one place. Like
``warnings.catch_warnings``, which they use, these are for one thread at a time (the chunk loops of
``score`` and of the eager ntuple processor).

Examples
--------
>>> with reading("nano.root", 0, 100):                   # doctest: +SKIP
...     out = scorer(open_events("nano.root", mode="virtual", entry_start=0, entry_stop=100))
"""

from __future__ import annotations

import contextlib
import lzma
import os
import warnings
import zlib
from collections.abc import Iterator

from coffea_hepfm.errors import HEPFMError, HEPFMWarning

__all__ = ["InputFileError", "collect", "is_read_error", "reading", "replay"]

#: Exception types that mean "the bytes on disk are not a readable ROOT file" (uproot raises these, or
#: lets the decompressors' errors through).
_CORRUPT = (OSError, EOFError, zlib.error, lzma.LZMAError)
_NOT_CORRUPT = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)
_REGISTRY: dict[str, dict] = {}  # per emitting source file: Python's "default" action shows each text once


class InputFileError(HEPFMError, OSError):
    """An input file cannot be read (missing, truncated, corrupt); the message names it and the entries."""

    def __init__(self, message: str, path: str, entries: tuple[int, int] | None = None):
        super().__init__(message)
        self.input_file = path
        self.entries = entries

    def __str__(self) -> str:  # OSError would print its args tuple
        return str(self.args[0])


def is_read_error(err: BaseException) -> bool:
    """True when ``err`` was raised while uproot read or decompressed data (not by the package's code)."""
    if isinstance(err, (HEPFMError, *_NOT_CORRUPT)):  # ours, or a path problem: its own message is right
        return False
    try:
        from uproot.deserialization import DeserializationError
    except ImportError:  # pragma: no cover - uproot is a dependency
        DeserializationError = ()  # noqa: N806
    if isinstance(err, (*_CORRUPT, DeserializationError)):
        return True
    tb = err.__traceback__
    while tb is not None:
        if f"{os.sep}uproot{os.sep}" in tb.tb_frame.f_code.co_filename:
            return True
        tb = tb.tb_next
    return False


def _type_name(err: BaseException) -> str:
    cls = type(err)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def _where(path: str, entries: tuple[int, int] | None) -> str:
    return path if entries is None else f"{path} (entries {entries[0]}-{entries[1]})"


@contextlib.contextmanager
def collect() -> Iterator[list]:
    """Record the coffea-hepfm warnings raised inside (others are shown as usual); nothing is re-emitted.

    Yields a list that fills with ``(message, category, filename, lineno)``; hand it to :func:`replay`.
    """
    records: list = []
    with warnings.catch_warnings():
        outer_show = warnings.showwarning
        warnings.simplefilter("always", HEPFMWarning)  # record every occurrence; replay applies the filters

        def show(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, HEPFMWarning):
                records.append((message, category, filename, lineno))
            else:
                outer_show(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        yield records


def replay(records: list) -> None:
    """Emit recorded warnings again, through the current filters (``error`` raises the first one)."""
    for message, category, filename, lineno in records:
        warnings.warn_explicit(
            message, category, filename, lineno, registry=_REGISTRY.setdefault(filename, {})
        )


def _tag(message: Warning, path: str, entries: tuple[int, int] | None) -> Warning:
    if getattr(message, "input_file", None) is not None:  # already tagged by an inner reading()
        return message
    detail = str(message)
    try:
        tagged = type(message)(f"{path}: {detail}")
    except TypeError:  # a warning class with another constructor
        tagged = HEPFMWarning(f"{path}: {detail}")
    tagged.input_file, tagged.entries, tagged.detail = path, entries, detail
    return tagged


@contextlib.contextmanager
def reading(path: str | os.PathLike, start: int | None = None, stop: int | None = None) -> Iterator[None]:
    """Run the body as "work on ``path`` entries ``start``-``stop``": see the module docstring.

    Raises
    ------
    InputFileError
        uproot could not read or decompress the file; the message names it and says what to do.
    """
    path = os.fspath(path)
    entries = None if start is None or stop is None else (int(start), int(stop))
    try:
        with collect() as records:
            yield
    except BaseException as err:
        with contextlib.suppress(Warning):  # warnings-as-errors must not hide the error itself
            replay([(_tag(m, path, entries), c, f, n) for m, c, f, n in records])
        if isinstance(err, (KeyboardInterrupt, SystemExit, GeneratorExit)):
            raise
        if is_read_error(err):
            raise InputFileError(
                f"cannot read {_where(path, entries)}: {_type_name(err)}: {err}. The file may be truncated "
                "or corrupt: check it (e.g. open it with uproot), copy it again, or leave it out of the input",
                path,
                entries,
            ) from err
        if getattr(err, "input_file", None) is None:
            with contextlib.suppress(AttributeError, TypeError):
                err.input_file, err.entries = path, entries
            if hasattr(err, "add_note"):
                err.add_note(f"while reading {_where(path, entries)}")
        raise
    replay([(_tag(m, path, entries), c, f, n) for m, c, f, n in records])
