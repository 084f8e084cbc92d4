"""Lorentz-model ops against a 50-digit mpmath reference, geoopt, autograd and invariances."""

import math

import geoopt
import mpmath
import pytest
import torch

from geolayers.hyperbolic import lorentz as L
from geolayers.hyperbolic import poincare as P
from tests.hyperbolic.precision import CURVATURES, TOL, ball_points, mp_norm, mp_vec, rel_err

# The far half of the test points lies at Poincare norm (1 - EDGE)/sqrt(c), as in the ball
# tests: x_0 is about 1e5 (float64) and 1e3 (float32) there.


# ----------------------------------------------------------------- 50-digit reference (mpmath)
def mp_on_manifold(t, c):
    """Exact point with the space part of the float row t (x_0 recomputed at 50 digits):
    the space part carries the degrees of freedom (MERU's parametrisation)."""
    space = [mpmath.mpf(float(v)) for v in t.double().tolist()[1:]]
    return [mpmath.sqrt(1 / c + mpmath.fsum(s * s for s in space))] + space


def mp_tangent(x, t):
    """Exact tangent vector at the exact point x with the space part of the float row t."""
    space = [mpmath.mpf(float(v)) for v in t.double().tolist()[1:]]
    return [mpmath.fsum(a * b for a, b in zip(x[1:], space, strict=True)) / x[0]] + space


def mdot(a, b):
    return -a[0] * b[0] + mpmath.fsum(u * v for u, v in zip(a[1:], b[1:], strict=True))


def ref_dist(x, y, c):
    return mpmath.acosh(-c * mdot(x, y)) / mpmath.sqrt(c)


def ref_expmap(x, v, c):
    n = mpmath.sqrt(max(mdot(v, v), 0))
    t = mpmath.sqrt(c) * n
    s = mpmath.sinh(t) / t if t else mpmath.mpf(1)
    return [mpmath.cosh(t) * a + s * b for a, b in zip(x, v, strict=True)]


def ref_logmap(x, y, c):
    d = ref_dist(x, y, c)
    u = [b + c * mdot(x, y) * a for a, b in zip(x, y, strict=True)]
    n = mpmath.sqrt(mdot(u, u))
    return [d * w / n for w in u]


def ref_logmap0(y, c):
    d = mpmath.acosh(mpmath.sqrt(c) * y[0]) / mpmath.sqrt(c)
    n = mp_norm(y[1:])
    return [mpmath.mpf(0)] + [d * w / n for w in y[1:]]


def points(n, d, dtype, c, seed, edge=True):
    """Lorentz images (computed in float64) of random Poincare points, half near the boundary."""
    return P.poincare_to_lorentz(ball_points(n, d, dtype, c, seed, edge), c).to(dtype)


def tangent(x, c, seed, scale=0.5):
    g = torch.Generator().manual_seed(seed)
    u = scale * torch.randn(x.shape, generator=g, dtype=torch.float64).to(x.dtype)
    u = u / (1 + c * x[..., :1].abs())  # keep exp(x, v) within float range near the boundary
    return u + c * L.minkowski_dot(x, u, keepdim=True) * x  # projection onto T_x


# ----------------------------------------------------------------- precision
@pytest.mark.parametrize("c", CURVATURES)
def test_dist_and_pairwise_dist_match_mpmath(dtype, c):
    cm = mpmath.mpf(c)
    x, y = points(10, 4, dtype, c, 0), points(8, 4, dtype, c, 1)
    X, Y = [mp_on_manifold(r, cm) for r in x], [mp_on_manifold(r, cm) for r in y]
    out = L.dist(x[:8], y.flip(0), c)
    assert (
        rel_err(out.tolist(), [ref_dist(a, b, cm) for a, b in zip(X[:8], Y[::-1], strict=True)])
        < TOL[dtype]
    )
    pw = L.pairwise_dist(x, y, c)
    assert pw.shape == (10, 8) and pw.dtype == dtype
    assert rel_err(pw.flatten().tolist(), [ref_dist(a, b, cm) for a in X for b in Y]) < TOL[dtype]


@pytest.mark.parametrize("c", CURVATURES)
def test_exp_log_maps_match_mpmath(dtype, c):
    cm = mpmath.mpf(c)
    y = points(10, 3, dtype, c, 2)
    Y = [mp_on_manifold(r, cm) for r in y]
    v0 = L.logmap0(y, c)
    assert rel_err(v0.tolist(), [ref_logmap0(a, cm) for a in Y]) < TOL[dtype]
    origin = [1 / mpmath.sqrt(cm)] + [mpmath.mpf(0)] * 3
    ref = [ref_expmap(origin, mp_vec(r), cm) for r in v0]
    assert rel_err(L.expmap0(v0, c).tolist(), ref) < TOL[dtype]
    x = points(10, 3, dtype, c, 3).flip(0)
    X = [mp_on_manifold(r, cm) for r in x]
    assert (
        rel_err(
            L.logmap(x, y, c).tolist(), [ref_logmap(a, b, cm) for a, b in zip(X, Y, strict=True)]
        )
        < TOL[dtype]
    )
    v = tangent(x, c, 4)
    ref = [ref_expmap(a, mp_tangent(a, r), cm) for a, r in zip(X, v, strict=True)]
    assert rel_err(L.expmap(x, v, c).tolist(), ref) < TOL[dtype]


# ----------------------------------------------------------------- round trips, geoopt, models
@pytest.mark.parametrize("c", CURVATURES)
def test_round_trips_and_manifold(dtype, c):
    tol = 10 * TOL[dtype]
    x, y = points(12, 4, dtype, c, 5, edge=False), points(12, 4, dtype, c, 6, edge=False)
    torch.testing.assert_close(L.expmap0(L.logmap0(x, c), c), x, rtol=tol, atol=tol)
    torch.testing.assert_close(L.expmap(x, L.logmap(x, y, c), c), y, rtol=tol, atol=tol)
    torch.testing.assert_close(
        L.minkowski_dot(x, x), torch.full((12,), -1 / c, dtype=dtype), rtol=tol, atol=tol
    )
    v = L.logmap(x, y, c)
    torch.testing.assert_close(
        L.minkowski_dot(x, v), torch.zeros(12, dtype=dtype), rtol=0, atol=tol * 10
    )
    torch.testing.assert_close(
        L.project(x + torch.tensor([5.0] + [0.0] * 4, dtype=dtype), c), x, rtol=tol, atol=tol
    )


@pytest.mark.parametrize("c", CURVATURES)
def test_agrees_with_geoopt(c):
    # geoopt's Lorentz(k) is the hyperboloid <x, x>_L = -k, i.e. k = 1/c, time coordinate first.
    hyp = geoopt.Lorentz(k=torch.tensor(1 / c, dtype=torch.float64))
    x, y = (
        points(16, 4, torch.float64, c, 7, edge=False),
        points(16, 4, torch.float64, c, 8, edge=False),
    )
    v = tangent(x, c, 9)
    v0 = L.logmap0(y, c)
    close = lambda a, b: torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)  # noqa: E731
    close(L.dist(x, y, c), hyp.dist(x, y))
    close(L.expmap0(v0, c), hyp.expmap0(v0))
    close(L.logmap0(y, c), hyp.logmap0(y))
    close(L.expmap(x, v, c), hyp.expmap(x, v))
    close(L.logmap(x, y, c), hyp.logmap(x, y))
    close(L.parallel_transport(x, y, v, c), hyp.transp(x, y, v))
    close(L.minkowski_dot(x, v), hyp.inner(x, x, v))


@pytest.mark.parametrize("c", CURVATURES)
def test_agrees_with_the_poincare_ball(dtype, c):
    tol = 10 * TOL[dtype]
    x, y = points(9, 3, dtype, c, 10), points(9, 3, dtype, c, 11)
    px, py = P.lorentz_to_poincare(x, c), P.lorentz_to_poincare(y, c)
    torch.testing.assert_close(L.dist(x, y, c), P.dist(px, py, c), rtol=tol, atol=0)
    # The Lorentz centroid is the Einstein midpoint, seen in the Klein model.
    w = torch.rand(2, 9, generator=torch.Generator().manual_seed(12), dtype=torch.float64).to(dtype)
    inner = torch.stack([points(9, 3, dtype, c, 13, edge=False), x])
    cen = L.centroid(inner, c, weights=w)
    mid = P.einstein_midpoint(P.lorentz_to_poincare(inner, c), c, weights=w)
    torch.testing.assert_close(P.lorentz_to_poincare(cen, c), mid, rtol=tol, atol=tol)


def test_centroid_of_two_points_is_the_geodesic_midpoint():
    x, y = points(2, 3, torch.float64, 1.0, 14, edge=False)
    m = L.centroid(torch.stack([x, y]))
    torch.testing.assert_close(L.dist(x, m), L.dist(m, y), rtol=1e-10, atol=0)
    torch.testing.assert_close(2 * L.dist(x, m), L.dist(x, y), rtol=1e-10, atol=0)
    torch.testing.assert_close(L.minkowski_dot(m, m), torch.tensor(-1.0, dtype=torch.float64))


def test_parallel_transport_preserves_the_metric(dtype):
    x, y = points(8, 3, dtype, 0.3, 15, edge=False), points(8, 3, dtype, 0.3, 16, edge=False)
    u, v = tangent(x, 0.3, 17), tangent(x, 0.3, 18)
    pu, pv = L.parallel_transport(x, y, u, 0.3), L.parallel_transport(x, y, v, 0.3)
    tol = 10 * TOL[dtype]
    torch.testing.assert_close(L.minkowski_dot(pu, pv), L.minkowski_dot(u, v), rtol=tol, atol=tol)
    torch.testing.assert_close(
        L.minkowski_dot(y, pu), torch.zeros(8, dtype=dtype), rtol=0, atol=tol
    )


# ----------------------------------------------------------------- finiteness and gradients
def _all_ops(x, y, v, c):
    return [
        L.minkowski_dot(x, y),
        L.expmap0(L.logmap0(y, c), c),
        L.logmap0(y, c),
        L.expmap(x, v, c),
        L.logmap(x, y, c),
        L.dist(x, y, c),
        L.pairwise_dist(x, y, c),
        L.parallel_transport(x, y, v, c),
        L.project(x, c),
        L.centroid(torch.stack([x, y], -2), c),
    ]


@pytest.mark.parametrize("case", ["origin", "x_eq_y", "y_origin", "edge", "edge_x_eq_y"])
def test_values_and_gradients_are_finite(dtype, case):
    base = points(6, 3, dtype, 1.0, 19)
    origin = L.expmap0(torch.zeros(6, 4, dtype=dtype))
    zero = torch.zeros(6, 4, dtype=dtype)
    x, y, v = {
        "origin": (origin, origin, zero),
        "x_eq_y": (base, base, zero),
        "y_origin": (base, origin, tangent(base, 1.0, 20)),
        "edge": (base, base.flip(0), tangent(base, 1.0, 21)),
        "edge_x_eq_y": (base[3:], base[3:], tangent(base[3:], 1.0, 22)),
    }[case]
    x, y, v = (t.clone().requires_grad_() for t in (x, y, v))
    c = torch.tensor(1.0, dtype=dtype, requires_grad=True)
    for i, out in enumerate(_all_ops(x, y, v, c)):
        assert torch.isfinite(out).all(), f"op {i} value"
        for g in torch.autograd.grad(out.sum(), (x, y, v, c), allow_unused=True):
            assert g is None or torch.isfinite(g).all(), f"op {i} gradient"


def test_gradcheck():
    x = points(4, 3, torch.float64, 0.7, 23, edge=False).requires_grad_()
    y = points(4, 3, torch.float64, 0.7, 24, edge=False).requires_grad_()
    v = tangent(x.detach(), 0.7, 25).requires_grad_()
    c = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    checks = {
        "expmap0": (lambda v, c: L.expmap0(v, c), (v, c)),
        "logmap0": (lambda y, c: L.logmap0(y, c), (y, c)),
        "expmap": (lambda x, v, c: L.expmap(x, v, c), (x, v, c)),
        "logmap": (lambda x, y, c: L.logmap(x, y, c), (x, y, c)),
        "dist": (lambda x, y, c: L.dist(x, y, c), (x, y, c)),
        "pairwise_dist": (lambda x, y, c: L.pairwise_dist(x, y, c), (x, y, c)),
        "transport": (lambda x, y, v, c: L.parallel_transport(x, y, v, c), (x, y, v, c)),
        "centroid": (lambda x, c: L.centroid(x, c), (x, c)),
        "project": (lambda x, c: L.project(x, c), (x, c)),
    }
    for name, (fn, args) in checks.items():
        assert torch.autograd.gradcheck(fn, args), name


def test_learnable_curvature_gets_a_gradient():
    c = torch.nn.Parameter(torch.tensor(0.5, dtype=torch.float64))
    v = torch.nn.functional.pad(torch.randn(5, 3, dtype=torch.float64), (1, 0))
    L.pairwise_dist(L.expmap0(v, c), L.expmap0(v.flip(0), c), c).sum().backward()
    assert c.grad is not None and torch.isfinite(c.grad) and c.grad != 0


# ----------------------------------------------------------------- manifold and isometry
def test_stays_on_the_hyperboloid_over_10000_exponential_steps():
    g = torch.Generator().manual_seed(26)
    x = L.expmap0(torch.nn.functional.pad(torch.randn(64, 8, generator=g), (1, 0)))
    origin = L.expmap0(torch.zeros(9))
    steps = torch.nn.functional.pad(0.3 * torch.randn(64, 64, 8, generator=g), (1, 0))
    for i in range(10_000):
        # A random step of length about 0.85 (drawn at the origin, transported to x) plus a
        # pull towards the origin: a free random walk drifts outwards and leaves float32 range.
        v = L.parallel_transport(origin, x, steps[i % 64]) + 0.2 * L.logmap(x, origin)
        x = L.project(L.expmap(x, v))
    assert torch.isfinite(x).all()
    # <x, x>_L = -1 to float32 rounding relative to x_0^2, the size of the terms that cancel.
    err = (L.minkowski_dot(x, x) + 1).abs() / x[:, 0].square()
    assert err.max() < 1e-6


def _boost_and_rotation(d, seed, dtype, rapidity=0.8):
    q, _ = torch.linalg.qr(
        torch.randn(d, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    )
    rot = torch.eye(d + 1, dtype=torch.float64)
    rot[1:, 1:] = q
    boost = torch.eye(d + 1, dtype=torch.float64)
    ch, sh = math.cosh(rapidity), math.sinh(rapidity)
    boost[0, 0], boost[0, 1], boost[1, 0], boost[1, 1] = ch, sh, sh, ch
    return (boost @ rot).to(dtype)


@pytest.mark.parametrize("c", CURVATURES)
def test_dist_is_invariant_under_lorentz_isometries(dtype, c):
    x, y = points(10, 3, dtype, c, 27, edge=False), points(10, 3, dtype, c, 28, edge=False)
    iso = _boost_and_rotation(3, 29, dtype)
    tol = 10 * TOL[dtype]
    torch.testing.assert_close(L.dist(x @ iso.T, y @ iso.T, c), L.dist(x, y, c), rtol=tol, atol=tol)
    torch.testing.assert_close(
        L.pairwise_dist(x @ iso.T, y @ iso.T, c), L.pairwise_dist(x, y, c), rtol=tol, atol=tol
    )


# ----------------------------------------------------------------- bad input
def test_bad_inputs_raise_with_a_message():
    x = L.expmap0(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="c must be positive"):
        L.dist(x, x, -1.0)
    with pytest.raises(ValueError, match="x and y must have the same last dimension"):
        L.dist(x, torch.zeros(3, 4))
    with pytest.raises(TypeError, match="y must be a float32 or float64 tensor"):
        L.logmap0(torch.zeros(3, 3, dtype=torch.int32))
    with pytest.raises(ValueError, match="D \\+ 1\\) with D >= 1"):
        L.project(torch.zeros(3, 1))
    with pytest.raises(ValueError, match="y must have shape \\(M, D \\+ 1\\)"):
        L.pairwise_dist(x, x[None])
    with pytest.raises(ValueError, match="weights must have shape"):
        L.centroid(x, weights=torch.ones(2))
