import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from geolayers.equivariant.soft import (
    SoftEquivarianceRegularizer,
    _Projection,
    soft_equivariance_penalty,
)
from geolayers.groups import (
    SO2,
    Cyclic,
    Group,
    Regular,
    Scalar,
    Symmetric,
    Vector,
    equivariant_basis,
    invariant_basis,
)

N = 4
S4 = Symmetric(N)
VS, HS, SS = Vector(S4), 2 * Vector(S4), Scalar(S4)
FLIP = Group.from_generators(discrete=-torch.eye(N)[None], name="SignFlip")
VZ, HZ, SZ = Vector(FLIP), 4 * Regular(FLIP), Scalar(FLIP)


def _mlp(dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(N, 2 * N), nn.Tanh(), nn.Linear(2 * N, 2 * N), nn.Tanh(), nn.Linear(2 * N, 1)
    ).to(dtype)


def _candidates():
    return [
        ("S4", VS, HS),
        ("S4", HS, HS),
        ("S4", HS, SS),
        ("flip", VZ, HZ),
        ("flip", HZ, HZ),
        ("flip", HZ, SZ),
    ]


def _dense_residual(x, rep_in, rep_out):
    """0.5 |x - Q Q^T x|^2 with the dense basis: the reference for both projection paths."""
    q = equivariant_basis(rep_in, rep_out).to(x.dtype)
    flat = x.reshape(-1)
    return 0.5 * (flat - q @ (q.T @ flat)).square().sum()


def _project_model(model, rep_pairs):
    """Replace every Linear's weight and bias by their projections (an equivariant model)."""
    with torch.no_grad():
        for lin, (rep_in, rep_out) in zip(
            [m for m in model.modules() if isinstance(m, nn.Linear)], rep_pairs, strict=True
        ):
            q = equivariant_basis(rep_in, rep_out).to(lin.weight.dtype)
            w = lin.weight.reshape(-1)
            lin.weight.copy_((q @ (q.T @ w)).reshape(lin.weight.shape))
            qb = invariant_basis(rep_out).to(lin.bias.dtype)
            lin.bias.copy_(qb @ (qb.T @ lin.bias))


# -- the penalty --------------------------------------------------------------------------------


def test_zero_for_equivariant_weights_positive_otherwise(dtype, tol):
    model = _mlp(dtype)
    reg = SoftEquivarianceRegularizer(model, _candidates())
    before = reg.penalties().detach()
    assert before.dtype == dtype and before.shape == (2,)
    assert bool((before > 0.1).all())
    _project_model(model, [(VS, HS), (HS, HS), (HS, SS)])
    after = reg.penalties().detach()
    assert float(after[0]) <= tol  # S4-equivariant now
    assert float(after[1]) > 0.01  # but not sign-flip invariant
    assert reg().item() == pytest.approx(float(after.sum()), rel=1e-6)


def test_matches_dense_reference_on_both_projection_paths(dtype, tol):
    # S4 acts by permutations (parameter sharing); SO(2) needs the dense basis.
    torch.manual_seed(1)
    for rep_in, rep_out in ((VS, HS), (HS, HS), (HS, SS), (VZ, HZ)):
        assert _Projection(rep_in, rep_out).basis is None
        w = torch.randn(rep_out.size, rep_in.size, dtype=dtype)
        b = torch.randn(rep_out.size, dtype=dtype)
        got = soft_equivariance_penalty(w, b, rep_in, rep_out)
        want = _dense_residual(w, rep_in, rep_out) + _dense_residual(b, Scalar(rep_in.G), rep_out)
        assert float(got) == pytest.approx(float(want), rel=tol, abs=tol)
    V2 = Vector(SO2())
    assert _Projection(V2, 2 * V2).basis is not None
    w = torch.randn(4, 2, dtype=dtype)
    got = soft_equivariance_penalty(w, None, V2, 2 * V2)
    assert float(got) == pytest.approx(float(_dense_residual(w, V2, 2 * V2)), rel=tol)
    # The rotation-equivariant maps R^2 -> R^2 are a I + b J: that part costs nothing.
    a, c = torch.tensor(0.7, dtype=dtype), torch.tensor(-1.3, dtype=dtype)
    rot = torch.stack([torch.stack([a, -c]), torch.stack([c, a])])
    assert float(soft_equivariance_penalty(rot, torch.zeros(2, dtype=dtype), V2, V2)) <= tol
    # No invariant vectors of V: any non-zero bias is penalised in full.
    bias = torch.tensor([3.0, 4.0], dtype=dtype)
    assert float(soft_equivariance_penalty(rot, bias, V2, V2)) == pytest.approx(12.5, rel=tol)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**16), scale=st.floats(0.1, 10.0))
def test_penalty_is_half_squared_distance_to_the_projection(seed, scale):
    gen = torch.Generator().manual_seed(seed)
    w = scale * torch.randn(8, 8, generator=gen, dtype=torch.float64)
    value = soft_equivariance_penalty(w, None, HS, HS)
    assert float(value) == pytest.approx(float(_dense_residual(w, HS, HS)), rel=1e-9)
    # Projecting is idempotent: the projected weights cost nothing, the rest costs it all.
    q = equivariant_basis(HS, HS)
    pw = (q @ (q.T @ w.reshape(-1))).reshape(8, 8)
    assert float(soft_equivariance_penalty(pw, None, HS, HS)) <= 1e-20 * scale**2 + 1e-24
    assert float(soft_equivariance_penalty(w - pw, None, HS, HS)) == pytest.approx(
        float(value), rel=1e-9
    )


def test_gradcheck_float64():
    torch.manual_seed(2)
    w = torch.randn(8, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(8, dtype=torch.float64, requires_grad=True)
    for rep_in, rep_out in ((VS, HS), (VZ, HZ)):
        assert torch.autograd.gradcheck(
            lambda w, b, ri=rep_in, ro=rep_out: soft_equivariance_penalty(w, b, ri, ro), (w, b)
        )
    V2 = Vector(SO2())
    w2 = torch.randn(4, 2, dtype=torch.float64, requires_grad=True)
    b2 = torch.randn(4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda w, b: soft_equivariance_penalty(w, b, V2, 2 * V2), (w2, b2)
    )


def test_module_gradient_is_the_non_equivariant_part_and_matches_finite_differences():
    model = _mlp(torch.float64, seed=3)
    reg = SoftEquivarianceRegularizer(model, _candidates(), strength=[0.5, 2.0])
    lin = model[2]
    reg().backward()
    q_s = equivariant_basis(HS, HS)
    q_z = equivariant_basis(HZ, HZ)
    w = lin.weight.detach().reshape(-1)
    want = 0.5 * (w - q_s @ (q_s.T @ w)) + 2.0 * (w - q_z @ (q_z.T @ w))
    torch.testing.assert_close(lin.weight.grad.reshape(-1), want, rtol=1e-12, atol=1e-12)
    # Central differences of the module itself on a few entries.
    h = 1e-6
    for i, j in ((0, 0), (3, 5), (7, 2)):
        with torch.no_grad():
            lin.weight[i, j] += h
            up = reg().item()
            lin.weight[i, j] -= 2 * h
            down = reg().item()
            lin.weight[i, j] += h
        assert (up - down) / (2 * h) == pytest.approx(float(lin.weight.grad[i, j]), abs=1e-7)


def test_float32_and_float64_weights(dtype, tol):
    model = _mlp(dtype)
    reg = SoftEquivarianceRegularizer(model, _candidates())
    out = reg()
    assert out.dtype == dtype and out.shape == ()
    out.backward()
    assert model[0].weight.grad is not None and model[0].weight.grad.dtype == dtype
    reference = SoftEquivarianceRegularizer(_mlp(torch.float64), _candidates()).penalties()
    torch.testing.assert_close(reg.penalties().double(), reference.detach(), rtol=tol, atol=tol)


def test_bias_can_be_left_out():
    model = _mlp()
    with_bias = SoftEquivarianceRegularizer(model, _candidates()).penalties()
    without = SoftEquivarianceRegularizer(model, _candidates(), bias=False).penalties()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear):
                m.bias.zero_()
    zero_bias = SoftEquivarianceRegularizer(model, _candidates()).penalties()
    torch.testing.assert_close(without, zero_bias)
    assert bool((with_bias > without).all())


def test_layers_matched_by_shape_and_groups_as_names():
    model = _mlp()
    # Only the hidden layer is (8, 8); a Group as the key names the candidate by its repr.
    reg = SoftEquivarianceRegularizer(model, [(S4, HS, HS)])
    assert reg.names == ["Symmetric(4)"] and len(reg._terms) == 1
    want = soft_equivariance_penalty(model[2].weight, model[2].bias, HS, HS)
    torch.testing.assert_close(reg.penalties()[0], want)
    # The model stays the caller's: no parameters here, only buffers.
    assert list(reg.parameters()) == []
    assert {"lambdas", "base_lambdas", "ema", "num_updates"} <= set(reg.state_dict())


def test_repr():
    reg = SoftEquivarianceRegularizer(_mlp(), _candidates(), strength=0.1)
    assert str(reg) == (
        "SoftEquivarianceRegularizer(candidates=['S4', 'flip'], terms=6, "
        "strengths=(S4=0.1, flip=0.1), power=1.0, normalize=False)"
    )


# -- the strengths ------------------------------------------------------------------------------


def test_strength_rule_ema_warmup_and_power():
    reg = SoftEquivarianceRegularizer(
        _mlp(), _candidates(), strength=[2.0, 1.0], momentum=0.5, warmup=1, power=2.0, eps=0.0
    )
    assert reg.strengths == {"S4": 2.0, "flip": 1.0}
    # Warm-up: the first call only starts the average.
    reg.update_strengths(torch.tensor([1.0, 4.0]))
    assert reg.strengths == {"S4": 2.0, "flip": 1.0}
    torch.testing.assert_close(reg.ema, torch.tensor([1.0, 4.0], dtype=torch.float64))
    # EMA: 0.5 * [1, 4] + 0.5 * [3, 0] = [2, 2] -> equal ratios, the initial strengths.
    out = reg.update_strengths(torch.tensor([3.0, 0.0]))
    torch.testing.assert_close(out, torch.tensor([2.0, 1.0], dtype=torch.float64))
    # EMA [1.5, 3]: lambda_j = lambda0_j (min / R_j)^2 = [2, 1 * (1/2)^2].
    out = reg.update_strengths(torch.tensor([1.0, 4.0]))
    torch.testing.assert_close(reg.ema, torch.tensor([1.5, 3.0], dtype=torch.float64))
    torch.testing.assert_close(out, torch.tensor([2.0, 0.25], dtype=torch.float64))
    assert int(reg.num_updates) == 3
    # It does not compound: the same average gives the same strengths.
    reg.ema.copy_(torch.tensor([1.5, 3.0]))
    torch.testing.assert_close(
        reg.update_strengths(torch.tensor([1.5, 3.0])), torch.tensor([2.0, 0.25]).double()
    )
    reg.reset_strengths()
    assert reg.strengths == {"S4": 2.0, "flip": 1.0} and int(reg.num_updates) == 0


def test_strength_rule_is_inverse_proportional_with_eps():
    reg = SoftEquivarianceRegularizer(_mlp(), _candidates(), strength=1.0, momentum=0.0, eps=1.0)
    out = reg.update_strengths(torch.tensor([0.0, 3.0]))
    # (min + eps) / (R + eps) = [1, 1/4]: an exactly met candidate keeps a finite ratio.
    torch.testing.assert_close(out, torch.tensor([1.0, 0.25], dtype=torch.float64))
    zero = SoftEquivarianceRegularizer(_mlp(), _candidates(), momentum=0.0, eps=0.0)
    torch.testing.assert_close(
        zero.update_strengths(torch.zeros(2)), torch.ones(2, dtype=torch.float64)
    )


def test_exact_symmetry_gets_the_larger_strength():
    # Weights that are S4-equivariant but break the sign flip: the update favours S4.
    model = _mlp(seed=4)
    _project_model(model, [(VS, HS), (HS, HS), (HS, SS)])
    for normalize in (False, True):
        reg = SoftEquivarianceRegularizer(model, _candidates(), strength=1.0, normalize=normalize)
        reg()
        reg.update_strengths()
        assert reg.strengths["S4"] == 1.0 and reg.strengths["flip"] < 1e-6


def test_normalize_compares_fractions_of_the_constraint():
    # Isotropic random weights violate every constraint by the same fraction of their norm, so
    # the normalised averages are close; the raw penalty of the weak sign-flip constraint (half
    # of the entries free) is about half that of S4's (7/8 of the entries constrained).
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(8, 8, bias=False)).double()
    with torch.no_grad():
        model[0].weight.normal_()
    cands = [("S4", HS, HS), ("flip", HZ, HZ)]
    raw = SoftEquivarianceRegularizer(model, cands, momentum=0.0)
    raw()
    r = raw.update_strengths()
    assert float(r[1]) == 1.0 and float(r[0]) < 0.8
    norm = SoftEquivarianceRegularizer(model, cands, momentum=0.0, normalize=True)
    norm()
    n = norm.update_strengths()
    assert float(n.min()) > 0.6


def test_training_step_pattern():
    model = _mlp(torch.float32)
    reg = SoftEquivarianceRegularizer(model, _candidates(), strength=1.0, warmup=2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    first = reg.penalties().sum().item()
    for _ in range(5):
        loss = reg()
        opt.zero_grad()
        loss.backward()
        opt.step()
        reg.update_strengths()
    assert reg.penalties().sum().item() < first
    assert int(reg.num_updates) == 5 and math.isfinite(sum(reg.strengths.values()))


# -- bad input ------------------------------------------------------------------------------------


def test_bad_arguments_name_themselves():
    model = _mlp()
    with pytest.raises(ValueError, match="candidate 'C4' matches no nn.Linear"):
        SoftEquivarianceRegularizer(model, [("C4", Vector(Cyclic(4)), Vector(Cyclic(4)))])
    with pytest.raises(ValueError, match="two different pairs"):
        SoftEquivarianceRegularizer(model, [("x", HS, HS), ("x", 8 * SS, 8 * SS)])
    with pytest.raises(ValueError, match="mixes groups"):
        SoftEquivarianceRegularizer(model, [("x", VS, HS), ("x", HZ, HZ)])
    with pytest.raises(ValueError, match="representations of one group"):
        SoftEquivarianceRegularizer(model, [("x", VS, HZ)])
    with pytest.raises(ValueError, match="not of the group"):
        SoftEquivarianceRegularizer(model, [(FLIP, HS, HS)])
    with pytest.raises(TypeError, match=r"candidates\[0\] must be a"):
        SoftEquivarianceRegularizer(model, [(VS, HS)])
    with pytest.raises(TypeError, match="candidates must be a sequence"):
        SoftEquivarianceRegularizer(model, "S4")
    with pytest.raises(ValueError, match="strength must be a float or 2 floats"):
        SoftEquivarianceRegularizer(model, _candidates(), strength=[1.0])
    with pytest.raises(ValueError, match="strength must be >= 0"):
        SoftEquivarianceRegularizer(model, _candidates(), strength=-1.0)
    with pytest.raises(ValueError, match="momentum must be < 1"):
        SoftEquivarianceRegularizer(model, _candidates(), momentum=1.0)
    with pytest.raises(ValueError, match="warmup must be an int"):
        SoftEquivarianceRegularizer(model, _candidates(), warmup=-1)
    with pytest.raises(TypeError, match="model must be an nn.Module"):
        SoftEquivarianceRegularizer("model", _candidates())
    reg = SoftEquivarianceRegularizer(model, _candidates())
    with pytest.raises(RuntimeError, match="call the regularizer first"):
        reg.update_strengths()
    with pytest.raises(ValueError, match=r"penalties must be a \(2,\) tensor"):
        reg.update_strengths(torch.ones(3))
    with pytest.raises(ValueError, match="finite and >= 0"):
        reg.update_strengths(torch.tensor([1.0, -1.0]))
    with pytest.raises(ValueError, match=r"weight must be a floating \(8, 4\)"):
        soft_equivariance_penalty(torch.ones(4, 8), None, VS, HS)
    with pytest.raises(ValueError, match="bias must be None or a"):
        soft_equivariance_penalty(torch.ones(8, 4), torch.ones(4), VS, HS)
