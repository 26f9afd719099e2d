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
    "add_rows",
    "available",
    "bias_act",
    "bias_relu_layer_norm",
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
