r"""Tree-level matrix elements for ``g g -> t tbar phi`` and ``q qbar -> t tbar phi`` with a CP-mixed top Yukawa.

The scalar ``phi`` (m = 125 GeV) couples to the top quark through

.. math::

    \mathcal{L} = -\frac{m_t}{v}\, \bar t \left(\kappa \cos\alpha + i \tilde\kappa \sin\alpha\, \gamma_5\right) t\, \phi,

the Higgs Characterisation Lagrangian of Artoisenet et al., JHEP 11 (2013) 043 (arXiv:1306.6464) and
Demartin et al., EPJC 74 (2014) 3065 (arXiv:1407.5089), with the CP-odd coupling normalised like the
CP-even one (the same ``m_t / v``). ``alpha = 0`` is the Standard Model, ``alpha = 90 deg`` a pure
pseudoscalar.

Method (written for this project from the Feynman rules; no generator code is used)
--------------------------------------------------------------------------------------
Numerical Dirac algebra, vectorised over events (``numpy`` complex arrays of shape ``[N, 4, 4]``):

* ``g(p1) g(p2) -> t(k1) tbar(k2) phi(k3)``: the 8 tree diagrams, as in Kunszt, Nucl. Phys. B 247 (1984)
  339 (SM) and Gunion & He, Phys. Rev. Lett. 76 (1996) 4468 (CP-odd/mixed): ``phi`` radiated from each of
  the 3 propagator positions of ``t tbar g g`` for both gluon orderings (6), plus ``phi`` from the top or
  antitop line of ``g g -> g* -> t tbar`` (2). Colour decomposition
  ``M = (T^a T^b)_{ij} A_12 + (T^b T^a)_{ij} A_21`` (the triple-gluon diagrams split with
  ``f^{abc} T^c = -i [T^a, T^b]``); colour sum with the matrix ``[[16/3, -2/3], [-2/3, 16/3]]``.
  Each colour-ordered amplitude is gauge invariant on its own (tested to machine precision).
* ``q(p1) qbar(p2) -> g* -> t tbar phi``: 2 diagrams, colour factor ``Tr(T^a T^b) Tr(T^a T^b) = 2``.
* Top spins are summed with traces, ``sum |u-bar G v|^2 = Tr[(k1-slash + m) G (k2-slash - m) G-bar]``;
  gluon polarisations with two real vectors orthogonal to both beams (for each gluon a physical basis in
  the light-cone gauge of the other); the light-quark current tensor is ``2 s sum_l e_l^mu e_l^nu`` in the
  same basis.
* ``|M|^2`` is quadratic in ``(a, b) = (kappa cos alpha, kappa_tilde sin alpha)``; :func:`me2_components`
  returns the three coefficients once, so a whole grid of mixing angles costs one evaluation.

Conventions: metric (+, -, -, -), four-vectors ``[..., (E, px, py, pz)]`` in GeV, results averaged over
initial spins and colours (1/256 for gg, 1/36 for q qbar) and summed over final ones, in GeV^-2.
External tops must be on shell with the propagator mass (gauge invariance): use :func:`on_shell_tops` for
Breit-Wigner-smeared generator tops.

Examples
--------
>>> import numpy as np
>>> p = random_kinematics(3, 1000.0, np.random.default_rng(1))
>>> c = me2_components(*p, initial="gg")
>>> bool(np.all(c.even > 0) and np.all(c.odd > 0))
True
>>> w = c.me2(alpha_deg=0.0) / c.even   # alpha = 0, kappa = 1 is the CP-even coefficient itself
>>> np.allclose(w, 1.0)
True
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Literal

import numpy as np

M_TOP = 172.5  # GeV; Pythia 8's default 6:m0
VEV = 246.22  # GeV; (sqrt(2) G_F)^(-1/2)

_METRIC = np.array([1.0, -1.0, -1.0, -1.0])
# Dirac representation.
_S = [np.array([[0, 1], [1, 0]]), np.array([[0, -1j], [1j, 0]]), np.array([[1, 0], [0, -1]])]
_Z2, _I2 = np.zeros((2, 2)), np.eye(2)
GAMMA = np.array(
    [np.block([[_I2, _Z2], [_Z2, -_I2]])] + [np.block([[_Z2, s], [-s, _Z2]]) for s in _S], dtype=complex
)
GAMMA5 = 1j * GAMMA[0] @ GAMMA[1] @ GAMMA[2] @ GAMMA[3]
_ONE = np.eye(4, dtype=complex)
# Yukawa vertex structures: CP-even 1 and CP-odd i gamma5.
_Y = {"even": _ONE, "odd": 1j * GAMMA5}
# sum over colours of (T^a T^b)_{ij} (T^c T^d)*_{ij} for the orderings (ab, ba): N C_F^2 and -C_F/2.
_COLOUR_GG = np.array([[16.0 / 3.0, -2.0 / 3.0], [-2.0 / 3.0, 16.0 / 3.0]])
_LEVI = np.zeros((4, 4, 4, 4))
for _p in itertools.permutations(range(4)):
    _LEVI[_p] = np.linalg.det(np.eye(4)[list(_p)])


def mdot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Minkowski product of ``[..., 4]`` arrays."""
    return a[..., 0] * b[..., 0] - np.sum(a[..., 1:] * b[..., 1:], axis=-1)


def slash(p: np.ndarray) -> np.ndarray:
    """``gamma^mu p_mu`` for ``p`` of shape ``[N, 4]`` -> ``[N, 4, 4]``."""
    return np.einsum("nm,mab->nab", p * _METRIC, GAMMA)


def _bar(g: np.ndarray) -> np.ndarray:
    """Dirac adjoint ``gamma0 G^dagger gamma0``."""
    return GAMMA[0] @ np.conj(np.swapaxes(g, -1, -2)) @ GAMMA[0]


def _prop(q: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Fermion propagator numerator over denominator, ``(q-slash + m) / (q^2 - m^2)`` (factors of i dropped)."""
    return (slash(q) + m[:, None, None] * _ONE) / (mdot(q, q) - m**2)[:, None, None]


def _spin_trace(k1m: np.ndarray, k2m: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``sum_spins (u-bar A v)(u-bar B v)^* = Tr[(k1-slash + m) A (k2-slash - m) B-bar]``."""
    return np.einsum("nab,nba->n", k1m @ a @ k2m, _bar(b))


def transverse_basis(p1: np.ndarray, p2: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two real unit space-like vectors orthogonal to ``p1``, ``p2`` and to each other.

    ``ref`` fixes the azimuth of the first one (any vector not in the ``p1``-``p2`` plane); spin sums do
    not depend on it.
    """
    p12 = mdot(p1, p2)[:, None]
    e1 = ref - mdot(ref, p2)[:, None] / p12 * p1 - mdot(ref, p1)[:, None] / p12 * p2
    e1 = e1 / np.sqrt(-mdot(e1, e1))[:, None]
    e2 = np.einsum("mnrs,in,ir,is->im", _LEVI, p1 * _METRIC, p2 * _METRIC, e1 * _METRIC)
    return e1, e2 / np.sqrt(-mdot(e2, e2))[:, None]


def _gg_orderings(p1, p2, k1, k2, k3, m, e1, e2, y):
    """Colour-ordered amplitudes ``(A_12, A_21)`` as Dirac matrices between u-bar(k1) and v(k2).

    ``e1``/``e2``: gluon polarisation vectors (or momenta, for the Ward identity); ``y``: Yukawa structure.
    Common factor ``-i g_s^2 m_t/v`` dropped.
    """
    p_a, p_end = _prop(k1 + k3, m), _prop(-k2 - k3, m)
    s12 = mdot(p1 + p2, p1 + p2)[:, None]
    # Three-gluon vertex contracted with e1, e2 (all momenta incoming; no transversality assumed).
    cur = (
        mdot(e1, e2)[:, None] * (p1 - p2)
        + mdot(p1 + 2 * p2, e1)[:, None] * e2
        - mdot(2 * p1 + p2, e2)[:, None] * e1
    ) / s12
    jsl = slash(cur)
    triple = y @ p_a @ jsl + jsl @ p_end @ y
    out = []
    for qa, ea, eb in ((p1, e1, e2), (p2, e2, e1)):
        sa, sb = slash(ea), slash(eb)
        x1 = sa @ _prop(k1 - qa, m)  # gluon a next to the top
        r1 = _prop(k1 + k3 - qa, m) @ sb
        abelian = (y @ p_a @ sa + x1 @ y) @ r1 + x1 @ sb @ p_end @ y
        out.append(abelian)
    return out[0] + triple, out[1] - triple


def _qq_current(k1, k2, k3, m, e, y):
    """``q qbar -> g* -> t tbar phi`` with the gluon current ``e`` (common factors dropped)."""
    se = slash(e)
    return y @ _prop(k1 + k3, m) @ se + se @ _prop(-k2 - k3, m) @ y


@dataclass(frozen=True)
class ME2Components:
    """``|M|^2 = a^2 even + b^2 odd + a b interference`` with ``a = kappa cos(alpha)``,
    ``b = kappa_tilde sin(alpha)``; arrays over events (GeV^-2)."""

    even: np.ndarray
    odd: np.ndarray
    interference: np.ndarray

    def me2(self, alpha_deg, kappa: float = 1.0, kappa_tilde: float = 1.0) -> np.ndarray:
        """``|M|^2`` at mixing angle(s) ``alpha_deg`` (scalar -> ``[N]``, ``[K]`` -> ``[K, N]``)."""
        alpha = np.deg2rad(np.asarray(alpha_deg, dtype=float))[..., None]
        a, b = kappa * np.cos(alpha), kappa_tilde * np.sin(alpha)
        return a**2 * self.even + b**2 * self.odd + a * b * self.interference


def _colour_summed(k1m, k2m, amps: dict, colour: np.ndarray) -> dict:
    """``sum_ij C_ij Tr[(k1+m) A_i^x (k2-m) A_j^y-bar]`` for (x, y) in (even, even), (odd, odd), (even, odd)."""
    out = {}
    for key, (x, y) in {"ee": ("even", "even"), "oo": ("odd", "odd"), "eo": ("even", "odd")}.items():
        out[key] = sum(
            colour[i, j] * _spin_trace(k1m, k2m, amps[x][i], amps[y][j])
            for i in range(len(amps[x]))
            for j in range(len(amps[y]))
        )
    return out


def _gg_sum(p1, p2, k1, k2, k3, m, basis) -> dict:
    """Polarisation-, spin- and colour-summed coefficients for ``g g`` (common factors dropped)."""
    k1m, k2m = slash(k1) + m[:, None, None] * _ONE, slash(k2) - m[:, None, None] * _ONE
    acc = {"ee": 0.0, "oo": 0.0, "eo": 0.0}
    for ea in basis:
        for eb in basis:
            amps = {y: _gg_orderings(p1, p2, k1, k2, k3, m, ea, eb, _Y[y]) for y in _Y}
            for key, val in _colour_summed(k1m, k2m, amps, _COLOUR_GG).items():
                acc[key] = acc[key] + val
    return acc


def _qq_sum(p1, p2, k1, k2, k3, m, basis) -> dict:
    """Spin- and colour-summed coefficients for ``q qbar``: light-quark tensor ``2 s sum_l e_l e_l``, colour 2."""
    k1m, k2m = slash(k1) + m[:, None, None] * _ONE, slash(k2) - m[:, None, None] * _ONE
    s = mdot(p1 + p2, p1 + p2)
    acc = {"ee": 0.0, "oo": 0.0, "eo": 0.0}
    for e in basis:
        amps = {y: [_qq_current(k1, k2, k3, m, e, _Y[y])] for y in _Y}
        for key, val in _colour_summed(k1m, k2m, amps, np.array([[2.0]])).items():
            acc[key] = acc[key] + val * 2.0 / s
    return acc


def me2_components(
    p1: np.ndarray,
    p2: np.ndarray,
    k1: np.ndarray,
    k2: np.ndarray,
    k3: np.ndarray,
    initial: Literal["gg", "qq"] | np.ndarray = "gg",
    m_top: float | np.ndarray = M_TOP,
    alpha_s: float = 0.118,
    vev: float = VEV,
    ref: np.ndarray | None = None,
) -> ME2Components:
    r"""Spin- and colour-summed (initial-state averaged) ``|M|^2`` coefficients for ``t tbar phi``.

    Parameters
    ----------
    p1, p2
        Incoming parton momenta ``[N, 4]`` (massless). For ``q qbar`` either beam may hold the quark.
    k1, k2, k3
        Outgoing top, antitop and scalar momenta ``[N, 4]``; ``k1^2 = k2^2 = m_top^2`` (on shell).
    initial
        ``"gg"``, ``"qq"`` or a boolean array (True = gg) to mix both in one call.
    m_top
        Top mass in the propagators and spin sums (scalar or ``[N]``); the Yukawa is ``M_TOP / vev``.
    alpha_s, vev
        Couplings of the absolute normalisation (ratios of ``|M|^2`` do not depend on them).
    ref
        Reference vector for the polarisation basis (default ``k1``); the result does not depend on it.

    Returns
    -------
    ME2Components
        ``even`` (``alpha = 0``), ``odd`` (``alpha = 90 deg``), ``interference`` (zero up to rounding:
        without top spins there is no CP-odd correlation at this order).
    """
    p1, p2, k1, k2, k3 = (np.asarray(v, dtype=float) for v in (p1, p2, k1, k2, k3))
    n = len(p1)
    m = np.broadcast_to(np.asarray(m_top, dtype=float), (n,)).copy()
    if isinstance(initial, str):
        if initial not in ("gg", "qq"):
            raise ValueError(f"initial must be 'gg', 'qq' or a boolean array, got {initial!r}")
        is_gg = np.full(n, initial == "gg")
    else:
        is_gg = np.asarray(initial, dtype=bool)
    basis = transverse_basis(p1, p2, k1 if ref is None else np.asarray(ref, dtype=float))
    # g_s^4 (m_t/v)^2 and the initial-state averages: 1/(4 * 64) for gg, 1/(4 * 9) for q qbar.
    coupling = (4 * np.pi * alpha_s) ** 2 * (M_TOP / vev) ** 2
    res = {key: np.zeros(n) for key in ("ee", "oo", "eo")}
    for sel, func, average in ((is_gg, _gg_sum, 256.0), (~is_gg, _qq_sum, 36.0)):
        idx = np.flatnonzero(sel)
        if idx.size:
            vecs = [v[idx] for v in (p1, p2, k1, k2, k3)]
            acc = func(*vecs, m[idx], [b[idx] for b in basis])
            for key in res:
                res[key][idx] = np.real(acc[key]) * coupling / average
    return ME2Components(res["ee"], res["oo"], 2.0 * res["eo"])


def boost(p: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """Lorentz boost of ``p`` ``[N, 4]`` by velocity ``beta`` ``[N, 3]`` (|beta| < 1)."""
    b2 = np.sum(beta**2, axis=-1)
    gamma = 1.0 / np.sqrt(1.0 - b2)
    bp = np.sum(beta * p[:, 1:], axis=-1)
    g2 = np.where(b2 > 0, (gamma - 1.0) / np.where(b2 > 0, b2, 1.0), 0.0)
    space = p[:, 1:] + (g2 * bp + gamma * p[:, 0])[:, None] * beta
    return np.concatenate([(gamma * (p[:, 0] + bp))[:, None], space], axis=1)


def on_shell_tops(
    k1: np.ndarray, k2: np.ndarray, m_top: float = M_TOP
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Put Breit-Wigner-smeared tops on a common mass shell, keeping ``k1 + k2`` and the decay axis.

    In the ``t tbar`` rest frame the two momenta are rescaled to ``|p| = sqrt(M^2/4 - m^2)``. Returns
    ``(k1', k2', m)`` with ``m = m_top``, or ``M/2`` for the rare events with ``M_tt < 2 m_top``.

    >>> k1 = np.array([[200.0, 0, 0, 50.0]]); k2 = np.array([[300.0, 0, 0, -60.0]])
    >>> a, b, m = on_shell_tops(k1, k2)
    >>> bool(np.allclose(a + b, k1 + k2) and np.allclose(mdot(a, a), m**2))
    True
    """
    q = k1 + k2
    mq = np.sqrt(np.maximum(mdot(q, q), 0.0))
    m = np.minimum(m_top, 0.5 * mq * (1.0 - 1e-12))
    beta = q[:, 1:] / q[:, :1]
    rest = boost(k1, -beta)
    direction = rest[:, 1:] / np.maximum(np.linalg.norm(rest[:, 1:], axis=1), 1e-300)[:, None]
    pmag = np.sqrt(np.maximum(0.25 * mq**2 - m**2, 0.0))
    new = np.concatenate([(0.5 * mq)[:, None], pmag[:, None] * direction], axis=1)
    a = boost(new, beta)
    return a, q - a, m


def random_kinematics(
    n: int, sqrt_s: float, rng: np.random.Generator, m_top: float = M_TOP, m_phi: float = 125.0
) -> tuple[np.ndarray, ...]:
    """On-shell ``(p1, p2, k1, k2, k3)`` in the partonic rest frame (beams along z), for tests.

    Not a phase-space generator with weights: ``M_tt`` is uniform, both two-body decays isotropic.
    """
    half = 0.5 * sqrt_s
    p1 = np.tile([half, 0.0, 0.0, half], (n, 1))
    p2 = np.tile([half, 0.0, 0.0, -half], (n, 1))
    mtt = rng.uniform(2 * m_top, sqrt_s - m_phi, n)

    def two_body(mass, ma, mb):
        p = np.sqrt((mass**2 - (ma + mb) ** 2) * (mass**2 - (ma - mb) ** 2)) / (2 * mass)
        cos, phi = rng.uniform(-1, 1, n), rng.uniform(0, 2 * np.pi, n)
        sin = np.sqrt(1 - cos**2)
        d = np.stack([sin * np.cos(phi), sin * np.sin(phi), cos], axis=1) * p[:, None]
        ea, eb = np.sqrt(p**2 + ma**2), np.sqrt(p**2 + mb**2)
        return np.concatenate([ea[:, None], d], 1), np.concatenate([eb[:, None], -d], 1)

    qtt, k3 = two_body(np.full(n, sqrt_s), mtt, m_phi)
    r1, r2 = two_body(mtt, m_top, m_top)
    beta = qtt[:, 1:] / qtt[:, :1]
    return p1, p2, boost(r1, beta), boost(r2, beta), k3
