r"""CPU inference of a trained classifier with fused element-wise kernels: the local scoring path.

:class:`FusedScoringModule` computes the same ``(probabilities, embedding)`` as
:class:`~coffea_hepfm.model.heads.ScoringModule` (the eager ``HEPFMClassifier`` forward; equal within
float32 rounding, ``tests/test_model_fused.py`` holds it to 1e-5) from the same weights, but organises
each MLP as

.. math::
    \text{matrix product (MKL, via torch)} \;\to\; \text{one fused pass}

The fused passes (:mod:`coffea_hepfm.model.kernels`) do, per edge row: the gathers of the per-node
source/target terms of the factorised first layer, the bias, ReLU, LayerNorm, the residual add and the
scatter-sum into the target node, so an edge-block step reads and writes the ``[E, hidden]`` state
four times instead of ~20 and no scatter/index tensors are built. Buffers are reused between calls of
one thread; each thread has its own (dask's threaded scheduler calls one scorer from several threads at
once: shared buffers gave wrong scores, ``tests/test_model_fused.py``).

The network's widths come from the model (``HEPFMNet.get_config()``); any ``hidden``,
``mlp_layers >= 1``, ``n_proc_steps`` and ``aggr`` work. Not TorchScript, not ``torch.compile``: nothing
to compile but the kernels (numba, cached on disk), nothing deprecated.

Examples
--------
>>> fused = FusedScoringModule(load_model("tth_vs_ttbar").scoring_module())     # doctest: +SKIP
>>> probs, emb = fused(*GraphBatch.from_flat(x, counts, u).to_torch())          # doctest: +SKIP
>>> scorer, reason = cpu_scoring_module(scoring)   # fused, or eager and the reason  # doctest: +SKIP
"""

from __future__ import annotations

import threading

import numpy as np
import torch
from torch import Tensor, nn

from coffea_hepfm.errors import HEPFMWarning
from coffea_hepfm.model import kernels as K
from coffea_hepfm.model.heads import ScoringModule

__all__ = ["FusedKernelFallback", "FusedScoringModule", "cpu_scoring_module", "fused_graph_inputs"]

#: Largest probability difference to the eager module that :func:`cpu_scoring_module` accepts.
CHECK_ATOL = 1e-5


class FusedKernelFallback(HEPFMWarning):
    """The fused CPU kernels cannot run here; scoring uses the eager torch module (slower, same values)."""


class _MLP:
    """The Linear layers (transposed weights) and the final LayerNorm of one ``mlp()`` Sequential."""

    def __init__(self, seq: nn.Sequential, factorised: bool):
        mods = list(seq)
        if not mods or not isinstance(mods[-1], nn.LayerNorm):
            raise ValueError("an MLP must end in LayerNorm")
        body = mods[:-1]
        if factorised:  # the caller computes the first Linear: the Sequential starts with its ReLU
            body = [None, *body]
        if len(body) % 2 or len(body) < 2:
            raise ValueError(f"unexpected MLP layout {[type(m).__name__ for m in mods]}")
        self.layers: list[tuple[Tensor, np.ndarray]] = []
        for lin, act in zip(body[::2], body[1::2], strict=True):
            if not isinstance(act, nn.ReLU) or not (lin is None or isinstance(lin, nn.Linear)):
                raise ValueError(f"unexpected MLP layout {[type(m).__name__ for m in mods]}")
            if lin is None:
                self.layers.append((None, None))
            else:
                b = lin.bias if lin.bias is not None else torch.zeros(lin.out_features)
                self.layers.append((lin.weight.detach().t().contiguous(), b.detach().numpy().copy()))
        ln = mods[-1]
        if len(ln.normalized_shape) != 1:
            raise ValueError("LayerNorm must normalise the last dimension only")
        width = ln.normalized_shape[0]
        gamma = ln.weight if ln.weight is not None else torch.ones(width)
        beta = ln.bias if ln.bias is not None else torch.zeros(width)
        self.ln = (gamma.detach().numpy().copy(), beta.detach().numpy().copy(), np.float32(ln.eps))
        self.width = width


class FusedScoringModule:
    """``(x, edge_index, edge_attr, u, batch) -> (probs [B, C], embedding [B, hidden])`` on CPU.

    Parameters
    ----------
    scoring : ScoringModule
        The module whose function this computes (its weights are copied; later changes to the module
        are not seen).

    Notes
    -----
    Inputs as :meth:`coffea_hepfm.graph.GraphBatch.to_torch` gives them (float32 / int64 CPU tensors;
    any graph, not only fully connected ones). Single-threaded kernels; the matrix products use torch's
    thread setting. Not an ``nn.Module``: inference only, no autograd.
    """

    def __init__(self, scoring: ScoringModule, tile: int = 2048):
        self.tile = int(tile)
        if not isinstance(scoring, ScoringModule):
            raise TypeError(f"need a ScoringModule, got {type(scoring).__name__}")
        clf = scoring.classifier
        net = clf.backbone
        self.net = net
        self.head = clf.head.eval()
        self.sigmoid = bool(scoring.sigmoid)
        self.hidden = net.hidden
        self.steps = net.n_proc_steps
        self.mean = net.aggr == "mean"
        eb, nb = net.edge_block, net.node_block
        self.node_enc = _MLP(net.node_encoder, False)
        self.edge_enc = _MLP(net.edge_encoder, False)
        self.glob_enc = _MLP(net.global_encoder, False)
        self.edge_mlp = _MLP(eb.tail, True)
        self.node_mlp = _MLP(nb.tail, True)
        self.glob_mlp = _MLP(net.global_block.mlp, False)
        self.decoder = _MLP(net.decoder, False)

        def t(lin):
            return lin.weight.detach().t().contiguous()

        self.w_src, self.w_dst, self.w_eglob, self.w_edge = (
            t(eb.lin_src),
            t(eb.lin_dst),
            t(eb.lin_glob),
            t(eb.lin_edge),
        )
        self.b_edge = eb.lin_edge.bias.detach().clone()
        self.w_node, self.w_aggr, self.w_nglob = t(nb.lin_node), t(nb.lin_aggr), t(nb.lin_glob)
        self.b_node = nb.lin_node.bias.detach().clone()
        self._zero = np.zeros(self.hidden, dtype=np.float32)
        self._none_f = np.zeros((0, self.hidden), dtype=np.float32)
        self._none_i = np.zeros(0, dtype=np.int64)
        self._local = threading.local()  # per-thread workspace (see the module docstring)

    # -- helpers -------------------------------------------------------------------------------------
    def _buf(self, name: str, rows: int, cols: int | None = None) -> tuple[Tensor, np.ndarray]:
        """A reused ``[rows, cols]`` float32 buffer, as a tensor and a numpy view of the same memory
        (grown by 1.5x when too small: no page faults and no allocations per call)."""
        cols = self.hidden if cols is None else cols
        ws = self._local.__dict__.setdefault("ws", {})
        buf = ws.get(name)
        if buf is None or buf[0].size(0) < rows or buf[0].size(1) != cols:
            t = torch.empty((max(rows, int(1.5 * (0 if buf is None else buf[0].size(0)))), cols))
            buf = ws[name] = (t, t.numpy())
        return buf[0][:rows], buf[1][:rows]

    def _spans(self, rows: int) -> list[tuple[int, int]]:
        """Row tiles of :attr:`tile` rows (so that a tile's activations stay in L2 between the matrix
        products and the kernels)."""
        return [(r0, min(r0 + self.tile, rows)) for r0 in range(0, rows, self.tile)]

    def _run(self, spans, first, mlp: _MLP, out: list, residual: bool, index: list | None, pool) -> None:
        r"""One MLP over the row tiles ``spans``.

        ``first(j, p, p_np)`` writes tile ``j``'s ReLU'd first layer into ``p``; then come the other
        Linear layers (matrix product, then bias + ReLU in place), and the last one's kernel adds
        ``LayerNorm(...)`` into ``out[j]`` (``residual``) or writes it there, and scatter-sums the
        result into ``pool[index[j]]`` when ``index`` is given. ``out`` and ``index`` are per-tile
        numpy views, made once per forward (slicing costs microseconds, and there are hundreds of tiles).
        """
        layers, ln = mlp.layers, mlp.ln
        n = len(layers)
        if not spans:
            return
        tile = spans[0][1] - spans[0][0]
        last = spans[-1][1] - spans[-1][0]
        p_full = self._buf("p", tile)
        p_last = (p_full[0][:last], p_full[1][:last])
        q_full = [self._buf(f"q{i}", tile, layers[i][0].size(1)) for i in range(1, min(n, 3))]
        q_last = [(t[:last], a[:last]) for t, a in q_full]
        if index is None:
            index, pool = [self._none_i] * len(spans), self._none_f
        final = len(spans) - 1
        for j in range(len(spans)):
            pt, pn = p_full if j != final else p_last
            first(j, pt, pn)
            if n == 1:  # relu(P) + 0 is P: the LayerNorm kernel only normalises
                K.bias_relu_layer_norm(pn, self._zero, *ln, out[j], residual, index[j], pool)
                continue
            qs = q_full if j != final else q_last
            xt = pt
            for i in range(1, n):
                w, b = layers[i]
                qt, qn = qs[(i - 1) % 2]
                torch.mm(xt, w, out=qt)
                if i == n - 1:
                    K.bias_relu_layer_norm(qn, b, *ln, out[j], residual, index[j], pool)
                else:
                    K.bias_act(qn, b)
                    xt = qt

    def _mlp(self, X: Tensor, mlp: _MLP, out: np.ndarray, residual: bool = False) -> None:
        """An ordinary MLP (encoders, global block, decoder) on the rows of ``X``."""
        w, b = mlp.layers[0]
        spans = self._spans(X.size(0))
        outs = [out[r0:r1] for r0, r1 in spans]
        if w.size(0) <= 16:  # small fan-in (node / edge / global features): memory bound, one fused pass
            xs, wn = [X.numpy()[r0:r1] for r0, r1 in spans], w.numpy()

            def first(j, pt, pn):
                K.small_linear(xs[j], wn, b, pn, True)

        else:
            xs = [X[r0:r1] for r0, r1 in spans]

            def first(j, pt, pn):
                torch.mm(xs[j], w, out=pt)
                K.bias_act(pn, b)

        self._run(spans, first, mlp, outs, residual, None, None)

    # -- forward -------------------------------------------------------------------------------------
    @torch.inference_mode()
    def __call__(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor, u: Tensor, batch: Tensor):
        net = self.net
        net._check(x, edge_index, edge_attr, u, batch)
        x, edge_attr, u = (t.contiguous().float() for t in (x, edge_attr, u))
        src = edge_index[0].contiguous().numpy()
        dst = edge_index[1].contiguous().numpy()
        bidx = batch.contiguous().numpy()
        n_nodes, n_edges, n_events = x.size(0), edge_attr.size(0), u.size(0)
        H = self.hidden

        h, e, g = torch.empty(n_nodes, H), torch.empty(n_edges, H), torch.empty(n_events, H)
        h_np, e_np, g_np = h.numpy(), e.numpy(), g.numpy()
        self._mlp(x, self.node_enc, h_np)
        self._mlp(edge_attr, self.edge_enc, e_np)
        self._mlp(u, self.glob_enc, g_np)

        inv_degree = inv_nodes = inv_edges = None
        if self.mean:  # counts once per forward; max(count, 1): empty nodes/events pool to zero
            degree = np.bincount(dst, minlength=n_nodes).astype(np.float32)
            per_event = np.bincount(bidx, minlength=n_events).astype(np.float32)
            edges_per_event = np.bincount(bidx, weights=degree, minlength=n_events).astype(np.float32)
            inv_degree = torch.from_numpy(1.0 / np.maximum(degree, 1.0))[:, None]
            inv_nodes = torch.from_numpy(1.0 / np.maximum(per_event, 1.0))[:, None]
            inv_edges = torch.from_numpy(1.0 / np.maximum(edges_per_event, 1.0))[:, None]

        edge_sum, node_sum, edge_pool = (
            torch.empty(n_nodes, H),
            torch.empty(n_events, H),
            torch.empty(n_events, H),
        )
        es_np, ns_np, ep_np = edge_sum.numpy(), node_sum.numpy(), edge_pool.numpy()
        # Per-tile views, made once and used by every step (the state is updated in place).
        e_spans, n_spans = self._spans(n_edges), self._spans(n_nodes)
        e_t = [e[r0:r1] for r0, r1 in e_spans]
        e_n = [e_np[r0:r1] for r0, r1 in e_spans]
        src_n = [src[r0:r1] for r0, r1 in e_spans]
        dst_n = [dst[r0:r1] for r0, r1 in e_spans]
        h_t = [h[r0:r1] for r0, r1 in n_spans]
        h_n = [h_np[r0:r1] for r0, r1 in n_spans]
        b_n = [bidx[r0:r1] for r0, r1 in n_spans]
        w_edge, w_node, w_aggr, b_node = self.w_edge, self.w_node, self.w_aggr, self.b_node
        for _ in range(self.steps):
            # Edge block: P = e W_e^T + S[src] + D[dst], S = x W_s^T + (g W_u^T)[batch] + b.
            s = torch.mm(h, self.w_src)
            s += torch.mm(g, self.w_eglob).index_select(0, batch)
            s += self.b_edge
            s_np, d_np = s.numpy(), torch.mm(h, self.w_dst).numpy()

            def edge_first(j, pt, pn, s_np=s_np, d_np=d_np):
                torch.mm(e_t[j], w_edge, out=pt)
                K.gather_add(pn, s_np, src_n[j], d_np, dst_n[j], True)

            edge_sum.zero_()
            self._run(e_spans, edge_first, self.edge_mlp, e_n, True, dst_n, es_np)
            # Node block: P = x W_x^T + b + aggr W_a^T + (g W_u^T)[batch].
            aggr = edge_sum * inv_degree if inv_degree is not None else edge_sum
            aggr_t = [aggr[r0:r1] for r0, r1 in n_spans]
            gn_np = torch.mm(g, self.w_nglob).numpy()

            def node_first(j, pt, pn, aggr_t=aggr_t, gn_np=gn_np):
                torch.addmm(b_node, h_t[j], w_node, out=pt)
                pt.addmm_(aggr_t[j], w_aggr)
                K.gather_add(pn, gn_np, b_n[j], self._none_f, self._none_i, True)

            node_sum.zero_()
            self._run(n_spans, node_first, self.node_mlp, h_n, True, b_n, ns_np)
            # Global block on [g, mean/sum of nodes, mean/sum of edges].
            edge_pool.zero_()
            K.add_rows(ep_np, es_np, bidx)
            if inv_nodes is not None and inv_edges is not None:
                pools = (node_sum * inv_nodes, edge_pool * inv_edges)
            else:
                pools = (node_sum, edge_pool)
            self._mlp(torch.cat([g, *pools], dim=1), self.glob_mlp, g_np, residual=True)
        emb = torch.empty(n_events, H)
        self._mlp(g, self.decoder, emb.numpy())
        logits = self.head(emb).float()
        probs = torch.sigmoid(logits) if self.sigmoid else torch.softmax(logits, dim=1)
        return probs, emb


def _difference(a: Tensor, b: Tensor) -> float:
    """Largest |a - b|, NaN where both are NaN counting as equal (a corrupt model is NaN either way,
    and HEPFMScore refuses NaN scores); NaN in only one of them is an infinite difference."""
    nan_a, nan_b = torch.isnan(a), torch.isnan(b)
    if not torch.equal(nan_a, nan_b):
        return float("inf")
    keep = ~nan_a
    return float((a[keep] - b[keep]).abs().max()) if bool(keep.any()) else 0.0


def cpu_scoring_module(scoring: ScoringModule, check: bool = True):
    """The fastest CPU scorer for ``scoring``: ``(callable, "")``, or ``(scoring, reason)`` when the
    fused kernels cannot be used (numba missing, an unsupported layer layout, or, with ``check``, a
    self-check on random graphs that differs from the eager module by more than :data:`CHECK_ATOL`).

    The caller says why it falls back (see ``coffea_hepfm.score.local``); nothing here warns.
    """
    ok, reason = K.available()
    if not ok:
        return scoring, reason
    try:
        fused = FusedScoringModule(scoring)
        if check:
            from coffea_hepfm.model.bench import random_graphs

            net = scoring.classifier.backbone
            counts = torch.tensor([0, 1, 2, 5, 9, 3])
            graphs = random_graphs(len(counts), net.n_node, net.n_edge, net.n_global, node_counts=counts)
            with torch.inference_mode():
                want = scoring(*graphs)
            got = fused(*graphs)
            diff = max(_difference(a, b) for a, b in zip(got, want, strict=True))
            if not diff <= CHECK_ATOL:
                return (
                    scoring,
                    f"the fused kernels differ from the eager module by {diff:.2g} on a self-check",
                )
    except Exception as err:  # noqa: BLE001 - any failure means: use the eager module, and say why
        return scoring, f"fused kernels unavailable: {type(err).__name__}: {err}"
    return fused, ""


def fused_graph_inputs(x: np.ndarray, counts: np.ndarray, u: np.ndarray, node_features) -> tuple:
    """``(x, edge_index, edge_attr, u, batch)`` torch tensors of fully connected graphs from flat nodes,
    built by one numba pass (:func:`coffea_hepfm.model.kernels.fully_connected_edges`, the twin of
    ``GraphBatch.from_flat``: ~2x faster, the same indices, features equal within float32 rounding).

    ``node_features`` are the graph spec's node-feature names (the columns are looked up by name).
    """
    cols = np.array([list(node_features).index(name) for name in K.EDGE_INPUTS], dtype=np.int64)
    x = np.ascontiguousarray(x, dtype=np.float32)
    counts = np.ascontiguousarray(counts, dtype=np.int64)
    n_edges = int((counts * np.maximum(counts - 1, 0)).sum())
    edge_index = np.empty((2, n_edges), dtype=np.int64)
    attr = np.empty((n_edges, len(K.EDGE_FEATURES)), dtype=np.float32)
    K.fully_connected_edges(x, counts, cols, edge_index[0], edge_index[1], attr)
    batch = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    u = np.ascontiguousarray(u, dtype=np.float32)
    return tuple(torch.from_numpy(a) for a in (x, edge_index, attr, u, batch))
