"""Lorentz-model layers: shapes, dtypes, the hyperboloid, formulas, gradients, bad input."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.func import functional_call

from geolayers.hyperbolic import lorentz as L
from geolayers.hyperbolic.lorentz_layers import LorentzLinear, ToLorentz

torch.set_num_threads(1)

CURVATURES = [1.0, 0.3]


def features(n, d, seed, dtype=torch.float64, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(n, d, generator=g, dtype=torch.float64)).to(dtype)


def hyperboloid_points(n, d, c, seed, dtype=torch.float64):
    """n points of the hyperboloid at distances up to about 3 from the origin."""
    v = features(n, d, seed)
    return L.expmap0(torch.cat([torch.zeros(n, 1, dtype=torch.float64), v], -1), c).to(dtype)


def assert_on_hyperboloid(y, c, tol):
    """<y, y>_L = -1/c and y_0 > 0, relative to the size of the terms that cancel (x_0^2)."""
    y = y.detach().double()
    constraint = L.minkowski_dot(y, y) + 1 / c
    assert bool((y[..., 0] > 0).all())
    assert float((constraint.abs() / (y[..., 0].square())).max()) <= tol


# ----------------------------------------------------------------- shapes, dtypes
def test_shapes_and_dtypes(dtype):
    lift = ToLorentz(5).to(dtype)
    x = features(7, 5, 0, dtype)
    y = lift(x)
    assert y.shape == (7, 6) and y.dtype == dtype and bool(y.isfinite().all())
    assert lift(x.reshape(7, 1, 5).expand(7, 2, 5)).shape == (7, 2, 6)

    layer = LorentzLinear(5, 3).to(dtype)
    out = layer(y)
    assert out.shape == (7, 4) and out.dtype == dtype and bool(out.isfinite().all())
    batched = layer(y.reshape(7, 1, 6).expand(7, 2, 6))
    assert batched.shape == (7, 2, 4)
    torch.testing.assert_close(batched[:, 1], out)


def test_repr():
    assert repr(ToLorentz(4)) == "ToLorentz(in_features=4, c=1, alpha=0.5, learn_alpha=True)"
    assert repr(LorentzLinear(4, 3, c=0.3, learn_curvature=True)) == (
        "LorentzLinear(in_features=4, out_features=3, bias=True, c=0.3, learn_curvature=True)"
    )


# ----------------------------------------------------------------- the hyperboloid
@pytest.mark.parametrize("c", CURVATURES)
def test_outputs_lie_on_the_hyperboloid(dtype, tol, c):
    for scale in (0.0, 1e-3, 1.0, 30.0):
        x = features(50, 6, 1, dtype, scale)
        lift = ToLorentz(6, c=c).to(dtype)
        y = lift(x)
        assert_on_hyperboloid(y, c, tol)
        layer = LorentzLinear(6, 4, c=c).to(dtype)
        with torch.no_grad():
            layer.weight.mul_(20)  # far from the origin too
        assert_on_hyperboloid(layer(y), c, tol)
    # Inputs that would overflow cosh (float32: argument > 89): capped as in MERU, finite.
    huge = ToLorentz(6, c=c, alpha=1.0).to(dtype)(features(10, 6, 2, dtype, 1e6))
    assert bool(huge.isfinite().all())
    assert_on_hyperboloid(huge, c, tol)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    d=st.integers(1, 8),
    d_out=st.integers(1, 5),
    log_scale=st.floats(-6, 4),
    c=st.floats(0.05, 5.0),
)
def test_property_outputs_stay_on_the_hyperboloid(seed, d, d_out, log_scale, c):
    # Any width, curvature and feature scale from 1e-6 to 1e4 (the cap included), both dtypes.
    for dtype, tol in ((torch.float64, 1e-9), (torch.float32, 1e-4)):
        x = features(6, d, seed, dtype, 10.0**log_scale)
        y = ToLorentz(d, c=c).to(dtype)(x)
        assert_on_hyperboloid(y, c, tol)
        assert_on_hyperboloid(LorentzLinear(d, d_out, c=c).to(dtype)(y), c, tol)


@pytest.mark.parametrize("c", CURVATURES)
def test_to_lorentz_is_the_exponential_map_of_the_scaled_features(c):
    x = features(8, 4, 3)
    lift = ToLorentz(4, c=c).double()
    alpha = lift.alpha.detach()
    assert float(alpha) == pytest.approx(0.5, rel=1e-6)  # MERU's 1/sqrt(D), made in float32
    v = alpha * x
    t = math.sqrt(c) * v.norm(dim=-1, keepdim=True)
    expected = torch.cat([torch.cosh(t) / math.sqrt(c), torch.sinh(t) / t * v], -1)
    torch.testing.assert_close(lift(x), expected, rtol=1e-12, atol=1e-12)
    # The logarithmic map gives back alpha x.
    torch.testing.assert_close(L.logmap0(lift(x), c)[:, 1:], v, rtol=1e-10, atol=1e-12)
    # A given initial alpha, and the cap sqrt(c) |v| <= asinh(2^15) for a large input.
    lift = ToLorentz(4, c=c, alpha=3.0, learn_alpha=False).double()
    assert "log_alpha" in dict(lift.named_buffers()) and not list(lift.parameters())
    v = lift.alpha * x
    torch.testing.assert_close(lift(x), L.expmap0(torch.cat([x[:, :1], v], -1), c))
    far = L.logmap0(lift(1e9 * x), c)[:, 1:]
    torch.testing.assert_close(
        math.sqrt(c) * far.norm(dim=-1), torch.full((8,), math.asinh(2.0**15)).double()
    )
    torch.testing.assert_close(
        far / far.norm(dim=-1, keepdim=True), x / x.norm(dim=-1, keepdim=True)
    )


@pytest.mark.parametrize("c", CURVATURES)
def test_lorentz_linear_matches_the_formula(c):
    layer = LorentzLinear(4, 3, c=c).double()
    x = hyperboloid_points(6, 4, c, 4)
    space = x @ layer.weight.T + layer.bias  # W sees the time coordinate too
    expected = torch.cat([torch.sqrt(1 / c + space.square().sum(-1, keepdim=True)), space], -1)
    torch.testing.assert_close(layer(x), expected, rtol=1e-12, atol=1e-12)
    no_bias = LorentzLinear(4, 3, bias=False, c=c).double()
    assert no_bias.bias is None
    torch.testing.assert_close(no_bias(x)[:, 1:], x @ no_bias.weight.T)


def lorentz_transformation(d, seed):
    """A boost along a random direction followed by a random rotation of the space part:
    a (d+1, d+1) matrix of the orthochronous Lorentz group."""
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    rot = torch.eye(d + 1, dtype=torch.float64)
    rot[1:, 1:] = q * torch.sign(torch.diagonal(r))
    n = torch.randn(d, generator=g, dtype=torch.float64)
    n = n / n.norm()
    phi = 1.3  # rapidity
    boost = torch.eye(d + 1, dtype=torch.float64)
    boost[0, 0] = math.cosh(phi)
    boost[0, 1:] = boost[1:, 0] = math.sinh(phi) * n
    boost[1:, 1:] += (math.cosh(phi) - 1) * torch.outer(n, n)
    return rot @ boost


@pytest.mark.parametrize("c", CURVATURES)
def test_lorentz_linear_contains_the_isometries(c):
    # Chen et al.'s point: with W the space rows of a Lorentz transformation (x_0 included
    # in the input), the layer is that isometry; distances are preserved.
    lam = lorentz_transformation(4, 5)
    metric = torch.diag(torch.tensor([-1.0, 1, 1, 1, 1], dtype=torch.float64))
    torch.testing.assert_close(lam.T @ metric @ lam, metric)
    layer = LorentzLinear(4, 4, bias=False, c=c).double()
    with torch.no_grad():
        layer.weight.copy_(lam[1:])
    x, y = hyperboloid_points(10, 4, c, 6), hyperboloid_points(10, 4, c, 7)
    torch.testing.assert_close(layer(x), x @ lam.T, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(L.dist(layer(x), layer(y), c), L.dist(x, y, c), rtol=1e-9, atol=1e-9)
    # Not a trivial map.
    assert float((layer(x) - x).detach().abs().max()) > 1e-1


# ----------------------------------------------------------------- gradients
@pytest.mark.parametrize("name", ["to_lorentz", "lorentz_linear"])
def test_gradcheck(name):
    c = 0.7
    if name == "to_lorentz":
        layer = ToLorentz(3, c=c, learn_curvature=True).double()
        x = features(4, 3, 8)
        x[0] = 0  # the origin: the subgradient of the norm
    else:
        layer = LorentzLinear(3, 2, c=c, learn_curvature=True).double()
        x = hyperboloid_points(4, 3, c, 8)
    params = {k: v.detach().clone().requires_grad_(True) for k, v in layer.named_parameters()}
    names = list(params)

    def fn(x, *values):
        return functional_call(layer, dict(zip(names, values, strict=True)), (x,))

    x.requires_grad_(True)
    assert torch.autograd.gradcheck(fn, (x, *params.values()))


@pytest.mark.parametrize("name", ["to_lorentz", "lorentz_linear"])
def test_gradients_are_finite_and_reach_the_parameters(name, dtype):
    if name == "to_lorentz":
        layer = ToLorentz(5, c=0.7, learn_curvature=True).to(dtype)
        x = torch.cat([torch.zeros(2, 5), features(3, 5, 9, scale=100)]).to(dtype)
    else:
        layer = LorentzLinear(5, 3, c=0.7, learn_curvature=True).to(dtype)
        x = hyperboloid_points(5, 5, 0.7, 9, dtype)
    x.requires_grad_(True)
    layer(x).square().sum().backward()
    assert bool(x.grad.isfinite().all())
    for pname, p in layer.named_parameters():
        assert p.grad is not None and bool(p.grad.isfinite().all()), pname
        assert float(p.grad.abs().max()) > 0, pname
    assert float(layer.c.detach()) == pytest.approx(0.7, rel=1e-6)


# ----------------------------------------------------------------- bad input
def test_bad_inputs_raise_with_a_message():
    for c in (0.0, -1.0, math.inf):
        with pytest.raises(ValueError, match="c must be positive"):
            ToLorentz(3, c=c)
        with pytest.raises(ValueError, match="c must be positive"):
            LorentzLinear(3, 2, c=c)
    with pytest.raises(TypeError, match="c must be a positive float"):
        LorentzLinear(3, 2, c="1")
    with pytest.raises(ValueError, match="alpha must be positive"):
        ToLorentz(3, alpha=0.0)
    with pytest.raises(ValueError, match="in_features must be >= 1"):
        ToLorentz(0)
    with pytest.raises(TypeError, match="out_features must be an int"):
        LorentzLinear(3, 2.0)

    with pytest.raises(ValueError, match=r"x must have 3 features .*\(\.\.\., in_features\)"):
        ToLorentz(3)(torch.zeros(4, 4))
    with pytest.raises(ValueError, match=r"x must have 4 features .*in_features \+ 1"):
        LorentzLinear(3, 2)(torch.zeros(4, 3))  # the time coordinate is missing
    for layer, width in ((ToLorentz(3), 3), (LorentzLinear(3, 2), 4)):
        with pytest.raises(TypeError, match="x must have the dtype of the layer's parameters"):
            layer(torch.zeros(2, width, dtype=torch.float64))
        with pytest.raises(TypeError, match="x must be a float32 or float64 tensor"):
            layer(torch.zeros(2, width, dtype=torch.int64))
        with pytest.raises(TypeError, match="x must be a float32 or float64 tensor"):
            layer([0.0] * width)
