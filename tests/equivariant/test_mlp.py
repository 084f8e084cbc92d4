import pytest
import torch

from geolayers.equivariant import (
    EquivariantLinear,
    EquivariantMLP,
    GatedNonlinearity,
    NormNonlinearity,
    PointwiseNonlinearity,
    WithInvariants,
    default_hidden_rep,
)
from geolayers.groups import SO3, Cyclic, Dihedral, Regular, Scalar, Symmetric, Vector
from geolayers.testing import assert_group_equivariant, assert_group_invariant
from tests.equivariant.group_cases import GROUPS, REPS, cases
from tests.groups.user_groups import skewed_dihedral


def _nonlinearities(mlp):
    """The non-linearity of each hidden layer, unwrapped from WithInvariants."""
    return [getattr(m, "nonlinearity", m) for m in mlp.layers[1::2]]


@pytest.mark.parametrize(("group", "rep"), cases())
def test_equivariant_for_every_group_and_rep(group, rep, dtype, tol):
    G = GROUPS[group]()
    r = REPS[rep](G)
    mlp = EquivariantMLP(r, r, hidden=2)
    assert_group_equivariant(mlp, G, r, r, dtype=dtype, tol=tol)


def test_define_your_own_group_in_a_few_lines():
    """The README-style snippet: Q8 from two generators, an MLP, and the equivariance check."""
    from geolayers.equivariant import EquivariantMLP
    from geolayers.groups import Group, Vector
    from geolayers.testing import assert_group_equivariant

    i = torch.tensor([[0.0, -1, 0, 0], [1, 0, 0, 0], [0, 0, 0, -1], [0, 0, 1, 0]])  # left by i
    j = torch.tensor([[0.0, 0, -1, 0], [0, 0, 0, 1], [1, 0, 0, 0], [0, -1, 0, 0]])  # left by j
    Q8 = Group.from_generators(discrete=torch.stack([i, j]), name="Q8")
    V = Vector(Q8)
    mlp = EquivariantMLP(V, V * V, hidden=4)
    assert_group_equivariant(mlp, Q8, V, V * V)

    assert Q8.order == 8 and mlp(torch.randn(2, 4)).shape == (2, 16)


def test_auto_picks_a_legal_nonlinearity():
    G = Dihedral(4)
    V = Vector(G)
    mlp = EquivariantMLP(V, V, hidden=2)  # regular hidden features: relu point-wise
    assert mlp.hidden_reps == (2 * Regular(G), 2 * Regular(G))
    assert isinstance(mlp.layers[1], PointwiseNonlinearity)  # no invariants appended
    # Signed permutation hidden features: tanh point-wise, relu through gates.
    odd = EquivariantMLP(V, V, hidden_reps=[V + V], activation="tanh")
    assert isinstance(odd.layers[1], PointwiseNonlinearity)
    gated = EquivariantMLP(V, V, hidden_reps=[V + V], activation="relu")
    assert isinstance(gated.layers[1], WithInvariants)
    assert isinstance(gated.layers[1].nonlinearity, GatedNonlinearity)
    assert gated.layers[0].rep_out == V + V + 2 * Scalar(G)  # two gates
    assert gated.layers[2].rep_in == V + V + 2 * Scalar(G)  # |v1|^2, |v2|^2 (up to a factor)
    W = Vector(SO3())
    lie = EquivariantMLP(W, Scalar(W.G), hidden=2)
    assert all(isinstance(m, GatedNonlinearity) for m in _nonlinearities(lie))
    assert_group_invariant(lie, SO3(), W)


def test_pointwise_when_illegal_says_why():
    V = Vector(Cyclic(4))
    with pytest.raises(
        ValueError, match=r"activation 'relu' is not odd, .* on 2\*V of Cyclic\(4\)"
    ):
        EquivariantMLP(V, V, hidden_reps=V + V, nonlinearity="pointwise")
    W = Vector(SO3())
    with pytest.raises(ValueError, match="use GatedNonlinearity|Use GatedNonlinearity"):
        EquivariantMLP(W, W, hidden=2, nonlinearity="pointwise", activation="tanh")


def test_norm_and_gated_choices(dtype, tol):
    G = SO3()
    V = Vector(G)
    hidden = [4 * Scalar(G) + 4 * V, 2 * V + 2 * (V * V)]
    for choice, kind in (("norm", NormNonlinearity), ("gated", GatedNonlinearity)):
        mlp = EquivariantMLP(V * V, V, hidden, nonlinearity=choice, activation="silu")
        assert all(isinstance(m, kind) for m in _nonlinearities(mlp))
        assert_group_equivariant(mlp, G, V * V, V, dtype=dtype, tol=tol)
    with pytest.raises(ValueError, match="orthogonal"):
        W = Vector(skewed_dihedral())
        EquivariantMLP(W, W, hidden_reps=W + W, nonlinearity="norm")


def test_gradients_reach_every_layer():
    V = Vector(SO3())
    mlp = EquivariantMLP(V, V * V, hidden=2)
    mlp(torch.randn(16, 3)).pow(2).sum().backward()
    linears = [m for m in mlp.layers if isinstance(m, EquivariantLinear)]
    assert len(linears) == 3
    for layer in linears:
        assert layer.weight.grad is not None and bool(layer.weight.grad.ne(0).any())


def test_learns_an_invariant_function():
    """|x|^2 under SO(3): impossible with linear maps and gates only (every scalar would be a
    constant); the appended quadratic invariants make it learnable."""
    torch.manual_seed(0)
    V = Vector(SO3())
    mlp = EquivariantMLP(V, Scalar(V.G), hidden=4)
    x = torch.randn(256, 3)
    y = x.pow(2).sum(1, keepdim=True)
    opt = torch.optim.Adam(mlp.parameters(), lr=1e-2)
    first = None
    for _ in range(150):
        loss = (mlp(x) - y).pow(2).mean()
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.01 * first
    frozen = EquivariantMLP(V, Scalar(V.G), hidden=4, invariants=False)
    assert frozen(x).std().item() < 1e-6  # a constant function of x


def test_default_hidden_rep():
    assert default_hidden_rep(Dihedral(4), 3) == 3 * Regular(Dihedral(4))
    V = Vector(SO3())
    assert default_hidden_rep(SO3(), 2) == 2 * Scalar(V.G) + 2 * V + 2 * (V * V)
    S10 = Vector(Symmetric(10))  # too large for the regular rep, d > 4: no V**2
    assert default_hidden_rep(Symmetric(10), 2) == 2 * Scalar(S10.G) + 2 * S10
    with pytest.raises(ValueError, match="multiplicity must be >= 1"):
        default_hidden_rep(SO3(), 0)


def test_repr_and_bad_arguments():
    V = Vector(Cyclic(4))
    mlp = EquivariantMLP(V, V, hidden=1, num_layers=1)
    text = str(mlp)
    assert text.startswith("EquivariantMLP(\n  V of Cyclic(4) -> V of Cyclic(4), activation=relu")
    assert "PointwiseNonlinearity(relu on Regular of Cyclic(4))" in text
    with pytest.raises(ValueError, match="nonlinearity must be one of"):
        EquivariantMLP(V, V, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="not both"):
        EquivariantMLP(V, V, V + V, hidden=2)
    with pytest.raises(ValueError, match=r"hidden_reps\[0\] must be a Rep of Cyclic\(4\)"):
        EquivariantMLP(V, V, [Vector(SO3())])
    with pytest.raises(TypeError, match="rep_out must be a Rep"):
        EquivariantMLP(V, "V")


def test_every_tensor_moves_with_the_module():
    """On the meta device any tensor left behind on the CPU would make the forward fail: a
    stand-in for a GPU run when there is none."""
    V = Vector(SO3())
    for nonlinearity in ("gated", "norm"):
        mlp = EquivariantMLP(V, V * V + Scalar(V.G), hidden=2, nonlinearity=nonlinearity)
        y = mlp.to("meta")(torch.randn(4, 3, device="meta"))
        assert y.shape == (4, 10) and y.device.type == "meta"
    D = Vector(Dihedral(4))
    mlp = EquivariantMLP(D + Regular(D.G), D, hidden=2).to("meta")
    assert mlp(torch.randn(5, 10, device="meta")).shape == (5, 2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_cuda():
    V = Vector(SO3())
    mlp = EquivariantMLP(V, V * V, hidden=2).cuda()
    assert mlp(torch.randn(4, 3, device="cuda")).device.type == "cuda"
    assert_group_equivariant(mlp, SO3(), V, V * V, dtype=torch.float32)
    assert_group_equivariant(mlp, SO3(), V, V * V)
