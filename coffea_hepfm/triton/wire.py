"""The wire format for Triton (numpy only, so the client side needs no torch): padded nodes + node counts + globals; edges are rebuilt in the model.

Why padded nodes, and why edges are not sent
--------------------------------------------
Triton's dynamic batcher and ``max_batch_size`` need the batch to be the first dimension of *every*
input. Flat node tensors ``[N, F]`` with per-event counts do not have one (``N`` is a sum over events),
so a batching server could not split or merge requests. Padding each event to ``spec.max_nodes`` rows
(23 for the default spec: 10 jets + 4 e + 4 mu + 4 photons + MET) gives

==============  =======================  ======  ===========================================
input           shape                    dtype   meaning
==============  =======================  ======  ===========================================
``NODES__0``    ``[B, max_nodes, F]``    FP32    node features, rows ``>= n_nodes`` are zero
``N_NODES__1``  ``[B, 1]``               INT64   number of real nodes per event
``GLOBALS__2``  ``[B, G]``               FP32    global features
==============  =======================  ======  ===========================================

and outputs ``PROBS__0 [B, C]`` and ``EMBEDDING__1 [B, hidden]``. (The ``__<index>`` suffixes are
the naming rule of Triton's ``pytorch_libtorch`` backend; all our backends use the same names so the
client does not care which one serves.)

Edges are a deterministic function of the nodes, so they are rebuilt *inside* the served model
(:class:`coffea_hepfm.triton.padded.PaddedScoringModule`): fully connected graphs have ``n (n - 1)`` edges, and sending them
padded would be ``max_nodes (max_nodes - 1) * 4`` floats per event (2024 for the default spec), 7x
the padded nodes (299 floats). The price is that the edge features exist twice, in numpy
(:func:`coffea_hepfm.graph.edges.edge_attr`) and in torch (:class:`coffea_hepfm.triton.padded.EdgeFeatures`), with the same
formulas in the same precision; ``tests/test_triton.py`` checks they agree on real events, so a
change in one without the other fails there.

Examples
--------
>>> x = np.arange(6, dtype=np.float32).reshape(3, 2)      # 3 nodes, 2 features
>>> pad_nodes(x, np.array([2, 0, 1]), max_nodes=2)[:, :, 0]
array([[0., 2.],
       [0., 0.],
       [4., 0.]], dtype=float32)
>>> pad_nodes(x, np.array([3]), max_nodes=2)
Traceback (most recent call last):
...
ValueError: an event has 3 nodes but the served model takes at most 2 (GraphSpec.max_nodes)
"""

from __future__ import annotations

import numpy as np

__all__ = ["INPUTS", "OUTPUTS", "WIRE_FORMAT", "pad_nodes"]

INPUTS = ("NODES__0", "N_NODES__1", "GLOBALS__2")
OUTPUTS = ("PROBS__0", "EMBEDDING__1")
#: Stored in ``config.pbtxt`` (parameter ``hepfm_wire_format``) and checked by the client.
WIRE_FORMAT = "hepfm-padded-v1"


def pad_nodes(x: np.ndarray, counts: np.ndarray, max_nodes: int) -> np.ndarray:
    """Scatter flat nodes ``x [N, F]`` of events with ``counts [B]`` nodes into ``[B, max_nodes, F]``.

    Vectorised (no per-event loop); padding rows are zero. Raises ``ValueError`` if an event has more
    than ``max_nodes`` nodes or ``counts`` does not sum to ``N``.
    """
    counts = np.asarray(counts, dtype=np.int64)
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"x must be [N, F], got shape {x.shape}")
    if int(counts.sum()) != len(x):
        raise ValueError(f"node counts sum to {int(counts.sum())} but x has {len(x)} rows")
    if len(counts) and int(counts.max()) > max_nodes:
        raise ValueError(
            f"an event has {int(counts.max())} nodes but the served model takes at most {max_nodes} "
            "(GraphSpec.max_nodes)"
        )
    out = np.zeros((len(counts), max_nodes, x.shape[1]), dtype=np.float32)
    event = np.repeat(np.arange(len(counts)), counts)
    local = np.arange(len(x)) - np.repeat(np.cumsum(counts) - counts, counts)
    out[event, local] = x
    return out
