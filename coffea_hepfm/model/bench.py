"""CPU inference benchmark of the graph network: events/s/core and the fraction of matmul peak it reaches.

FLOPs are counted analytically (``2 * in * out`` per row for every ``Linear``, nothing else), from the row
counts each layer sees: nodes ``N``, edges ``E = sum n (n - 1)`` and events ``B``. ``tests/test_model.py``
checks the count against ``torch.utils.flop_counter.FlopCounterMode``.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "Graphs",
    "fully_connected_edges",
    "iter_batches",
    "matmul_gflops",
    "model_flops",
    "nanoaod_graphs",
    "node_count_summary",
    "random_graphs",
    "tile_graphs",
    "time_model",
]

Graphs = tuple[Tensor, Tensor, Tensor, Tensor, Tensor]


def fully_connected_edges(node_counts: Tensor) -> Tensor:
    """``[2, sum n (n - 1)]`` directed edges without self loops, event by event, source-major.

    >>> fully_connected_edges(torch.tensor([2, 0, 3])).tolist()
    [[0, 1, 2, 2, 3, 3, 4, 4], [1, 0, 3, 4, 2, 4, 2, 3]]
    """
    n = node_counts.to(torch.long)
    offsets = torch.cumsum(n, 0) - n
    sq = n * n
    event = torch.repeat_interleave(torch.arange(n.numel()), sq)
    k = torch.arange(int(sq.sum())) - torch.repeat_interleave(torch.cumsum(sq, 0) - sq, sq)
    ne = n[event]
    i, j = k // ne.clamp(min=1), k % ne.clamp(min=1)
    keep = i != j
    base = offsets[event][keep]
    return torch.stack([base + i[keep], base + j[keep]])


def random_graphs(
    n_events: int,
    n_node: int,
    n_edge: int,
    n_global: int,
    min_nodes: int = 5,
    max_nodes: int = 15,
    node_counts: Tensor | None = None,
    seed: int = 0,
) -> Graphs:
    """Random fully connected event graphs ``(x, edge_index, edge_attr, u, batch)``.

    Node counts are uniform in ``[min_nodes, max_nodes]`` unless ``node_counts`` ([n_events]) is given
    (zeros allowed: events without nodes).
    """
    g = torch.Generator().manual_seed(seed)
    if node_counts is None:
        node_counts = torch.randint(min_nodes, max_nodes + 1, (n_events,), generator=g)
    node_counts = node_counts.to(torch.long)
    edge_index = fully_connected_edges(node_counts)
    n_nodes = int(node_counts.sum())
    return (
        torch.randn(n_nodes, n_node, generator=g),
        edge_index,
        torch.randn(edge_index.size(1), n_edge, generator=g),
        torch.randn(node_counts.numel(), n_global, generator=g),
        torch.repeat_interleave(torch.arange(node_counts.numel()), node_counts),
    )


def _counts(graphs: Graphs) -> tuple[Tensor, Tensor]:
    x, edge_index, _, u, batch = graphs
    n = torch.bincount(batch, minlength=u.size(0))
    e = torch.bincount(batch[edge_index[0]], minlength=u.size(0))
    return n, e


def tile_graphs(graphs: Graphs, n_events: int) -> Graphs:
    """Repeat a batch of graphs (node ids shifted) until it holds ``n_events`` events."""
    x, edge_index, edge_attr, u, batch = graphs
    b, nn = u.size(0), x.size(0)
    reps = -(-n_events // b)
    shift = torch.arange(reps).repeat_interleave(edge_index.size(1)) * nn
    out = (
        x.repeat(reps, 1),
        edge_index.repeat(1, reps) + shift,
        edge_attr.repeat(reps, 1),
        u.repeat(reps, 1),
        batch.repeat(reps) + torch.arange(reps).repeat_interleave(nn) * b,
    )
    return next(iter_batches(out, n_events))


def iter_batches(graphs: Graphs, batch_size: int):
    """Yield consecutive slices of ``batch_size`` events, node ids and event ids renumbered from 0."""
    x, edge_index, edge_attr, u, batch = graphs
    n, e = _counts(graphs)
    node_off = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(n, 0)])
    edge_off = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(e, 0)])
    for b0 in range(0, u.size(0), batch_size):
        b1 = min(b0 + batch_size, u.size(0))
        n0, n1 = int(node_off[b0]), int(node_off[b1])
        e0, e1 = int(edge_off[b0]), int(edge_off[b1])
        yield (x[n0:n1], edge_index[:, e0:e1] - n0, edge_attr[e0:e1], u[b0:b1], batch[n0:n1] - b0)


def model_flops(config: dict, n_nodes: int, n_edges: int, n_events: int, head_linears=()) -> dict:
    """Multiply-add FLOPs (``2 * in * out`` per row per Linear) of one forward pass.

    Parameters
    ----------
    config : dict
        ``HEPFMNet.get_config()``.
    n_nodes, n_edges, n_events : int
        Rows ``N``, ``E``, ``B`` of the batch.
    head_linears : iterable of (in, out)
        The head's Linear shapes (applied to ``B`` rows).

    Returns
    -------
    dict
        ``total``, ``edge_rows`` (FLOPs on E-row tensors), and ``total_concat``: the same network with the
        edge and node first layers computed as one Linear on the concatenation.
    """
    h, L = config["hidden"], config["mlp_layers"]
    N, E, B = n_nodes, n_edges, n_events
    hh = 2 * h * h

    def mlp(rows: int, fan_in: int) -> int:
        return rows * (2 * fan_in * h + (L - 1) * hh)

    enc = mlp(N, config["n_node"]) + mlp(E, config["n_edge"]) + mlp(B, config["n_global"])
    edge_first = hh * E + 2 * hh * N + hh * B
    edge_tail = (L - 1) * hh * E
    node = 2 * hh * N + hh * B + (L - 1) * hh * N
    glob = mlp(B, 3 * h)
    steps = config["n_proc_steps"]
    head = sum(2 * i * o * B for i, o in head_linears)
    total = enc + steps * (edge_first + edge_tail + node + glob) + mlp(B, h) + head
    concat_delta = steps * ((4 * hh * E - edge_first) + (3 * hh * N - (2 * hh * N + hh * B)))
    edge_rows = mlp(E, config["n_edge"]) + steps * (hh * E + edge_tail)
    return {"total": total, "edge_rows": edge_rows, "total_concat": total + concat_delta}


def matmul_gflops(n: int = 1024, repeats: int = 20) -> float:
    """Measured float32 ``n x n`` matmul GFLOP/s with the current torch thread count (best of repeats).

    Timed in CPU seconds of this process (``time.process_time``), like the network, so that time the
    process spends descheduled on a shared machine counts against neither. With several threads the CPU
    time is summed over them, so the figure is per core.
    """
    a, b = torch.randn(n, n), torch.randn(n, n)
    out = torch.empty(n, n)
    torch.mm(a, b, out=out)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.process_time()
        torch.mm(a, b, out=out)
        best = min(best, time.process_time() - t0)
    return 2 * n**3 / max(best, 1e-9) / 1e9


def time_model(fn, batches: list[Graphs], min_seconds: float = 2.0) -> tuple[float, int]:
    """Run ``fn(*batch)`` over ``batches`` in turn (one warm-up batch first) for ``min_seconds`` of CPU.

    Returns ``(cpu_seconds, events)`` of the timed calls (at least one batch). CPU seconds of this
    process (``time.process_time``): on a shared machine, time spent descheduled does not count.
    """
    with torch.inference_mode():
        fn(*batches[0])
        events, t0 = 0, time.process_time()
        while True:
            for b in batches:
                fn(*b)
                events += b[3].size(0)
                elapsed = time.process_time() - t0
                if elapsed >= min_seconds:
                    return elapsed, events


def node_count_summary(graphs: Graphs) -> dict:
    n, e = _counts(graphs)
    return {
        "events": int(n.numel()),
        "mean_nodes": float(n.float().mean()),
        "mean_edges": float(e.float().mean()),
        "zero_node_events": int((n == 0).sum()),
        "max_nodes": int(n.max()) if n.numel() else 0,
        "p50_nodes": float(np.median(n.numpy())) if n.numel() else 0.0,
    }


def nanoaod_graphs(files, n_events: int, spec=None) -> tuple[Graphs, dict]:
    """Real event graphs from NanoAOD ``files``, replicated (whole events) to ``n_events``.

    Returns the five tensors and ``{"source_events": ..., "files": [...]}``.
    """
    from coffea_hepfm.graph import GraphBatch, GraphSpec, build_flat
    from coffea_hepfm.nanoaod import open_events

    spec = spec or GraphSpec()
    xs, counts, us, used = [], [], [], []
    for f in files:
        flat = build_flat(open_events(f, mode="eager"), spec)
        if len(flat.node_counts):
            xs.append(flat.x)
            counts.append(flat.node_counts)
            us.append(flat.u)
            used.append(str(f))
    if not counts:
        raise ValueError(f"no events in {[str(f) for f in files]}")
    x, c, u = np.concatenate(xs), np.concatenate(counts), np.concatenate(us)
    reps = -(-n_events // len(c))
    c_all = np.tile(c, reps)[:n_events]
    x_all = np.tile(x, (reps, 1))[: int(c_all.sum())]
    u_all = np.tile(u, (reps, 1))[:n_events]
    graphs = GraphBatch.from_flat(x_all, c_all, u_all).to_torch()
    return graphs, {"source_events": len(c), "files": used}
