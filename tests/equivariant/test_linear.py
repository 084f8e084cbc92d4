import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from geolayers.equivariant import EquivariantLinear
from geolayers.groups import (
    O3,
    SO2,
    SO3,
    Dihedral,
    Regular,
    Scalar,
    Symmetric,
    Vector,
    equivariant_basis,
    invariant_basis,
)
from geolayers.testing import assert_group_equivariant, equivariance_error
from tests.equivariant.group_cases import GROUPS, REPS, cases
from tests.groups.user_groups import quaternion_group, skewed_dihedral


@pytest.mark.parametrize(("group", "rep"), cases())
def test_equivariant_for_every_group_and_rep(group, rep, dtype, tol):
    G = GROUPS[group]()
    r = REPS[rep](G)
    layer = EquivariantLinear(r, r)
    assert layer.num_weights > 0
    assert_group_equivariant(layer, G, r, r, dtype=dtype, tol=tol)


@pytest.mark.parametrize(
    ("group", "make"),
    [
        ("SO3", lambda V: (V * V, V)),  # the antisymmetric part: a cross product
        ("O3", lambda V: (V + V * V, 2 * V + Scalar(V.G))),
        ("SO2", lambda V: (V, V * V * V)),
        ("D4", lambda V: (V * Regular(V.G), V)),
        ("Q8", lambda V: (V * V, 3 * Scalar(V.G) + V)),
        ("C3xSO2", lambda V: (V * V, V + Scalar(V.G))),
    ],
)
def test_equivariant_between_different_reps(group, make, dtype, tol):
    G = GROUPS[group]()
    rep_in, rep_out = make(Vector(G))
    layer = EquivariantLinear(rep_in, rep_out)
    assert_group_equivariant(layer, G, rep_in, rep_out, dtype=dtype, tol=tol)


def _in_span(W, Q):
    flat = W.reshape(-1).to(torch.float64)
    return torch.allclose(Q @ (Q.T @ flat), flat, atol=1e-12)


@pytest.mark.parametrize(
    ("G", "make"),
    [
        (SO3(), lambda V: (V + Scalar(V.G) + V * V + V, V * V + 2 * V + Scalar(V.G))),
        (Symmetric(3), lambda V: (V * V + V + Scalar(V.G) + V, V + V * V + V)),
        (Dihedral(8), lambda V: (Regular(V.G) + V + Regular(V.G), V + Regular(V.G))),
    ],
)
def test_weights_are_the_whole_equivariant_space(G, make):
    """Interleaved sums are grouped by summand type; the layer's weights still span exactly the
    space of equivariant_basis(rep_in, rep_out), in the original feature order."""
    torch.manual_seed(0)
    rep_in, rep_out = make(Vector(G))
    layer = EquivariantLinear(rep_in, rep_out).double()
    Q = equivariant_basis(rep_in, rep_out)
    assert layer.num_weights == Q.shape[1]
    assert layer.num_bias == invariant_basis(rep_out).shape[1]
    W = layer.dense_weight()
    assert W.shape == (rep_out.size, rep_in.size) and _in_span(W, Q)
    # Every coefficient reaches W independently: the Jacobian of vec(W) has full rank.
    jac = torch.autograd.functional.jacobian(
        lambda c: layer._fold("w", layer._weight_blocks, c, c).reshape(-1), layer.weight.detach()
    )
    assert torch.linalg.matrix_rank(jac) == layer.num_weights
    b = layer.dense_bias()
    g = G.sample(4, torch.Generator().manual_seed(1))
    assert torch.allclose(rep_out.rho(g) @ b, b.expand(4, -1), atol=1e-12)


def test_sharing_for_signed_permutations_dense_otherwise():
    V = Vector(Symmetric(10))
    layer = EquivariantLinear(V * V, V * V)
    assert layer.uses_sharing and layer.num_weights == 15 and layer.num_bias == 2
    assert not EquivariantLinear(Vector(SO3()), Vector(SO3())).uses_sharing
    # The two routes are one parametrisation: the same orthonormal basis columns.
    C4 = Vector(GROUPS["C4"]())
    shared = EquivariantLinear(C4, C4).double()
    Q = equivariant_basis(C4, C4)
    assert torch.allclose(shared.dense_weight().reshape(-1), Q @ shared.weight)


def test_multiplicities_use_one_small_basis():
    V = Vector(SO3())
    layer = EquivariantLinear(16 * (V * V), 16 * (V * V))
    assert layer.num_weights == 16 * 16 * 3 and layer.num_bias == 16
    shapes = {name: tuple(b.shape) for name, b in layer.named_buffers() if name.endswith("_basis")}
    assert shapes == {"_w0_0_basis": (3, 81), "_b0_0_basis": (1, 9)}


def test_shapes_and_dtypes(dtype):
    V = Vector(SO3())
    layer = EquivariantLinear(V, V * V + Scalar(V.G)).to(dtype)
    x = torch.randn(2, 5, 3, dtype=dtype)
    y = layer(x)
    assert y.shape == (2, 5, 10) and y.dtype == dtype
    assert layer(torch.randn(3, dtype=dtype)).shape == (10,)


def test_float64_after_float32_construction_is_exact():
    """The basis is kept in float64: casting a float32-built layer to float64 does not keep the
    float32 rounding of the basis (which would cap the equivariance error at ~1e-7)."""
    V = Vector(SO3())
    layer = EquivariantLinear(V * V, V * V)
    assert layer.weight.dtype == torch.float32
    assert equivariance_error(layer.double(), SO3(), V * V, V * V) < 1e-13
    assert layer.to(torch.float32)._w0_0_basis.dtype == torch.float32


def test_state_dict_holds_only_coefficients():
    V = Vector(Dihedral(8))
    layer = EquivariantLinear(V + Regular(V.G), Regular(V.G) + V)
    assert set(layer.state_dict()) == {"weight", "bias"}
    assert len(list(layer.buffers())) > 0  # moved by .to(device) with the module
    clone = EquivariantLinear(V + Regular(V.G), Regular(V.G) + V)
    clone.load_state_dict(layer.state_dict())
    x = torch.randn(4, V.size + 16)
    assert torch.equal(clone(x), layer(x))


def test_initialisation_preserves_variance():
    torch.manual_seed(0)
    V = Vector(SO3())
    for rep_in, rep_out in ((16 * (V * V), 16 * (V * V)), (4 * Scalar(V.G) + 4 * V, 3 * V)):
        x = torch.randn(4096, rep_in.size)
        with torch.no_grad():
            var = torch.stack(
                [EquivariantLinear(rep_in, rep_out)(x).var(0).mean() for _ in range(20)]
            )
        assert 0.85 < float(var.mean()) < 1.15
    layer = EquivariantLinear(V, V)
    assert layer.bias is None and layer.num_bias == 0  # V of SO(3) has no invariant vector


def test_gradients_flow_to_coefficients():
    V = Vector(Symmetric(4))
    layer = EquivariantLinear(V * V, V).double()
    x = torch.randn(6, 16, dtype=torch.float64, requires_grad=True)
    layer(x).pow(2).sum().backward()
    assert layer.weight.grad.abs().min() > 0 and layer.bias.grad.abs().min() > 0
    assert torch.autograd.gradcheck(
        lambda w, x: layer._fold("w", layer._weight_blocks, w, w) @ x.T,
        (layer.weight.detach().clone().requires_grad_(), x),
    )
    Vs = Vector(SO3())
    dense = EquivariantLinear(Vs * Vs, Vs * Vs)
    dense(torch.randn(3, 9)).sum().backward()
    assert dense.weight.grad is not None and bool(dense.weight.grad.ne(0).any())


def test_repr():
    V = Vector(SO3())
    assert str(EquivariantLinear(V * V, V * V)) == (
        "EquivariantLinear(V**2 of SO(3) -> V**2 of SO(3), 9 -> 9, weights=3, bias=1)"
    )


def test_bad_arguments_are_named():
    V = Vector(SO3())
    with pytest.raises(TypeError, match="rep_in must be a Rep"):
        EquivariantLinear(3, V)
    with pytest.raises(ValueError, match="one group"):
        EquivariantLinear(V, Vector(O3()))
    with pytest.raises(TypeError, match="bias must be a bool"):
        EquivariantLinear(V, V, bias=1)
    with pytest.raises(ValueError, match=r"x must have 3 features .* got shape \(2, 4\)"):
        EquivariantLinear(V, V)(torch.randn(2, 4))


_PROPERTY_GROUPS = {"SO3": SO3, "SO2": SO2, "D4": lambda: Dihedral(4), "Q8": quaternion_group}


@st.composite
def _layers(draw):
    name = draw(st.sampled_from(sorted(_PROPERTY_GROUPS)))
    G = _PROPERTY_GROUPS[name]()
    V = Vector(G)
    atoms = [V, Scalar(G), V * V]

    def rep():
        parts = draw(st.lists(st.sampled_from(atoms), min_size=1, max_size=3))
        return sum(parts[1:], parts[0])

    return G, rep(), rep(), draw(st.booleans())


@settings(max_examples=12, deadline=None, derandomize=True)
@given(_layers())
def test_property_equivariant_for_random_sums(case):
    G, rep_in, rep_out, bias = case
    layer = EquivariantLinear(rep_in, rep_out, bias=bias)
    assert equivariance_error(layer, G, rep_in, rep_out) < 1e-9
    assert equivariance_error(layer, G, rep_in, rep_out, dtype=torch.float32) < 1e-4


def test_works_for_non_orthogonal_groups():
    G = skewed_dihedral()
    V = Vector(G)
    layer = EquivariantLinear(V * V, V + V.T)
    assert_group_equivariant(layer, G, V * V, V + V.T)
