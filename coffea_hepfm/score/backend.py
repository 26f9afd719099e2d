"""Where :class:`~coffea_hepfm.score.HEPFMScore` runs the network: in-process torch or a Triton server.

A backend is named by a string so that it pickles with the wrapper and is re-created on each Dask
worker: ``"local"`` or ``"triton+grpc://host:port/model_name[/version]"`` (``triton+http://`` likewise).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["BackendSpec", "parse_backend"]

_TRITON_RE = re.compile(
    r"^triton\+(?P<protocol>grpc|http)://(?P<host>[A-Za-z0-9_.\-]+|\[[0-9A-Fa-f:]+\]):(?P<port>\d{1,5})"
    r"/(?P<name>[A-Za-z0-9_.\-]+)(?:/(?P<version>\d+))?/?$"
)


@dataclass(frozen=True)
class BackendSpec:
    """A parsed backend string.

    ``kind`` is ``"local"`` or ``"triton"``; the other fields are only set for Triton.
    """

    kind: str
    text: str = "local"
    protocol: str | None = None
    host: str | None = None
    port: int | None = None
    model_name: str | None = None
    model_version: str | None = None

    @property
    def url(self) -> str | None:
        """``host:port`` as tritonclient expects it (``None`` for the local backend)."""
        return None if self.kind == "local" else f"{self.host}:{self.port}"


def parse_backend(backend: str) -> BackendSpec:
    """Parse a backend string, raising ``ValueError`` with the accepted forms on anything else.

    Parameters
    ----------
    backend
        ``"local"``, ``"triton+grpc://host:port/name[/version]"`` or ``"triton+http://..."``.

    Examples
    --------
    >>> parse_backend("local").kind
    'local'
    >>> b = parse_backend("triton+grpc://localhost:8001/tth_vs_ttbar/1")
    >>> (b.protocol, b.url, b.model_name, b.model_version)
    ('grpc', 'localhost:8001', 'tth_vs_ttbar', '1')
    >>> parse_backend("triton+http://h:8000/m").model_version is None   # version optional: server's latest
    True
    >>> parse_backend("triton://h:8000/m")
    Traceback (most recent call last):
    ...
    ValueError: malformed backend 'triton://h:8000/m': expected 'local', 'triton+grpc://host:port/model[/version]' or 'triton+http://host:port/model[/version]'
    """
    if not isinstance(backend, str):
        raise TypeError(f"backend must be a string, got {type(backend).__name__}")
    if backend == "local":
        return BackendSpec("local")
    m = _TRITON_RE.match(backend)
    if m is None or not 0 < int(m["port"]) < 65536:
        raise ValueError(
            f"malformed backend {backend!r}: expected 'local', 'triton+grpc://host:port/model[/version]' "
            "or 'triton+http://host:port/model[/version]'"
        )
    return BackendSpec(
        "triton",
        text=backend,
        protocol=m["protocol"],
        host=m["host"],
        port=int(m["port"]),
        model_name=m["name"],
        model_version=m["version"],
    )
