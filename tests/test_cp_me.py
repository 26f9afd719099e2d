"""The t tbar phi matrix element with a CP-mixed top Yukawa: gauge, Lorentz and Bose symmetry, normalisation.

Pure numpy (no generator): every check here is exact up to rounding, except the soft-scalar limit, which
holds to O(|k_phi| / m_t).
"""

from __future__ import annotations

import numpy as np
import pytest

from coffea_hepfm.simulation import ttphi_me as me


def _kin(n=6, sqrt_s=1500.0, seed=1):
    return me.random_kinematics(n, sqrt_s, np.random.default_rng(seed))


def _rotation_boost(vecs, rng):
    """The same random rotation and boost (|beta| up to 0.9) applied to every momentum."""
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    beta = rng.normal(size=3)
    beta *= 0.9 * rng.uniform() / np.linalg.norm(beta)
    out = []
    for v in vecs:
        w = v.copy()
        w[:, 1:] = v[:, 1:] @ q.T
        out.append(me.boost(w, np.tile(beta, (len(v), 1))))
    return out


@pytest.mark.parametrize("sqrt_s", [500.0, 1500.0, 6000.0])
@pytest.mark.parametrize("yukawa", ["even", "odd"])
def test_gauge_invariance_of_each_colour_ordered_amplitude(sqrt_s, yukawa):
    """Replacing one gluon polarisation by its (unit-energy) momentum gives 0 in A_12 and in A_21 alone."""
    p1, p2, k1, k2, k3 = _kin(sqrt_s=sqrt_s)
    m = np.full(len(p1), me.M_TOP)
    e1, e2 = me.transverse_basis(p1, p2, k1)
    k1m = me.slash(k1) + m[:, None, None] * me._ONE
    k2m = me.slash(k2) - m[:, None, None] * me._ONE
    y = me._Y[yukawa]

    def size(amp):
        return me._spin_trace(k1m, k2m, amp, amp).real

    physical = me._gg_orderings(p1, p2, k1, k2, k3, m, e1, e2, y)
    ward_1 = me._gg_orderings(p1, p2, k1, k2, k3, m, p1 / p1[:, :1], e2, y)
    ward_2 = me._gg_orderings(p1, p2, k1, k2, k3, m, e1, p2 / p2[:, :1], y)
    for phys, w1, w2 in zip(physical, ward_1, ward_2, strict=True):
        scale = size(phys)
        assert np.all(scale > 0)
        assert np.max(np.abs(size(w1)) / scale) < 1e-12
        assert np.max(np.abs(size(w2)) / scale) < 1e-12
    # The test can fail: with the triple-gluon diagrams' sign flipped, the Ward identity is violated.
    w1 = p1 / p1[:, :1]
    cur = (
        me.mdot(w1, e2)[:, None] * (p1 - p2)
        + me.mdot(p1 + 2 * p2, w1)[:, None] * e2
        - me.mdot(2 * p1 + p2, e2)[:, None] * w1
    ) / me.mdot(p1 + p2, p1 + p2)[:, None]
    jsl = me.slash(cur)
    triple = y @ me._prop(k1 + k3, m) @ jsl + jsl @ me._prop(-k2 - k3, m) @ y
    assert np.min(size(ward_1[0] - 2 * triple) / size(physical[0])) > 1e-4


@pytest.mark.parametrize("initial", ["gg", "qq"])
def test_lorentz_invariance_and_reference_independence(initial):
    rng = np.random.default_rng(5)
    vecs = _kin(n=8, sqrt_s=2000.0, seed=2)
    ref = me.me2_components(*vecs, initial=initial)
    for _ in range(3):
        moved = me.me2_components(*_rotation_boost(vecs, rng), initial=initial)
        np.testing.assert_allclose(moved.even, ref.even, rtol=1e-9)
        np.testing.assert_allclose(moved.odd, ref.odd, rtol=1e-9)
    other = me.me2_components(*vecs, initial=initial, ref=vecs[4])  # polarisation basis from k_phi
    np.testing.assert_allclose(other.even, ref.even, rtol=1e-11)
    np.testing.assert_allclose(other.odd, ref.odd, rtol=1e-11)


@pytest.mark.parametrize("initial", ["gg", "qq"])
def test_beam_swap_symmetry_and_no_interference(initial):
    """Bose symmetry (gg) / q <-> qbar beam swap; the CP-even/odd interference vanishes without top spins."""
    p1, p2, k1, k2, k3 = _kin(n=8, seed=3)
    a = me.me2_components(p1, p2, k1, k2, k3, initial=initial)
    b = me.me2_components(p2, p1, k1, k2, k3, initial=initial)
    np.testing.assert_allclose(b.even, a.even, rtol=1e-11)
    np.testing.assert_allclose(b.odd, a.odd, rtol=1e-11)
    assert np.max(np.abs(a.interference) / a.even) < 1e-10
    np.testing.assert_allclose(a.me2(45.0), 0.5 * (a.even + a.odd), rtol=1e-12)
    assert a.me2([0.0, 90.0]).shape == (2, 8)


def test_soft_scalar_limit_matches_textbook_tt_production():
    """k_phi -> 0: |M|^2 -> (m_t y)^2 (1/k1.k + 1/k2.k)^2 |M(ij -> t tbar)|^2 (CP-even); CP-odd -> 0.

    |M(gg -> tt)|^2 and |M(qq -> tt)|^2 averaged: Combridge, Nucl. Phys. B 151 (1979) 429 (PDG QCD review,
    eq. for heavy-quark production): g^4 (1/(6 t1 t2) - 3/8)(t1^2 + t2^2 + rho - rho^2/(4 t1 t2)) and
    g^4 (4/9)(t1^2 + t2^2 + rho/2), t_i = 2 p_i.k1 / s, rho = 4 m^2 / s.
    """
    rng = np.random.default_rng(4)
    n, rs, m, eps = 5, 1000.0, me.M_TOP, 1e-3
    p1 = np.tile([rs / 2, 0, 0, rs / 2], (n, 1))
    p2 = np.tile([rs / 2, 0, 0, -rs / 2], (n, 1))
    d = rng.normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1)[:, None]
    k3 = np.concatenate([np.full((n, 1), np.sqrt(2) * eps), eps * d], 1)  # m_phi = eps
    q = p1 + p2 - k3
    mq = np.sqrt(me.mdot(q, q))
    d2 = rng.normal(size=(n, 3))
    d2 /= np.linalg.norm(d2, axis=1)[:, None]
    rest = np.concatenate([(mq / 2)[:, None], np.sqrt(mq**2 / 4 - m**2)[:, None] * d2], 1)
    k1 = me.boost(rest, q[:, 1:] / q[:, :1])
    k2 = q - k1
    s = rs**2
    t1, t2, rho = 2 * me.mdot(p1, k1) / s, 2 * me.mdot(p2, k1) / s, 4 * m * m / s
    g4 = (4 * np.pi * 0.118) ** 2
    born = {
        "gg": g4 * (1 / (6 * t1 * t2) - 3 / 8) * (t1**2 + t2**2 + rho - rho**2 / (4 * t1 * t2)),
        "qq": g4 * (4 / 9) * (t1**2 + t2**2 + rho / 2),
    }
    soft = (me.M_TOP / me.VEV) ** 2 * m**2 * (1 / me.mdot(k1, k3) + 1 / me.mdot(k2, k3)) ** 2
    for initial, b in born.items():
        c = me.me2_components(p1, p2, k1, k2, k3, initial=initial)
        np.testing.assert_allclose(c.even / (soft * b), 1.0, atol=1e-4)
        assert np.all(c.odd / c.even < 1e-9)


def test_on_shell_tops_keeps_the_pair_and_handles_threshold():
    k1 = np.array([[300.0, 50.0, 20.0, 200.0], [172.0, 0.0, 0.0, 30.0]])
    k2 = np.array([[260.0, -40.0, 10.0, -150.0], [168.0, 0.0, 0.0, -30.0]])  # 2nd pair: M_tt < 2 m_t
    a, b, m = me.on_shell_tops(k1, k2)
    np.testing.assert_allclose(a + b, k1 + k2, atol=1e-9)
    np.testing.assert_allclose(me.mdot(a, a), m**2, rtol=1e-9)
    np.testing.assert_allclose(me.mdot(b, b), m**2, rtol=1e-9)
    assert m[0] == me.M_TOP and m[1] < me.M_TOP


def test_bad_initial_state_is_an_error():
    with pytest.raises(ValueError, match="initial must be"):
        me.me2_components(*_kin(n=2), initial="qg")


def test_chiral_limit_scalar_equals_pseudoscalar():
    """With a light quark in the loop-free tree (fixed Yukawa), gamma5 anticommutes through the massless
    chain: |M(CP-odd)|^2 -> |M(CP-even)|^2 up to O(m^2 / s)."""
    p1, p2, k1, k2, k3 = me.random_kinematics(6, 3000.0, np.random.default_rng(7), m_top=0.5)
    for initial in ("gg", "qq"):
        c = me.me2_components(p1, p2, k1, k2, k3, initial=initial, m_top=0.5)
        np.testing.assert_allclose(c.odd / c.even, 1.0, atol=1e-3)
