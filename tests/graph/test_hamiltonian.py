import pytest
import torch
from torch_geometric.nn import MessagePassing

from geolayers.graph import HamiltonianNodeEmbedding
from geolayers.testing import assert_equivariant

# (hamiltonian, integrator, order): every symplectic scheme the layer offers.
SCHEMES = [
    ("separable", "leapfrog", 2),
    ("separable", "implicit_midpoint", 2),
    ("separable", "symplectic_euler", 1),
    ("mlp", "implicit_midpoint", 2),
    ("mlp", "symplectic_euler", 1),
]
SCHEME_IDS = [f"{h}-{i}" for h, i, _ in SCHEMES]


def random_graph(num_nodes: int, num_edges: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    src = torch.randint(0, num_nodes, (num_edges,), generator=gen)
    dst = torch.randint(0, num_nodes, (num_edges,), generator=gen)
    # Undirected, so the normalised adjacency is symmetric as for GCN.
    return torch.cat([torch.stack([src, dst]), torch.stack([dst, src])], dim=1)


def make_layer(hamiltonian: str, integrator: str, channels: int = 4, **kw) -> torch.nn.Module:
    torch.manual_seed(1)
    layer = HamiltonianNodeEmbedding(
        channels, hamiltonian, integrator=integrator, fixed_point_iters=kw.pop("iters", 4), **kw
    ).double()
    with torch.no_grad():
        # Steeper than the default initialisation, so the flow moves the state visibly.
        for p in layer.parameters():
            p.mul_(2.0)
    return layer


def state(num_nodes: int, channels: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(num_nodes, channels, generator=gen, dtype=torch.float64)
    return q, torch.randn(num_nodes, channels, generator=gen, dtype=torch.float64)


def test_is_message_passing_and_shapes():
    layer = HamiltonianNodeEmbedding(8)
    assert isinstance(layer, MessagePassing)
    ei = random_graph(6, 10, 0)
    assert layer(torch.randn(6, 8), ei).shape == (6, 8)
    both = HamiltonianNodeEmbedding(8, return_momentum=True, momentum_init="zeros")
    assert both(torch.randn(6, 8), ei).shape == (6, 16)
    assert both.out_channels == 16
    assert "leapfrog" in repr(layer)
    assert HamiltonianNodeEmbedding(8, "mlp").integrator == "implicit_midpoint"


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize(("hamiltonian", "integrator", "order"), SCHEMES, ids=SCHEME_IDS)
def test_energy_error_has_the_integrators_order(hamiltonian, integrator, order, seed):
    layer = make_layer(hamiltonian, integrator)
    ei = random_graph(12, 18, seed)
    q0, p0 = state(12, 4, seed)
    h0 = layer.hamiltonian(q0, p0, ei)
    errors = []
    with torch.no_grad():
        for steps in (8, 16, 32):
            q, p = layer.integrate(q0, p0, ei, time=1.0, steps=steps)
            errors.append(float((layer.hamiltonian(q, p, ei) - h0).abs()))
    assert errors[0] > 1e-7  # the flow is not trivial, so the ratios mean something
    for coarse, fine in zip(errors, errors[1:], strict=False):
        # Halving h divides the error by 2**order (4 for order 2, 2 for order 1).
        assert coarse / fine == pytest.approx(2.0**order, rel=0.15)


@pytest.mark.parametrize(("hamiltonian", "integrator", "order"), SCHEMES, ids=SCHEME_IDS)
def test_energy_error_stays_bounded_over_long_times(hamiltonian, integrator, order):
    # Symplectic schemes oscillate around the true energy instead of drifting away.
    layer = make_layer(hamiltonian, integrator)
    ei = random_graph(10, 15, 3)
    q0, p0 = state(10, 4, 3)
    with torch.no_grad():
        h0 = layer.hamiltonian(q0, p0, ei)
        qs, ps = layer.integrate(q0, p0, ei, time=20.0, steps=200, return_trajectory=True)
        errors = torch.stack(
            [layer.hamiltonian(q, p, ei) - h0 for q, p in zip(qs, ps, strict=True)]
        )
    early, late = errors[:100].abs().max(), errors[100:].abs().max()
    assert late < 2.0 * early
    assert qs.shape == (201, 10, 4)


@pytest.mark.parametrize(("hamiltonian", "integrator", "order"), SCHEMES, ids=SCHEME_IDS)
def test_flow_map_is_symplectic(hamiltonian, integrator, order):
    # The Jacobian D of the step map satisfies D^T J D = J.
    n, d = 3, 2
    layer = make_layer(hamiltonian, integrator, channels=d, iters=30)
    ei = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
    q0, p0 = state(n, d, 5)

    def flow(z):
        q, p = layer.integrate(z[: n * d].view(n, d), z[n * d :].view(n, d), ei, time=0.3, steps=3)
        return torch.cat([q.reshape(-1), p.reshape(-1)])

    jac = torch.autograd.functional.jacobian(flow, torch.cat([q0.reshape(-1), p0.reshape(-1)]))
    m = n * d
    eye = torch.eye(m, dtype=torch.float64)
    omega = torch.zeros(2 * m, 2 * m, dtype=torch.float64)
    omega[:m, m:], omega[m:, :m] = eye, -eye
    assert not torch.allclose(jac, torch.eye(2 * m, dtype=torch.float64), atol=1e-3)
    torch.testing.assert_close(jac.T @ omega @ jac, omega, atol=1e-10, rtol=0)


@pytest.mark.parametrize("integrator", ["leapfrog", "implicit_midpoint"])
def test_time_reversible_for_separable_hamiltonian(integrator):
    layer = make_layer("separable", integrator, iters=40)
    ei = random_graph(15, 25, 4)
    q0, p0 = state(15, 4, 4)
    with torch.no_grad():
        q1, p1 = layer.integrate(q0, p0, ei, time=2.0, steps=40)
        q2, p2 = layer.integrate(q1, -p1, ei, time=2.0, steps=40)
    assert (q1 - q0).abs().max() > 0.1
    torch.testing.assert_close(q2, q0, atol=1e-10, rtol=0)
    torch.testing.assert_close(-p2, p0, atol=1e-10, rtol=0)


def test_symplectic_euler_is_not_time_reversible():
    # Control for the test above: a first-order scheme fails it, so the check can fail.
    layer = make_layer("separable", "symplectic_euler")
    ei = random_graph(15, 25, 4)
    q0, p0 = state(15, 4, 4)
    with torch.no_grad():
        q1, p1 = layer.integrate(q0, p0, ei, time=2.0, steps=40)
        q2, _ = layer.integrate(q1, -p1, ei, time=2.0, steps=40)
    assert (q2 - q0).abs().max() > 1e-4


@pytest.mark.parametrize("hamiltonian", ["separable", "mlp"])
def test_node_permutation_equivariance(hamiltonian):
    layer = HamiltonianNodeEmbedding(4, hamiltonian, return_momentum=True)
    ei = random_graph(12, 20, 6)

    def relabel(perm, inputs):
        x, edge_index = inputs
        inverse = torch.empty_like(perm)
        inverse[perm] = torch.arange(perm.numel())
        # New node i is old node perm[i]; edges follow their endpoints.
        return x[perm], inverse[edge_index]

    assert_equivariant(
        layer,
        lambda gen: (torch.randn(12, 4, generator=gen), ei),
        lambda gen, inputs: torch.randperm(inputs[0].shape[0], generator=gen),
        relabel,
        lambda perm, out: out[perm],
        trials=3,
    )


@pytest.mark.parametrize("hamiltonian", ["separable", "mlp"])
def test_gradients_reach_parameters_and_input(hamiltonian):
    layer = HamiltonianNodeEmbedding(4, hamiltonian, steps=3)
    x = torch.randn(8, 4, requires_grad=True)
    layer(x, random_graph(8, 10, 7)).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, p in layer.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("hamiltonian", ["separable", "mlp"])
def test_gradcheck_tiny_graph(hamiltonian):
    layer = HamiltonianNodeEmbedding(2, hamiltonian, steps=2).double()
    ei = torch.tensor([[0, 1, 1, 2, 3], [1, 0, 2, 1, 1]])
    x = torch.randn(4, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: layer(x, ei), (x,))
    weight = layer.lin_in.weight.detach().clone().requires_grad_(True)

    def through_weight(w):
        return torch.func.functional_call(layer, {"lin_in.weight": w}, (x.detach(), ei))

    assert torch.autograd.gradcheck(through_weight, (weight,))


def test_no_grad_inference_matches_and_keeps_no_graph():
    layer = HamiltonianNodeEmbedding(4, steps=3)
    x, ei = torch.randn(8, 4), random_graph(8, 10, 8)
    with torch.no_grad():
        out = layer(x, ei)
    assert not out.requires_grad
    torch.testing.assert_close(out, layer(x, ei).detach())


@pytest.mark.parametrize("hamiltonian", ["separable", "mlp"])
def test_float32_and_float64(hamiltonian):
    ei = random_graph(10, 15, 9)
    layer = HamiltonianNodeEmbedding(4, hamiltonian)
    x = torch.randn(10, 4)
    out32 = layer(x, ei)
    assert out32.dtype == torch.float32 and torch.isfinite(out32).all()
    out64 = layer.double()(x.double(), ei)
    assert out64.dtype == torch.float64
    torch.testing.assert_close(out32.double(), out64, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("hamiltonian", ["separable", "mlp"])
def test_isolated_nodes_and_empty_graph(hamiltonian):
    layer = HamiltonianNodeEmbedding(3, hamiltonian).double()
    x = torch.randn(5, 3, dtype=torch.float64)
    empty = torch.empty(2, 0, dtype=torch.long)
    out = layer(x, empty)
    assert out.shape == (5, 3) and torch.isfinite(out).all()
    # Without edges every node follows its own flow: each row depends on that row only.
    torch.testing.assert_close(out[:2], layer(x[:2], empty))
    # Node 4 is isolated: adding edges among 0..2 leaves it unchanged.
    ei = torch.tensor([[0, 1, 2], [1, 2, 0]])
    torch.testing.assert_close(layer(x, ei)[4], out[4])
    assert layer(torch.randn(0, 3, dtype=torch.float64), empty).shape == (0, 3)


def test_cached_adjacency():
    layer = HamiltonianNodeEmbedding(4, cached=True)
    ei = random_graph(6, 8, 10)
    first = layer(torch.ones(6, 4), ei)
    torch.testing.assert_close(layer(torch.ones(6, 4), ei[:, :2]), first)
    with pytest.raises(ValueError, match="cached"):
        layer(torch.ones(7, 4), ei)


def test_bad_inputs():
    layer = HamiltonianNodeEmbedding(4)
    ei = random_graph(5, 6, 11)
    x = torch.randn(5, 4)
    with pytest.raises(ValueError, match="x must have shape"):
        layer(torch.randn(5, 3), ei)
    with pytest.raises(ValueError, match="x must have shape"):
        layer(torch.randn(5, 4, 1), ei)
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        layer(torch.ones(5, 4, dtype=torch.long), ei)
    with pytest.raises(TypeError, match="x must have the layer's dtype"):
        layer(x.double(), ei)
    with pytest.raises(ValueError, match=r"edge_index must have shape \(2, E\)"):
        layer(x, torch.zeros(3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"edge_index must have shape \(2, E\)"):
        layer(x, torch.zeros(2, dtype=torch.long))
    with pytest.raises(TypeError, match="edge_index must be an int64"):
        layer(x, ei.float())
    with pytest.raises(ValueError, match="edge_index must hold node ids"):
        layer(x, torch.tensor([[0, 5], [1, 1]]))
    with pytest.raises(ValueError, match="edge_index must hold node ids"):
        layer(x, torch.tensor([[0, -1], [1, 1]]))
    with pytest.raises(ValueError, match="p must have the shape of q"):
        layer.integrate(x, torch.zeros(4, 4), torch.tensor([[0], [1]]))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"hamiltonian": "quadratic"}, ValueError, "hamiltonian must be one of"),
        ({"integrator": "rk4"}, ValueError, "integrator must be one of"),
        ({"hamiltonian": "mlp", "integrator": "leapfrog"}, ValueError, "integrator='leapfrog'"),
        ({"time": 0.0}, ValueError, "time must be a finite number > 0"),
        ({"time": -1.0}, ValueError, "time must be a finite number > 0"),
        ({"time": float("inf")}, ValueError, "time must be a finite number > 0"),
        ({"time": "1"}, TypeError, "time must be a number"),
        ({"steps": 0}, ValueError, "steps must be an int >= 1"),
        ({"steps": -2}, ValueError, "steps must be an int >= 1"),
        ({"steps": 2.0}, TypeError, "steps must be an int"),
        ({"steps": True}, TypeError, "steps must be an int"),
        ({"hidden_channels": 0}, ValueError, "hidden_channels must be"),
        ({"momentum_init": "random"}, ValueError, "momentum_init must be one of"),
        ({"fixed_point_iters": 0}, ValueError, "fixed_point_iters must be"),
    ],
)
def test_bad_constructor_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        HamiltonianNodeEmbedding(4, **kwargs)


def test_bad_channels_and_integrate_arguments():
    with pytest.raises(ValueError, match="channels must be a positive int"):
        HamiltonianNodeEmbedding(0)
    layer = HamiltonianNodeEmbedding(4)
    x, ei = torch.randn(3, 4), torch.tensor([[0], [1]])
    with pytest.raises(ValueError, match="time must be a finite number > 0"):
        layer.integrate(x, x, ei, time=-0.5)
    with pytest.raises(ValueError, match="steps must be an int >= 1"):
        layer.integrate(x, x, ei, steps=0)


@pytest.mark.parametrize(("hamiltonian", "integrator", "order"), SCHEMES, ids=SCHEME_IDS)
def test_training_mode_flow_matches_inference(hamiltonian, integrator, order):
    # In grad mode H is differentiated inside a graph in which p_{n+1} depends on q_n
    # (symplectic Euler); the force must still be the partial derivative, as in no-grad mode.
    layer = make_layer(hamiltonian, integrator)
    ei = random_graph(8, 12, 12)
    x = torch.randn(8, 4, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        expected = layer(x, ei)
    torch.testing.assert_close(layer(x, ei), expected, atol=1e-12, rtol=0)
