"""HGCNConv: shapes, dtypes, the ball, a dense reference, permutations, gradients, bad input."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.func import functional_call

from geolayers.hyperbolic import poincare as P
from geolayers.hyperbolic.hgcn import HGCNConv
from geolayers.testing import assert_equivariant

torch.set_num_threads(1)


def ball_points(n, d, c, seed, dtype=torch.float64, rmax=0.9):
    """n random points of the ball with norm up to rmax / sqrt(c)."""
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(n, d, generator=g, dtype=torch.float64)
    u = u / u.norm(dim=-1, keepdim=True)
    r = rmax * torch.rand(n, 1, generator=g, dtype=torch.float64)
    return (u * r / math.sqrt(c)).to(dtype)


def random_graph(n, e, seed):
    """(2, 2e) undirected edges between random nodes (self loops and repeats possible)."""
    g = torch.Generator().manual_seed(seed)
    ei = torch.randint(0, n, (2, e), generator=g)
    return torch.cat([ei, ei.flip(0)], 1)


def with_weights(layer, seed):
    """Random bias and attention vector, so that neither starts at a special value."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in layer.parameters():
            if p.dim() == 1:
                p.copy_(0.5 * torch.randn(p.shape, generator=g, dtype=torch.float64))
    return layer


# ----------------------------------------------------------------- shapes, dtypes, ball
@pytest.mark.parametrize("use_attention", [True, False])
def test_shapes_dtypes_and_the_ball(dtype, use_attention):
    conv = HGCNConv(5, 3, c_in=1.0, c_out=0.3, use_attention=use_attention).to(dtype)
    x = ball_points(9, 5, 1.0, 0, dtype)
    out = conv(x, random_graph(9, 12, 0))
    assert out.shape == (9, 3) and out.dtype == dtype and bool(out.isfinite().all())
    assert bool((0.3 * out.detach().double().square().sum(-1) < 1).all())
    # Inputs at the boundary and a large weight: every step is projected, the output too.
    with torch.no_grad():
        conv.weight.mul_(100)
    x = P.project(100 * torch.randn(9, 5, generator=torch.Generator().manual_seed(1)), 1.0)
    out = conv(x.to(dtype), random_graph(9, 12, 1))
    max_norm = (1 - P.PROJECT_EPS[dtype]) / math.sqrt(0.3)
    assert bool(out.isfinite().all())
    assert bool((out.detach().norm(dim=-1) <= max_norm * (1 + 1e-6)).all())


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(1, 10),
    e=st.integers(0, 20),
    c_in=st.floats(0.05, 5.0),
    c_out=st.floats(0.05, 5.0),
    use_attention=st.booleans(),
)
def test_property_outputs_stay_inside_the_output_ball(seed, n, e, c_in, c_out, use_attention):
    # Any graph (isolated nodes, repeated edges, self loops) and any pair of curvatures.
    conv = HGCNConv(3, 2, c_in=c_in, c_out=c_out, use_attention=use_attention)
    for dtype in (torch.float64, torch.float32):
        conv = with_weights(conv.to(dtype), seed)
        x = ball_points(n, 3, c_in, seed, dtype, rmax=0.999)
        out = conv(x, random_graph(n, e, seed))
        assert out.shape == (n, 2) and bool(out.isfinite().all())
        assert bool((c_out * out.detach().double().square().sum(-1) < 1).all())


def test_repr():
    assert str(HGCNConv(4, 3)) == "HGCNConv(4, 3, c_in=1, c_out=1, use_attention=True)"
    conv = HGCNConv(4, 3, c_in=0.5, c_out=2.0, learn_curvature=True, use_attention=False)
    assert str(conv) == (
        "HGCNConv(4, 3, c_in=0.5, c_out=2, learn_curvature=True, use_attention=False)"
    )


# ----------------------------------------------------------------- dense reference
def dense_reference(conv, x, edge_index, c_in, c_out):
    """The layer's rule with a dense (N, N) weight matrix and a masked softmax per row. The
    maps are the functional ops (checked against mpmath in test_poincare.py): geoopt's
    ``mobius_matvec`` is off by about 2e-9 in float64 at c = 0.3, too much for 1e-9 here."""
    n = x.shape[0]
    h = P.mobius_add(P.mobius_matvec(conv.weight, x, c_in), P.expmap0(conv.bias, c_in), c_in)
    u = P.logmap0(h, c_in)
    # Row i counts the edges j -> i (a repeated edge is repeated messages); one self loop.
    count = torch.zeros(n, n, dtype=torch.float64)
    count.index_put_((edge_index[1], edge_index[0]), torch.ones(edge_index.shape[1]).double(), True)
    count.fill_diagonal_(1.0)
    if conv.att is not None:
        a_i, a_j = conv.att[: conv.out_channels], conv.att[conv.out_channels :]
        score = torch.nn.functional.leaky_relu((u @ a_i)[:, None] + (u @ a_j)[None, :], 0.2)
        e = count * torch.exp(score - score.max(1, keepdim=True).values)
        w = e / e.sum(1, keepdim=True)
    else:
        w = count / count.sum(1, keepdim=True)
    y = P.expmap0(w @ u, c_in)
    return P.expmap0(conv.act(P.logmap0(y, c_in)), c_out)


@pytest.mark.parametrize("use_attention", [True, False])
@pytest.mark.parametrize(("c_in", "c_out"), [(1.0, 1.0), (0.3, 2.0)])
def test_matches_a_dense_reference(use_attention, c_in, c_out):
    torch.manual_seed(0)
    conv = HGCNConv(4, 3, c_in=c_in, c_out=c_out, use_attention=use_attention, act=torch.tanh)
    conv = with_weights(conv.double(), 2)
    x = ball_points(8, 4, c_in, 3, rmax=0.7)
    # Repeated edges (0 -> 1 three times) and self loops (replaced by the layer's own).
    extra = torch.tensor([[0, 0, 0, 5, 2], [1, 1, 1, 5, 2]])
    edge_index = torch.cat([random_graph(8, 10, 4), extra], 1)
    expected = dense_reference(conv, x, edge_index, c_in, c_out)
    torch.testing.assert_close(conv(x, edge_index), expected, rtol=1e-9, atol=1e-12)


def test_isolated_nodes_and_graphs_without_edges():
    conv = with_weights(HGCNConv(4, 3, c_in=0.5, c_out=2.0).double(), 5)
    x = ball_points(6, 4, 0.5, 6)
    # Nodes 4 and 5 have no edges: only their self loop, weight 1.
    edge_index = torch.tensor([[0, 1, 2, 3], [1, 0, 3, 2]])
    out = conv(x, edge_index)
    h = P.mobius_add(P.mobius_matvec(conv.weight, x[4:], 0.5), P.expmap0(conv.bias, 0.5), 0.5)
    alone = P.expmap0(torch.relu(P.logmap0(h, 0.5)), 2.0)
    torch.testing.assert_close(out[4:], alone, rtol=1e-9, atol=1e-12)
    # No edges at all: every node is alone.
    empty = conv(x, torch.empty(2, 0, dtype=torch.long))
    torch.testing.assert_close(empty[4:], alone, rtol=1e-9, atol=1e-12)
    # Self loops given in edge_index are replaced by the layer's own (no double counting).
    loops = torch.cat([edge_index, torch.arange(6).repeat(2, 1)], 1)
    torch.testing.assert_close(conv(x, loops), out, rtol=1e-12, atol=1e-14)


def test_cached_graph_is_reused_until_reset():
    conv = with_weights(HGCNConv(4, 3, cached=True).double(), 15)
    x = ball_points(6, 4, 1.0, 16)
    ring = torch.tensor([[0, 1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 0]])
    first = conv(x, ring)
    # Another graph is ignored while the cache holds (transductive use, as GCNConv's cache).
    torch.testing.assert_close(conv(x, ring.flip(0)), first)
    fresh = HGCNConv(4, 3).double()
    fresh.load_state_dict(conv.state_dict())
    torch.testing.assert_close(fresh(x, ring), first)
    assert not torch.allclose(fresh(x, ring.flip(0)), first)
    with pytest.raises(ValueError, match="x must have the 6 rows of the cached graph"):
        conv(x[:5], ring[:, :4])
    conv.reset_parameters()
    conv.load_state_dict(fresh.state_dict())
    torch.testing.assert_close(conv(x, ring.flip(0)), fresh(x, ring.flip(0)))


@pytest.mark.parametrize("use_attention", [True, False])
def test_fused_sparse_sum_matches_pyg_message_passing(use_attention):
    # The CSR product with its hand-written backward against PyG's message() + scatter path.
    conv = with_weights(HGCNConv(4, 3, use_attention=use_attention, learn_curvature=True), 17)
    conv = conv.double()
    x = ball_points(10, 4, 1.0, 18).requires_grad_(True)
    edge_index = torch.cat([random_graph(10, 15, 19), torch.tensor([[3, 3], [4, 4]])], 1)
    results = []
    for fuse in (True, False):
        conv.fuse = fuse
        out = conv(x, edge_index)
        grads = torch.autograd.grad(out.square().sum(), [x, *conv.parameters()])
        results.append((out, *grads))
    for fused, unfused in zip(*results, strict=True):
        torch.testing.assert_close(fused, unfused, rtol=1e-12, atol=1e-14)


# ----------------------------------------------------------------- permutations
@pytest.mark.parametrize("use_attention", [True, False])
def test_permutation_equivariance(dtype, use_attention):
    conv = with_weights(HGCNConv(5, 4, c_in=0.7, c_out=1.3, use_attention=use_attention), 7)

    def inputs(gen):
        seed = int(torch.randint(0, 2**31, (1,), generator=gen))
        return ball_points(12, 5, 0.7, seed), random_graph(12, 15, seed)

    def sample(gen, args):
        return torch.randperm(12, generator=gen)

    def permute_in(perm, args):
        x, edge_index = args
        inverse = torch.empty_like(perm)
        inverse[perm] = torch.arange(12)  # node perm[k] becomes node k
        return x[perm], inverse[edge_index]

    tol = {torch.float64: 1e-9, torch.float32: 1e-5}[dtype]
    assert_equivariant(
        conv, inputs, sample, permute_in, lambda perm, out: out[perm], dtype=dtype, atol=tol
    )


# ----------------------------------------------------------------- gradients
@pytest.mark.parametrize("use_attention", [True, False])
def test_gradcheck(use_attention):
    conv = HGCNConv(3, 2, c_in=0.7, c_out=1.5, learn_curvature=True, use_attention=use_attention)
    conv = with_weights(conv.double(), 8)
    conv.act = torch.tanh  # smooth, so finite differences are meaningful everywhere
    x = ball_points(5, 3, 0.7, 9, rmax=0.8).requires_grad_(True)
    # A ring of 4 nodes with a repeated chord 0 -> 2, and node 4 alone.
    edge_index = torch.tensor([[0, 1, 2, 3, 0, 0], [1, 2, 3, 0, 2, 2]])
    params = {k: v.detach().clone().requires_grad_(True) for k, v in conv.named_parameters()}
    names = list(params)

    def fn(x, *values):
        return functional_call(conv, dict(zip(names, values, strict=True)), (x, edge_index))

    assert torch.autograd.gradcheck(fn, (x, *params.values()))


def test_gradients_are_finite_including_at_the_origin_and_the_boundary(dtype):
    conv = HGCNConv(5, 3, c_in=1.0, c_out=0.5, learn_curvature=True, dropout=0.3).to(dtype)
    x = torch.cat([torch.zeros(2, 5, dtype=dtype), ball_points(4, 5, 1.0, 11, dtype, 0.999)])
    x.requires_grad_(True)
    out = conv(x, random_graph(6, 5, 12))
    out.square().sum().backward()
    assert bool(x.grad.isfinite().all())
    for name, p in conv.named_parameters():
        assert p.grad is not None and bool(p.grad.isfinite().all()), name
    assert float(conv.curvature_in.raw_c.grad.abs()) > 0
    assert float(conv.curvature_out.raw_c.grad.abs()) > 0


def test_dropout_acts_in_training_only():
    conv = HGCNConv(5, 3, dropout=0.5).double()
    x, edge_index = ball_points(6, 5, 1.0, 13), random_graph(6, 5, 14)
    conv.eval()
    torch.testing.assert_close(conv(x, edge_index), conv(x, edge_index))
    conv.train()
    torch.manual_seed(0)
    assert not torch.allclose(conv(x, edge_index), conv.eval()(x, edge_index))


# ----------------------------------------------------------------- bad input
def test_bad_inputs_raise_with_a_message():
    for name in ("c_in", "c_out"):
        for c in (0.0, -1.0, math.inf):
            with pytest.raises(ValueError, match=f"{name} must be positive"):
                HGCNConv(3, 2, **{name: c})
        with pytest.raises(TypeError, match=f"{name} must be a positive float"):
            HGCNConv(3, 2, **{name: "1"})
    with pytest.raises(ValueError, match="in_channels must be >= 1"):
        HGCNConv(0, 2)
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\)"):
        HGCNConv(3, 2, dropout=1.0)
    with pytest.raises(TypeError, match="act must be callable"):
        HGCNConv(3, 2, act="relu")

    conv = HGCNConv(3, 2)
    edge_index = torch.tensor([[0, 1], [1, 0]])
    with pytest.raises(ValueError, match=r"x must have 3 features .*\(N, in_channels\)"):
        conv(torch.zeros(4, 5), edge_index)
    with pytest.raises(TypeError, match="x must have the dtype of the layer's parameters"):
        conv(torch.zeros(4, 3, dtype=torch.float64), edge_index)
    with pytest.raises(TypeError, match="x must be a float32 or float64 tensor"):
        conv(torch.zeros(4, 3, dtype=torch.int64), edge_index)
    with pytest.raises(ValueError, match=r"x must have shape \(N, in_channels\)"):
        conv(torch.zeros(2, 4, 3), edge_index)
    x = torch.zeros(4, 3)
    with pytest.raises(TypeError, match="edge_index must be an int64 tensor"):
        conv(x, edge_index.int())
    with pytest.raises(ValueError, match=r"edge_index must have shape \(2, E\)"):
        conv(x, torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"edge_index must hold node ids in 0\.\.3"):
        conv(x, torch.tensor([[0, 4], [1, 0]]))
    with pytest.raises(ValueError, match=r"edge_index must hold node ids in 0\.\.3"):
        conv(x, torch.tensor([[0, -1], [1, 0]]))
