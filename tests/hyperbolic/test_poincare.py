"""Poincare-ball ops against a 50-digit mpmath reference, geoopt, autograd and invariances."""

import time

import geoopt
import mpmath
import pytest
import torch

from geolayers.hyperbolic import poincare as P
from tests.hyperbolic.precision import CURVATURES, TOL, ball_points, mp_norm, mp_vec, rel_err


# ----------------------------------------------------------------- 50-digit reference (mpmath)
def mp_dot(a, b):
    return mpmath.fsum(u * v for u, v in zip(a, b, strict=True))


def mp_scale(s, a):
    return [s * u for u in a]


def mp_addv(a, b):
    return [u + v for u, v in zip(a, b, strict=True)]


def ref_add(x, y, c):
    xy, x2, y2 = mp_dot(x, y), mp_dot(x, x), mp_dot(y, y)
    num = mp_addv(mp_scale(1 + 2 * c * xy + c * y2, x), mp_scale(1 - c * x2, y))
    return mp_scale(1 / (1 + 2 * c * xy + c**2 * x2 * y2), num)


def ref_dist(x, y, c):
    sc = mpmath.sqrt(c)
    return 2 / sc * mpmath.atanh(sc * mp_norm(ref_add(mp_scale(-1, x), y, c)))


def ref_expmap0(v, c):
    n = mp_norm(v)
    sc = mpmath.sqrt(c)
    return mp_scale(mpmath.tanh(sc * n) / (sc * n), v) if n else v


def ref_logmap0(y, c):
    n = mp_norm(y)
    sc = mpmath.sqrt(c)
    return mp_scale(mpmath.atanh(sc * n) / (sc * n), y) if n else y


def ref_expmap(x, v, c):
    lam = 2 / (1 - c * mp_dot(x, x))
    n = mp_norm(v)
    sc = mpmath.sqrt(c)
    w = mp_scale(mpmath.tanh(sc * lam * n / 2) / (sc * n), v)
    return ref_add(x, w, c)


def ref_logmap(x, y, c):
    lam = 2 / (1 - c * mp_dot(x, x))
    u = ref_add(mp_scale(-1, x), y, c)
    n = mp_norm(u)
    sc = mpmath.sqrt(c)
    return mp_scale(2 / (sc * lam) * mpmath.atanh(sc * n) / n, u)


def ref_to_lorentz(x, c):
    x2 = mp_dot(x, x)
    return [(1 + c * x2) / (mpmath.sqrt(c) * (1 - c * x2))] + mp_scale(2 / (1 - c * x2), x)


def ref_to_klein(x, c):
    return mp_scale(2 / (1 + c * mp_dot(x, x)), x)


def points(n, d, dtype, c, seed, edge=True):
    return ball_points(n, d, dtype, c, seed, edge).to(dtype)


# ----------------------------------------------------------------- precision
@pytest.mark.parametrize("c", CURVATURES)
def test_dist_and_mobius_add_match_mpmath(dtype, c):
    x, y = points(12, 5, dtype, c, 0), points(12, 5, dtype, c, 1).flip(0)
    cm = mpmath.mpf(c)
    X, Y = [mp_vec(r) for r in x], [mp_vec(r) for r in y]
    assert (
        rel_err(P.dist(x, y, c).tolist(), [ref_dist(a, b, cm) for a, b in zip(X, Y, strict=True)])
        < TOL[dtype]
    )
    assert (
        rel_err(
            P.mobius_add(x, y, c).tolist(), [ref_add(a, b, cm) for a, b in zip(X, Y, strict=True)]
        )
        < TOL[dtype]
    )


@pytest.mark.parametrize("c", CURVATURES)
def test_pairwise_dist_matches_mpmath_and_dist(dtype, c):
    x, y = points(6, 4, dtype, c, 2), points(5, 4, dtype, c, 3)
    cm = mpmath.mpf(c)
    out = P.pairwise_dist(x, y, c)
    assert out.shape == (6, 5) and out.dtype == dtype
    X, Y = [mp_vec(r) for r in x], [mp_vec(r) for r in y]
    ref = [ref_dist(a, b, cm) for a in X for b in Y]
    assert rel_err(out.flatten().tolist(), ref) < TOL[dtype]
    torch.testing.assert_close(out, P.dist(x[:, None], y[None], c), rtol=TOL[dtype], atol=0)


def test_pairwise_dist_nearby_points_near_boundary():
    # The matrix-product form |x|^2 + |y|^2 - 2<x, y> loses the chord here; the ops keep it.
    x = points(4, 3, torch.float64, 1.0, 6)[2:]
    y = x * (1 - 1e-9)
    ref = [ref_dist(mp_vec(a), mp_vec(b), mpmath.mpf(1)) for a in x for b in y]
    assert rel_err(P.pairwise_dist(x, y).flatten().tolist(), ref) < 1e-9


@pytest.mark.parametrize("c", CURVATURES)
def test_exp_log_maps_match_mpmath(dtype, c):
    cm = mpmath.mpf(c)
    y = points(10, 4, dtype, c, 7)
    Y = [mp_vec(r) for r in y]
    v = P.logmap0(y, c)
    assert rel_err(v.tolist(), [ref_logmap0(a, cm) for a in Y]) < TOL[dtype]
    V = [mp_vec(r) for r in v]
    assert rel_err(P.expmap0(v, c).tolist(), [ref_expmap0(a, cm) for a in V]) < TOL[dtype]
    x = points(10, 4, dtype, c, 8).flip(0)
    X = [mp_vec(r) for r in x]
    u = P.logmap(x, y, c)
    assert (
        rel_err(u.tolist(), [ref_logmap(a, b, cm) for a, b in zip(X, Y, strict=True)]) < TOL[dtype]
    )
    w = 0.3 * torch.randn(10, 4, generator=torch.Generator().manual_seed(9), dtype=dtype)
    W = [mp_vec(r) for r in w]
    assert (
        rel_err(
            P.expmap(x, w, c).tolist(), [ref_expmap(a, b, cm) for a, b in zip(X, W, strict=True)]
        )
        < TOL[dtype]
    )


@pytest.mark.parametrize("c", CURVATURES)
def test_conversions_match_mpmath(dtype, c):
    cm = mpmath.mpf(c)
    x = points(10, 3, dtype, c, 10)
    X = [mp_vec(r) for r in x]
    lor = P.poincare_to_lorentz(x, c)
    assert rel_err(lor.tolist(), [ref_to_lorentz(a, cm) for a in X]) < TOL[dtype]
    assert (
        rel_err(P.poincare_to_klein(x, c).tolist(), [ref_to_klein(a, cm) for a in X]) < TOL[dtype]
    )
    # Inverses against the reference of the forward map: exact inputs L, K, expected x.
    L, K = [mp_vec(r) for r in lor], [mp_vec(r) for r in P.poincare_to_klein(x, c)]
    ref_back = [mp_scale(1 / (1 + mpmath.sqrt(cm) * a[0]), a[1:]) for a in L]
    assert rel_err(P.lorentz_to_poincare(lor, c).tolist(), ref_back) < TOL[dtype]
    ref_kp = [mp_scale(1 / (1 + mpmath.sqrt(1 - cm * mp_dot(k, k))), k) for k in K]
    assert rel_err(P.klein_to_poincare(P.poincare_to_klein(x, c), c).tolist(), ref_kp) < TOL[dtype]


# ----------------------------------------------------------------- round trips and geoopt
@pytest.mark.parametrize("c", CURVATURES)
def test_round_trips(dtype, c):
    tol = 10 * TOL[dtype]
    x = points(16, 4, dtype, c, 11, edge=False)
    y = points(16, 4, dtype, c, 12, edge=False)
    torch.testing.assert_close(P.expmap0(P.logmap0(x, c), c), x, rtol=tol, atol=tol)
    torch.testing.assert_close(P.expmap(x, P.logmap(x, y, c), c), y, rtol=tol, atol=tol)
    back = P.lorentz_to_poincare(P.poincare_to_lorentz(x, c), c)
    torch.testing.assert_close(back, x, rtol=tol, atol=tol)
    torch.testing.assert_close(
        P.klein_to_poincare(P.poincare_to_klein(x, c), c), x, rtol=tol, atol=tol
    )
    torch.testing.assert_close(P.mobius_add(-x, P.mobius_add(x, y, c), c), y, rtol=tol, atol=tol)


@pytest.mark.parametrize("c", CURVATURES)
def test_agrees_with_geoopt(c):
    # A float c becomes a float32 buffer in geoopt (1e-8 off); give it the float64 value.
    ball = geoopt.PoincareBall(c=torch.tensor(c, dtype=torch.float64))
    x = points(20, 5, torch.float64, c, 13, edge=False)
    y = points(20, 5, torch.float64, c, 14, edge=False)
    v = 0.5 * torch.randn(20, 5, generator=torch.Generator().manual_seed(15), dtype=torch.float64)
    m = torch.randn(3, 5, generator=torch.Generator().manual_seed(16), dtype=torch.float64)
    close = lambda a, b: torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)  # noqa: E731
    close(P.mobius_add(x, y, c), ball.mobius_add(x, y))
    close(P.dist(x, y, c), ball.dist(x, y))
    close(P.expmap0(v, c), ball.expmap0(v))
    close(P.logmap0(y, c), ball.logmap0(y))
    close(P.expmap(x, v, c), ball.expmap(x, v))
    close(P.logmap(x, y, c), ball.logmap(x, y))
    close(P.mobius_matvec(m, x, c), ball.mobius_matvec(m, x))
    close(P.parallel_transport(x, y, v, c), ball.transp(x, y, v))
    far = 3 * x
    close(P.project(far, c), ball.projx(far))


def test_parallel_transport_is_an_isometry_of_tangent_spaces(dtype):
    x = points(8, 3, dtype, 1.0, 17, edge=False)
    y = points(8, 3, dtype, 1.0, 18, edge=False)
    g = torch.Generator().manual_seed(19)
    u, v = torch.randn(8, 3, generator=g, dtype=dtype), torch.randn(8, 3, generator=g, dtype=dtype)
    lam = lambda p: 2 / (1 - p.square().sum(-1))  # noqa: E731
    inner = lambda p, a, b: lam(p) ** 2 * (a * b).sum(-1)  # noqa: E731
    pu, pv = P.parallel_transport(x, y, u), P.parallel_transport(x, y, v)
    torch.testing.assert_close(
        inner(y, pu, pv), inner(x, u, v), rtol=10 * TOL[dtype], atol=10 * TOL[dtype]
    )


def test_einstein_midpoint():
    x = points(7, 3, torch.float64, 1.0, 20, edge=False)
    m = P.einstein_midpoint(x)
    # Equals the Lorentz centroid-like Klein average; check against the direct Klein formula.
    k = P.poincare_to_klein(x)
    gamma = 1 / torch.sqrt(1 - k.square().sum(-1, keepdim=True))
    mk = (gamma * k).sum(0) / gamma.sum(0)
    torch.testing.assert_close(m, P.klein_to_poincare(mk), rtol=1e-12, atol=1e-12)
    # Midpoint of two points is on the geodesic halfway.
    a, b = x[:2]
    mid = P.einstein_midpoint(torch.stack([a, b]))
    torch.testing.assert_close(P.dist(a, mid), P.dist(mid, b), rtol=1e-10, atol=0)
    torch.testing.assert_close(P.dist(a, mid) * 2, P.dist(a, b), rtol=1e-10, atol=0)
    w = torch.tensor([1.0, 0.0], dtype=torch.float64)
    torch.testing.assert_close(P.einstein_midpoint(torch.stack([a, b]), weights=w), a)
    assert P.einstein_midpoint(x.expand(2, 7, 3)).shape == (2, 3)


# ----------------------------------------------------------------- finiteness and gradients
def _all_ops(x, y, v, c):
    m = torch.eye(x.shape[-1], dtype=x.dtype) * 0.5
    return [
        P.mobius_add(x, y, c),
        P.mobius_matvec(m, x, c),
        P.expmap0(v, c),
        P.logmap0(y, c),
        P.expmap(x, v, c),
        P.logmap(x, y, c),
        P.dist(x, y, c),
        P.pairwise_dist(x, y, c),
        P.parallel_transport(x, y, v, c),
        P.project(x, c),
        P.einstein_midpoint(torch.stack([x, y], -2), c),
        P.poincare_to_lorentz(x, c),
        P.lorentz_to_poincare(P.poincare_to_lorentz(y, c), c),
        P.poincare_to_klein(x, c),
        P.klein_to_poincare(P.poincare_to_klein(y, c), c),
    ]


@pytest.mark.parametrize("case", ["origin", "x_eq_y", "y_origin", "edge", "edge_x_eq_y"])
def test_values_and_gradients_are_finite(dtype, case):
    base = points(6, 3, dtype, 1.0, 21)
    zero = torch.zeros(6, 3, dtype=dtype)
    x, y, v = {
        "origin": (zero, zero, zero),
        "x_eq_y": (base, base, zero),
        "y_origin": (base, zero, base),
        "edge": (base, base.flip(0), 3 * base),
        "edge_x_eq_y": (base[3:], base[3:], 20 * base[3:]),
    }[case]
    x, y, v = (t.clone().requires_grad_() for t in (x, y, v))
    c = torch.tensor(1.0, dtype=dtype, requires_grad=True)
    for i, out in enumerate(_all_ops(x, y, v, c)):
        assert torch.isfinite(out).all(), f"op {i} value"
        grads = torch.autograd.grad(out.sum(), (x, y, v, c), allow_unused=True)
        for g in grads:
            assert g is None or torch.isfinite(g).all(), f"op {i} gradient"


def test_gradcheck():
    x = points(4, 3, torch.float64, 1.0, 22, edge=False).requires_grad_()
    y = points(4, 3, torch.float64, 1.0, 23, edge=False).requires_grad_()
    v = (0.3 * torch.randn(4, 3, dtype=torch.float64)).requires_grad_()
    m = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    c = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    checks = {
        "mobius_add": (lambda x, y, c: P.mobius_add(x, y, c), (x, y, c)),
        "mobius_matvec": (lambda m, x, c: P.mobius_matvec(m, x, c), (m, x, c)),
        "expmap0": (lambda v, c: P.expmap0(v, c), (v, c)),
        "logmap0": (lambda y, c: P.logmap0(y, c), (y, c)),
        "expmap": (lambda x, v, c: P.expmap(x, v, c), (x, v, c)),
        "logmap": (lambda x, y, c: P.logmap(x, y, c), (x, y, c)),
        "dist": (lambda x, y, c: P.dist(x, y, c), (x, y, c)),
        "pairwise_dist": (lambda x, y, c: P.pairwise_dist(x, y, c), (x, y, c)),
        "transport": (lambda x, y, v, c: P.parallel_transport(x, y, v, c), (x, y, v, c)),
        "midpoint": (lambda x, c: P.einstein_midpoint(x, c), (x, c)),
        "to_lorentz": (lambda x, c: P.poincare_to_lorentz(x, c), (x, c)),
        "to_klein": (lambda x, c: P.poincare_to_klein(x, c), (x, c)),
    }
    for name, (fn, args) in checks.items():
        assert torch.autograd.gradcheck(fn, args), name


def test_learnable_curvature_gets_a_gradient():
    c = torch.nn.Parameter(torch.tensor(0.5, dtype=torch.float64))
    x = points(5, 3, torch.float64, 0.5, 24, edge=False)
    P.pairwise_dist(P.expmap0(x, c), P.expmap0(x.flip(0), c), c).sum().backward()
    assert c.grad is not None and torch.isfinite(c.grad) and c.grad != 0


# ----------------------------------------------------------------- projection and isometry
def test_projection_holds_over_10000_mobius_additions():
    g = torch.Generator().manual_seed(25)
    x = P.project(0.5 * torch.randn(256, 8, generator=g))
    steps = 0.3 * torch.randn(64, 256, 8, generator=g)
    start = time.perf_counter()
    for i in range(10_000):
        x = P.project(P.mobius_add(x, P.project(steps[i % 64])))
    assert time.perf_counter() - start < 3 * 10  # generous: shared CPU; typically under 3 s
    norm = x.norm(dim=-1)
    assert torch.isfinite(x).all() and (norm < 1).all()
    assert (norm <= 1 - P.PROJECT_EPS[torch.float32] + 1e-6).all()


def _rotation(d, seed, dtype):
    q, _ = torch.linalg.qr(
        torch.randn(d, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    )
    return q.to(dtype)


@pytest.mark.parametrize("c", CURVATURES)
def test_dist_is_invariant_under_gyro_translation_and_rotation(dtype, c):
    x = points(10, 4, dtype, c, 26, edge=False)
    y = points(10, 4, dtype, c, 27, edge=False)
    a = points(1, 4, dtype, c, 28, edge=False)[0]
    rot = _rotation(4, 29, dtype)
    iso = lambda p: P.mobius_add(a, p @ rot.T, c)  # noqa: E731
    tol = 10 * TOL[dtype]
    torch.testing.assert_close(P.dist(iso(x), iso(y), c), P.dist(x, y, c), rtol=tol, atol=tol)
    torch.testing.assert_close(
        P.pairwise_dist(iso(x), iso(y), c), P.pairwise_dist(x, y, c), rtol=tol, atol=tol
    )


# ----------------------------------------------------------------- bad input
def test_bad_inputs_raise_with_a_message():
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="c must be positive"):
        P.dist(x, x, 0.0)
    with pytest.raises(ValueError, match="c must be positive"):
        P.expmap0(x, torch.tensor(-1.0))
    with pytest.raises(TypeError, match="c must be a positive float"):
        P.expmap0(x, "1")
    with pytest.raises(ValueError, match="c must hold a single value"):
        P.expmap0(x, torch.ones(2))
    with pytest.raises(
        ValueError, match="x and y must have the same last dimension, got 2 \\(x\\), 3 \\(y\\)"
    ):
        P.mobius_add(x, torch.zeros(3, 3))
    with pytest.raises(TypeError, match="x must be a float32 or float64 tensor"):
        P.dist(torch.zeros(3, 2, dtype=torch.long), x)
    with pytest.raises(TypeError, match="x and y must share a dtype"):
        P.dist(x, x.double())
    with pytest.raises(ValueError, match="x must have shape \\(N, D\\)"):
        P.pairwise_dist(torch.zeros(2, 3, 2), x)
    with pytest.raises(ValueError, match="m must have as many columns"):
        P.mobius_matvec(torch.zeros(2, 3), x)
    with pytest.raises(ValueError, match="eps must lie in"):
        P.project(x, eps=2.0)
    with pytest.raises(ValueError, match="weights must have shape"):
        P.einstein_midpoint(x, weights=torch.ones(2))
