import math

import pytest
import torch

from geolayers.groups import (
    O2,
    O3,
    SO,
    SO2,
    SO3,
    Cyclic,
    Dihedral,
    DirectProduct,
    Group,
    GroupTooLargeError,
    O,
    Symmetric,
    Trivial,
    as_signed_permutation,
    is_permutation_matrix,
    is_signed_permutation_matrix,
    permutation_matrices,
    rotation_2d,
)
from tests.groups.user_groups import CubeRotations, quaternion_group, skewed_dihedral

FINITE = {
    "C1": (lambda: Cyclic(1), 1),
    "C6": (lambda: Cyclic(6), 6),
    "D1": (lambda: Dihedral(1), 2),
    "D5": (lambda: Dihedral(5), 10),
    "S1": (lambda: Symmetric(1), 1),
    "S2": (lambda: Symmetric(2), 2),
    "S4": (lambda: Symmetric(4), 24),
    "O1": (lambda: O(1), 2),
    "Q8": (quaternion_group, 8),
    "cube": (CubeRotations, 24),
    "skewD4": (skewed_dihedral, 8),
    "C3xS3": (lambda: Cyclic(3) * Symmetric(3), 18),
    "trivial": (lambda: Trivial(2), 1),
}


def _contains(table: torch.Tensor, mats: torch.Tensor, atol: float = 1e-9) -> torch.Tensor:
    diff = (mats[:, None] - table[None]).abs().flatten(2).amax(-1)
    return (diff <= atol).any(dim=1)


@pytest.mark.parametrize("name", list(FINITE))
def test_finite_group_axioms(name):
    make, order = FINITE[name]
    G = make()
    elems = G.elements()
    assert G.is_finite and G.order == order and elems.shape == (order, G.d, G.d)
    assert torch.equal(elems[0], torch.eye(G.d, dtype=torch.float64))
    # Generators are elements; the set is closed under products and inverses; no duplicates.
    assert bool(_contains(elems, G.discrete_generators).all())
    products = (elems[:, None] @ elems[None]).reshape(-1, G.d, G.d)
    assert bool(_contains(elems, products).all())
    assert bool(_contains(elems, torch.linalg.inv(elems)).all())
    gaps = (elems[:, None] - elems[None]).abs().flatten(2).amax(-1)
    assert bool((gaps + torch.eye(order, dtype=torch.float64) > 1e-6).all())
    # Samples are elements too.
    assert bool(_contains(elems, G.sample(20, torch.Generator().manual_seed(0))).all())


@pytest.mark.parametrize("G", [Cyclic(7), Dihedral(6), Symmetric(4), Cyclic(2) * Dihedral(3)])
def test_closed_form_elements_match_the_closure_of_the_generators(G):
    closure = Group.from_generators(discrete=G.discrete_generators, name="closure").elements()
    assert closure.shape[0] == G.order
    assert bool(_contains(G.elements(), closure).all())


def test_user_group_in_three_lines():
    class Z4(Group):
        discrete_generators = [[[0.0, -1.0], [1.0, 0.0]]]

    G = Z4()
    assert G.order == 4 and G.d == 2 and repr(G) == "Z4" and G.haar_sampling

    class Rot(Group):  # EMLP style: generators from the arguments, then super().__init__(*args)
        def __init__(self, k):
            self.discrete_generators = rotation_2d(2 * math.pi / k)[None]
            super().__init__(k)

    assert Rot(5).order == 5 and repr(Rot(5)) == "Rot(5)" and Rot(5) == Rot(5) != Rot(4)


def test_equality_and_hash_follow_the_definition():
    assert Cyclic(4) == Cyclic(4) and hash(Cyclic(4)) == hash(Cyclic(4))
    assert Cyclic(4) != Cyclic(5) and Cyclic(2) != Dihedral(1)
    assert SO3() == SO(3) and O2() == O(2) and hash(SO3()) == hash(SO(3))
    assert SO(3) != O(3)
    a, b = quaternion_group(), quaternion_group()
    assert a == b and hash(a) == hash(b) and len({a, b, Cyclic(4)}) == 2
    other = Group.from_generators(discrete=a.discrete_generators, name="other")
    assert other != a
    assert Cyclic(2) * SO3() == DirectProduct(Cyclic(2), SO3())


def test_reprs():
    assert repr(Cyclic(4)) == "Cyclic(4)" and repr(SO3()) == "SO(3)" and repr(O2()) == "O(2)"
    assert repr(Cyclic(3) * SO3() * Symmetric(2)) == "Cyclic(3) x SO(3) x Symmetric(2)"
    assert repr(quaternion_group()) == "Q8" and repr(CubeRotations()) == "CubeRotations"


def test_lie_groups_have_generators_and_no_elements():
    for G, k, h in [(SO2(), 1, 0), (O2(), 1, 1), (SO3(), 3, 0), (O3(), 3, 1), (SO(4), 6, 0)]:
        assert G.lie_algebra.shape == (k, G.d, G.d)
        assert G.discrete_generators.shape == (h, G.d, G.d)
        assert not G.is_finite and G.order == math.inf and G.is_orthogonal and G.haar_sampling
        assert torch.allclose(G.lie_algebra, -G.lie_algebra.mT)
        with pytest.raises(ValueError, match="not finite"):
            G.elements()
    # O(n)'s discrete generator is a reflection.
    assert torch.linalg.det(O3().discrete_generators[0]) == -1


def test_so3_haar_sampling():
    g = SO3().sample(20000, torch.Generator().manual_seed(0))
    eye = torch.eye(3, dtype=torch.float64)
    assert torch.allclose(g @ g.mT, eye.expand_as(g), atol=1e-12)
    assert torch.allclose(torch.linalg.det(g), torch.ones(20000, dtype=torch.float64))
    # Haar moments: E[g] = 0, and E[tr(g)^2] = 1 because R^3 is irreducible (Schur); plain QR
    # without the sign fix fails the first, exp of a Gaussian algebra element the second.
    assert g.mean(0).abs().max() < 0.03
    tr = g.diagonal(dim1=-2, dim2=-1).sum(-1)
    assert abs(float((tr**2).mean()) - 1.0) < 0.05


def test_o3_haar_sampling_hits_both_components():
    g = O3().sample(20000, torch.Generator().manual_seed(1))
    det = torch.linalg.det(g)
    assert torch.allclose(det.abs(), torch.ones_like(det))
    assert abs(float((det > 0).double().mean()) - 0.5) < 0.02
    assert g.mean(0).abs().max() < 0.03
    tr = g.diagonal(dim1=-2, dim2=-1).sum(-1)
    assert abs(float((tr**2).mean()) - 1.0) < 0.05


def test_so2_and_o2_sampling():
    gen = torch.Generator().manual_seed(2)
    g = SO2().sample(20000, gen)
    assert torch.allclose(torch.linalg.det(g), torch.ones(20000, dtype=torch.float64))
    assert g.mean(0).abs().max() < 0.03
    h = O2().sample(20000, gen)
    det = torch.linalg.det(h)
    assert torch.allclose(h @ h.mT, torch.eye(2, dtype=torch.float64).expand_as(h), atol=1e-12)
    assert abs(float((det > 0).double().mean()) - 0.5) < 0.02


def test_sampling_is_reproducible_with_a_generator():
    for G in [SO3(), O2(), Dihedral(4), Symmetric(12), Cyclic(3) * SO2()]:
        a = G.sample(3, torch.Generator().manual_seed(5))
        b = G.sample(3, torch.Generator().manual_seed(5))
        assert a.shape == (3, G.d, G.d) and a.dtype == torch.float64 and torch.equal(a, b)


def test_symmetric_samples_uniform_permutations_beyond_the_element_limit():
    G = Symmetric(12)
    assert G.order == math.factorial(12)
    g = G.sample(3000, torch.Generator().manual_seed(3))
    assert is_permutation_matrix(g)
    # Where element 0 goes is uniform over the 12 points.
    freq = g[:, :, 0].mean(0)
    assert freq.sub(1 / 12).abs().max() < 0.03
    with pytest.raises(GroupTooLargeError, match="479001600 elements, more than limit=10000"):
        G.elements()


def test_direct_product_structure():
    G = Cyclic(4) * SO3()
    assert isinstance(G, DirectProduct) and G.d == 5
    assert G.discrete_generators.shape == (1, 5, 5) and G.lie_algebra.shape == (3, 5, 5)
    # Generators are block diagonal: identity (or zero) on the other factor.
    assert torch.equal(G.discrete_generators[0, 2:, 2:], torch.eye(3, dtype=torch.float64))
    assert torch.equal(G.lie_algebra[:, :2, :2], torch.zeros(3, 2, 2, dtype=torch.float64))
    g = G.sample(4, torch.Generator().manual_seed(0))
    assert torch.equal(g[:, :2, 2:], torch.zeros(4, 2, 3, dtype=torch.float64))
    assert torch.allclose(torch.linalg.det(g[:, 2:, 2:]), torch.ones(4, dtype=torch.float64))
    assert G.haar_sampling and not G.is_finite
    H = DirectProduct(Cyclic(2), DirectProduct(Cyclic(3), Dihedral(2)))
    assert len(H.factors) == 3 and H.order == 24 and H.elements().shape == (24, 6, 6)


def test_closure_past_the_limit_raises_a_clear_error():
    irrational = Group.from_generators(discrete=rotation_2d(1.0)[None], name="Irrational")
    with pytest.raises(GroupTooLargeError, match=r"Irrational has more than limit=100 elements"):
        irrational.elements(limit=100)
    # Sampling falls back to random words, which stay in the group (here: rotations).
    g = irrational.sample(5)
    assert torch.allclose(torch.linalg.det(g), torch.ones(5, dtype=torch.float64))
    assert not irrational.haar_sampling


def test_default_lie_sampler_stays_in_the_group():
    G = Group.from_generators(lie=SO3().lie_algebra, name="MySO3")
    g = G.sample(50, torch.Generator().manual_seed(0))
    assert torch.allclose(g @ g.mT, torch.eye(3, dtype=torch.float64).expand_as(g), atol=1e-12)
    assert torch.allclose(torch.linalg.det(g), torch.ones(50, dtype=torch.float64))
    assert not G.haar_sampling and not G.is_finite


def test_act_defaults_to_matrix_vector_products():
    G = SO3()
    g = G.sample(4, torch.Generator().manual_seed(0))
    x = torch.randn(4, 7, 3, dtype=torch.float64)
    assert torch.allclose(G.act(g, x), torch.einsum("bij,bnj->bni", g, x))
    assert torch.allclose(G.act(g[0], x), x @ g[0].T)
    with pytest.raises(ValueError, match="x must have 3 features"):
        G.act(g, torch.randn(4, 2))
    with pytest.raises(ValueError, match="batch size of g"):
        G.act(g, torch.randn(5, 3, dtype=torch.float64))


def test_bad_generators_are_rejected_with_the_argument_named():
    with pytest.raises(ValueError, match=r"discrete_generators must have shape \(h, d, d\)"):
        Group.from_generators(discrete=torch.ones(2, 2, 3))
    with pytest.raises(ValueError, match="same d"):
        Group.from_generators(discrete=torch.eye(2)[None], lie=torch.zeros(1, 3, 3))
    with pytest.raises(ValueError, match=r"discrete_generators\[1\] is singular"):
        Group.from_generators(discrete=torch.stack([torch.eye(2), torch.zeros(2, 2)]))
    with pytest.raises(ValueError, match="must be finite"):
        Group.from_generators(discrete=torch.full((1, 2, 2), float("nan")))
    with pytest.raises(ValueError, match="or set d"):
        Group.from_generators()
    with pytest.raises(TypeError, match="n must be an int"):
        Cyclic(2.5)
    with pytest.raises(ValueError, match="n must be >= 2 for SO"):
        SO(1)
    with pytest.raises(ValueError, match="n must be >= 0"):
        SO3().sample(-1)


def test_signed_permutation_helpers():
    m = torch.tensor([[0.0, -1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    perm, sign = as_signed_permutation(m)
    assert perm.tolist() == [2, 0, 1] and sign.tolist() == [1.0, -1.0, 1.0]
    e = torch.eye(3)
    for j in range(3):  # m e_j = sign[j] e_{perm[j]}
        assert torch.equal(m @ e[j], sign[j].float() * e[perm[j]])
    assert is_signed_permutation_matrix(m) and not is_permutation_matrix(m)
    assert is_permutation_matrix(permutation_matrices(torch.tensor([[2, 0, 1], [0, 1, 2]])))
    assert as_signed_permutation(rotation_2d(0.3)) is None
    assert as_signed_permutation(torch.tensor([[1.0, 1.0], [0.0, 0.0]])) is None
    assert is_signed_permutation_matrix(rotation_2d(math.pi / 2))  # cos(pi/2) = 6e-17
    with pytest.raises(ValueError, match="square"):
        is_permutation_matrix(torch.ones(2, 3))


def test_permutation_matrix_convention():
    sigma = torch.tensor([1, 2, 0])
    P = permutation_matrices(sigma)
    x = torch.tensor([10.0, 20.0, 30.0], dtype=torch.float64)
    y = P @ x
    assert all(y[sigma[j]] == x[j] for j in range(3))
