"""Hyperbolic losses: MERU contrastive and entailment losses, Poincare embedding loss.

Values against the papers' formulas (50-digit mpmath or hand-written float64), gradcheck,
finite values and gradients at the degenerate points, isometry invariance, bad input."""

import math

import mpmath
import pytest
import torch
from torch.nn import functional as F

from geolayers.hyperbolic import lorentz as L
from geolayers.hyperbolic import poincare as P
from geolayers.hyperbolic.losses import (
    MERUContrastiveLoss,
    entailment_loss,
    exterior_angle,
    half_aperture,
    meru_contrastive_loss,
    poincare_embedding_loss,
    poincare_embedding_loss_from_distances,
)
from tests.hyperbolic.precision import CURVATURES, TOL

torch.set_num_threads(1)


def lorentz_points(n, d, c, seed, dtype=torch.float64, scale=1.5):
    """n points of the hyperboloid, exp_0 of Gaussian tangent vectors of std ``scale``."""
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(n, d, generator=g, dtype=torch.float64) * scale
    return L.expmap0(F.pad(v, (1, 0)), c).to(dtype)


def from_space(space, c):
    """Full coordinates (time first) of points given by their space part."""
    return L.project(F.pad(space, (1, 0)), c)


# ----------------------------------------------------------------- entailment: reference values
def mp_meru_exterior_angle(x, y, c):
    """MERU's closed form of ext(x, y), 50 digits, from the space parts (as MERU does)."""
    c = mpmath.mpf(c)
    xs = [mpmath.mpf(float(v)) for v in x[1:]]
    ys = [mpmath.mpf(float(v)) for v in y[1:]]
    x0 = mpmath.sqrt(1 / c + mpmath.fsum(a * a for a in xs))
    y0 = mpmath.sqrt(1 / c + mpmath.fsum(a * a for a in ys))
    inner = mpmath.fsum(a * b for a, b in zip(xs, ys, strict=True)) - x0 * y0
    num = y0 + c * x0 * inner
    den = mpmath.sqrt(mpmath.fsum(a * a for a in xs)) * mpmath.sqrt((c * inner) ** 2 - 1)
    return mpmath.acos(num / den)


@pytest.mark.parametrize("c", CURVATURES)
def test_exterior_angle_matches_meru_formula(dtype, c):
    x, y = lorentz_points(16, 3, c, 0, dtype), lorentz_points(16, 3, c, 1, dtype)
    # Nearby pairs too, far from the origin, where MERU's ratio cancels (0/0 in the limit).
    near = x.clone()
    g = torch.Generator().manual_seed(2)
    near[:, 1:] += (
        1e-3
        * x[:, 1:].abs().amax(-1, keepdim=True)
        * torch.randn(16, 3, generator=g, dtype=torch.float64).to(dtype)
    )
    for a, b in ((x, y), (x, near)):
        out = exterior_angle(a, b, c)
        assert out.shape == (16,) and out.dtype == dtype
        ref = [
            float(mp_meru_exterior_angle(p, q, c))
            for p, q in zip(a.tolist(), b.tolist(), strict=True)
        ]
        torch.testing.assert_close(
            out.double(), torch.tensor(ref, dtype=torch.float64), rtol=0, atol=TOL[dtype]
        )


def test_exterior_angle_is_pi_minus_the_interior_angle_of_the_law_of_cosines():
    # Hyperbolic law of cosines in the triangle (o, x, y), with the library's distances.
    c = 0.7
    x, y = lorentz_points(20, 4, c, 3), lorentz_points(20, 4, c, 4)
    o = from_space(torch.zeros(1, 4, dtype=torch.float64), c)
    s = math.sqrt(c)
    a, b, e = s * L.dist(o, x, c), s * L.dist(x, y, c), s * L.dist(o, y, c)
    interior = torch.acos((a.cosh() * b.cosh() - e.cosh()) / (a.sinh() * b.sinh()))
    torch.testing.assert_close(exterior_angle(x, y, c), math.pi - interior, rtol=0, atol=1e-9)


def test_half_aperture_is_the_arcsine_and_clamped_near_the_origin(dtype):
    c, k = 0.5, 0.1
    x = lorentz_points(12, 3, c, 5, dtype, scale=2.0)
    r = x[:, 1:].double().norm(dim=-1)
    expected = torch.asin(2 * k / (math.sqrt(c) * r))
    out = half_aperture(x, c, min_radius=k)
    assert out.dtype == dtype
    torch.testing.assert_close(out.double(), expected, rtol=TOL[dtype], atol=0)
    # Inside the radius 2K / sqrt(c) the argument would exceed 1: clamped just below pi/2.
    inner = from_space(torch.tensor([[0.0, 0.0, 0.0], [0.05, 0.0, 0.0]], dtype=dtype), c)
    aper = half_aperture(inner, c, min_radius=k)
    assert bool((aper < math.pi / 2).all()) and bool((aper > math.pi / 2 - 0.01).all())
    # A wider min_radius, a wider cone.
    assert bool((half_aperture(x, c, min_radius=0.2) >= out).all())


@pytest.mark.parametrize("c", CURVATURES)
def test_entailment_is_zero_inside_the_cone_and_positive_outside(dtype, c):
    g = torch.Generator().manual_seed(6)
    direction = torch.randn(10, 3, generator=g, dtype=torch.float64)
    direction = direction / direction.norm(dim=-1, keepdim=True)
    radius = 1.0 + torch.rand(10, 1, generator=g, dtype=torch.float64)
    x = from_space(radius * direction, c).to(dtype)
    # Further out on the geodesic from the origin through x: exterior angle 0.
    beyond = from_space(3 * radius * direction, c).to(dtype)
    ext = exterior_angle(x, beyond, c)
    assert float(ext.abs().max()) < (1e-3 if dtype == torch.float32 else 1e-7)
    assert float(entailment_loss(x, beyond, c, reduction="sum")) == 0.0
    # Slightly off that geodesic but inside the cone: still 0.
    perp = torch.randn(10, 3, generator=g, dtype=torch.float64)
    perp = perp - (perp * direction).sum(-1, keepdim=True) * direction
    perp = perp / perp.norm(dim=-1, keepdim=True)
    inside = from_space(3 * radius * direction + 0.05 * perp, c).to(dtype)
    assert bool((exterior_angle(x, inside, c) < half_aperture(x, c)).all())
    assert float(entailment_loss(x, inside, c)) == 0.0
    # Towards the origin (angle pi) and sideways: outside the cone, loss = ext - aper > 0.
    for y in (from_space(0.3 * radius * direction, c), from_space(radius * direction + perp, c)):
        y = y.to(dtype)
        loss = entailment_loss(x, y, c, reduction="none")
        assert loss.shape == (10,) and bool((loss > 0.1).all())
        torch.testing.assert_close(
            loss, exterior_angle(x, y, c) - half_aperture(x, c), rtol=TOL[dtype], atol=0
        )
    towards = exterior_angle(x, from_space(0.3 * radius * direction, c).to(dtype), c)
    torch.testing.assert_close(
        towards, torch.full_like(towards, math.pi), rtol=0, atol=10 * TOL[dtype]
    )


EDGE_CASES = ["x_at_origin", "y_at_origin", "both_at_origin", "x_equals_y", "near_origin"]


def edge_case(case, dtype, c):
    d = 3
    z = torch.zeros(4, d, dtype=torch.float64)
    p = lorentz_points(4, d, c, 7)[:, 1:]
    space = {
        "x_at_origin": (z, p),
        "y_at_origin": (p, z),
        "both_at_origin": (z, z),
        "x_equals_y": (p, p.clone()),
        "near_origin": (1e-30 * p, p.flip(0)),
    }[case]
    return [from_space(s, c).to(dtype).requires_grad_() for s in space]


@pytest.mark.parametrize("case", EDGE_CASES)
def test_entailment_values_and_gradients_are_finite_at_degenerate_points(dtype, case):
    c = torch.tensor(0.8, dtype=dtype, requires_grad=True)
    x, y = edge_case(case, dtype, 0.8)
    ext = exterior_angle(x, y, c)
    aper = half_aperture(x, c)
    loss = entailment_loss(x, y, c, reduction="sum")
    for t in (ext, aper, loss):
        assert bool(torch.isfinite(t).all()), (case, t)
    assert bool(((ext >= 0) & (ext <= math.pi)).all())
    (ext.sum() + aper.sum() + loss).backward()
    for t in (x.grad, y.grad, c.grad):
        assert bool(torch.isfinite(t).all()), (case, t)
    if case in ("x_equals_y", "both_at_origin"):
        # The apex belongs to its own cone.
        assert float(ext.detach().abs().max()) == 0.0 and float(loss.detach()) == 0.0
    if case == "x_at_origin":
        # No radial direction at the origin: pi/2, as MERU's clamped formula gives.
        torch.testing.assert_close(ext, torch.full_like(ext, math.pi / 2), rtol=0, atol=1e-6)


def test_entailment_gradcheck():
    c = torch.tensor(0.6, dtype=torch.float64, requires_grad=True)
    x = lorentz_points(5, 3, 0.6, 8).requires_grad_()
    y = lorentz_points(5, 3, 0.6, 9).requires_grad_()
    assert bool((entailment_loss(x, y, c, reduction="none") > 1e-3).all())  # away from the kink
    assert torch.autograd.gradcheck(lambda x, y, c: exterior_angle(x, y, c), (x, y, c))
    assert torch.autograd.gradcheck(lambda x, c: half_aperture(x, c, 0.1), (x, c))
    assert torch.autograd.gradcheck(
        lambda x, y, c: entailment_loss(x, y, c, reduction="none"), (x, y, c)
    )


def test_entailment_broadcasts_and_reduces():
    x = lorentz_points(4, 2, 1.0, 10)
    y = lorentz_points(6, 2, 1.0, 11)
    full = entailment_loss(x[:, None], y[None], reduction="none")
    assert full.shape == (4, 6)
    torch.testing.assert_close(entailment_loss(x[:, None], y[None]), full.mean())
    torch.testing.assert_close(entailment_loss(x[:, None], y[None], reduction="sum"), full.sum())


# ----------------------------------------------------------------- MERU contrastive loss
def test_contrastive_loss_is_symmetric_cross_entropy_of_negative_distances(dtype):
    c, logit_scale = 0.9, math.log(10.0)
    image, text = lorentz_points(6, 4, c, 12, dtype), lorentz_points(6, 4, c, 13, dtype)
    # Hand-written: arcosh(-c <x, y>_L) / sqrt(c), in float64.
    ip = image.double()[:, 1:] @ text.double()[:, 1:].T - torch.outer(
        image.double()[:, 0], text.double()[:, 0]
    )
    dist = torch.acosh((-c * ip).clamp_min(1)) / math.sqrt(c)
    logits = -10.0 * dist
    target = torch.arange(6)
    per_pair = (
        F.cross_entropy(logits, target, reduction="none")
        + F.cross_entropy(logits.T, target, reduction="none")
    ) / 2
    out = meru_contrastive_loss(image, text, c, logit_scale, reduction="none")
    assert out.shape == (6,) and out.dtype == dtype
    tol = 10 * TOL[dtype]
    torch.testing.assert_close(out.double(), per_pair, rtol=tol, atol=tol)
    torch.testing.assert_close(
        meru_contrastive_loss(image, text, c, logit_scale).double(),
        per_pair.mean(),
        rtol=tol,
        atol=tol,
    )
    torch.testing.assert_close(
        meru_contrastive_loss(image, text, c, logit_scale, reduction="sum").double(),
        per_pair.sum(),
        rtol=tol,
        atol=tol,
    )


def test_contrastive_loss_caps_the_scale_at_max_scale():
    image, text = lorentz_points(5, 3, 1.0, 14), lorentz_points(5, 3, 1.0, 15)
    capped = meru_contrastive_loss(image, text, 1.0, math.log(1000.0))
    torch.testing.assert_close(capped, meru_contrastive_loss(image, text, 1.0, math.log(100.0)))
    torch.testing.assert_close(
        meru_contrastive_loss(image, text, 1.0, math.log(20.0), max_scale=5.0),
        meru_contrastive_loss(image, text, 1.0, math.log(5.0)),
    )
    # Matched pairs at distance 0 and far-apart negatives: the loss vanishes.
    far = from_space(torch.tensor([[8.0, 0.0], [-8.0, 0.0], [0.0, 8.0]], dtype=torch.float64), 1.0)
    assert float(meru_contrastive_loss(far, far.clone(), 1.0, math.log(100.0))) < 1e-30


def test_contrastive_module_learns_and_clamps_its_scale():
    loss_fn = MERUContrastiveLoss().double()
    assert str(loss_fn) == (
        "MERUContrastiveLoss(temperature=0.07, scale=14.29, max_scale=100, learn_scale=True, "
        "reduction='mean')"
    )
    image = lorentz_points(8, 3, 0.5, 16).requires_grad_()
    text = lorentz_points(8, 3, 0.5, 17)
    c = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    loss = loss_fn(image, text, c)
    torch.testing.assert_close(loss, meru_contrastive_loss(image, text, c, math.log(1 / 0.07)))
    loss.backward()
    for t in (loss_fn.logit_scale.grad, image.grad, c.grad):
        assert t is not None and bool(torch.isfinite(t).all()) and bool((t != 0).any())
    with torch.no_grad():
        loss_fn.logit_scale.fill_(10.0)
    loss_fn(image, text, c)
    assert float(loss_fn.logit_scale.detach()) == pytest.approx(math.log(100.0))
    fixed = MERUContrastiveLoss(temperature=0.5, learn_scale=False)
    assert list(fixed.parameters()) == [] and float(fixed.scale) == pytest.approx(2.0)


def test_contrastive_gradcheck_and_identical_points():
    image = lorentz_points(4, 3, 0.8, 18).requires_grad_()
    text = lorentz_points(4, 3, 0.8, 19).requires_grad_()
    c = torch.tensor(0.8, dtype=torch.float64, requires_grad=True)
    s = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda i, t, c, s: meru_contrastive_loss(i, t, c, s, reduction="none"),
        (image, text, c, s),
    )
    # Every point the same (distance 0 everywhere, the subgradient of the distance): log B.
    same = lorentz_points(1, 3, 0.8, 20).expand(4, 4).clone().requires_grad_()
    loss = meru_contrastive_loss(same, same, c)
    loss.backward()
    assert float(loss.detach()) == pytest.approx(math.log(4)) and bool(
        torch.isfinite(same.grad).all()
    )


# ----------------------------------------------------------------- Poincare embedding loss
def ball_points(*shape, c=1.0, seed=0, dtype=torch.float64, rmax=0.95):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(*shape, generator=g, dtype=torch.float64)
    u = u / u.norm(dim=-1, keepdim=True)
    r = rmax * torch.rand(*shape[:-1], 1, generator=g, dtype=torch.float64)
    return (u * r / math.sqrt(c)).to(dtype)


def hand_poincare_dist(x, y, c):
    """arcosh(1 + 2c|x - y|^2 / ((1 - c|x|^2)(1 - c|y|^2))) / sqrt(c) in float64."""
    x, y = x.double(), y.double()
    num = 2 * c * (x - y).square().sum(-1)
    den = (1 - c * x.square().sum(-1)) * (1 - c * y.square().sum(-1))
    return torch.acosh(1 + num / den) / math.sqrt(c)


@pytest.mark.parametrize("c", CURVATURES)
def test_poincare_loss_matches_the_softmax_of_the_paper(dtype, c):
    u = ball_points(7, 3, c=c, seed=21, dtype=dtype)
    pos = ball_points(7, 3, c=c, seed=22, dtype=dtype)
    neg = ball_points(7, 5, 3, c=c, seed=23, dtype=dtype)
    d_pos = hand_poincare_dist(u, pos, c)
    d_neg = hand_poincare_dist(u[:, None], neg, c)
    expected = -torch.log(torch.exp(-d_pos) / (torch.exp(-d_pos) + torch.exp(-d_neg).sum(-1)))
    out = poincare_embedding_loss(u, pos, neg, c, reduction="none")
    assert out.shape == (7,) and out.dtype == dtype
    tol = 10 * TOL[dtype]
    torch.testing.assert_close(out.double(), expected, rtol=tol, atol=tol)
    torch.testing.assert_close(
        poincare_embedding_loss(u, pos, neg, c).double(), expected.mean(), rtol=tol, atol=tol
    )
    torch.testing.assert_close(
        poincare_embedding_loss(u, pos, neg, c, reduction="sum").double(),
        expected.sum(),
        rtol=tol,
        atol=tol,
    )
    # The distance form: cross-entropy with the positive at index 0.
    dist = torch.cat([d_pos[:, None], d_neg], dim=1).to(dtype)
    torch.testing.assert_close(
        poincare_embedding_loss_from_distances(dist, reduction="none"),
        F.cross_entropy(-dist, torch.zeros(7, dtype=torch.long), reduction="none"),
        rtol=tol,
        atol=tol,
    )


def test_poincare_loss_from_distances_is_stable_for_large_distances(dtype):
    dist = torch.tensor([[500.0, 600.0, 700.0], [900.0, 100.0, 1000.0]], dtype=dtype)
    out = poincare_embedding_loss_from_distances(dist.requires_grad_(), reduction="none")
    # Naively exp(-500) underflows to 0 and the log of 0/0 is NaN.
    torch.testing.assert_close(
        out, torch.tensor([0.0, 800.0], dtype=dtype), rtol=TOL[dtype], atol=TOL[dtype]
    )
    out.sum().backward()
    assert bool(torch.isfinite(dist.grad).all())


@pytest.mark.parametrize("c", CURVATURES)
def test_poincare_loss_is_invariant_under_isometries(dtype, c):
    u = ball_points(6, 4, c=c, seed=24, rmax=0.9)
    pos = ball_points(6, 4, c=c, seed=25, rmax=0.9)
    neg = ball_points(6, 3, 4, c=c, seed=26, rmax=0.9)
    before = poincare_embedding_loss(u.to(dtype), pos.to(dtype), neg.to(dtype), c, reduction="none")
    g = torch.Generator().manual_seed(27)
    for _ in range(3):
        b = ball_points(4, c=c, seed=int(torch.randint(0, 2**31, (1,), generator=g)), rmax=0.8)
        q, r = torch.linalg.qr(torch.randn(4, 4, generator=g, dtype=torch.float64))
        rot = q * torch.sign(torch.diagonal(r))

        def move(x, b=b, rot=rot):
            # x -> R (b (+) x): a Mobius translation then a rotation, an isometry of the ball.
            return (P.mobius_add(b.expand_as(x), x, c) @ rot.T).to(dtype)

        moved = [move(u), move(pos), move(neg)]
        assert float((moved[0].double() - u).abs().max()) > 1e-2
        after = poincare_embedding_loss(*moved, c, reduction="none")
        tol = 10 * TOL[dtype]
        torch.testing.assert_close(after, before, rtol=tol, atol=tol)


def test_poincare_loss_gradcheck_and_finite_at_coinciding_points():
    c = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    u = ball_points(3, 2, c=0.7, seed=28).requires_grad_()
    pos = ball_points(3, 2, c=0.7, seed=29).requires_grad_()
    neg = ball_points(3, 4, 2, c=0.7, seed=30).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda u, p, n, c: poincare_embedding_loss(u, p, n, c, reduction="none"),
        (u, pos, neg, c),
    )
    dist = torch.rand(3, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda d: poincare_embedding_loss_from_distances(d, reduction="none"), (dist,)
    )
    # u on its positive, a negative on u, everything at the origin.
    zero = torch.zeros(2, 3, requires_grad=True)
    neg = torch.cat([zero[:, None].detach(), torch.full((2, 1, 3), 0.3)], 1).requires_grad_()
    loss = poincare_embedding_loss(zero, zero, neg, 1.0)
    loss.backward()
    assert bool(torch.isfinite(loss)) and bool(torch.isfinite(zero.grad).all())
    assert bool(torch.isfinite(neg.grad).all())


# ----------------------------------------------------------------- bad input
def test_bad_inputs_raise_with_a_message():
    x = lorentz_points(3, 2, 1.0, 31)
    u = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="c must be positive"):
        entailment_loss(x, x, c=0.0)
    with pytest.raises(ValueError, match="c must be positive"):
        meru_contrastive_loss(x, x, c=torch.tensor(-1.0))
    with pytest.raises(ValueError, match="c must be positive"):
        poincare_embedding_loss(u, u, u[:, None], c=-2.0)
    with pytest.raises(TypeError, match="x must be a float32 or float64 tensor"):
        exterior_angle(x.long(), x)
    with pytest.raises(TypeError, match="x and y must share a dtype"):
        exterior_angle(x, x.float())
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., D \+ 1\) with D >= 1"):
        half_aperture(torch.ones(3, 1))
    with pytest.raises(ValueError, match="min_radius must be positive"):
        half_aperture(x, min_radius=0.0)
    with pytest.raises(ValueError, match="reduction must be one of"):
        entailment_loss(x, x, reduction="avg")
    with pytest.raises(ValueError, match=r"image must have shape \(B, D \+ 1\)"):
        meru_contrastive_loss(x[None], x[None])
    with pytest.raises(ValueError, match="image and text must hold the same number of pairs B"):
        meru_contrastive_loss(x, x[:2])
    with pytest.raises(ValueError, match="image and text must have the same last dimension"):
        meru_contrastive_loss(x, lorentz_points(3, 3, 1.0, 32))
    with pytest.raises(TypeError, match="logit_scale must be a float"):
        meru_contrastive_loss(x, x, 1.0, "hot")
    with pytest.raises(ValueError, match="max_scale must be positive"):
        meru_contrastive_loss(x, x, max_scale=0)
    with pytest.raises(ValueError, match="temperature must be positive"):
        MERUContrastiveLoss(temperature=-0.1)
    with pytest.raises(ValueError, match=r"u must have shape \(B, D\)"):
        poincare_embedding_loss(u[0], u[0], u[:, None])
    with pytest.raises(ValueError, match="v_pos must have the shape of u"):
        poincare_embedding_loss(u, u[:2], u[:, None])
    with pytest.raises(ValueError, match=r"v_neg must have shape \(B, K, D\) = \(3, K, 2\)"):
        poincare_embedding_loss(u, u, u)
    with pytest.raises(ValueError, match="v_neg must hold at least one negative"):
        poincare_embedding_loss(u, u, u[:, :0, None].expand(3, 0, 2))
    with pytest.raises(TypeError, match="u and v_pos and v_neg must share a dtype"):
        poincare_embedding_loss(u, u, u[:, None].double())
    with pytest.raises(ValueError, match=r"dist must have shape \(B, 1 \+ K\) with K >= 1"):
        poincare_embedding_loss_from_distances(torch.zeros(4, 1))
    with pytest.raises(TypeError, match="dist must be a float32 or float64 tensor"):
        poincare_embedding_loss_from_distances(torch.zeros(4, 3, dtype=torch.long))
