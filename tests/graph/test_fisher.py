import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn import functional as F
from torch_geometric.nn import MessagePassing

from geolayers.graph.fisher import FisherInformationEmbedding, spherical_kmeans
from geolayers.testing import assert_equivariant

F64 = torch.float64


def random_graph(num_nodes: int, num_edges: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    src = torch.randint(0, num_nodes, (num_edges,), generator=gen)
    dst = torch.randint(0, num_nodes, (num_edges,), generator=gen)
    return torch.stack([src, dst])


def make_layer(d: int = 4, k: int = 3, seed: int = 0, **kw) -> FisherInformationEmbedding:
    torch.manual_seed(seed)
    layer = FisherInformationEmbedding(d, k, **kw).double()
    with torch.no_grad():
        # Unit norm in float64 (not float32 cast up); non-uniform mixture weights.
        layer.means.copy_(F.normalize(layer.means, dim=-1))
        layer.mixture_logits.normal_(0.0, 2.0)
    return layer


def dense_reference(layer, x, edge_index, edge_weight=None):
    """The formula written out with dense matrices: W[i, j] = total weight of edges j -> i,
    gamma = softmax_k((<x_j, mu_k> + b_k) / tau), alpha = W gamma / row sums,
    out_ik = sum_j alpha_ijk (x_j - mu_k)."""
    n = x.size(0)
    w = torch.ones(edge_index.size(1), dtype=x.dtype) if edge_weight is None else edge_weight
    adj = torch.zeros(n, n, dtype=x.dtype)
    for (j, i), wij in zip(edge_index.T.tolist(), w.tolist(), strict=True):
        adj[i, j] += wij
    if layer.add_self_loops:
        loops = torch.tensor(
            [(edge_index[0] == i).logical_and(edge_index[1] == i).any() for i in range(n)]
        )
        adj[~loops, ~loops] = 1.0
    feats = F.normalize(x, dim=-1) if layer.normalize else x
    outs = []
    for h in range(layer.heads):
        mu, b = layer.means[h], layer.mixture_logits[h]
        gamma = torch.softmax((feats @ mu.T + b) / layer.temperature, dim=-1)  # (n, K)
        score = adj[:, :, None] * gamma[None, :, :]  # (i, j, K)
        total = score.sum(1, keepdim=True)
        alpha = torch.where(total > 0, score / torch.where(total > 0, total, 1.0), 0.0)
        diff = feats[None, :, None, :] - mu[None, None, :, :]  # (1, j, K, d)
        outs.append((alpha[..., None] * diff).sum(1))  # (i, K, d)
    return torch.stack(outs, 1).reshape(n, -1)


def test_is_message_passing_shapes_and_repr():
    layer = FisherInformationEmbedding(8, 4)
    assert isinstance(layer, MessagePassing)
    ei = random_graph(6, 10, 0)
    assert layer(torch.randn(6, 8), ei).shape == (6, 32)
    assert layer.out_channels == 32 and layer.temperature == 8.0
    two = FisherInformationEmbedding(8, 4, heads=2, temperature=0.5)
    assert two(torch.randn(6, 8), ei).shape == (6, 64) and two.out_channels == 64
    assert two.means.shape == (2, 4, 8) and two.mixture_logits.shape == (2, 4)
    assert "num_mixtures=4" in repr(two) and "heads=2" in repr(two)
    torch.testing.assert_close(layer.means.norm(dim=-1), torch.ones(1, 4))


def test_float32_and_float64_agree():
    layer = FisherInformationEmbedding(5, 3, heads=2)
    x, ei = torch.randn(9, 5), random_graph(9, 20, 1)
    w = torch.rand(20)
    out32 = layer(x, ei, w)
    assert out32.dtype == torch.float32 and torch.isfinite(out32).all()
    out64 = layer.double()(x.double(), ei, w.double())
    assert out64.dtype == F64
    torch.testing.assert_close(out32.double(), out64, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("heads", [1, 2])
def test_matches_dense_reference_with_loops_duplicates_and_weights(normalize, heads):
    layer = make_layer(4, 3, heads=heads, normalize=normalize, temperature=0.7)
    x = torch.randn(7, 4, dtype=F64)
    # A self loop on node 2 (kept, weight 0.3), a duplicated edge 0 -> 1, node 6 only a source.
    ei = torch.tensor([[0, 0, 2, 3, 4, 5, 6, 1, 2], [1, 1, 2, 2, 3, 4, 0, 5, 1]])
    w = torch.tensor([0.5, 1.5, 0.3, 2.0, 1.0, 0.7, 1.2, 0.9, 0.4], dtype=F64)
    expected = dense_reference(layer, x, ei, w)
    torch.testing.assert_close(layer(x, ei, w), expected, atol=1e-10, rtol=0)
    torch.testing.assert_close(layer(x, ei), dense_reference(layer, x, ei), atol=1e-10, rtol=0)


def test_without_self_loops_an_empty_neighbourhood_embeds_to_zero():
    layer = make_layer(3, 2, add_self_loops=False)
    x = torch.randn(5, 3, dtype=F64)
    ei = torch.tensor([[0, 1, 2], [1, 2, 0]])  # nodes 3 and 4 receive nothing
    out = layer(x, ei)
    torch.testing.assert_close(out, dense_reference(layer, x, ei), atol=1e-10, rtol=0)
    assert out[3:].abs().max() == 0 and out[:3].abs().min() > 0
    assert layer(x, torch.empty(2, 0, dtype=torch.long)).abs().max() == 0
    assert make_layer(3, 2)(x[:0], torch.empty(2, 0, dtype=torch.long)).shape == (0, 6)


def test_self_loops_only_give_feature_minus_mean():
    layer = make_layer(3, 2, heads=2)
    x = torch.randn(4, 3, dtype=F64)
    out = layer(x, torch.empty(2, 0, dtype=torch.long)).view(4, 2, 2, 3)
    expected = F.normalize(x, dim=-1)[:, None, None, :] - layer.means
    torch.testing.assert_close(out, expected, atol=1e-12, rtol=0)


def test_one_component_is_weighted_mean_aggregation():
    # K = 1: gamma = 1, alpha_ij = w_ij / sum_j w_ij, the output a weighted mean minus mu.
    layer = make_layer(3, 1, normalize=False)
    x, ei = torch.randn(6, 3, dtype=F64), random_graph(6, 12, 2)
    w = torch.rand(12, dtype=F64) + 0.1
    edges, alpha = layer.attention_weights(x, ei, w)
    src, dst = edges
    full_w = torch.cat([w, torch.ones(edges.size(1) - 12, dtype=F64)])
    total = torch.zeros(6, dtype=F64).index_add_(0, dst, full_w)
    mean = (
        torch.zeros(6, 3, dtype=F64).index_add_(0, dst, full_w[:, None] * x[src]) / total[:, None]
    )
    torch.testing.assert_close(layer(x, ei, w), mean - layer.means[0, 0], atol=1e-12, rtol=0)
    torch.testing.assert_close(alpha[:, 0, 0], full_w / total[dst], atol=1e-12, rtol=0)


def test_is_one_em_step_of_the_gaussian_mixture_and_a_natural_gradient():
    # Unit-norm means: gamma is the exact posterior of sum_k pi_k N(x; mu_k, tau I) with
    # pi = softmax(b / tau), also for raw (not normalised) features.
    layer = make_layer(4, 3, normalize=False, temperature=0.8)
    tau, mu, pi = layer.temperature, layer.means[0].detach(), layer.mixture_weights[0].detach()
    x = 1.5 * torch.randn(6, 4, dtype=F64)
    log_joint = -(x[:, None] - mu).square().sum(-1) / (2 * tau) + pi.log()
    torch.testing.assert_close(
        layer.responsibilities(x)[:, 0], torch.softmax(log_joint, -1), atol=1e-12, rtol=0
    )
    # Node 0's neighbourhood: the EM mean update minus mu, which is the Fisher score in mu
    # times the inverse complete-data Fisher information sigma^2 / sum_j gamma_jk.
    ei = torch.tensor([[1, 2, 3], [0, 0, 0]])
    out = layer(x, ei)[0].view(3, 4)
    hood = x[[1, 2, 3, 0]]
    gamma = torch.softmax(-(hood[:, None] - mu).square().sum(-1) / (2 * tau) + pi.log(), -1)
    em = (gamma.T @ hood) / gamma.sum(0)[:, None]
    torch.testing.assert_close(out, em - mu, atol=1e-12, rtol=0)
    means = mu.clone().requires_grad_(True)
    densities = -(hood[:, None] - means).square().sum(-1) / (2 * tau) + pi.log()
    (score,) = torch.autograd.grad(torch.logsumexp(densities, -1).sum(), means)
    torch.testing.assert_close(out, tau * score / gamma.sum(0)[:, None], atol=1e-12, rtol=0)


def test_attention_sums_to_one_and_reproduces_the_output():
    layer = make_layer(4, 3, heads=2)
    x, ei = torch.randn(8, 4, dtype=F64), random_graph(8, 16, 3)
    w = torch.rand(16, dtype=F64)
    edges, alpha = layer.attention_weights(x, ei, w)
    looped = ei[0, ei[0] == ei[1]].unique().numel()  # nodes that have a loop already
    assert looped > 0 and edges.shape == (2, 16 + 8 - looped) and alpha.shape[1:] == (2, 3)
    torch.testing.assert_close(edges[:, :16], ei)
    sums = torch.zeros(8, 2, 3, dtype=F64).index_add_(0, edges[1], alpha)
    torch.testing.assert_close(sums, torch.ones_like(sums), atol=1e-12, rtol=0)
    diff = F.normalize(x, dim=-1)[edges[0]][:, None, None, :] - layer.means
    out = torch.zeros(8, 2, 3, 4, dtype=F64).index_add_(0, edges[1], alpha[..., None] * diff)
    torch.testing.assert_close(layer(x, ei, w), out.reshape(8, -1), atol=1e-12, rtol=0)


def test_fused_sparse_sum_matches_pyg_message_passing():
    layer = make_layer(4, 3, heads=2)
    x, ei = torch.randn(9, 4, dtype=F64), random_graph(9, 25, 4)
    w = torch.rand(25, dtype=F64)
    fused = layer(x, ei, w)
    layer.fuse = False  # propagate() then calls message() edge by edge
    torch.testing.assert_close(layer(x, ei, w), fused, atol=1e-12, rtol=0)


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(1, 8),
    e=st.integers(0, 20),
    k=st.integers(1, 4),
    heads=st.integers(1, 2),
    normalize=st.booleans(),
    loops=st.booleans(),
)
def test_property_matches_dense_reference(seed, n, e, k, heads, normalize, loops):
    layer = make_layer(
        3, k, seed=seed % 1000, heads=heads, normalize=normalize, add_self_loops=loops
    )
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=gen, dtype=F64)
    ei = torch.randint(0, n, (2, e), generator=gen)
    w = torch.rand(e, generator=gen, dtype=F64)
    torch.testing.assert_close(
        layer(x, ei, w), dense_reference(layer, x, ei, w), atol=1e-10, rtol=0
    )


@pytest.mark.parametrize("heads", [1, 2])
def test_node_permutation_equivariance(dtype, tol, heads):
    layer = FisherInformationEmbedding(4, 3, heads=heads)
    ei = random_graph(12, 30, 6)

    def relabel(perm, inputs):
        x, edge_index, weight = inputs
        inverse = torch.empty_like(perm)
        inverse[perm] = torch.arange(perm.numel())
        # New node i is old node perm[i]; edges follow their endpoints.
        return x[perm], inverse[edge_index], weight

    assert_equivariant(
        layer,
        lambda gen: (torch.randn(12, 4, generator=gen), ei, torch.rand(30, generator=gen)),
        lambda gen, inputs: torch.randperm(inputs[0].shape[0], generator=gen),
        relabel,
        lambda perm, out: out[perm],
        trials=3,
        dtype=dtype,
        atol=tol,
        rtol=tol,
    )


def test_gradcheck_in_x_means_logits_and_edge_weights():
    layer = make_layer(3, 2, heads=2, temperature=0.6)
    ei = torch.tensor([[0, 1, 1, 2, 3, 3], [1, 0, 2, 1, 1, 3]])
    x = torch.randn(4, 3, dtype=F64, requires_grad=True)
    w = (torch.rand(6, dtype=F64) + 0.2).requires_grad_(True)
    means = layer.means.detach().clone().requires_grad_(True)
    logits = layer.mixture_logits.detach().clone().requires_grad_(True)

    def fn(x, means, logits, w):
        params = {"means": means, "mixture_logits": logits}
        return torch.func.functional_call(layer, params, (x, ei, w))

    assert torch.autograd.gradcheck(fn, (x, means, logits, w))


def test_learn_flags_freeze_parameters():
    layer = FisherInformationEmbedding(3, 2, learn_means=False, learn_weights=False)
    x = torch.randn(5, 3, requires_grad=True)
    layer(x, random_graph(5, 6, 7)).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert layer.means.grad is None and layer.mixture_logits.grad is None
    assert not any(p.requires_grad for p in layer.parameters())
    trained = FisherInformationEmbedding(3, 2)
    trained(x, random_graph(5, 6, 7)).square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in trained.parameters())


def test_no_underflow_with_large_raw_features():
    layer = FisherInformationEmbedding(3, 4, normalize=False, temperature=1e-3).double()
    x = (1e3 * torch.randn(10, 3, dtype=F64)).requires_grad_(True)
    out = layer(x, random_graph(10, 30, 8))
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_cached_adjacency():
    layer = FisherInformationEmbedding(4, 2, cached=True)
    ei = random_graph(6, 8, 10)
    x = torch.randn(6, 4)
    first = layer(x, ei)
    torch.testing.assert_close(layer(x, ei[:, :2]), first)
    with pytest.raises(ValueError, match="cached"):
        layer(torch.randn(7, 4), ei)
    layer.reset_parameters()
    assert layer._cached_adjacency is None


# --------------------------------------------------------------------------- k-means


def clustered_points(num_clusters: int, per_cluster: int, dim: int, seed: int, noise=0.05):
    gen = torch.Generator().manual_seed(seed)
    directions = F.normalize(torch.randn(num_clusters, dim, generator=gen, dtype=F64), dim=-1)
    labels = torch.arange(num_clusters).repeat_interleave(per_cluster)
    scale = 0.5 + 2 * torch.rand(labels.numel(), 1, generator=gen, dtype=F64)
    x = scale * (
        directions[labels] + noise * torch.randn(labels.numel(), dim, generator=gen, dtype=F64)
    )
    perm = torch.randperm(labels.numel(), generator=gen)
    return x[perm], labels[perm], directions


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_spherical_kmeans_recovers_separated_clusters(seed):
    x, labels, directions = clustered_points(4, 30, 8, seed)
    centers, assignment = spherical_kmeans(x, 4, seed=seed)
    assert centers.shape == (4, 8) and centers.dtype == F64 and assignment.shape == (120,)
    torch.testing.assert_close(centers.norm(dim=-1), torch.ones(4, dtype=F64))
    # Each found cluster is exactly one true cluster (a bijection), its centre near the direction.
    pairs = torch.unique(torch.stack([assignment, labels]), dim=1)
    assert pairs.size(1) == 4 and pairs[0].unique().numel() == 4
    match = dict(zip(pairs[0].tolist(), pairs[1].tolist(), strict=True))
    for c, true in match.items():
        assert float(centers[c] @ directions[true]) > 0.99


def test_spherical_kmeans_is_deterministic_by_seed():
    x = torch.randn(200, 5)
    first = spherical_kmeans(x, 6, seed=3)
    again = spherical_kmeans(x, 6, seed=3)
    torch.testing.assert_close(first[0], again[0], atol=0, rtol=0)
    assert torch.equal(first[1], again[1])
    other = spherical_kmeans(x, 6, seed=4, iters=1)
    assert not torch.equal(other[0], spherical_kmeans(x, 6, seed=3, iters=1)[0])


def test_spherical_kmeans_reseeds_empty_clusters():
    x, labels, directions = clustered_points(3, 20, 6, 5)
    # The second starting centre points away from every row: nothing is assigned to it.
    init = torch.cat([directions[:1], -directions.sum(0, keepdim=True), directions[2:]])
    centers, assignment = spherical_kmeans(x, 3, init=init)
    assert assignment.bincount(minlength=3).min() > 0
    torch.testing.assert_close(centers.norm(dim=-1), torch.ones(3, dtype=F64))
    assert torch.unique(torch.stack([assignment, labels]), dim=1).size(1) == 3


def test_spherical_kmeans_with_fewer_directions_than_clusters_and_weights():
    x = torch.tensor([[1.0, 0.0]] * 5 + [[0.0, 2.0]] * 5)
    centers, assignment = spherical_kmeans(x, 3, seed=0)
    assert torch.isfinite(centers).all()
    torch.testing.assert_close(centers.norm(dim=-1), torch.ones(3))
    assert set(assignment.tolist()) <= {0, 1, 2}
    # Rows of weight 0 never seed a centre and do not pull one.
    x = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0]])
    weight = torch.tensor([1.0, 1.0, 1.0, 0.0])
    for seed in range(5):
        centers, _ = spherical_kmeans(x, 2, seed=seed, weight=weight)
        assert (centers @ torch.tensor([-1.0, 0.0])).max() < 0.5
    # A single cluster is the normalised weighted sum.
    centers, _ = spherical_kmeans(x[:3], 1, weight=weight[:3] * torch.tensor([1.0, 2.0, 3.0]))
    expected = F.normalize(x[0] + 2 * F.normalize(x[1], dim=0) + 3 * x[2], dim=0)
    torch.testing.assert_close(centers[0], expected)


def test_init_means_clusters_the_neighbourhood_features():
    x, labels, directions = clustered_points(3, 15, 5, 6)
    layer = FisherInformationEmbedding(5, 3, heads=2).double()
    with torch.no_grad():
        layer.mixture_logits.fill_(1.0)
    ei = random_graph(45, 90, 7)
    ei = ei[:, ei[0] != ei[1]]  # no loops: the layer adds one to every node
    assignment = layer.init_means(x, ei, seed=1)
    assert assignment.shape == (45,)
    assert torch.unique(torch.stack([assignment, labels]), dim=1).size(1) == 3
    for h in range(2):
        torch.testing.assert_close(layer.means[h].norm(dim=-1), torch.ones(3, dtype=F64))
        assert (layer.means[h] @ directions.T).max(dim=0).values.min() > 0.99
    assert layer.mixture_logits.abs().max() == 0
    # The clustered multiset: every node weighted by its out-going edges and its self loop.
    src = torch.cat([ei[0], torch.arange(45)])
    count = torch.bincount(src, minlength=45).to(F64)
    expected, _ = spherical_kmeans(x, 3, seed=1, weight=count)
    torch.testing.assert_close(layer.means[0], expected)
    layer.init_means(x)  # without a graph: the nodes themselves
    torch.testing.assert_close(layer.means[0], spherical_kmeans(x, 3)[0])


# --------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        ((0, 2), {}, ValueError, "in_channels must be >= 1"),
        ((3, 0), {}, ValueError, "num_mixtures must be >= 1"),
        ((3, 2.0), {}, TypeError, "num_mixtures must be an int"),
        ((3, True), {}, TypeError, "num_mixtures must be an int"),
        ((3, 2), {"heads": 0}, ValueError, "heads must be >= 1"),
        ((3, 2), {"temperature": 0.0}, ValueError, "temperature must be a finite number > 0"),
        ((3, 2), {"temperature": math.inf}, ValueError, "temperature must be a finite"),
        ((3, 2), {"temperature": "1"}, TypeError, "temperature must be a number"),
    ],
)
def test_bad_constructor_arguments(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        FisherInformationEmbedding(*args, **kwargs)


def test_bad_inputs():
    layer = FisherInformationEmbedding(4, 2)
    ei = random_graph(5, 6, 11)
    x = torch.randn(5, 4)
    with pytest.raises(ValueError, match=r"x must have shape \(num_nodes, 4\)"):
        layer(torch.randn(5, 3), ei)
    with pytest.raises(ValueError, match=r"x must have shape \(num_nodes, 4\)"):
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
    with pytest.raises(ValueError, match="edge_index must hold node ids in 0..4"):
        layer(x, torch.tensor([[0, 5], [1, 1]]))
    with pytest.raises(ValueError, match="edge_index must hold node ids"):
        layer(x, torch.tensor([[0, -1], [1, 1]]))
    with pytest.raises(ValueError, match=r"edge_weight must have shape \(E,\) = \(6,\)"):
        layer(x, ei, torch.ones(5))
    with pytest.raises(TypeError, match="edge_weight must be a tensor of the dtype of x"):
        layer(x, ei, torch.ones(6, dtype=F64))
    with pytest.raises(ValueError, match="edge_weight must be finite and >= 0"):
        layer(x, ei, -torch.ones(6))
    with pytest.raises(ValueError, match="edge_weight must be finite and >= 0"):
        layer(x, ei, torch.full((6,), math.nan))
    with pytest.raises(ValueError, match="x must have at least num_mixtures=2 rows"):
        layer.init_means(x[:1])
    with pytest.raises(ValueError, match="edge_weight needs edge_index"):
        layer.init_means(x, edge_weight=torch.ones(6))
    with pytest.raises(ValueError, match="must give some node a positive weight"):
        FisherInformationEmbedding(4, 2, add_self_loops=False).init_means(
            x, torch.empty(2, 0, dtype=torch.long)
        )


def test_bad_kmeans_arguments():
    x = torch.randn(6, 3)
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        spherical_kmeans(torch.ones(6, 3, dtype=torch.long), 2)
    with pytest.raises(ValueError, match=r"x must have shape \(N, F\)"):
        spherical_kmeans(torch.randn(6), 2)
    with pytest.raises(ValueError, match="k must be >= 1"):
        spherical_kmeans(x, 0)
    with pytest.raises(ValueError, match=r"k must be <= the number of rows of x \(6\)"):
        spherical_kmeans(x, 7)
    with pytest.raises(ValueError, match="iters must be >= 1"):
        spherical_kmeans(x, 2, iters=0)
    with pytest.raises(TypeError, match="seed must be an int"):
        spherical_kmeans(x, 2, seed=1.5)
    with pytest.raises(ValueError, match=r"weight must have shape \(6,\)"):
        spherical_kmeans(x, 2, weight=torch.ones(5))
    with pytest.raises(ValueError, match="weight must be finite and >= 0"):
        spherical_kmeans(x, 2, weight=-torch.ones(6))
    with pytest.raises(ValueError, match="weight must have a positive sum"):
        spherical_kmeans(x, 2, weight=torch.zeros(6))
    with pytest.raises(ValueError, match=r"init must have shape \(k, F\) = \(2, 3\)"):
        spherical_kmeans(x, 2, init=torch.randn(3, 3))
