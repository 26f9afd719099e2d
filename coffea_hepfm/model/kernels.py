r"""Fused CPU kernels (numba) for the element-wise work between the network's matrix products.

On CPU the graph network spends its FLOPs in ``[rows, 64] x [64, 64]`` products (MKL, through torch);
everything else (gathers of node terms per edge, bias, ReLU, LayerNorm, residual add, scatter-sum into
nodes and events) is memory traffic that eager torch does in ~8 separate passes per layer, with a
slow LayerNorm for 64-wide rows. Each kernel here does one such chain in a single pass over the rows,
so the products dominate the time (:mod:`coffea_hepfm.model.fused` calls them; ``docs/speed.md`` has
the measurements).

All kernels work in float32 on C-contiguous arrays, in place, single threaded, and keep IEEE NaN/inf
semantics (the ``fastmath`` flags allow re-association and FMA contraction, not ``nnan``/``ninf``), so
a NaN input still gives a NaN score, which :class:`~coffea_hepfm.score.HEPFMScore` refuses.
Compiled on first use and cached on disk by numba (``NUMBA_CACHE_DIR`` to move the cache).

``available()`` says whether numba can be imported; callers fall back to eager torch (and say so)
when it cannot.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "EDGE_FEATURES",
    "EDGE_INPUTS",
    "add_rows",
    "available",
    "bias_act",
    "bias_relu_layer_norm",
    "fully_connected_edges",
    "gather_add",
    "small_linear",
]

# Re-association and contraction only: NaN/inf must propagate exactly as in torch.
_FAST = {"contract", "reassoc", "nsz", "arcp", "afn"}

try:  # numba comes with coffea; without it the caller runs eager torch and warns once
    from numba import njit

    _NUMBA_ERROR: Exception | None = None
except ImportError as err:  # pragma: no cover - coffea depends on numba
    njit = None
    _NUMBA_ERROR = err


def available() -> tuple[bool, str]:
    """``(True, "")`` when the kernels can run, else ``(False, reason)``."""
    if _NUMBA_ERROR is not None:
        return False, f"numba is not importable ({_NUMBA_ERROR})"
    return True, ""


def _jit(fn):
    if njit is None:  # pragma: no cover
        return fn
    return njit(fastmath=_FAST, nogil=True, cache=True)(fn)


@_jit
def gather_add(P, A, ia, D, idst, relu):  # pragma: no cover - compiled
    """``P[k] += A[ia[k]] (+ D[idst[k]])``, then ReLU if ``relu``; in place.

    The factorised first layer of the edge block: ``P = e W_e^T`` plus the per-node source term
    ``A = x W_s^T + (u W_u^T)_g + b`` at the edge's source and the target term ``D = x W_d^T`` at its
    target. With ``D.shape[0] == 0`` only ``A`` is added (the node block's global term).
    """
    rows, C = P.shape
    two = D.shape[0] > 0
    for k in range(rows):
        a = ia[k]
        if two:
            d = idst[k]
            for c in range(C):
                P[k, c] += A[a, c] + D[d, c]
        else:
            for c in range(C):
                P[k, c] += A[a, c]
        if relu:
            for c in range(C):
                if P[k, c] < 0.0:
                    P[k, c] = 0.0


@_jit
def bias_act(Q, b):  # pragma: no cover - compiled
    """``Q = relu(Q + b)`` in place (the middle layers of MLPs with more than two layers)."""
    rows, C = Q.shape
    for k in range(rows):
        for c in range(C):
            v = Q[k, c] + b[c]
            Q[k, c] = 0.0 if v < 0.0 else v


@_jit
def bias_relu_layer_norm(Q, b, gamma, beta, eps, out, residual, index, pool):  # pragma: no cover
    r"""The end of every MLP: ``y = LayerNorm(relu(Q + b))``, then ``out = y`` or ``out += y``
    (``residual``), then ``pool[index[k]] += out[k]`` when ``pool`` has rows (the scatter-sum of the
    updated edges into their target nodes, or of nodes into their events).

    LayerNorm as torch: biased variance, :math:`(z - \mu) / \sqrt{\sigma^2 + \epsilon}\,\gamma + \beta`.
    """
    rows, C = Q.shape
    do_pool = pool.shape[0] > 0
    inv_c = np.float32(1.0) / np.float32(C)
    z = np.empty(C, dtype=np.float32)
    for k in range(rows):
        m = np.float32(0.0)
        for c in range(C):
            v = Q[k, c] + b[c]
            if v < 0.0:
                v = np.float32(0.0)
            z[c] = v
            m += v
        m *= inv_c
        var = np.float32(0.0)
        for c in range(C):
            t = z[c] - m
            z[c] = t
            var += t * t
        r = np.float32(1.0) / np.sqrt(var * inv_c + eps)
        if residual:
            for c in range(C):
                out[k, c] += z[c] * r * gamma[c] + beta[c]
        else:
            for c in range(C):
                out[k, c] = z[c] * r * gamma[c] + beta[c]
        if do_pool:
            p = index[k]
            for c in range(C):
                pool[p, c] += out[k, c]


@_jit
def small_linear(X, Wt, b, out, relu):  # pragma: no cover - compiled
    """``out = X Wt + b`` (then ReLU if ``relu``) for a small fan-in (the 4 edge features), where a
    BLAS call would be memory bound anyway; vectorised over the output channels."""
    rows, K = X.shape
    C = Wt.shape[1]
    for k in range(rows):
        for c in range(C):
            out[k, c] = b[c]
        for j in range(K):
            xj = X[k, j]
            for c in range(C):
                out[k, c] += xj * Wt[j, c]
        if relu:
            for c in range(C):
                if out[k, c] < 0.0:
                    out[k, c] = 0.0


@_jit
def add_rows(out, X, index):  # pragma: no cover - compiled
    """``out[index[k]] += X[k]`` (scatter-sum, rows in order: the same summation order as torch's
    ``scatter_add_`` on CPU)."""
    rows, C = X.shape
    for k in range(rows):
        p = index[k]
        for c in range(C):
            out[p, c] += X[k, c]


#: Edge features :func:`fully_connected_edges` computes, in this order (``GraphSpec.edge_features`` of
#: graph spec v1 and v2).
EDGE_FEATURES = ("delta_eta", "delta_phi", "delta_r", "log_mass_pair")
#: Node-feature columns it reads (looked up by name in ``GraphSpec.node_features``).
EDGE_INPUTS = ("log_pt", "eta", "sin_phi", "cos_phi", "log_mass")


def _jit_exact(fn):
    # No fast-math at all: the same IEEE operations, in the same order, as the numpy code it mirrors.
    if njit is None:  # pragma: no cover
        return fn
    return njit(nogil=True, cache=True)(fn)


@_jit_exact
def fully_connected_edges(x, counts, cols, src, dst, attr):  # pragma: no cover - compiled
    r"""The fully connected directed edges of every event and their features, in one pass.

    The numba twin of :func:`coffea_hepfm.graph.edges.edge_index` and
    :func:`~coffea_hepfm.graph.edges.edge_attr` (same order: event by event, source-major; same
    formulas: per-node kinematics in float64 rounded to float32, per-pair arithmetic in float32, the
    cancellation-free pair mass; each unordered pair computed once). ``tests/test_model_fused.py``
    checks it against them on the CMS files (features within float32 rounding, indices equal).

    ``cols`` holds the columns of :data:`EDGE_INPUTS` in ``x``; ``src``, ``dst`` ``[E]`` int64 and
    ``attr`` ``[E, 4]`` float32 are written, ``E = sum n (n - 1)``.
    """
    i_pt, i_eta, i_sin, i_cos, i_m = cols[0], cols[1], cols[2], cols[3], cols[4]
    n_nodes = x.shape[0]
    kin = np.empty((n_nodes, 7), dtype=np.float32)  # eta, phi, y, mT, pT, d = m^2 / (mT + pT), m^2
    for k in range(n_nodes):
        pt = np.expm1(np.float64(x[k, i_pt]))
        eta = np.float64(x[k, i_eta])
        m = np.expm1(np.float64(x[k, i_m]))
        mt = np.hypot(pt, m)
        if mt > 0:
            y = np.arcsinh(pt * np.sinh(eta) / mt)
            d = m * m / (mt + pt)
        else:
            y = eta
            d = 0.0
        kin[k, 0] = eta
        kin[k, 1] = np.arctan2(x[k, i_sin], x[k, i_cos])
        kin[k, 2] = y
        kin[k, 3] = mt
        kin[k, 4] = pt
        kin[k, 5] = d
        kin[k, 6] = m * m
    two_pi = np.float32(2 * np.pi)
    pi = np.float32(np.pi)
    half = np.float32(0.5)
    two = np.float32(2.0)
    first_node = 0
    first_edge = 0
    for b in range(counts.shape[0]):
        n = counts[b]
        for i in range(n):
            a = first_node + i
            for j in range(i + 1, n):
                c = first_node + j
                deta = kin[c, 0] - kin[a, 0]
                dphi = kin[c, 1] - kin[a, 1]  # in (-2 pi, 2 pi): one shift wraps it
                if dphi >= pi:
                    dphi -= two_pi
                if dphi < -pi:
                    dphi += two_pi
                dr = np.float32(np.hypot(deta, dphi))
                sh = np.float32(np.sinh(half * (kin[c, 2] - kin[a, 2])))
                sn = np.float32(np.sin(half * dphi))
                m2 = kin[a, 3] * kin[c, 3] * sh * sh
                m2 += kin[a, 4] * kin[c, 4] * sn * sn
                m2 *= two
                m2 += kin[a, 4] * kin[c, 5] + kin[a, 5] * kin[c, 4] + kin[a, 5] * kin[c, 5]
                m2 *= two
                m2 += kin[a, 6] + kin[c, 6]
                lm = np.float32(np.log1p(np.sqrt(m2)))
                fwd = first_edge + i * (n - 1) + j - 1
                rev = first_edge + j * (n - 1) + i
                src[fwd] = a
                dst[fwd] = c
                attr[fwd, 0] = deta
                attr[fwd, 1] = dphi
                attr[fwd, 2] = dr
                attr[fwd, 3] = lm
                src[rev] = c
                dst[rev] = a
                attr[rev, 0] = -deta
                attr[rev, 1] = -pi if dphi == -pi else -dphi  # keep [-pi, pi): -(-pi) -> -pi
                attr[rev, 2] = dr
                attr[rev, 3] = lm
        first_node += n
        if n > 1:
            first_edge += n * (n - 1)
