"""The in-process torch backend of :class:`~coffea_hepfm.score.HEPFMScore`.

One :class:`LocalRunner` per process (created lazily on each Dask worker): it loads the model file with
:func:`coffea_hepfm.model.io.load_model` (safetensors only), and scores flat graph inputs in mini-batches
of ``batch_size`` events, so memory per call is bounded however large the chunk is.

- CPU: :class:`coffea_hepfm.model.fused.FusedScoringModule` (matrix products in torch, the rest in fused
  numba kernels; no TorchScript, which torch 2.13 deprecates). If it cannot be used here, the eager
  ``ScoringModule`` (same values, slower) runs instead and a
  :class:`~coffea_hepfm.model.fused.FusedKernelFallback` warning says why, once per process.
- CUDA: the ``ScoringModule`` compiled by ``torch.compile`` (Inductor fuses the element-wise work of
  each MLP; on an H200 the network alone ran 4.7 M events/s against 1.3 M eager, equal within 7e-7 in
  probability, docs/speed.md), with the fully connected edges and their features built on the GPU too
  (:class:`coffea_hepfm.triton.padded.EdgeFeatures`, the torch twin of ``coffea_hepfm.graph.edges``), so
  the host only builds node features. The first batch compiles (~15 s); if compiling fails, the eager
  module runs and a :class:`CompileFallback` warning says why, once per process.
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from coffea_hepfm.errors import HEPFMWarning

__all__ = ["DEFAULT_BATCH", "LocalRunner", "device_graphs", "resolve_device"]

#: Events per forward pass when ``batch_size=None``. CPU: the fused kernels work in L2-sized edge tiles,
#: so the batch only amortises per-call overhead (``docs/speed.md``); a GPU wants large batches
#: (``coffea-hepfm bench gpu`` scans them).
DEFAULT_BATCH = {"cpu": 1024, "cuda": 65536}

_WARNED: set[str] = set()  # fallback reasons already reported in this process


class CompileFallback(HEPFMWarning):
    """``torch.compile`` failed on the GPU: the eager module scores instead (same values, slower)."""


class _CompiledOrEager:
    """``torch.compile(module)`` on the first call; the eager module if compiling raises (warned once)."""

    def __init__(self, module, compiler=None):
        import torch

        self.eager = module
        self._compiler = compiler or (lambda m: torch.compile(m, dynamic=True))
        self._compiled = None
        self.fallback_reason = ""

    def __call__(self, *inputs):
        if self.fallback_reason:
            return self.eager(*inputs)
        import torch

        try:
            if self._compiled is None:
                self._compiled = self._compiler(self.eager)
            return self._compiled(*inputs)
        except torch.cuda.OutOfMemoryError:  # a batch too large is not a compiler failure
            raise
        except Exception as err:  # Inductor/Triton missing or failing: correct, slower
            self.fallback_reason = f"torch.compile failed: {type(err).__name__}: {str(err)[:200]}"
            if self.fallback_reason not in _WARNED:
                _WARNED.add(self.fallback_reason)
                warnings.warn(
                    f"HEPFMScore on the GPU runs the eager torch model (same scores, slower): "
                    f"{self.fallback_reason}",
                    CompileFallback,
                    stacklevel=3,
                )
            return self.eager(*inputs)


def _warn_once(reason: str) -> None:
    from coffea_hepfm.model.fused import FusedKernelFallback

    if reason not in _WARNED:
        _WARNED.add(reason)
        warnings.warn(
            f"HEPFMScore on CPU runs the eager torch model (same scores, slower): {reason}",
            FusedKernelFallback,
            stacklevel=4,
        )


def resolve_device(device: str) -> str:
    """``"auto"`` -> ``"cuda"`` when torch sees a GPU, else ``"cpu"``; ``"cuda"`` without one is an error.

    >>> resolve_device("cpu")
    'cpu'
    """
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            "device='cuda' requested but torch sees no CUDA device; use device='auto' or 'cpu'"
        )
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    return device


def _match_dask_worker_threads() -> None:
    """On a Dask worker, give torch the worker's thread count, not every core of the node.

    Facility workers are often single-threaded processes, many per node; torch's default (all cores per
    process) then oversubscribes the CPU, which measured 20-40x slower on a busy 2-core machine.
    Outside a worker nothing changes.
    """
    try:
        from distributed import get_worker

        nthreads = get_worker().state.nthreads
    except (ImportError, ValueError, AttributeError):
        return
    import torch

    if nthreads and torch.get_num_threads() != nthreads:
        torch.set_num_threads(int(nthreads))


class LocalRunner:
    """A loaded model on one device; :meth:`score` maps flat graph inputs to probabilities and embeddings.

    Parameters
    ----------
    path
        Model file (``.safetensors``).
    device
        ``"auto"``, ``"cpu"`` or ``"cuda"``.
    batch_size
        Events per forward pass; ``None``: :data:`DEFAULT_BATCH` for the device.
    """

    def __init__(self, path: str | os.PathLike, device: str = "auto", batch_size: int | None = None):
        import torch

        from coffea_hepfm.model.io import load_model
        from coffea_hepfm.threads import set_torch_threads

        set_torch_threads()  # never more threads than free cores (coffea_hepfm/threads.py)
        _match_dask_worker_threads()
        loaded = load_model(path)
        self.path = loaded.path
        self.meta = loaded.meta
        self.graph_spec = loaded.spec
        self.class_names = list(loaded.class_names)
        if not self.class_names:
            raise ValueError(
                f"{loaded.path.name} is a {loaded.kind!r} model without class outputs; HEPFMScore needs a "
                "classifier, multiclass or multilabel model"
            )
        self.device = torch.device(resolve_device(device))
        if batch_size is None:
            batch_size = DEFAULT_BATCH[self.device.type]
        self.batch_size = int(batch_size)
        self.hidden = int(loaded.module.backbone.hidden)
        self.sha256 = loaded.sha256
        #: ``HEPFMNet.get_config()`` and the head's Linear shapes (to count FLOPs in benchmarks).
        self.net_config = loaded.module.backbone.get_config()
        self.head_linears = [
            (m.in_features, m.out_features)
            for m in loaded.module.head.modules()
            if isinstance(m, torch.nn.Linear)
        ]
        scoring = loaded.scoring_module()
        #: Why the eager module runs instead of the fused CPU kernels ("" when they run, or on CUDA).
        self.fallback_reason = ""
        self.fused_edges = False
        if self.device.type == "cpu":
            from coffea_hepfm.model.fused import cpu_scoring_module

            self.module, self.fallback_reason = cpu_scoring_module(scoring)
            if self.fallback_reason:
                _warn_once(self.fallback_reason)
            #: Edges from the numba twin of ``GraphBatch.from_flat`` (same values, ~2x faster), when the
            #: kernels run and the spec's edge features are the ones it computes (v1 and v2 are).
            self.fused_edges = not self.fallback_reason and _fused_edges_ok(self.graph_spec)
        else:
            from coffea_hepfm.triton.padded import EdgeFeatures

            self.module = _CompiledOrEager(scoring.to(self.device).requires_grad_(False))
            self.edge_features = EdgeFeatures(self.graph_spec.node_features).to(self.device)

    def score(
        self, x: np.ndarray, counts: np.ndarray, u: np.ndarray, embedding: bool = False
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Score ``B = len(u)`` events given flat nodes ``x [N, F]`` and ``counts [B]`` (sum ``N``).

        Returns ``(probs [B, C] float32, embedding [B, H] float32 or None)``. Zero events give
        ``[0, C]`` (and ``[0, H]``) arrays; events with zero nodes are scored from their globals.
        """
        import torch

        from coffea_hepfm.graph import GraphBatch
        from coffea_hepfm.model.fused import fused_graph_inputs

        n_events = len(u)
        probs = np.empty((n_events, len(self.class_names)), dtype=np.float32)
        emb = np.empty((n_events, self.hidden), dtype=np.float32) if embedding else None
        offsets = np.zeros(n_events + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        with torch.inference_mode():
            for start in range(0, n_events, self.batch_size):
                stop = min(start + self.batch_size, n_events)
                nodes = slice(int(offsets[start]), int(offsets[stop]))
                # Arrays from awkward can be read-only; torch wants writable memory (one batch copied).
                xb = x[nodes] if x.flags.writeable else x[nodes].copy()
                ub = u[start:stop] if u.flags.writeable else u[start:stop].copy()
                if self.device.type == "cpu" and self.fused_edges:
                    graphs = fused_graph_inputs(xb, counts[start:stop], ub, self.graph_spec.node_features)
                elif self.device.type == "cpu":
                    graphs = GraphBatch.from_flat(xb, counts[start:stop], ub).to_torch()
                else:
                    graphs = device_graphs(xb, counts[start:stop], ub, self.device, self.edge_features)
                p, e = self.module(*graphs)
                probs[start:stop] = p.float().cpu().numpy()
                if emb is not None:
                    emb[start:stop] = e.float().cpu().numpy()
        return probs, emb


def _fused_edges_ok(spec) -> bool:
    from coffea_hepfm.model import kernels as K

    return tuple(spec.edge_features) == K.EDGE_FEATURES and set(K.EDGE_INPUTS) <= set(spec.node_features)


def device_graphs(x: np.ndarray, counts: np.ndarray, u: np.ndarray, device, edge_features):
    """``(x, edge_index, edge_attr, u, batch)`` built on ``device`` from flat host nodes.

    The nodes are copied once; the fully connected edges are made there in the order of
    :func:`coffea_hepfm.graph.edges.edge_index` (event by event, source-major) and their features by
    ``edge_features`` (:class:`coffea_hepfm.triton.padded.EdgeFeatures`, the torch twin of
    :func:`coffea_hepfm.graph.edges.edge_attr`). On a GPU this keeps the ``O(n^2)`` edge work off the
    host; ``tests/test_score_gpu.py`` checks it against ``GraphBatch.from_flat`` on CPU.
    """
    import torch

    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device, non_blocking=True)
    ut = torch.from_numpy(np.ascontiguousarray(u, dtype=np.float32)).to(device, non_blocking=True)
    n = torch.from_numpy(np.asarray(counts, dtype=np.int64)).to(device, non_blocking=True)
    batch = torch.repeat_interleave(torch.arange(n.numel(), device=device), n)
    start = torch.cumsum(n, 0) - n
    m = int(counts.max()) if len(counts) else 0
    slots = torch.arange(m, device=device)
    real = slots[None, :] < n[:, None]  # [B, m]
    pairs = (real[:, :, None] & real[:, None, :] & (slots[:, None] != slots[None, :])).nonzero()
    src = start[pairs[:, 0]] + pairs[:, 1]
    dst = start[pairs[:, 0]] + pairs[:, 2]
    return xt, torch.stack([src, dst]), edge_features(xt, src, dst), ut, batch
