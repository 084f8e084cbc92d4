import pytest
import torch
from torch import nn

from geolayers.equivariant import (
    ACTIVATIONS,
    GatedNonlinearity,
    NormNonlinearity,
    PointwiseNonlinearity,
    QuadraticInvariants,
    activation_kind,
    pointwise,
)
from geolayers.groups import (
    O2,
    SO3,
    Cyclic,
    Dihedral,
    Regular,
    Scalar,
    Symmetric,
    Vector,
)
from geolayers.testing import assert_group_equivariant, assert_group_invariant
from tests.groups.user_groups import quaternion_group, skewed_dihedral


def test_activation_kinds():
    odd = {"tanh", "sin", "softsign", "hardtanh", "tanhshrink"}
    for name in ACTIVATIONS:
        expected = "linear" if name == "identity" else "odd" if name in odd else "general"
        assert activation_kind(name) == expected, name
    assert activation_kind(nn.Tanh()) == "odd"
    assert activation_kind(lambda x: -3 * x) == "linear"
    assert activation_kind(nn.PReLU()) == "general"  # float32 parameters: checked in float32


@pytest.mark.parametrize(
    ("rep", "activation"),
    [
        (Regular(Dihedral(4)), "relu"),  # permutation: anything goes
        (Vector(Symmetric(4)) ** 2, "gelu"),
        (3 * Scalar(SO3()), "silu"),  # scalars of a Lie group: the identity permutation
        (Vector(Cyclic(4)), "tanh"),  # signed permutation: odd activations
        (Vector(quaternion_group()), "sin"),
        (Vector(SO3()), "identity"),  # linear: always
    ],
)
def test_legal_pointwise_activations_are_equivariant(rep, activation, dtype, tol):
    layer = pointwise(rep, activation)
    assert isinstance(layer, PointwiseNonlinearity)
    assert_group_equivariant(layer, rep.G, rep, rep, dtype=dtype, tol=tol)


def test_relu_on_signed_permutations_is_rejected_with_the_reason():
    V = Vector(Cyclic(4))
    with pytest.raises(ValueError) as err:
        pointwise(V, "relu")
    msg = str(err.value)
    assert "activation 'relu' is not odd" in msg
    assert "V of Cyclic(4)" in msg and "signed permutations" in msg
    assert "'tanh'" in msg and "GatedNonlinearity" in msg and "arXiv:2401.09235" in msg
    with pytest.raises(ValueError, match="activation 'ReLU' is not odd"):
        pointwise(Vector(quaternion_group()) * Vector(quaternion_group()), nn.ReLU())


def test_pointwise_on_rotations_is_rejected_with_the_alternatives():
    with pytest.raises(ValueError) as err:
        pointwise(Vector(SO3()), "tanh")
    msg = str(err.value)
    assert "activation 'tanh' is not equivariant point-wise on V of SO(3)" in msg
    assert "do not act by (signed) permutations" in msg
    assert "GatedNonlinearity(rep)" in msg and "NormNonlinearity(rep)" in msg
    with pytest.raises(ValueError, match="not equivariant point-wise on V of Cyclic"):
        pointwise(Vector(Cyclic(3)), "relu")  # 120-degree turns: not a signed permutation


@pytest.mark.parametrize(
    ("rep", "activation"),
    [(Vector(Cyclic(4)), "relu"), (Vector(SO3()), "tanh"), (Vector(O2()), "sigmoid")],
)
def test_what_pointwise_rejects_really_breaks_equivariance(rep, activation):
    """The rule is not over-cautious: built anyway, these layers fail the equivariance test."""
    layer = PointwiseNonlinearity(rep, activation, ACTIVATIONS[activation])
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_group_equivariant(layer, rep.G, rep, rep)


def test_gated_nonlinearity(dtype, tol):
    G = SO3()
    V = Vector(G)
    rep = 2 * Scalar(G) + V + V * V + V
    gated = GatedNonlinearity(rep, "relu")
    assert gated.num_gates == 3 and gated.rep_in == rep + 3 * Scalar(G)
    assert gated.rep_out == rep
    assert_group_equivariant(gated, G, gated.rep_in, rep, dtype=dtype, tol=tol)
    x = torch.randn(5, gated.rep_in.size, dtype=dtype)
    y = gated(x)
    assert y.shape == (5, rep.size) and y.dtype == dtype
    assert torch.equal(y[:, :2], torch.relu(x[:, :2]))
    assert torch.allclose(y[:, 2:5], x[:, 2:5] * torch.sigmoid(x[:, 17:18]))
    # Gating needs no orthogonality: a non-orthogonal group works as well.
    skew = skewed_dihedral()
    W = Vector(skew)
    gated = GatedNonlinearity(W + W.T * W)
    assert_group_equivariant(gated, skew, gated.rep_in, gated.rep_out)
    assert str(gated) == (
        "GatedNonlinearity(V + V.T * V of SkewD4, gates=2, activation=relu, gate=sigmoid)"
    )


def test_norm_nonlinearity(dtype, tol):
    G = SO3()
    V = Vector(G)
    rep = Scalar(G) + 2 * V + V * V
    norm = NormNonlinearity(rep, "relu")
    assert norm.num_blocks == 3 and norm.bias.shape == (3,)
    assert_group_equivariant(norm.to(dtype), G, rep, rep, dtype=dtype, tol=tol)
    x = torch.randn(4, rep.size, dtype=dtype)
    y = norm(x)
    v = x[:, 1:4]
    r = v.norm(dim=1, keepdim=True)
    assert torch.allclose(y[:, 1:4], v / r * torch.relu(r - 1.0))
    assert torch.equal(y[:, :1], torch.relu(x[:, :1]))
    O = Vector(O2())
    assert_group_equivariant(NormNonlinearity(3 * O, "sigmoid"), O2(), 3 * O, 3 * O)


def test_norm_nonlinearity_gradients_stay_finite_at_zero():
    V = Vector(SO3())
    norm = NormNonlinearity(2 * V, "relu").double()
    with torch.no_grad():
        norm.bias.fill_(0.5)  # a positive shift, so that the zero block is not switched off
    x = torch.zeros(1, 6, dtype=torch.float64, requires_grad=True)
    norm(x).sum().backward()
    assert bool(torch.isfinite(x.grad).all()) and bool(torch.isfinite(norm.bias.grad).all())


def test_norm_nonlinearity_rejects_non_orthogonal_summands():
    W = Vector(skewed_dihedral())
    with pytest.raises(ValueError, match=r"orthogonal .* V of SkewD4 in rep is not; use Gated"):
        NormNonlinearity(W + W)


def test_bad_arguments_are_named():
    V = Vector(SO3())
    with pytest.raises(ValueError, match="activation must be one of"):
        pointwise(V, "rellu")
    with pytest.raises(TypeError, match="activation must be a str or a callable"):
        pointwise(V, 3)
    with pytest.raises(TypeError, match="rep must be a Rep"):
        GatedNonlinearity(SO3())
    with pytest.raises(ValueError, match="gate must be one of"):
        GatedNonlinearity(V, gate="sigmoidal")


@pytest.mark.parametrize(
    "make",
    [
        lambda: (lambda V: 2 * V + V * V + Scalar(V.G))(Vector(SO3())),
        lambda: (lambda V: V + V.T * V)(Vector(skewed_dihedral())),  # not orthogonal
        lambda: (lambda V: V + Regular(V.G))(Vector(Dihedral(4))),
    ],
)
def test_quadratic_invariants_are_invariant(make, dtype, tol):
    rep = make()
    quad = QuadraticInvariants(rep)
    assert quad.num_invariants > 0 and quad.rep_out.size == quad.num_invariants
    assert_group_invariant(quad, rep.G, rep, dtype=dtype, tol=tol)


def test_quadratic_invariants_values():
    V = Vector(SO3())
    quad = QuadraticInvariants(Scalar(V.G) + 2 * V).double()
    x = torch.randn(5, 7, dtype=torch.float64)
    expected = torch.stack([x[:, 1:4].pow(2).sum(1), x[:, 4:7].pow(2).sum(1)], 1) / 3**0.5
    assert torch.allclose(quad(x).abs(), expected)  # the basis sign is arbitrary
    assert QuadraticInvariants(3 * Scalar(V.G))(x[:, :3]).shape == (5, 0)
    assert str(quad) == "QuadraticInvariants(Scalar + 2*V of SO(3), invariants=2)"
