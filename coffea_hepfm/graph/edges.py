"""Fully connected edges and their features, from flat node features and per-event node counts.

Event ``e`` with ``n`` nodes starting at global node id ``o`` owns ``n * (n - 1)`` edges, source-major:
for each source ``o + i`` the targets ``o + j``, ``j != i``, in increasing order. Events are grouped by
their node count (at most ``spec.max_nodes + 1`` groups), and each group is computed as dense
``[events, n * (n - 1)]`` arrays from per-``n`` index templates: no per-event loop, no ``ak.cartesian``,
and only contiguous gathers from ``[events, n]`` arrays.

The pair mass is computed without cancellation (all terms are non-negative), so float32 is enough::

    m^2 = m_i^2 + m_j^2 + 2 [2 mT_i mT_j sinh^2(dy/2) + 2 pT_i pT_j sin^2(dphi/2) + (mT_i mT_j - pT_i pT_j)]

with transverse mass ``mT = sqrt(m^2 + pT^2)`` and rapidity ``y``; ``mT_i mT_j - pT_i pT_j`` is expanded in
``d = mT - pT = m^2 / (mT + pT) >= 0``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from coffea_hepfm.graph.spec import NODE_FEATURES_V2

# Edges read only the kinematic columns (log_pt, eta, sin_phi, cos_phi, log_mass), which sit at the same
# positions in every graph spec version (tests/test_graph.py checks it): one edge code for v1 and v2.
_F = {name: i for i, name in enumerate(NODE_FEATURES_V2)}
N_EDGE_FEATURES = 4


def edge_counts(node_counts: np.ndarray) -> np.ndarray:
    """Edges per event, ``n * (n - 1)`` (0 for events with 0 or 1 node)."""
    n = np.asarray(node_counts, dtype=np.int64)
    return n * np.maximum(n - 1, 0)


@lru_cache(maxsize=256)
def _template(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Local (source, target) ids of the ``n * (n - 1)`` edges of an ``n``-node graph, source-major."""
    src = np.repeat(np.arange(n), n - 1)
    r = np.tile(np.arange(n - 1), n)
    dst = r + (r >= src)
    return src, dst


def _groups(node_counts: np.ndarray):
    """Yield ``(n, events with n nodes, their first node id [B_n, 1], their first edge id [B_n, 1])``."""
    n = np.asarray(node_counts, dtype=np.int64)
    node_start = np.cumsum(n) - n
    n_e = edge_counts(n)
    edge_start = np.cumsum(n_e) - n_e
    for k in np.unique(n):
        if k < 2:
            continue
        ev = np.flatnonzero(n == k)
        yield int(k), ev, node_start[ev, None], edge_start[ev, None]


def edge_index(node_counts: np.ndarray) -> np.ndarray:
    """``[2, E]`` int64 global (source, target) node ids of the fully connected graphs.

    Examples
    --------
    >>> edge_index(np.array([2, 0, 1, 3]))
    array([[0, 1, 3, 3, 4, 4, 5, 5],
           [1, 0, 4, 5, 3, 5, 3, 4]])
    >>> edge_index(np.array([], dtype=np.int64)).shape
    (2, 0)
    """
    out = np.empty((2, int(edge_counts(node_counts).sum())), dtype=np.int64)
    for n, _, n0, e0 in _groups(node_counts):
        src, dst = _template(n)
        dest = (e0 + np.arange(n * (n - 1))).ravel()
        out[0, dest] = (n0 + src).ravel()
        out[1, dest] = (n0 + dst).ravel()
    return out


_K = ("eta", "phi", "y", "mt", "pt", "d", "m2")


def _node_kinematics(x: np.ndarray) -> np.ndarray:
    """``[7, N]`` float32 per-node quantities ``_K`` the edge features need (rapidity via float64)."""
    pt = np.expm1(x[:, _F["log_pt"]].astype(np.float64))
    eta = x[:, _F["eta"]].astype(np.float64)
    m = np.expm1(x[:, _F["log_mass"]].astype(np.float64))
    mt = np.hypot(pt, m)
    safe = np.where(mt > 0, mt, 1.0)
    y = np.where(mt > 0, np.arcsinh(pt * np.sinh(eta) / safe), eta)
    d = np.where(mt > 0, m * m / (safe + pt), 0.0)
    phi = np.arctan2(x[:, _F["sin_phi"]], x[:, _F["cos_phi"]])
    return np.stack([eta, phi, y, mt, pt, d, m * m]).astype(np.float32)


@lru_cache(maxsize=256)
def _pairs(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Unordered pairs ``i < j`` of an ``n``-node graph and the local edge numbers of ``(i, j)``, ``(j, i)``."""
    i, j = np.triu_indices(n, k=1)
    return i, j, i * (n - 1) + j - 1, j * (n - 1) + i


def edge_attr(x: np.ndarray, node_counts: np.ndarray) -> np.ndarray:
    """``[E, 4]`` float32 edge features in :func:`edge_index` order.

    ``delta_eta = eta[target] - eta[source]``, ``delta_phi`` likewise, wrapped to ``[-pi, pi)``,
    ``delta_r = hypot(delta_eta, delta_phi)``, ``log_mass_pair = log1p(m(source + target))``. Each unordered
    pair is computed once: the reverse edge has negated deltas and the same delta_r and mass.
    """
    out = np.empty((int(edge_counts(node_counts).sum()), N_EDGE_FEATURES), dtype=np.float32)
    if len(out) == 0:
        return out
    kin = _node_kinematics(x)
    two_pi, pi, half = np.float32(2 * np.pi), np.float32(np.pi), np.float32(0.5)
    for n, _, n0, e0 in _groups(node_counts):
        i, j, fwd, rev = _pairs(n)
        # [7, B_n, n(n-1)/2] each, contiguous: sources i < targets j.
        eta_a, phi_a, y_a, mt_a, pt_a, d_a, m2_a = kin[:, n0 + i]
        eta_b, phi_b, y_b, mt_b, pt_b, d_b, m2_b = kin[:, n0 + j]
        deta = eta_b - eta_a
        dphi = phi_b - phi_a  # in (-2 pi, 2 pi): one shift wraps it
        dphi -= two_pi * (dphi >= pi)
        dphi += two_pi * (dphi < -pi)
        dr = np.hypot(deta, dphi)
        sh = np.sinh(half * (y_b - y_a))
        sn = np.sin(half * dphi)
        m2 = mt_a * mt_b * sh * sh
        m2 += pt_a * pt_b * sn * sn
        m2 *= 2
        m2 += pt_a * d_b + d_a * pt_b + d_a * d_b  # mT_a mT_b - pT_a pT_b, no cancellation
        m2 *= 2
        m2 += m2_a + m2_b
        lm = np.log1p(np.sqrt(m2, out=m2), out=m2)
        out[(e0 + fwd).ravel()] = np.stack([deta, dphi, dr, lm], axis=-1).reshape(-1, N_EDGE_FEATURES)
        np.negative(dphi, out=dphi)
        dphi[dphi == pi] = -pi  # keep [-pi, pi): -(-pi) -> -pi
        np.negative(deta, out=deta)
        out[(e0 + rev).ravel()] = np.stack([deta, dphi, dr, lm], axis=-1).reshape(-1, N_EDGE_FEATURES)
    return out
