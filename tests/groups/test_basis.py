import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from geolayers.groups import (
    DEFAULT_RTOL,
    O2,
    O3,
    SO2,
    SO3,
    Cyclic,
    Dihedral,
    Group,
    Projector,
    Regular,
    Scalar,
    Symmetric,
    Trivial,
    Vector,
    clear_basis_cache,
    equivariant_basis,
    equivariant_projector,
    invariant_basis,
    parameter_sharing,
)
from geolayers.groups.basis import (
    _basis,
    _Constraints,
    _lie_gram_dense,
    _solve_dense,
    _solver_used,
)
from tests.groups.user_groups import CubeRotations, quaternion_group, skewed_dihedral


def _violation(Q, rep_in, rep_out, g):
    """Largest |rho_out(g) W - W rho_in(g)| over the basis and the elements ``g``."""
    if Q.shape[1] == 0:
        return 0.0
    W = Q.T.reshape(-1, rep_out.size, rep_in.size)
    lhs = rep_out.rho(g)[:, None] @ W[None]
    rhs = W[None] @ rep_in.rho(g)[:, None]
    return float((lhs - rhs).abs().max())


def _same_span(a, b, atol=1e-8):
    return a.shape == b.shape and torch.allclose(a @ a.T, b @ b.T, atol=atol)


@pytest.mark.parametrize(
    ("G", "dim"),
    [
        (SO3(), 1),
        (O3(), 1),
        (Symmetric(2), 2),
        (Symmetric(3), 2),
        (Symmetric(5), 2),
        (Symmetric(10), 2),
    ],
)
def test_invariants_of_v_tensor_v(G, dim):
    V = Vector(G)
    assert invariant_basis(V * V).shape == (G.d**2, dim)


@pytest.mark.parametrize("n", [4, 5, 10])
def test_maps_v2_to_v2_under_symmetric_group_are_15(n):
    V = Vector(Symmetric(n))
    Q = equivariant_basis(V * V, V * V)
    assert Q.shape == (n**4, 15)  # Bell(4): the partitions of the four indices
    assert _solver_used(V * V, V * V) == "permutation"


@pytest.mark.parametrize(
    ("G", "dim"),
    [(Symmetric(2), 2), (Symmetric(6), 2), (SO2(), 2), (O2(), 1), (SO3(), 1), (Cyclic(4), 2)],
)
def test_maps_v_to_v(G, dim):
    V = Vector(G)
    assert equivariant_basis(V, V).shape == (G.d**2, dim)


@pytest.mark.parametrize("n", [1, 2, 5, 12])
def test_regular_representation_of_cyclic_group(n):
    R = Regular(Cyclic(n))
    assert equivariant_basis(R, R).shape == (n * n, n)  # circulant matrices


def test_more_dimension_counts():
    for G in (SO3(), O3()):
        V = Vector(G)
        assert equivariant_basis(V * V, V * V).shape[1] == 3  # spin 0 + 1 + 2
    # The Levi-Civita tensor is invariant under rotations but flips sign under reflections.
    assert invariant_basis(Vector(SO3()) ** 3).shape[1] == 1
    assert invariant_basis(Vector(O3()) ** 3).shape[1] == 0
    R = Regular(Dihedral(8))
    assert equivariant_basis(R, R).shape == (256, 16)
    assert equivariant_basis(Vector(Trivial(3)), Vector(Trivial(3))).shape == (9, 9)
    V = Vector(SO2())
    assert equivariant_basis(V, V * V).shape[1] == 0  # odd total degree: no invariants


def test_user_defined_groups_end_to_end():
    # Q8 on the quaternions: the commutant of left multiplications is right multiplications.
    V = Vector(quaternion_group())
    assert equivariant_basis(V, V).shape == (16, 4)
    # Cube rotations (order 24): V (x) V = A1 + E + T1 + T2, so 4 maps and 1 invariant form.
    G = CubeRotations()
    assert G.order == 24
    W = Vector(G)
    assert equivariant_basis(W * W, W * W).shape == (81, 4)
    assert invariant_basis(W * W).shape == (9, 1)
    Q = equivariant_basis(W * W, W * W)
    assert _violation(Q, W * W, W * W, G.elements()) < 1e-12


CASES = {
    "SO3 V2->V2": lambda: (SO3(), lambda V: (V * V, V * V)),
    "O3 V->V2": lambda: (O3(), lambda V: (V, V * V)),
    "O3 V2+V->V": lambda: (O3(), lambda V: (V * V + V, V + Scalar(V.G))),
    "SO2 V3->V": lambda: (SO2(), lambda V: (V**3, V)),
    "O2 V2->V2": lambda: (O2(), lambda V: (V * V, V * V)),
    "D8 regular": lambda: (Dihedral(8), lambda V: (Regular(V.G), Regular(V.G))),
    "D8 V*regular->V": lambda: (Dihedral(8), lambda V: (V * Regular(V.G), V)),
    "S4 V2->V": lambda: (Symmetric(4), lambda V: (V * V, V)),
    "C4 V2->V2": lambda: (Cyclic(4), lambda V: (V * V, V * V)),
    "skewD4 V->V.T": lambda: (skewed_dihedral(), lambda V: (V, V.T)),
    "skewD4 V2->V+V.T": lambda: (skewed_dihedral(), lambda V: (V * V, V + V.T)),
    "Q8 V2->V": lambda: (quaternion_group(), lambda V: (V * V, V)),
    "C3xSO3 V2->V2": lambda: (Cyclic(3) * SO3(), lambda V: (V * V, V * V)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_basis_satisfies_the_constraint_for_random_elements(case):
    G, make = CASES[case]()
    rep_in, rep_out = make(Vector(G))
    Q = equivariant_basis(rep_in, rep_out)
    assert Q.dtype == torch.float64 and Q.shape[0] == rep_in.size * rep_out.size
    if Q.shape[1]:
        assert torch.allclose(Q.T @ Q, torch.eye(Q.shape[1], dtype=torch.float64), atol=1e-10)
    g = G.sample(16, torch.Generator().manual_seed(0))
    assert _violation(Q, rep_in, rep_out, g) < 1e-10
    # And it is the whole space: the dense SVD of the full constraint finds the same span.
    assert _same_span(Q, _solve_dense(_Constraints(rep_in, rep_out), DEFAULT_RTOL))


def test_vec_convention_is_row_major():
    """Column j reshaped (D_out, D_in) is W; for S_3 the maps V -> V are a I + b 11^T."""
    V = Vector(Symmetric(3))
    Q = equivariant_basis(V, V)
    ones = torch.ones(3, 3, dtype=torch.float64)
    for W in Q.T.reshape(-1, 3, 3):
        off = W[0, 1]
        assert torch.allclose(W - off * ones, (W[0, 0] - off) * torch.eye(3, dtype=torch.float64))
    # A non-square case: V -> V (x) V under SO(2) picks W with rho2(g) W = W g.
    U = Vector(SO2())
    Q = equivariant_basis(U, U * U)
    g = SO2().sample(5, torch.Generator().manual_seed(1))
    assert _violation(Q, U, U * U, g) < 1e-12


@pytest.mark.parametrize(
    ("G", "power_in", "power_out"),
    [(SO3(), 2, 3), (O3(), 2, 2), (Dihedral(5), 3, 2), (SO2(), 3, 3), (skewed_dihedral(), 2, 2)],
)
def test_iterative_solver_matches_dense(G, power_in, power_out):
    V = Vector(G)
    rep_in, rep_out = V**power_in, V**power_out
    if not G.is_orthogonal:  # mix in the dual so the representation is not orthogonal
        rep_out = V.T * V
    dense = equivariant_basis(rep_in, rep_out, method="dense")
    iterative = equivariant_basis(rep_in, rep_out, method="iterative")
    assert _same_span(dense, iterative)
    g = G.sample(8, torch.Generator().manual_seed(2))
    assert _violation(iterative, rep_in, rep_out, g) < 1e-10


def test_permutation_solver_matches_dense_with_signs():
    for rep in (
        Vector(Symmetric(4)) ** 2,
        Vector(Cyclic(4)) ** 2,
        Regular(Dihedral(3)) + Scalar(Dihedral(3)),
    ):
        fast = equivariant_basis(rep, rep)
        assert _solver_used(rep, rep) == "permutation"
        assert _same_span(fast, equivariant_basis(rep, rep, method="dense"))
    # -I on R^2: a sign flip on every entry, so V -> Scalar has nothing, V -> V everything.
    G = Cyclic(2)
    assert equivariant_basis(Vector(G), Scalar(G)).shape == (2, 0)
    assert equivariant_basis(Vector(G), Vector(G)).shape == (4, 4)


def test_parameter_sharing():
    V = Vector(Symmetric(3))
    sharing = parameter_sharing(V, V)
    assert sharing.num_params == 2
    assert sharing.index.reshape(3, 3).tolist() == [[0, 1, 1], [1, 0, 1], [1, 1, 0]]
    assert bool((sharing.sign == 1).all())
    c4 = Vector(Cyclic(4))  # commutant of the quarter turn: [[a, t], [-t, a]]
    s = parameter_sharing(c4, c4)
    assert (
        s.num_params == 2 and s.index.tolist() == [0, 1, 1, 0] and s.sign.tolist() == [1, 1, -1, 1]
    )
    assert parameter_sharing(Vector(SO3()), Vector(SO3())) is None
    # The dense basis is made of the normalised orbit indicators.
    Q = equivariant_basis(c4, c4)
    theta = torch.tensor([2.0, 3.0], dtype=torch.float64)
    W = s.sign * theta[s.index]
    assert torch.allclose(Q @ (Q.T @ W), W)


def test_sums_are_solved_block_by_block():
    V = Vector(SO3())
    rep_in, rep_out = V + V * V, 2 * V + Scalar(V.G)
    Q = equivariant_basis(rep_in, rep_out)
    assert _solver_used(rep_in, rep_out) == "blocks"
    # V->V twice, V**2->V twice, V**2->Scalar once.
    assert Q.shape == (12 * 7, 2 + 2 + 1)
    assert _same_span(Q, _solve_dense(_Constraints(rep_in, rep_out), DEFAULT_RTOL))


def test_projector():
    V = Vector(O3())
    proj = equivariant_projector(V * V, V)
    assert isinstance(proj, Projector) and repr(proj) == "Projector(shape=(3, 9), rank=0)"
    proj = equivariant_projector(V * V, V * V)
    W = torch.randn(5, 9, 9, dtype=torch.float64)
    PW = proj(W)
    assert PW.shape == W.shape and torch.allclose(proj(PW), PW)
    g = O3().sample(4, torch.Generator().manual_seed(3))
    rho = (V * V).rho(g)
    assert torch.allclose(rho[:, None] @ PW[None], PW[None] @ rho[:, None], atol=1e-12)
    P = proj.matrix()
    assert torch.allclose(P @ P, P) and torch.allclose(P, P.T)
    assert torch.allclose(PW.reshape(5, -1), W.reshape(5, -1) @ P)
    with pytest.raises(ValueError, match=r"W must have shape \(\.\.\., 9, 9\)"):
        proj(torch.zeros(3, 3))


def test_results_are_cached_copies():
    clear_basis_cache()
    V = Vector(SO3())
    a = equivariant_basis(V * V, V * V)
    hits = _basis.cache_info().hits
    b = equivariant_basis(Vector(SO3()) ** 2, Vector(SO3()) ** 2)  # structurally equal reps
    assert _basis.cache_info().hits == hits + 1 and torch.equal(a, b)
    a.zero_()  # the caller's copy, not the cache
    assert torch.equal(equivariant_basis(V * V, V * V), b)


def test_bad_arguments_are_named():
    V = Vector(SO3())
    with pytest.raises(ValueError, match="one group"):
        equivariant_basis(V, Vector(O3()))
    with pytest.raises(TypeError, match="rep_out must be a Rep"):
        equivariant_basis(V, "V")
    with pytest.raises(ValueError, match="method must be one of"):
        equivariant_basis(V, V, method="svd")
    with pytest.raises(ValueError, match="rtol must be a float in"):
        equivariant_basis(V, V, rtol=0.0)
    with pytest.raises(ValueError, match="method='permutation' needs"):
        equivariant_basis(V, V, method="permutation")
    with pytest.raises(TypeError, match="rep must be a Rep"):
        invariant_basis(SO3())


def test_non_compact_lie_group_uses_the_damped_solver():
    """A unipotent group: neither finite nor orthogonal, so the slow generic route."""
    lie = torch.tensor([[[0.0, 1.0], [0.0, 0.0]]], dtype=torch.float64)
    U = Vector(Group.from_generators(lie=lie, name="Unipotent"))
    assert equivariant_basis(U, U).shape == (4, 2)  # a I + b N
    for rep_in, rep_out in ((U * U, U * U), (U * U.T, U * U)):
        dense = equivariant_basis(rep_in, rep_out, method="dense")
        assert _same_span(dense, equivariant_basis(rep_in, rep_out, method="iterative"))


def test_finite_groups_use_the_reynolds_average_at_medium_sizes():
    G = Dihedral(8)
    rep = Regular(G) * Vector(G)  # 32-dimensional, not a signed permutation (45-degree turns)
    Q = equivariant_basis(rep, rep)
    assert _solver_used(rep, rep) == "iterative" and Q.shape == (1024, 64)
    assert _violation(Q, rep, rep, G.elements()) < 1e-10


_PROPERTY_GROUPS = {
    "SO3": SO3,
    "O3": O3,
    "O2": O2,
    "D4": lambda: Dihedral(4),
    "S3": lambda: Symmetric(3),
    "C3xSO2": lambda: Cyclic(3) * SO2(),
    "skewD4": skewed_dihedral,
    "Q8": quaternion_group,
}


@st.composite
def _rep_pairs(draw):
    G = _PROPERTY_GROUPS[draw(st.sampled_from(sorted(_PROPERTY_GROUPS)))]()
    V = Vector(G)
    atoms = [V, V.T, Scalar(G), V * V.T]

    def rep():
        out = draw(st.sampled_from(atoms))
        if draw(st.booleans()):
            out = out + draw(st.sampled_from(atoms))
        if out.size * V.size <= 16 and draw(st.booleans()):
            out = out * V
        return out

    return G, rep(), rep()


@settings(max_examples=15, deadline=None, derandomize=True)
@given(_rep_pairs())
def test_property_basis_is_the_equivariant_space(pair):
    G, rep_in, rep_out = pair
    Q = equivariant_basis(rep_in, rep_out)
    if Q.shape[1]:
        assert torch.allclose(Q.T @ Q, torch.eye(Q.shape[1], dtype=torch.float64), atol=1e-10)
    assert _violation(Q, rep_in, rep_out, G.sample(8, torch.Generator().manual_seed(0))) < 1e-9
    assert _same_span(Q, _solve_dense(_Constraints(rep_in, rep_out), DEFAULT_RTOL))


def test_dense_gram_of_lie_groups_matches_the_stacked_operators():
    """The fast Gram route for continuous groups builds C^T C from the generators' matrices; it
    must equal the lazily built constraint operators' C^T C (discrete generators included)."""
    lie = torch.tensor([[[0.0, 1.0], [0.0, 0.0]]], dtype=torch.float64)
    U = Vector(Group.from_generators(lie=lie, name="Unipotent"))
    cases = [(U * U.T, U * U), (U, U * U)]
    for G in (SO3(), O3(), O2(), Cyclic(3) * SO2()):
        V = Vector(G)
        cases += [(V * V, V * V), (Scalar(G), V * V), (V.T * V, V), (V * V * V, V)]
    for rep_in, rep_out in cases:
        gram = _lie_gram_dense(rep_in, rep_out)
        c = _Constraints(rep_in, rep_out).dense()
        torch.testing.assert_close(gram, c.T @ c, atol=1e-12, rtol=0)
    # A Lie algebra acting trivially on both sides leaves the decision to the operator route.
    assert _lie_gram_dense(Scalar(SO3()), Scalar(SO3())) is None
    assert _lie_gram_dense(Vector(Dihedral(4)), Vector(Dihedral(4))) is None
