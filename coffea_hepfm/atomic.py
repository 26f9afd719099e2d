"""Write a file under a temporary name and rename it when complete; clean up after killed runs safely.

Every output of coffea-hepfm appears complete or not at all: it is written as ``.<name>.tmp-<random>``
next to its final name and renamed (``os.replace``, atomic on one file system) when complete.

A run killed with SIGKILL cannot delete its temp file, so the next run does (:func:`remove_stale`). It
must not delete the temp file of a run that is still writing, for example a second job writing into
the same folder. The writer therefore holds an exclusive ``flock`` on its temp file until the rename;
the kernel drops the lock when the process dies, however it dies. A temp file whose lock can be taken
belongs to nobody and is removed; a locked one is left alone. The temp file gets its final
``.tmp-`` name only once it is locked (it is created as ``.<name>.new-<random>`` and renamed), so a
cleaner never sees an unlocked temp file of a live run. (``flock`` works on local disks and on NFSv4;
where it does not exist, e.g. Windows, stale files are left in place rather than risk a live one.)

This module imports nothing from the package: every stage may use it.

Examples
--------
>>> with atomic_output("scores.parquet") as (tmp, f):    # doctest: +SKIP
...     f.write(data)                                    # appears as scores.parquet on success only
>>> remove_stale(temp_files("scores.parquet"))           # doctest: +SKIP
[PosixPath('.scores.parquet.tmp-1a2b3c4d')]
"""

from __future__ import annotations

import contextlib
import glob
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None

__all__ = ["atomic_output", "remove_stale", "temp_files"]


def temp_files(path: str | os.PathLike) -> list[Path]:
    """Temp files of ``path`` left in its folder (``.<name>.tmp*``, also the older ``.tmp<pid>`` form).

    Examples
    --------
    >>> temp_files("/nonexistent/scores.parquet")
    []
    """
    path = Path(path)
    return sorted(path.parent.glob(f".{glob.escape(path.name)}.tmp*"))


def _lock(fd: int) -> bool:
    """Try to take the exclusive lock; False if another open file (a live writer) holds it."""
    if fcntl is None:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def remove_stale(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Delete those of ``paths`` that no live process holds locked; returns what was deleted.

    Safe while other runs write into the same folder: their temp files are locked and stay.
    """
    removed = []
    for p in map(Path, paths):
        try:
            fd = os.open(p, os.O_RDONLY)
        except OSError:  # gone meanwhile (renamed by its writer), or unreadable: not ours to judge
            continue
        try:
            if _lock(fd):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
                    removed.append(p)
        finally:
            os.close(fd)
    return removed


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[tuple[Path, BinaryIO]]:
    """Yield ``(temp path, open binary file)``; rename to ``path`` on success, delete on any error.

    The temp file is locked for the whole write (see the module docstring). Writers that take a path
    instead of a file object may write to the yielded temp path: the lock stays on the file as long
    as they do not replace it by another file of the same name.
    """
    path = Path(path)
    fd, new = tempfile.mkstemp(prefix=f".{path.name}.new-", dir=path.parent)
    f = os.fdopen(fd, "w+b")
    tmp = path.with_name(f".{path.name}.tmp-{Path(new).name.rsplit('-', 1)[1]}")
    try:
        _lock(f.fileno())
        os.replace(new, tmp)  # named as a temp file only now that it is locked
        yield tmp, f
        if not f.closed:
            f.flush()
        os.replace(tmp, path)
    except BaseException:
        for p in (new, tmp):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(p)
        raise
    finally:
        f.close()  # releases the lock, after the rename
