import pytest
import torch

from geolayers.groups import (
    O3,
    SO2,
    SO3,
    Cyclic,
    Dihedral,
    Dual,
    GroupTooLargeError,
    Regular,
    Scalar,
    Sum,
    Symmetric,
    Tensor,
    Vector,
)
from geolayers.groups.reps import TensorProduct
from tests.groups.user_groups import quaternion_group, skewed_dihedral

GROUPS = {
    "SO3": SO3,
    "O3": O3,
    "SO2": SO2,
    "D5": lambda: Dihedral(5),
    "S4": lambda: Symmetric(4),
    "skewD4": skewed_dihedral,
    "Q8": quaternion_group,
    "C3xO3": lambda: Cyclic(3) * O3(),
}


def _reps(G):
    """One representation of each kind (and nested ones) of ``G``."""
    V = Vector(G)
    reps = {
        "V": V,
        "Scalar": Scalar(G),
        "Dual": Dual(V),
        "V.T": V.T,
        "Sum": V + Scalar(G) + V.T,
        "Tensor": V * V.T,
        "V**3": V**3,
        "nested": (V + Scalar(G)) * V.T + 2 * V,
        "dual of tensor": (V * (V + V)).T,
    }
    if G.is_finite:
        reps["Regular"] = Regular(G)
        reps["Regular*V"] = Regular(G) * V + V
    return reps


@pytest.mark.parametrize("group", list(GROUPS))
def test_rho_is_a_homomorphism(group):
    G = GROUPS[group]()
    gen = torch.Generator().manual_seed(0)
    g, h = G.sample(4, gen), G.sample(4, gen)
    for name, rep in _reps(G).items():
        rg, rh, rgh = rep.rho(g), rep.rho(h), rep.rho(g @ h)
        assert rg.shape == (4, rep.size, rep.size), name
        assert torch.allclose(rgh, rg @ rh, atol=1e-10), name
        eye = torch.eye(rep.size, dtype=torch.float64)
        assert torch.allclose(rep.rho(torch.eye(G.d, dtype=torch.float64)), eye), name


@pytest.mark.parametrize("group", ["SO3", "O3", "SO2", "C3xO3"])
def test_drho_is_the_derivative_and_a_lie_algebra_homomorphism(group):
    G = GROUPS[group]()
    gen = torch.Generator().manual_seed(1)
    coeffs = torch.randn(2, G.lie_algebra.shape[0], generator=gen, dtype=torch.float64)
    A, B = torch.einsum("nk,kij->nij", coeffs, G.lie_algebra)
    for name, rep in _reps(G).items():
        dA, dB = rep.drho(A), rep.drho(B)
        # rho(exp(t A)) = exp(t drho(A))
        assert torch.allclose(rep.rho(torch.matrix_exp(0.7 * A)), torch.matrix_exp(0.7 * dA)), name
        # drho([A, B]) = [drho(A), drho(B)]
        assert torch.allclose(rep.drho(A @ B - B @ A), dA @ dB - dB @ dA, atol=1e-10), name


@pytest.mark.parametrize("group", list(GROUPS))
def test_structured_operators_agree_with_rho(group):
    """The basis solver works on lazy operators; they must equal the dense matrices."""
    G = GROUPS[group]()
    g = G.sample(2, torch.Generator().manual_seed(2))
    for name, rep in _reps(G).items():
        for op, mat in zip(rep.element_ops(g), rep.rho(g), strict=True):
            assert torch.allclose(op.dense(), mat, atol=1e-12), name
            x = torch.randn(rep.size, 3, dtype=torch.float64)
            assert torch.allclose(op.mm(x), mat @ x, atol=1e-12), name
            assert torch.allclose(op.t().mm(x), mat.T @ x, atol=1e-12), name
        for (fwd, inv), h in zip(rep.generator_ops, G.discrete_generators, strict=True):
            assert torch.allclose(fwd.dense(), rep.rho(h), atol=1e-12), name
            assert torch.allclose(inv.dense(), rep.rho(torch.linalg.inv(h)), atol=1e-12), name
        for op, a in zip(rep.lie_ops, G.lie_algebra, strict=True):
            assert torch.allclose(op.dense(), rep.drho(a), atol=1e-12), name


def test_sizes_and_operator_algebra():
    G = SO3()
    V, S = Vector(G), Scalar(G)
    assert V.size == 3 and S.size == 1 and (V**2 + 2 * V + S).size == 16
    assert (V + V) + V == V + (V + V) == 3 * V == V * 3 == Sum(V, V, V)
    assert V * V == V**2 == Tensor(V, V) == TensorProduct(V, V)
    assert (V * V) * V == V * (V * V) == V**3
    assert V**0 == S and V**1 == V and V * S == V and S * S == S
    assert sum([V, V, S]) == V + V + S
    assert hash(3 * V) == hash(V + V + V) and len({V * V, V**2, V + V}) == 2
    assert V + S != S + V and V * V != V + V


def test_dual_simplifies_only_when_matrices_are_orthogonal():
    V = Vector(SO3())
    assert V.T == V and Regular(Dihedral(3)).T == Regular(Dihedral(3))
    W = Vector(skewed_dihedral())
    assert W.T != W and isinstance(W.T, Dual) and W.T.T == W
    assert (W * W).T == W.T * W.T and (W + Scalar(W.G)).T == W.T + Scalar(W.G)
    g = W.G.elements()
    assert torch.allclose(W.T.rho(g), torch.linalg.inv(g).mT)


def test_reprs():
    V = Vector(SO3())
    assert repr(V) == "V of SO(3)"
    assert repr(V**2 + 3 * V + Scalar(V.G)) == "V**2 + 3*V + Scalar of SO(3)"
    assert repr((V + Scalar(V.G)) ** 2) == "(V + Scalar)**2 of SO(3)"
    W = Vector(skewed_dihedral())
    assert repr(W.T * W) == "V.T * V of SkewD4"
    assert repr(Regular(Cyclic(3))) == "Regular of Cyclic(3)"


def test_permutation_flags():
    S4 = Symmetric(4)
    assert Vector(S4).is_permutation and (Vector(S4) ** 2 + Scalar(S4)).is_permutation
    assert (
        Regular(Dihedral(8)).is_permutation
        and (Regular(Cyclic(5)) * Regular(Cyclic(5))).is_permutation
    )
    c4 = Vector(Cyclic(4))  # quarter turns: signed permutations
    assert c4.is_signed_permutation and not c4.is_permutation
    assert (c4 * c4).is_signed_permutation and not (c4 * c4).is_permutation
    assert not Vector(Cyclic(8)).is_signed_permutation
    assert not Vector(SO3()).is_signed_permutation and not Vector(O3()).is_signed_permutation
    # A Lie algebra acting by zero does not spoil it.
    assert Scalar(SO3()).is_permutation and (Scalar(O3()) + Scalar(O3())).is_permutation


def test_regular_representation():
    G = Dihedral(4)
    R = Regular(G)
    elems = G.elements()
    assert R.size == 8
    mats = R.rho(elems)
    # Permutation matrices; rho(g) e_k = e_{index of g elems[k]}.
    assert bool(((mats == 0) | (mats == 1)).all()) and torch.equal(mats.sum(1), torch.ones(8, 8))
    for a in range(8):
        for k in range(8):
            target = int(mats[a, :, k].argmax())
            assert torch.allclose(elems[target], elems[a] @ elems[k])
    with pytest.raises(ValueError, match=r"g\[0\] is not an element of Dihedral\(4\)"):
        R.rho(Dihedral(8).discrete_generators[:1])


def test_regular_errors_are_clear():
    with pytest.raises(ValueError, match="needs a finite group, got SO"):
        Regular(SO3())
    with pytest.raises(GroupTooLargeError, match="40320 elements, more than limit=10000"):
        Regular(Symmetric(8))
    with pytest.raises(GroupTooLargeError, match="more than limit=5"):
        Regular(quaternion_group(), limit=5)


def test_bad_inputs_name_the_argument():
    V = Vector(SO3())
    with pytest.raises(ValueError, match="different groups"):
        V + Vector(O3())
    with pytest.raises(ValueError, match="different groups"):
        V * Vector(SO2())
    with pytest.raises(ValueError, match=r"g must have shape \(n, 3, 3\)"):
        V.rho(torch.eye(2, dtype=torch.float64))
    with pytest.raises(TypeError, match="g must be a floating"):
        V.rho(torch.eye(3, dtype=torch.long))
    with pytest.raises(ValueError, match="n >= 1 times"):
        0 * V
    with pytest.raises(ValueError, match="exponent"):
        V**-1
    with pytest.raises(TypeError, match="G must be a Group"):
        Vector("SO3")


def test_float32_elements_give_float32_matrices():
    V = Vector(SO3())
    g = SO3().sample(2).float()
    assert (V**2 + V).rho(g).dtype == torch.float32
