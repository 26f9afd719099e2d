"""The in-process torch backend of :class:`~coffea_hepfm.score.HEPFMScore`.

One :class:`LocalRunner` per process (created lazily on each Dask worker): it loads the model file with
:func:`coffea_hepfm.model.io.load_model` (safetensors only), moves the scoring module to the device and
scores flat graph inputs in mini-batches of ``batch_size`` events, so memory per call is bounded however
large the chunk is.
"""

from __future__ import annotations

import os

import numpy as np

__all__ = ["DEFAULT_BATCH", "LocalRunner", "resolve_device"]

#: Events per forward pass when ``batch_size=None``. On CPU small batches keep the per-edge activations
#: (``E x hidden`` floats) in cache: 256 events run ~1.5x faster than 4096 (``coffea-hepfm bench score``);
#: a GPU wants large batches.
DEFAULT_BATCH = {"cpu": 256, "cuda": 8192}


def _compile(module):
    """TorchScript + freeze (folds weights into the graph: ~15-25% faster on CPU); eager if that fails."""
    import torch

    try:
        return torch.jit.freeze(torch.jit.script(module.eval()))
    except Exception:  # a head torch.jit cannot script still works eagerly  # noqa: BLE001
        return module.eval()


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
        self.module = _compile(loaded.scoring_module().to(self.device))

    def score(
        self, x: np.ndarray, counts: np.ndarray, u: np.ndarray, embedding: bool = False
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Score ``B = len(u)`` events given flat nodes ``x [N, F]`` and ``counts [B]`` (sum ``N``).

        Returns ``(probs [B, C] float32, embedding [B, H] float32 or None)``. Zero events give
        ``[0, C]`` (and ``[0, H]``) arrays; events with zero nodes are scored from their globals.
        """
        import torch

        from coffea_hepfm.graph import GraphBatch

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
                graphs = GraphBatch.from_flat(xb, counts[start:stop], ub)
                p, e = self.module(*graphs.to_torch(self.device))
                probs[start:stop] = p.float().cpu().numpy()
                if emb is not None:
                    emb[start:stop] = e.float().cpu().numpy()
        return probs, emb
