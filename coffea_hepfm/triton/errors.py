r"""Errors of the Triton client, and the ``triton+grpc|http://host:port/name[/version]`` URL.

Every error message names the URL it concerns. ``MalformedTritonURL`` is a ``ValueError`` raised when a
client is made; the others are ``RuntimeError``\ s raised at first use or during inference.

Examples
--------
>>> parse_url("triton+grpc://127.0.0.1:8001/tth_vs_ttbar/1").address
'127.0.0.1:8001'
>>> parse_url("triton+http://h:8000/m").version          # no version: the server's latest
''
>>> parse_url("grpc://h:8001/m")
Traceback (most recent call last):
...
coffea_hepfm.triton.errors.MalformedTritonURL: malformed Triton URL 'grpc://h:8001/m': expected triton+grpc://host:port/model[/version] or triton+http://host:port/model[/version]
"""

from __future__ import annotations

import re
from typing import NamedTuple

from coffea_hepfm.errors import HEPFMError

__all__ = [
    "MalformedTritonURL",
    "TritonClientError",
    "TritonModelError",
    "TritonSpecMismatch",
    "TritonURL",
    "TritonUnavailable",
    "parse_url",
]

_URL_RE = re.compile(
    r"^triton\+(?P<protocol>grpc|http)://(?P<host>[A-Za-z0-9_.\-]+|\[[0-9A-Fa-f:.]+\]):(?P<port>\d{1,5})"
    r"/(?P<name>[A-Za-z0-9_.\-]+)(?:/(?P<version>\d+))?/?$"
)


class MalformedTritonURL(HEPFMError, ValueError):
    """The URL is not ``triton+grpc://host:port/model[/version]`` (or ``triton+http://``)."""


class TritonClientError(HEPFMError, RuntimeError):
    """Base class of the client's errors; the message always names the URL."""


class TritonUnavailable(TritonClientError):
    """No answer (refused, reset, timed out) after the bounded retries."""


class TritonModelError(TritonClientError):
    """The model or version is unknown or not ready, or the server rejected a request."""


class TritonSpecMismatch(TritonClientError):
    """The served model's config does not match the expected graph spec / outputs."""


class TritonURL(NamedTuple):
    protocol: str
    host: str
    port: int
    name: str
    version: str

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def __str__(self) -> str:
        tail = f"/{self.version}" if self.version else ""
        return f"triton+{self.protocol}://{self.address}/{self.name}{tail}"


def parse_url(url: str) -> TritonURL:
    """Parse ``triton+grpc|http://host:port/name[/version]``; :class:`MalformedTritonURL` otherwise."""
    m = _URL_RE.match(url) if isinstance(url, str) else None
    if m is None or not 0 < int(m["port"]) < 65536:
        raise MalformedTritonURL(
            f"malformed Triton URL {url!r}: expected triton+grpc://host:port/model[/version] or "
            "triton+http://host:port/model[/version]"
        )
    return TritonURL(m["protocol"], m["host"], int(m["port"]), m["name"], m["version"] or "")
