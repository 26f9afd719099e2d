"""Score event graphs on a Triton server: :class:`TritonGraphClient` (the ``"triton"`` backend).

``TritonGraphClient("triton+grpc://host:port/name[/version]")`` (or ``triton+http://``) sends the padded
wire format of :mod:`coffea_hepfm.triton.padded` and returns ``(probs [B, C], embedding [B, H])``.

Behaviour
---------
- **Lazy, one connection per process.** The object holds only its settings, so it pickles to Dask
  workers; the tritonclient connection is made on first use in each process (gRPC: one per process,
  shared by threads; HTTP: one per thread, because the gevent-based HTTP client is not thread-safe).
- **Checked at first use.** The server's model must be ready and its config must carry the padded
  wire format with the shapes of the expected ``GraphSpec``, the same spec (name, version, caps, ...),
  the same class names and embedding size. Otherwise :class:`TritonModelError` /
  :class:`TritonSpecMismatch`, naming the URL and every difference.
- **Batches** of at most the server's ``max_batch_size`` (and ``batch_size`` if smaller); a larger
  request is split. All chunks succeed or the call raises: never a partial result.
- **Timeouts and retries.** ``connect_timeout`` bounds the first contact, ``timeout`` every request.
  Connection failures, timeouts and "unavailable" answers are retried ``retries`` times with
  exponential backoff (``backoff * 2**k`` s), on a fresh connection; after that
  :class:`TritonUnavailable` names the URL. Errors the server gives for a well-formed request (unknown
  model, bad shape) are not retried. Worst case per call: ``(retries + 1) * timeout + backoff * (2**retries - 1)``.
- **SSL** for remote servers: gRPC ``ssl``, ``root_certificates``, ``private_key``,
  ``certificate_chain``; HTTP ``ssl``, ``ssl_options``, ``insecure``.

Examples
--------
>>> client = TritonGraphClient("triton+grpc://127.0.0.1:8001/tth_vs_ttbar/1", spec=spec)  # doctest: +SKIP
>>> probs, emb = client.infer_flat(x, counts, u)                                           # doctest: +SKIP
>>> TritonGraphClient("grpc://h:8001/m")
Traceback (most recent call last):
...
coffea_hepfm.triton.errors.MalformedTritonURL: malformed Triton URL 'grpc://h:8001/m': expected triton+grpc://host:port/model[/version] or triton+http://host:port/model[/version]
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from coffea_hepfm.triton.errors import (
    MalformedTritonURL,
    TritonClientError,
    TritonModelError,
    TritonSpecMismatch,
    TritonUnavailable,
    TritonURL,
    parse_url,
)
from coffea_hepfm.triton.wire import INPUTS, OUTPUTS, WIRE_FORMAT, pad_nodes

__all__ = [
    "MalformedTritonURL",
    "ServedModel",
    "TritonClientError",
    "TritonGraphClient",
    "TritonModelError",
    "TritonSpecMismatch",
    "TritonURL",
    "TritonUnavailable",
    "parse_url",
]


@dataclass(frozen=True)
class ServedModel:
    """What the server's ``config.pbtxt`` says about the model (read once per process)."""

    max_batch_size: int
    max_nodes: int
    n_node_features: int
    n_global_features: int
    n_classes: int
    hidden: int
    graph_spec: dict
    class_names: list[str]


# (pid, client key) -> per-process state; thread-local for HTTP.
_REGISTRY: dict[tuple, Any] = {}
_REGISTRY_LOCK = threading.Lock()
_EXECUTORS: dict[tuple[int, int], Any] = {}


def _executor(workers: int):
    """A per-process thread pool (its threads are long-lived, so per-thread HTTP clients stay few)."""
    from concurrent.futures import ThreadPoolExecutor

    key = (os.getpid(), workers)
    with _REGISTRY_LOCK:
        if key not in _EXECUTORS:
            _EXECUTORS[key] = ThreadPoolExecutor(workers, thread_name_prefix="hepfm-triton")
        return _EXECUTORS[key]


class TritonGraphClient:
    """Client of one served coffea-hepfm model (see the module docstring).

    Parameters
    ----------
    url : str
        ``triton+grpc://host:port/name[/version]`` or ``triton+http://...``.
    spec : GraphSpec or dict, optional
        Expected graph spec (the local model's); None skips the spec comparison (shapes still checked).
    class_names : list of str, optional
        Expected output classes, in order.
    hidden : int, optional
        Expected embedding size.
    batch_size : int, optional
        Events per request (capped by the server's ``max_batch_size``).
    timeout, connect_timeout : float
        Seconds per request, and for the first contact.
    retries : int
        Extra attempts after a connection failure or timeout.
    backoff : float
        First wait between attempts (doubles each time).
    in_flight : int
        Requests kept in flight when a call needs several (1 = strictly one after the other).
    ssl, root_certificates, private_key, certificate_chain
        gRPC TLS settings (file contents are read from the given paths).
    ssl_options, insecure
        HTTP TLS settings (passed to ``tritonclient.http.InferenceServerClient``).
    """

    def __init__(
        self,
        url: str,
        spec=None,
        class_names: list[str] | None = None,
        hidden: int | None = None,
        batch_size: int | None = None,
        timeout: float = 60.0,
        connect_timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.5,
        in_flight: int = 2,
        ssl: bool = False,
        root_certificates: str | None = None,
        private_key: str | None = None,
        certificate_chain: str | None = None,
        ssl_options: dict | None = None,
        insecure: bool = False,
    ):
        self.url = url
        self.target = parse_url(url)  # validated at construction: a malformed URL fails at once
        self.spec = spec.to_dict() if hasattr(spec, "to_dict") else (dict(spec) if spec is not None else None)
        self.class_names = list(class_names) if class_names is not None else None
        self.hidden = hidden
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if retries < 0 or timeout <= 0 or connect_timeout <= 0 or backoff < 0:
            raise ValueError("retries and backoff must be >= 0, timeouts > 0")
        self.batch_size = batch_size
        self.timeout = float(timeout)
        self.connect_timeout = float(connect_timeout)
        self.retries = int(retries)
        self.backoff = float(backoff)
        if in_flight < 1:
            raise ValueError(f"in_flight must be >= 1, got {in_flight}")
        self.in_flight = int(in_flight)
        self.ssl = ssl
        self.root_certificates = root_certificates
        self.private_key = private_key
        self.certificate_chain = certificate_chain
        self.ssl_options = ssl_options
        self.insecure = insecure

    # -- connection ------------------------------------------------------------------------------------
    def _key(self) -> tuple:
        t = self.target
        thread = threading.get_ident() if t.protocol == "http" else None
        tls = (self.ssl, self.root_certificates, self.private_key, self.certificate_chain, self.insecure)
        return (os.getpid(), thread, str(t), tls, self.timeout, self.connect_timeout)

    def _new_raw(self):
        t = self.target
        if t.protocol == "grpc":
            import tritonclient.grpc as grpcclient

            def read(path):
                if path is None:
                    return None
                with open(path, "rb") as f:
                    return f.read()

            return grpcclient.InferenceServerClient(
                t.address, ssl=self.ssl, root_certificates=read(self.root_certificates),
                private_key=read(self.private_key), certificate_chain=read(self.certificate_chain),
            )  # fmt: skip
        import tritonclient.http as httpclient

        return httpclient.InferenceServerClient(
            t.address, connection_timeout=self.connect_timeout, network_timeout=self.timeout,
            ssl=self.ssl, ssl_options=self.ssl_options, insecure=self.insecure,
        )  # fmt: skip

    def _state(self) -> dict:
        key = self._key()
        with _REGISTRY_LOCK:
            state = _REGISTRY.get(key)
            if state is None:
                state = _REGISTRY[key] = {"raw": None}
        return state

    def _reset(self, state: dict) -> None:
        raw, state["raw"] = state["raw"], None
        if raw is not None:
            try:
                raw.close()
            except Exception:  # closing a broken connection may itself fail
                pass

    def _kw(self, timeout: float) -> dict:
        return {"client_timeout": timeout} if self.target.protocol == "grpc" else {}

    def _call(self, what: str, fn, timeout: float):
        """Run ``fn(raw_client)`` with bounded retries; map failures to clear errors naming the URL."""
        from tritonclient.utils import InferenceServerException

        state = self._state()
        last: BaseException | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                if state["raw"] is None:
                    state["raw"] = self._new_raw()
                return fn(state["raw"], self._kw(timeout))
            except InferenceServerException as err:
                status = str(err.status() or "")
                if not _retryable(status, err):
                    raise TritonModelError(f"{what} failed at {self.url}: {err.message()}") from err
                last = err
            except (OSError, TimeoutError) as err:  # HTTP: refused / reset / timed out
                last = err
            except Exception as err:  # gevent's timeout is no OSError
                if type(err).__name__ not in ("Timeout", "ConnectionError", "HTTPException"):
                    raise
                last = err
            self._reset(state)
        reason = last.message() if isinstance(last, InferenceServerException) else repr(last)
        raise TritonUnavailable(
            f"Triton server at {self.url} did not answer {what} after {self.retries + 1} attempt(s) "
            f"(timeout {timeout:g} s): {reason}"
        ) from last

    # -- model check -----------------------------------------------------------------------------------
    def served_model(self) -> ServedModel:
        """The served model's config, checked against the expectations (once per process)."""
        cached = self.__dict__.get("_served")
        if cached is not None and cached[0] == os.getpid():
            return cached[1]
        served = self._validate(self._fetch_config())
        self._served = (os.getpid(), served)
        return served

    def _fetch_config(self) -> dict:
        t = self.target
        self._call("a liveness check", lambda c, kw: c.is_server_live(**kw), self.connect_timeout)
        try:
            ready = self._call(
                "a model readiness check",
                lambda c, kw: c.is_model_ready(t.name, t.version, **kw),
                self.connect_timeout,
            )
        except TritonModelError:  # some servers answer "unknown model" with an error, not False
            ready = False
        if not ready:
            raise TritonModelError(
                f"model {t.name!r} version {t.version or '(latest)'} is not ready on {self.url}; "
                f"served: {self._served_list()}"
            )
        if t.protocol == "grpc":
            cfg = self._call(
                "get_model_config",
                lambda c, kw: c.get_model_config(t.name, t.version, as_json=True, **kw),
                self.connect_timeout,
            )["config"]
        else:
            cfg = self._call(
                "get_model_config", lambda c, kw: c.get_model_config(t.name, t.version), self.timeout
            )
        return cfg

    def _served_list(self) -> str:
        try:
            index = self._call("a repository index", lambda c, kw: c.get_model_repository_index(**kw), 5.0)
        except TritonClientError:
            return "(unknown)"
        if isinstance(index, dict):  # grpc as_json=False returns a protobuf; normalise both
            models = index.get("models", [])
        elif isinstance(index, list):
            models = index
        else:
            models = [{"name": m.name, "version": m.version, "state": m.state} for m in index.models]
        return (
            ", ".join(f"{m['name']}/{m.get('version', '')} ({m.get('state', '')})" for m in models) or "none"
        )

    def _validate(self, cfg: dict) -> ServedModel:
        params = {k: v.get("string_value", "") for k, v in cfg.get("parameters", {}).items()}
        where = f"model {self.target.name!r} at {self.url}"
        if params.get("hepfm_wire_format") != WIRE_FORMAT:
            raise TritonSpecMismatch(
                f"{where} is not a coffea-hepfm export (wire format {params.get('hepfm_wire_format')!r}, "
                f"expected {WIRE_FORMAT!r}); export it with `coffea-hepfm export-triton`"
            )
        dims = {
            t["name"]: [int(d) for d in t.get("dims", [])]
            for t in cfg.get("input", []) + cfg.get("output", [])
        }
        missing = [n for n in INPUTS + OUTPUTS if n not in dims]
        if missing:
            raise TritonSpecMismatch(f"{where} lacks the tensors {missing}")
        served_spec = json.loads(params.get("hepfm_graph_spec") or "{}")
        served = ServedModel(
            max_batch_size=int(cfg.get("max_batch_size", 0)),
            max_nodes=dims[INPUTS[0]][0],
            n_node_features=dims[INPUTS[0]][1],
            n_global_features=dims[INPUTS[2]][0],
            n_classes=dims[OUTPUTS[0]][0],
            hidden=dims[OUTPUTS[1]][0],
            graph_spec=served_spec,
            class_names=json.loads(params.get("hepfm_class_names") or "[]"),
        )
        if served.max_batch_size < 1:
            raise TritonSpecMismatch(f"{where} has max_batch_size {served.max_batch_size}; it must batch")
        diffs = []
        if self.spec is not None:
            from coffea_hepfm.graph.spec import GraphSpec

            expected = GraphSpec.from_dict(self.spec)
            try:
                expected.check_compatible(served_spec)
            except Exception as err:  # GraphSpecMismatch, or an unreadable spec
                diffs.append(str(err))
            shapes = {
                "max_nodes": (expected.max_nodes, served.max_nodes),
                "node features": (expected.n_node_features, served.n_node_features),
                "global features": (expected.n_global_features, served.n_global_features),
            }
            diffs += [f"{k}: expected {a}, served {b}" for k, (a, b) in shapes.items() if a != b]
        if self.class_names is not None and self.class_names != served.class_names:
            diffs.append(f"class names: expected {self.class_names}, served {served.class_names}")
        if self.class_names is not None and len(self.class_names) != served.n_classes:
            diffs.append(f"outputs: expected {len(self.class_names)} classes, served {served.n_classes}")
        if self.hidden is not None and self.hidden != served.hidden:
            diffs.append(f"embedding size: expected {self.hidden}, served {served.hidden}")
        if diffs:
            raise TritonSpecMismatch(f"{where} does not match the local model: " + "; ".join(diffs))
        return served

    # -- inference -------------------------------------------------------------------------------------
    def infer(self, nodes: np.ndarray, n_nodes: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Score padded events: ``nodes [B, max_nodes, F]``, ``n_nodes [B]`` (or ``[B, 1]``), ``u [B, G]``.

        Returns ``(probs [B, C], embedding [B, H])`` float32. ``B = 0`` gives empty arrays (after the
        first-use check). Larger-than-``max_batch_size`` inputs go in several requests.
        """
        served = self.served_model()
        nodes = np.ascontiguousarray(nodes, dtype=np.float32)
        n_nodes = np.ascontiguousarray(np.asarray(n_nodes, dtype=np.int64).reshape(-1, 1))
        u = np.ascontiguousarray(u, dtype=np.float32)
        b = len(u)
        want = (b, served.max_nodes, served.n_node_features)
        if nodes.shape != want or n_nodes.shape != (b, 1) or u.shape != (b, served.n_global_features):
            raise ValueError(
                f"inputs for {self.url} must be nodes {list(want)}, n_nodes [{b}], u [{b}, "
                f"{served.n_global_features}]; got {list(nodes.shape)}, {list(n_nodes.shape)}, {list(u.shape)}"
            )
        probs = np.empty((b, served.n_classes), dtype=np.float32)
        emb = np.empty((b, served.hidden), dtype=np.float32)
        step = min(self.batch_size or served.max_batch_size, served.max_batch_size)
        starts = list(range(0, b, step))

        def one(start: int) -> None:
            stop = min(start + step, b)
            probs[start:stop], emb[start:stop] = self._infer_chunk(
                nodes[start:stop], n_nodes[start:stop], u[start:stop]
            )

        if len(starts) > 1 and self.in_flight > 1:
            # Keep several requests in flight: the server computes one while this process
            # serialises the next. Any failure propagates (result() raises), so no partial output.
            futures = [_executor(self.in_flight).submit(one, s) for s in starts]
            try:
                for f in futures:
                    f.result()
            finally:
                for f in futures:
                    f.cancel()
        else:
            for start in starts:
                one(start)
        return probs, emb

    def infer_flat(self, x: np.ndarray, counts: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Score flat graphs (``x [N, F]``, ``counts [B]``, ``u [B, G]``, as in ``GraphBatch``)."""
        served = self.served_model()
        return self.infer(pad_nodes(x, counts, served.max_nodes), counts, u)

    def _infer_chunk(self, nodes, n_nodes, u) -> tuple[np.ndarray, np.ndarray]:
        t = self.target
        if t.protocol == "grpc":
            import tritonclient.grpc as mod
        else:
            import tritonclient.http as mod
        inputs = []
        for name, array, dtype in zip(INPUTS, (nodes, n_nodes, u), ("FP32", "INT64", "FP32"), strict=True):
            inp = mod.InferInput(name, list(array.shape), dtype)
            if t.protocol == "http":
                inp.set_data_from_numpy(array, binary_data=True)
            else:
                inp.set_data_from_numpy(array)
            inputs.append(inp)
        if t.protocol == "http":
            outputs = [mod.InferRequestedOutput(n, binary_data=True) for n in OUTPUTS]
        else:
            outputs = [mod.InferRequestedOutput(n) for n in OUTPUTS]

        def run(c, kw):
            return c.infer(t.name, inputs, model_version=t.version, outputs=outputs, **kw)

        result = self._call(f"an inference of {len(u)} events", run, self.timeout)
        probs, emb = (result.as_numpy(n) for n in OUTPUTS)
        if probs is None or emb is None or len(probs) != len(u) or len(emb) != len(u):
            raise TritonModelError(f"{self.url} returned incomplete outputs for {len(u)} events")
        return probs, emb

    def __repr__(self) -> str:
        return f"TritonGraphClient({self.url!r})"


def _retryable(status: str, err) -> bool:
    """Transport-level failures are retried; answers about the request itself are not."""
    if status in ("StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED", "StatusCode.CANCELLED"):
        return True
    text = (err.message() or "").lower()
    if status in ("", "None") and any(
        s in text for s in ("timed out", "timeout", "connection", "unavailable")
    ):
        return True
    return status in ("502", "503", "504")
