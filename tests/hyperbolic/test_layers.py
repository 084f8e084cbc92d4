"""Poincare-ball layers: shapes, dtypes, the ball, gradients, isometry invariance, bad input."""

import math

import pytest
import torch

from geolayers.hyperbolic import (
    HyperbolicMLR,
    HyperbolicPrototypeHead,
    MobiusLinear,
    ToPoincare,
)
from geolayers.hyperbolic import poincare as P
from geolayers.testing import assert_invariant

torch.set_num_threads(1)

CURVATURES = [1.0, 0.3]


def ball_points(n, d, c, seed, dtype=torch.float64, rmax=0.9):
    """n random points of the ball with norm up to rmax / sqrt(c)."""
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(n, d, generator=g, dtype=torch.float64)
    u = u / u.norm(dim=-1, keepdim=True)
    r = rmax * torch.rand(n, 1, generator=g, dtype=torch.float64)
    return (u * r / math.sqrt(c)).to(dtype)


def make_layer(name, d_in=5, d_out=3, c=1.0, **kwargs):
    if name == "to_poincare":
        return ToPoincare(c=c, **kwargs)
    if name == "mobius_linear":
        return MobiusLinear(d_in, d_out, c=c, **kwargs)
    if name == "mlr":
        return HyperbolicMLR(d_in, d_out, c=c, **kwargs)
    return HyperbolicPrototypeHead(d_in, d_out, c=c, **kwargs)


LAYERS = ["to_poincare", "mobius_linear", "mlr", "prototype_head"]


def out_dim(name, d_in=5, d_out=3):
    return d_in if name == "to_poincare" else d_out


# ----------------------------------------------------------------- isometries of the ball
def sample_isometry(gen, d, c, dtype=torch.float64):
    """(b, R): the isometry x -> R (b (+) x), b a random point of the ball, R orthogonal."""
    b = ball_points(1, d, c, int(torch.randint(0, 2**31, (1,), generator=gen)), dtype, 0.8)[0]
    q, r = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
    rot = (q * torch.sign(torch.diagonal(r))).to(dtype)  # Haar-distributed orthogonal matrix
    return b, rot


def apply_isometry(g, x, c):
    b, rot = g
    return P.mobius_add(b, x, c) @ rot.T


@pytest.mark.parametrize("c", CURVATURES)
def test_isometry_helper_preserves_distances(c):
    gen = torch.Generator().manual_seed(0)
    x, y = ball_points(20, 4, c, 1), ball_points(20, 4, c, 2)
    for _ in range(4):
        g = sample_isometry(gen, 4, c)
        gx, gy = apply_isometry(g, x, c), apply_isometry(g, y, c)
        assert bool((c * gx.square().sum(-1) < 1).all())
        torch.testing.assert_close(P.dist(gx, gy, c), P.dist(x, y, c), rtol=1e-9, atol=1e-9)
        # Not a trivial map: the points move.
        assert float((gx - x).abs().max()) > 1e-2


# ----------------------------------------------------------------- shapes, dtypes, ball
@pytest.mark.parametrize("name", LAYERS)
def test_shapes_and_dtypes(name, dtype):
    layer = make_layer(name).to(dtype)
    x = ball_points(7, 5, 1.0, 0, dtype)
    out = layer(x)
    assert out.shape == (7, out_dim(name)) and out.dtype == dtype
    assert bool(out.isfinite().all())
    if name in ("to_poincare", "mobius_linear"):
        batched = layer(x.reshape(7, 1, 5).expand(7, 2, 5))
        assert batched.shape == (7, 2, out_dim(name))
        torch.testing.assert_close(batched[:, 1], out)


@pytest.mark.parametrize("c", CURVATURES)
def test_outputs_stay_on_the_ball(dtype, c):
    big = 100 * torch.randn(50, 5, generator=torch.Generator().manual_seed(0)).to(dtype)
    for clip_r in (2.3, None):
        y = ToPoincare(c, clip_r=clip_r).to(dtype)(big)
        assert bool((c * y.square().sum(-1) < 1).all())
    # Inputs at the boundary margin and a large weight: the output is projected.
    layer = MobiusLinear(5, 4, c=c).to(dtype)
    with torch.no_grad():
        layer.weight.mul_(50)
        layer.bias.fill_(10)
    x = P.project(big, c)
    y = layer(x)
    max_norm = (1 - P.PROJECT_EPS[dtype]) / math.sqrt(c)
    assert bool((y.norm(dim=-1) <= max_norm * (1 + 1e-6)).all())


def test_to_poincare_clips_the_features():
    x = torch.tensor([[30.0, 40.0], [0.3, 0.4]], dtype=torch.float64)
    y = ToPoincare(c=1.0, clip_r=2.3).double()(x)
    # The clipped feature keeps its direction and gets the norm clip_r in the tangent space.
    torch.testing.assert_close(P.logmap0(y[0]), torch.tensor([0.6, 0.8]).double() * 2.3)
    torch.testing.assert_close(y[1], P.expmap0(x[1]))


# ----------------------------------------------------------------- reference formulas
@pytest.mark.parametrize("c", CURVATURES)
def test_mlr_matches_the_formula_of_the_paper(c):
    layer = HyperbolicMLR(4, 3, c=c).double()
    with torch.no_grad():
        layer.p_tangent.copy_(torch.randn(3, 4, dtype=torch.float64))
    x = ball_points(6, 4, c, 3)
    p, a = layer.points(), layer.normals()  # a_k = (1 - c|p_k|^2) a'_k
    z = P.mobius_add(-p[None], x[:, None], c)
    lam = 2 / (1 - c * p.square().sum(-1))
    na = a.norm(dim=-1)
    arg = 2 * math.sqrt(c) * (z * a).sum(-1) / ((1 - c * z.square().sum(-1)) * na)
    expected = lam * na / math.sqrt(c) * torch.asinh(arg)
    torch.testing.assert_close(layer(x), expected, rtol=1e-9, atol=1e-12)


def test_prototype_head_is_minus_distance_over_temperature():
    head = HyperbolicPrototypeHead(4, 3, c=0.5, temperature=0.25).double()
    x = ball_points(6, 4, 0.5, 4)
    expected = -P.dist(x[:, None], head.prototypes()[None], 0.5) / 0.25
    torch.testing.assert_close(head(x), expected, rtol=1e-12, atol=1e-12)


def test_mobius_linear_identity_weight_and_zero_bias_is_the_identity():
    x = ball_points(10, 4, 1.0, 5)
    for bias in (True, False):
        layer = MobiusLinear(4, 4, bias=bias).double()
        with torch.no_grad():
            layer.weight.copy_(torch.eye(4))
            if bias:
                layer.bias.zero_()
        torch.testing.assert_close(layer(x), x, rtol=1e-12, atol=1e-14)


def test_mobius_linear_tends_to_a_euclidean_linear_layer_for_small_c():
    layer = MobiusLinear(5, 3, c=1e-8).double()
    x = torch.randn(8, 5, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    expected = torch.nn.functional.linear(x, layer.weight, layer.bias)
    torch.testing.assert_close(layer(x), expected, rtol=1e-6, atol=1e-7)
    # At curvature 1 and inputs of norm ~1e-4 the correction, O(c |x|^2), is as small.
    layer = MobiusLinear(5, 3, c=1.0).double()
    with torch.no_grad():
        layer.bias.mul_(1e-4)
    x = 1e-4 * x
    expected = torch.nn.functional.linear(x, layer.weight, layer.bias)
    torch.testing.assert_close(layer(x), expected, rtol=1e-6, atol=1e-12)


# ----------------------------------------------------------------- gradients
@pytest.mark.parametrize("name", LAYERS)
def test_gradients_are_finite_including_at_the_origin(name, dtype):
    layer = make_layer(name).to(dtype)
    if name == "mlr":
        with torch.no_grad():
            layer.a[0].zero_()  # a zero normal: logit 0, finite gradients
            layer.p_tangent[1].zero_()
    x = torch.cat([torch.zeros(2, 5, dtype=dtype), ball_points(3, 5, 1.0, 7, dtype, 0.99)])
    x.requires_grad_(True)
    out = layer(x)
    assert bool(out.isfinite().all())
    out.square().sum().backward()
    assert bool(x.grad.isfinite().all())
    for name_, p in layer.named_parameters():
        assert p.grad is not None and bool(p.grad.isfinite().all()), name_
    if name == "mlr":
        assert bool((out[:, 0] == 0).all())


@pytest.mark.parametrize("name", LAYERS)
def test_learnable_curvature_gets_a_gradient(name):
    layer = make_layer(name, c=0.7, learn_curvature=True).double()
    assert isinstance(layer.raw_c, torch.nn.Parameter)
    assert float(layer.c.detach()) == pytest.approx(0.7, rel=1e-6)  # raw_c made in float32
    x = ball_points(6, 5, 0.7, 8, rmax=0.8)
    if name == "to_poincare":
        x = 3 * x
    layer(x).square().sum().backward()
    assert layer.raw_c.grad is not None and bool(layer.raw_c.grad.isfinite())
    assert float(layer.raw_c.grad.abs()) > 0
    assert "learn_curvature=True" in repr(layer)
    fixed = make_layer(name, c=0.7)
    assert fixed.raw_c is None and fixed.c == 0.7


# ----------------------------------------------------------------- isometry invariance
def prototype_head_with(prototypes, c):
    """A head whose prototypes are the given points of the ball."""
    head = HyperbolicPrototypeHead(prototypes.shape[1], prototypes.shape[0], c=c, temperature=0.5)
    head = head.to(prototypes.dtype)
    with torch.no_grad():
        head.prototype_tangent.copy_(P.logmap0(prototypes, c))
    return head


def mlr_with(points, normals, c):
    """An MLR whose class k has the point points[k] and the normal normals[k] in T_{p_k}."""
    mlr = HyperbolicMLR(points.shape[1], points.shape[0], c=c).to(points.dtype)
    with torch.no_grad():
        mlr.p_tangent.copy_(P.logmap0(points, c))
        mlr.a.copy_(normals / (1 - c * points.square().sum(-1, keepdim=True)))
    return mlr


@pytest.mark.parametrize("c", CURVATURES)
def test_prototype_head_is_invariant_under_isometries(c):
    def inputs(gen):
        return ball_points(8, 4, c, int(torch.randint(0, 2**31, (1,), generator=gen))), (
            ball_points(5, 4, c, int(torch.randint(0, 2**31, (1,), generator=gen)))
        )

    def logits(x, prototypes):
        return prototype_head_with(prototypes, c)(x)

    def transform(g, args):
        x, prototypes = args
        return apply_isometry(g, x, c), apply_isometry(g, prototypes, c)

    sample = lambda gen, args: sample_isometry(gen, 4, c)  # noqa: E731
    assert_invariant(logits, inputs, sample, transform, trials=6)
    # The test can fail: moving the inputs alone changes the logits.
    x, protos = inputs(torch.Generator().manual_seed(1))
    g = sample_isometry(torch.Generator().manual_seed(2), 4, c)
    moved = logits(apply_isometry(g, x, c), protos) - logits(x, protos)
    assert float(moved.detach().abs().max()) > 1e-3


def push_forward(g, points, normals, c):
    """Image of (p_k, a_k in T_{p_k}) under the isometry: (phi(p_k), dphi_{p_k}(a_k))."""
    # phi acts row by row, so the Jacobian-vector product of the batch is the per-row
    # differential: the exact push-forward of each normal, whatever the closed form.
    return torch.autograd.functional.jvp(lambda p: apply_isometry(g, p, c), points, normals)


@pytest.mark.parametrize("c", CURVATURES)
def test_mlr_is_invariant_under_isometries(c):
    def inputs(gen):
        seeds = [int(s) for s in torch.randint(0, 2**31, (3,), generator=gen)]
        x = ball_points(8, 4, c, seeds[0])
        points = ball_points(5, 4, c, seeds[1], rmax=0.8)
        normals = torch.randn(5, 4, generator=torch.Generator().manual_seed(seeds[2])).double()
        return x, points, normals

    def logits(x, points, normals):
        return mlr_with(points, normals, c)(x)

    def transform(g, args):
        x, points, normals = args
        return (apply_isometry(g, x, c), *push_forward(g, points, normals, c))

    sample = lambda gen, args: sample_isometry(gen, 4, c)  # noqa: E731
    assert_invariant(logits, inputs, sample, transform, trials=6)

    # The push-forward at the origin is the parallel transport from 0 to b, then the rotation
    # (d(b (+) x)/dx at x = 0 is (1 - c|b|^2) I = P_{0 -> b}).
    g = sample_isometry(torch.Generator().manual_seed(3), 4, c)
    b, rot = g
    v = torch.randn(3, 4, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    zero = torch.zeros(3, 4, dtype=torch.float64)
    _, pushed = push_forward(g, zero, v, c)
    transported = P.parallel_transport(zero, b.expand(3, 4), v, c) @ rot.T
    torch.testing.assert_close(pushed, transported, rtol=1e-12, atol=1e-12)
    # The Riemannian norm lambda_p |a| is preserved, as it must be for an isometry.
    x, points, normals = inputs(torch.Generator().manual_seed(5))
    new_points, new_normals = push_forward(g, points, normals, c)
    torch.testing.assert_close(
        new_normals.norm(dim=-1) / (1 - c * new_points.square().sum(-1)),
        normals.norm(dim=-1) / (1 - c * points.square().sum(-1)),
        rtol=1e-9,
        atol=0,
    )


# ----------------------------------------------------------------- bad input
def test_bad_inputs_raise_with_a_message():
    for c in (0.0, -1.0, math.inf):
        for name in LAYERS:
            with pytest.raises(ValueError, match="c must be positive"):
                make_layer(name, c=c)
    with pytest.raises(TypeError, match="c must be a positive float"):
        MobiusLinear(3, 3, c="1")
    with pytest.raises(ValueError, match="clip_r must be positive"):
        ToPoincare(clip_r=0.0)
    with pytest.raises(ValueError, match="temperature must be positive"):
        HyperbolicPrototypeHead(3, 2, temperature=-1.0)
    with pytest.raises(ValueError, match="in_features must be >= 1"):
        HyperbolicMLR(0, 2)
    with pytest.raises(TypeError, match="num_classes must be an int"):
        HyperbolicPrototypeHead(3, 2.0)

    x = torch.zeros(4, 3)
    for name in ("mobius_linear", "mlr", "prototype_head"):
        layer = make_layer(name, d_in=5)
        with pytest.raises(ValueError, match="x must have 5 features"):
            layer(x)
        with pytest.raises(TypeError, match="x must have the dtype of the layer's parameters"):
            layer(torch.zeros(4, 5, dtype=torch.float64))
        with pytest.raises(TypeError, match="x must be a float32 or float64 tensor"):
            layer(torch.zeros(4, 5, dtype=torch.int64))
        outside = torch.full((2, 5), 0.5)  # c |x|^2 = 1.25
        layer(outside)  # computed (outputs clamped) without strict
        strict = make_layer(name, d_in=5, c=1.0, strict=True)
        with pytest.raises(ValueError, match=r"x must lie inside the Poincare ball"):
            strict(outside)
        strict(torch.full((2, 5), 0.4))  # c |x|^2 = 0.8: fine
    for name in ("mlr", "prototype_head"):
        with pytest.raises(ValueError, match=r"x must have shape \(N, in_features\)"):
            make_layer(name, d_in=5)(torch.zeros(2, 3, 5))
    with pytest.raises(TypeError, match="x must be a float32 or float64 tensor"):
        ToPoincare()([1.0, 2.0])


# ----------------------------------------------------------------- prototype head options
def test_prototype_head_angle_term_matches_formula_and_is_rotation_invariant():
    gen = torch.Generator().manual_seed(40)
    protos = ball_points(4, 3, 0.5, 41)
    head = prototype_head_with(protos, 0.5)
    head.angle_weight = 0.3
    x = ball_points(6, 3, 0.5, 42)
    x[0] = 0  # no direction: cosine 0, finite gradient
    cos = torch.nn.functional.normalize(x, dim=1) @ torch.nn.functional.normalize(protos, dim=1).T
    expect = (-(0.7) * P.pairwise_dist(x, protos, 0.5) + 0.3 * cos) / 0.5
    torch.testing.assert_close(head(x), expect, rtol=1e-12, atol=1e-12)
    _, rot = sample_isometry(gen, 3, 0.5)
    rotated = prototype_head_with(protos @ rot.T, 0.5)
    rotated.angle_weight = 0.3
    torch.testing.assert_close(rotated(x @ rot.T), head(x), rtol=1e-10, atol=1e-10)
    xr = x.clone().requires_grad_()
    head(xr).sum().backward()
    assert torch.isfinite(xr.grad).all()


def test_prototype_head_riemannian_trains_with_geoopt_and_stays_in_the_ball():
    geoopt = pytest.importorskip("geoopt")
    torch.manual_seed(0)
    head = HyperbolicPrototypeHead(2, 3, c=1.0, riemannian=True)
    assert isinstance(head.prototype_points, geoopt.ManifoldParameter)
    assert head.prototype_tangent is None and "riemannian=True" in repr(head)
    # Same prototypes through the tangent parametrisation: same logits.
    twin = prototype_head_with(head.prototypes().detach().double(), 1.0).float()
    twin.temperature = head.temperature
    x = ball_points(8, 2, 1.0, 43, torch.float32)
    torch.testing.assert_close(head(x), twin(x), rtol=1e-5, atol=1e-5)
    # Three separated clusters; RiemannianAdam moves the points along the ball.
    centers = torch.tensor([[0.6, 0.0], [-0.3, 0.5], [-0.3, -0.5]])
    labels = torch.arange(3).repeat_interleave(20)
    inputs = centers[labels] + 0.05 * torch.randn(60, 2)
    opt = geoopt.optim.RiemannianAdam(head.parameters(), lr=0.05)
    losses = []
    for _ in range(60):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(inputs), labels)
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < 0.7 * losses[0]
    assert (head.prototypes().detach().norm(dim=1) < 1).all()
    assert (head(inputs).argmax(1) == labels).float().mean() > 0.9
    assert head.double().prototype_points.dtype == torch.float64


def test_prototype_head_option_errors():
    with pytest.raises(ValueError, match=r"angle_weight must lie in \[0, 1\]"):
        HyperbolicPrototypeHead(3, 2, angle_weight=1.5)
    with pytest.raises(TypeError, match="angle_weight must be a float"):
        HyperbolicPrototypeHead(3, 2, angle_weight="0.5")
    with pytest.raises(ValueError, match="riemannian=True needs a fixed curvature"):
        HyperbolicPrototypeHead(3, 2, riemannian=True, learn_curvature=True)
