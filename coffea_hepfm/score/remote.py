"""The Triton backend of :class:`~coffea_hepfm.score.HEPFMScore`: same inputs, scored by a server.

``HEPFMScore(model, backend="triton+grpc://host:port/name[/version]")`` builds graphs locally exactly as
the local backend does (with the graph spec of ``model``, read from the model file's metadata without
loading weights) and sends them to the server through :class:`coffea_hepfm.triton.client.TritonGraphClient`
(padded wire format; edges are rebuilt in the served model), imported lazily so the local backend never
needs tritonclient. The client checks the served model's graph spec, class names and embedding size
against the local model file at first use and refuses a mismatch.
"""

from __future__ import annotations

import numpy as np

from coffea_hepfm.score.backend import BackendSpec

__all__ = ["TritonRunner"]


class TritonRunner:
    """Scores flat graph inputs on a Triton server; same :meth:`score` contract as ``LocalRunner``.

    Parameters
    ----------
    backend
        The parsed backend string.
    model
        Shipped model name or model file whose metadata gives the graph spec and class names; the
        server's model must have been exported from it (the client checks the served spec).
    batch_size
        Events per request.
    """

    def __init__(self, backend: BackendSpec, model: str, batch_size: int | None = None):
        from coffea_hepfm.graph import GraphSpec
        from coffea_hepfm.model.io import read_metadata
        from coffea_hepfm.score.wrapper import resolve_model
        from coffea_hepfm.triton.client import TritonGraphClient

        meta = read_metadata(resolve_model(model))
        self.graph_spec = GraphSpec.from_dict(meta["graph_spec"])
        self.class_names = list(meta.get("class_names", []))
        self.hidden = int(meta["model_config"]["hidden"])
        self.batch_size = None if batch_size is None else int(batch_size)  # None: the server's maximum
        # The client checks at first use that the served model has this spec, classes and embedding size.
        self.client = TritonGraphClient(
            backend.text,
            spec=self.graph_spec,
            class_names=self.class_names,
            hidden=self.hidden,
            batch_size=self.batch_size,
        )

    def score(
        self, x: np.ndarray, counts: np.ndarray, u: np.ndarray, embedding: bool = False
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """See :meth:`coffea_hepfm.score.local.LocalRunner.score` (the client splits into requests)."""
        probs, emb = self.client.infer_flat(x, counts, u)
        return probs.astype(np.float32, copy=False), (
            emb.astype(np.float32, copy=False) if embedding else None
        )
