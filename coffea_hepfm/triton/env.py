"""The Triton *server* environment: a separate virtual environment holding ``tritonserver``.

Why a separate environment
--------------------------
The only ``tritonserver`` that installs from PyPI is the binary inside the ``nvidia-pytriton`` wheel
(0.7.0 ships Triton 2.51 with the python backend). That wheel pins ``numpy<2``, while the analysis
environment (coffea, awkward, torch) runs on numpy 2 and must stay there. Installing both into one
environment is impossible, and an "extra" cannot lift a pin. So the server gets its own venv,
created once by :func:`ensure_server_env` (or ``coffea-hepfm triton-env``) and reused:

==========================  ===================================================================
package                     why
==========================  ===================================================================
``nvidia-pytriton==0.7.0``  ``tritonserver`` 2.51, ``libtriton_python.so`` and the python backend
                            stubs for CPython 3.8 - 3.13, plus the shared libraries it links to
``numpy<2``                 the wheel's pin; the python backend's ``pb_utils`` needs it
``torch==2.13.0``           runs the exported TorchScript inside the python backend; the exact
                            version on disk here (the CPU build), so nothing large is downloaded
==========================  ===================================================================

The client side (``tritonclient``) stays in the user's environment: it works with numpy 2.

Nothing of coffea-hepfm is installed in the server environment: the python backend only loads a
TorchScript file (``torch.jit.load``), so a facility server needs nothing of ours either.

Layout of the environment (default ``~/.cache/coffea-hepfm/triton-env``, or ``$HEPFM_TRITON_ENV``)::

    <env>/bin/python                 the venv's interpreter (same CPython as the one that made it)
    <env>/backends/python/           libtriton_python.so + the stub for this CPython, passed to
                                     tritonserver as --backend-directory
    <env>/hepfm-triton-env.json      written last: the environment is complete only if it exists

Three facts about the wheel's binary shape :meth:`ServerEnv.environ`: it needs the wheel's
``nvidia_pytriton.libs`` on ``LD_LIBRARY_PATH``; the stub links ``libpython3.X.so``, so the
interpreter's ``LIBDIR`` goes there too; and the stub's embedded interpreter ignores ``PYTHONPATH``, so
the model's ``model.py`` adds the entries of ``PYTHONPATH`` to ``sys.path`` itself.

Examples
--------
>>> env = ensure_server_env()          # doctest: +SKIP  (first call: ~40 s, ~1.3 GB)
>>> env.tritonserver.name              # doctest: +SKIP
'tritonserver'
>>> ensure_server_env(create=False)    # doctest: +SKIP  (missing environment)
Traceback (most recent call last):
ServerEnvError: no Triton server environment at ...; create it with `coffea-hepfm triton-env`
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from coffea_hepfm.errors import HEPFMError

__all__ = ["SERVER_PACKAGES", "ServerEnv", "ServerEnvError", "default_env_path", "ensure_server_env"]

SERVER_PACKAGES = ("nvidia-pytriton==0.7.0", "numpy<2", "torch==2.13.0")
MARKER = "hepfm-triton-env.json"
ENV_VAR = "HEPFM_TRITON_ENV"


class ServerEnvError(HEPFMError, RuntimeError):
    """The server environment is missing, incomplete, or could not be created."""


def default_env_path() -> Path:
    """``$HEPFM_TRITON_ENV`` if set, else ``~/.cache/coffea-hepfm/triton-env``."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "coffea-hepfm" / "triton-env"


@dataclass(frozen=True)
class ServerEnv:
    """Paths inside a complete server environment (see the module docstring)."""

    root: Path
    python: Path
    site_packages: Path
    tritonserver: Path
    libs: Path
    backends: Path
    python_libdir: Path

    @classmethod
    def from_marker(cls, root: Path) -> ServerEnv:
        info = json.loads((root / MARKER).read_text())
        return cls(root=root, **{k: Path(v) for k, v in info["paths"].items()})

    def environ(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """Process environment for ``tritonserver``: shared libraries and the stub's ``sys.path``."""
        env = dict(os.environ if base is None else base)
        ld = [str(self.libs), str(self.python_libdir)]
        if env.get("LD_LIBRARY_PATH"):
            ld.append(env["LD_LIBRARY_PATH"])
        env["LD_LIBRARY_PATH"] = os.pathsep.join(ld)
        # The stub's interpreter ignores PYTHONPATH; model.py reads it (see backend_model.py).
        env["PYTHONPATH"] = str(self.site_packages)
        env.pop("PYTHONHOME", None)
        # One intra-op pool per model instance; the default (all cores) is right for a dedicated
        # server, and the caller may override it.
        return env


def _run(cmd: list[str], log: Callable[[str], None]) -> None:
    log("+ " + " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
        raise ServerEnvError(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{tail}")


def _probe(python: Path) -> dict[str, str]:
    """Ask the new interpreter where things are (it may differ from the caller's)."""
    code = (
        "import json, sys, sysconfig, pytriton, numpy, torch\n"
        "from pathlib import Path\n"
        "root = Path(pytriton.__file__).parent\n"
        "print(json.dumps({'site': str(root.parent), 'pytriton': str(root),"
        " 'libdir': sysconfig.get_config_var('LIBDIR'),"
        " 'ver': f'{sys.version_info[0]}.{sys.version_info[1]}',"
        " 'numpy': numpy.__version__, 'torch': torch.__version__}))\n"
    )
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    if out.returncode != 0:
        raise ServerEnvError(f"the server environment's python cannot import its packages:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _build(root: Path, log: Callable[[str], None]) -> None:
    base_python = getattr(sys, "_base_executable", None) or sys.executable
    _run([base_python, "-m", "venv", "--clear", str(root)], log)
    python = root / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *SERVER_PACKAGES], log)
    info = _probe(python)
    if not info["numpy"].startswith("1."):
        raise ServerEnvError(f"expected numpy<2 in the server environment, got {info['numpy']}")
    pyt = Path(info["pytriton"])
    src = pyt / "tritonserver"
    stub = src / "python_backend_stubs" / info["ver"] / "triton_python_backend_stub"
    if not stub.is_file():
        raise ServerEnvError(f"nvidia-pytriton has no python backend stub for CPython {info['ver']}: {stub}")
    # tritonserver expects the stub next to libtriton_python.so in --backend-directory/python.
    backends = root / "backends" / "python"
    backends.mkdir(parents=True, exist_ok=True)
    for name in ("libtriton_python.so", "triton_python_backend_utils.py"):
        (backends / name).symlink_to(src / "backends" / "python" / name)
    shutil.copy2(stub, backends / "triton_python_backend_stub")
    paths = {
        "python": str(python),
        "site_packages": info["site"],
        "tritonserver": str(src / "bin" / "tritonserver"),
        "libs": str(Path(info["site"]) / "nvidia_pytriton.libs"),
        "backends": str(root / "backends"),
        "python_libdir": info["libdir"],
    }
    for key in ("tritonserver", "libs"):
        if not Path(paths[key]).exists():
            raise ServerEnvError(f"nvidia-pytriton layout changed: {paths[key]} is missing")
    meta = {"packages": list(SERVER_PACKAGES), "numpy": info["numpy"], "torch": info["torch"], "paths": paths}
    tmp = root / (MARKER + ".tmp")
    tmp.write_text(json.dumps(meta, indent=1))
    tmp.rename(root / MARKER)


def ensure_server_env(
    path: str | os.PathLike | None = None,
    *,
    create: bool = True,
    log: Callable[[str], None] | None = None,
) -> ServerEnv:
    """Return the server environment at ``path``, creating it first if needed.

    Parameters
    ----------
    path : path-like, optional
        Where the environment lives; default :func:`default_env_path`.
    create : bool
        If False, a missing or incomplete environment raises :class:`ServerEnvError` instead of
        being built.
    log : callable, optional
        Receives one line per step (e.g. ``print``); silent by default.

    Returns
    -------
    ServerEnv

    Notes
    -----
    Safe to call from several processes at once: a file lock serialises the build, and the marker
    file is written last, so an interrupted build is detected and redone (``venv --clear``).
    Takes ~40 s and ~1.3 GB the first time; then a few milliseconds.

    Examples
    --------
    >>> ensure_server_env("/nonexistent/env", create=False)  # doctest: +SKIP
    Traceback (most recent call last):
    ServerEnvError: no Triton server environment at /nonexistent/env; ...
    """
    root = Path(path).expanduser() if path is not None else default_env_path()
    root = root.absolute()
    log = log or (lambda _msg: None)
    if (root / MARKER).is_file():
        return ServerEnv.from_marker(root)
    if not create:
        raise ServerEnvError(
            f"no Triton server environment at {root}; create it with `coffea-hepfm triton-env` "
            f"(or set ${ENV_VAR})"
        )
    if root.exists() and not root.is_dir():
        raise ServerEnvError(f"{root} exists and is not a directory")
    root.parent.mkdir(parents=True, exist_ok=True)
    lock_path = root.parent / (root.name + ".lock")
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if (root / MARKER).is_file():  # another process built it while we waited
                return ServerEnv.from_marker(root)
            start = time.perf_counter()
            log(f"creating the Triton server environment in {root} ({', '.join(SERVER_PACKAGES)})")
            try:
                _build(root, log)
            except BaseException:
                with contextlib.suppress(OSError):
                    (root / MARKER).unlink()
                raise
            log(f"done in {time.perf_counter() - start:.0f} s")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return ServerEnv.from_marker(root)
