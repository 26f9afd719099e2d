"""Run a real ``tritonserver`` on loopback: :class:`TritonServer` (context manager) and ``serve``.

The binary comes from the server environment (:mod:`coffea_hepfm.triton.env`). The server runs in its
own session (process group), so that

- a Ctrl-C in the terminal reaches only our process, which then stops the server in order
  (``SIGTERM``: Triton finishes in-flight requests, then exits), and
- :meth:`TritonServer.kill` can take the server *and* its python-backend stub processes down at once
  (``SIGKILL`` to the group), which is how the tests simulate a crashed server.

Ports left at 0 are picked free on the host (bind to port 0, read the port back). Between that check
and Triton's own bind another process could take the port; the start is retried with new ports then.

Examples
--------
>>> with TritonServer("repo") as server:            # doctest: +SKIP
...     server.model_url("tth_vs_ttbar", 1)
'triton+grpc://127.0.0.1:40123/tth_vs_ttbar/1'
>>> TritonServer("missing/repo").start()            # doctest: +SKIP
Traceback (most recent call last):
TritonServerError: model repository missing/repo is not a directory
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from coffea_hepfm.errors import HEPFMError
from coffea_hepfm.triton.env import ServerEnv, ensure_server_env

__all__ = ["TritonServer", "TritonServerError", "free_port"]

# The python backend exchanges tensors through shared memory; growing the region 1 MB at a time (the
# default) costs many remaps for batches of thousands of events.
PYTHON_BACKEND_SHM = ("shm-default-byte-size=16777216", "shm-growth-byte-size=67108864")


class TritonServerError(HEPFMError, RuntimeError):
    """The server could not start, or died; the message carries the tail of its log."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class TritonServer:
    """A ``tritonserver`` process serving ``repo`` on ``host``.

    Parameters
    ----------
    repo : path-like
        Model repository (``coffea-hepfm export-triton`` writes one).
    grpc_port, http_port : int
        0 picks a free port.
    metrics_port : int or None
        None disables the metrics endpoint; 0 picks a free port.
    host : str
        Address to bind; loopback by default.
    env : ServerEnv, optional
        Server environment; default :func:`~coffea_hepfm.triton.env.ensure_server_env` (created on
        first use).
    startup_timeout : float
        Seconds to wait for readiness (loading the models included).
    log_path : path-like, optional
        Server log file; default a temporary file (its path is :attr:`log_path`).
    log_verbose : int
        Triton's ``--log-verbose`` level.
    """

    def __init__(
        self,
        repo: str | os.PathLike,
        grpc_port: int = 0,
        http_port: int = 0,
        metrics_port: int | None = None,
        host: str = "127.0.0.1",
        env: ServerEnv | None = None,
        startup_timeout: float = 120.0,
        log_path: str | os.PathLike | None = None,
        log_verbose: int = 0,
    ):
        self.repo = repo
        self.grpc_port = grpc_port
        self.http_port = http_port
        self.metrics_port = metrics_port
        self.host = host
        self.env = env
        self.startup_timeout = startup_timeout
        self.log_path = log_path
        self.log_verbose = log_verbose
        self.proc_: subprocess.Popen | None = None

    # -- addresses ---------------------------------------------------------------------------------
    @property
    def grpc_address(self) -> str:
        return f"{self.host}:{self.grpc_port_}"

    @property
    def http_address(self) -> str:
        return f"{self.host}:{self.http_port_}"

    def model_url(self, name: str, version: int | str | None = None, protocol: str = "grpc") -> str:
        """``triton+grpc://host:port/name/version`` (or ``triton+http://``) for a served model."""
        if protocol not in ("grpc", "http"):
            raise ValueError(f"protocol must be 'grpc' or 'http', got {protocol!r}")
        address = self.grpc_address if protocol == "grpc" else self.http_address
        tail = f"/{version}" if version not in (None, "") else ""
        return f"triton+{protocol}://{address}/{name}{tail}"

    # -- life cycle --------------------------------------------------------------------------------
    def _command(self, env: ServerEnv) -> list[str]:
        cmd = [
            str(env.tritonserver),
            f"--model-repository={Path(self.repo).absolute()}",
            f"--backend-directory={env.backends}",
            f"--http-address={self.host}",
            f"--http-port={self.http_port_}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.grpc_port_}",
            "--exit-timeout-secs=10",
            "--pinned-memory-pool-byte-size=0",  # CPU only: no pinned pool (and no CUDA warning)
            f"--log-verbose={self.log_verbose}",
        ]
        cmd += [f"--backend-config=python,{opt}" for opt in PYTHON_BACKEND_SHM]
        if self.metrics_port is None:
            cmd.append("--allow-metrics=false")
        else:
            cmd += [f"--metrics-address={self.host}", f"--metrics-port={self.metrics_port_}"]
        return cmd

    def start(self) -> TritonServer:
        """Start the server and block until it is ready (or raise :class:`TritonServerError`)."""
        if self.proc_ is not None and self.proc_.poll() is None:
            raise TritonServerError("server already running")
        repo = Path(self.repo)
        if not repo.is_dir():
            raise TritonServerError(f"model repository {repo} is not a directory")
        env = self.env or ensure_server_env()
        auto = self.grpc_port == 0 or self.http_port == 0 or self.metrics_port == 0
        attempts = 3 if auto else 1
        for attempt in range(attempts):
            self.grpc_port_ = self.grpc_port or free_port(self.host)
            self.http_port_ = self.http_port or free_port(self.host)
            self.metrics_port_ = self.metrics_port or (
                free_port(self.host) if self.metrics_port == 0 else None
            )
            if self.log_path is None:
                fd, name = tempfile.mkstemp(prefix="tritonserver-", suffix=".log")
                os.close(fd)
                self.log_path_ = Path(name)
            else:
                self.log_path_ = Path(self.log_path)
            with open(self.log_path_, "wb") as log:
                self.proc_ = subprocess.Popen(
                    self._command(env),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=env.environ(),
                    start_new_session=True,
                )
            try:
                self._wait_ready()
                return self
            except TritonServerError as err:
                self.kill()
                if attempt + 1 < attempts and "address already in use" in str(err).lower():
                    continue
                raise
        raise AssertionError("unreachable")

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the server log (model load errors appear here)."""
        try:
            text = Path(self.log_path_).read_text(errors="replace")
        except (OSError, AttributeError):
            return ""
        keep = [ln for ln in text.splitlines() if ln.strip() and not set(ln) <= set("+-| ")]
        return "\n".join(keep[-lines:])

    def is_ready(self, timeout: float = 1.0) -> bool:
        """True when the server answers ``/v2/health/ready`` with 200."""
        url = f"http://{self.http_address}/v2/health/ready"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc_.poll() is not None:
                raise TritonServerError(
                    f"tritonserver exited with code {self.proc_.returncode} while starting "
                    f"(repository {self.repo}); log {self.log_path_}:\n{self.log_tail()}"
                )
            if self.is_ready():
                return
            time.sleep(0.2)
        raise TritonServerError(
            f"tritonserver not ready after {self.startup_timeout:.0f} s; log {self.log_path_}:\n{self.log_tail()}"
        )

    @property
    def running(self) -> bool:
        return self.proc_ is not None and self.proc_.poll() is None

    def wait(self) -> int:
        """Block until the server exits; its exit code."""
        return self.proc_.wait() if self.proc_ is not None else 0

    def stop(self, timeout: float = 15.0) -> None:
        """Graceful stop (``SIGTERM``, in-flight requests finish); ``SIGKILL`` after ``timeout``."""
        if self.proc_ is None:
            return
        if self.proc_.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc_.send_signal(signal.SIGTERM)
            try:
                self.proc_.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def kill(self) -> None:
        """``SIGKILL`` the server and its backend stubs (a crash, as far as clients can tell)."""
        if self.proc_ is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc_.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc_.wait(10)

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"grpc={self.grpc_address} http={self.http_address}" if self.running else "stopped"
        return f"TritonServer(repo={str(self.repo)!r}, {state})"
