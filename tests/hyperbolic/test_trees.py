import math

import mpmath
import pytest
import torch

from geolayers.hyperbolic.trees import (
    TreeEmbedding,
    bfs_tree,
    combinatorial_embedding,
    combinatorial_tau,
    float64_radius,
    hmds,
)
from geolayers.metrics.reconstruction import ranking_scores, reconstruction
from geolayers.ops import poincare_pairwise_dist_reference


def complete_tree(depth: int, branching: int) -> torch.Tensor:
    parent, frontier = [-1], [0]
    for _ in range(depth):
        nxt = []
        for p in frontier:
            for _ in range(branching):
                parent.append(p)
                nxt.append(len(parent) - 1)
        frontier = nxt
    return torch.tensor(parent)


# Uneven degrees: a root with 3 children, a node with 5 children, a path of length 3.
UNEVEN = torch.tensor([-1, 0, 0, 0, 1, 1, 1, 1, 1, 2, 9, 10, 3])


def tree_distances(parent: torch.Tensor) -> torch.Tensor:
    n = parent.numel()
    adj = [[] for _ in range(n)]
    for u, p in enumerate(parent.tolist()):
        if p >= 0:
            adj[u].append(p)
            adj[p].append(u)
    out = torch.zeros(n, n, dtype=torch.float64)
    for s in range(n):
        seen, frontier, d = {s}, [s], 0
        while frontier:
            d += 1
            frontier = [w for u in frontier for w in adj[u] if w not in seen]
            seen.update(frontier)
            out[s, frontier] = d
    return out


def closure_of(parent: torch.Tensor) -> torch.Tensor:
    pairs = []
    for u in range(parent.numel()):
        a = int(parent[u])
        while a >= 0:
            pairs.append((u, a))
            a = int(parent[a])
    return torch.tensor(pairs)


def test_bfs_tree_picks_shallowest_parent():
    # 4 has parents 3 (depth 2) and 1 (depth 1): the search reaches it from 1 first.
    edges = torch.tensor([[1, 0], [2, 0], [3, 2], [4, 3], [4, 1], [5, 4]])
    assert bfs_tree(edges).tolist() == [-1, 0, 0, 2, 1, 4]
    assert bfs_tree(edges, 6, root=0).tolist() == [-1, 0, 0, 2, 1, 4]
    with pytest.raises(ValueError, match="exactly one node without a parent"):
        bfs_tree(torch.tensor([[1, 0], [3, 2]]))
    with pytest.raises(ValueError, match="2 nodes are not below root 2"):
        bfs_tree(edges, root=2)
    with pytest.raises(ValueError, match=r"root must be a node index in \[0, 6\)"):
        bfs_tree(edges, root=9)


def test_edges_have_length_tau_and_distortion_is_bounded():
    eps = 0.5
    tau = combinatorial_tau(6, eps)  # UNEVEN: largest degree 6 (5 children + parent)
    emb = combinatorial_embedding(UNEVEN, epsilon=eps)
    assert isinstance(emb, TreeEmbedding) and emb.tau == pytest.approx(tau)
    n = UNEVEN.numel()
    d = emb.dist_rows(torch.arange(n))
    assert torch.allclose(d, d.T, rtol=1e-12, atol=1e-12) and (d.diagonal() == 0).all()
    child = torch.arange(1, n)
    assert torch.allclose(d[child, UNEVEN[1:]], torch.full((n - 1,), tau, dtype=torch.float64))
    # Paths are tree paths of length tau per edge, so the embedding only contracts, and by
    # the choice of tau (Sala et al., Theorem 3.1) by at most 1 + epsilon.
    t = tree_distances(UNEVEN) * tau
    off = ~torch.eye(n, dtype=torch.bool)
    ratio = d[off] / t[off]
    assert ratio.max() <= 1 + 1e-12 and ratio.min() >= 1 / (1 + eps)
    # Points stay strictly inside the disk; only the shallow ones survive float64 rounding.
    assert (emb.points.norm(dim=1) < 1).all()
    assert emb.representable[0] and not emb.representable.all()


def test_tree_reconstructs_its_own_edges():
    parent = complete_tree(3, 4)  # 85 nodes
    edges = torch.stack([torch.arange(1, parent.numel()), parent[1:]], 1)
    emb = combinatorial_embedding(parent, tau=6.0)
    out = ranking_scores(emb.dist_rows, edges, parent.numel(), symmetric=True, progress=False)
    assert (out.mean_rank, out.map) == (1.0, 1.0)
    # tau="float64" keeps the points usable by float64 code: same result from emb.points.
    small = combinatorial_embedding(parent, tau="float64")
    assert small.tau == pytest.approx(float64_radius(2) / 3) and small.representable.all()
    out = reconstruction(small.points, edges, symmetric=True, progress=False)
    assert (out.mean_rank, out.map) == (1.0, 1.0)


def test_growth_two_ranks_ancestors_first():
    parent = complete_tree(4, 3)  # 121 nodes
    closure = closure_of(parent)
    n = parent.numel()
    plain = combinatorial_embedding(parent, tau=4.0)
    flat = ranking_scores(plain.dist_rows, closure, n, tie_rtol=1e-9, progress=False)
    assert flat.map < 0.7  # grandparents tie with siblings in a tree metric
    grown = combinatorial_embedding(parent, tau=4.0, growth=2.0)
    # The edge into depth k has length 4 * 2 ** (k - 1).
    d = grown.dist_rows(torch.arange(n))
    depth = torch.tensor([0] + [1] * 3 + [2] * 9 + [3] * 27 + [4] * 81)
    child = torch.arange(1, n)
    assert torch.allclose(d[child, parent[1:]], 4.0 * 2.0 ** (depth[1:] - 1).double())
    assert grown.precision == math.ceil(4.0 * 15 / math.log(2)) + 64
    out = ranking_scores(grown.dist_rows, closure, n, tie_rtol=1e-9, progress=False)
    assert (out.mean_rank, out.map) == (1.0, 1.0)


def test_higher_dimensional_variant():
    # In 3-D the five children of node 1 and its parent take six directions of an
    # octahedron (90 degrees apart) instead of 60 degrees on the circle: less distortion.
    eps = 0.5
    tau = combinatorial_tau(6, eps)
    n = UNEVEN.numel()
    t = tree_distances(UNEVEN) * tau
    off = ~torch.eye(n, dtype=torch.bool)
    worst = {}
    for dim in (2, 3, 4):
        emb = combinatorial_embedding(UNEVEN, tau=tau, dim=dim)
        assert emb.points.shape == (n, dim) and (emb.points.norm(dim=1) < 1).all()
        d = emb.dist_rows(torch.arange(n))
        child = torch.arange(1, n)
        assert torch.allclose(d[child, UNEVEN[1:]], torch.full((n - 1,), tau, dtype=torch.float64))
        ratio = d[off] / t[off]
        assert ratio.max() <= 1 + 1e-12
        worst[dim] = float(ratio.min())
    assert worst[2] >= 1 / (1 + eps) and worst[3] > worst[2] and worst[4] > worst[2]
    parent = complete_tree(3, 4)
    edges = torch.stack([torch.arange(1, parent.numel()), parent[1:]], 1)
    emb = combinatorial_embedding(parent, tau="float64", dim=3)
    assert emb.representable.all()
    out = reconstruction(emb.points, edges, symmetric=True, progress=False)
    assert (out.mean_rank, out.map) == (1.0, 1.0)
    with pytest.raises(ValueError, match="dim must be >= 2"):
        combinatorial_embedding(parent, dim=1)


def test_weights_precision_and_mpmath_points():
    parent = torch.tensor([-1, 0, 1, 2])
    weights = torch.tensor([9.0, 1.0, 2.0, 0.5], dtype=torch.float64)
    emb = combinatorial_embedding(parent, tau=3.0, weights=weights, precision=300)
    assert emb.precision == 300 and emb.digits == 90
    d = emb.dist_rows(torch.tensor([0, 3]))
    # A path is a geodesic here (every node has one child, placed opposite its parent).
    assert d[0].tolist() == pytest.approx([0.0, 3.0, 9.0, 10.5], rel=1e-12)
    assert d[1, 0] == pytest.approx(10.5, rel=1e-12)
    x = emb.mp_points[3]
    # mpmath numbers of a private context at the requested precision.
    assert all(v.context.prec == 300 and float(v) == float(v) for v in x)
    # 10.5 from the origin: 1 - |x| = 2 e^-10.5 / (1 + e^-10.5) to the working precision.
    ctx = mpmath.MPContext()
    ctx.prec = 300
    gap = 1 - ctx.sqrt(x[0] ** 2 + x[1] ** 2)
    assert abs(gap - 2 / (ctx.exp(ctx.mpf(10.5)) + 1)) < ctx.mpf(2) ** -280
    # Distances from the high-precision points, checked against mpmath at 300 bits.
    y = emb.mp_points[1]
    chord = ctx.sqrt((x[0] - y[0]) ** 2 + (x[1] - y[1]) ** 2)
    ref = 2 * ctx.asinh(chord / ctx.sqrt((1 - x[0] ** 2 - x[1] ** 2) * (1 - y[0] ** 2 - y[1] ** 2)))
    assert emb.dist_rows(torch.tensor([3]))[0, 1].item() == pytest.approx(float(ref), rel=1e-14)
    assert repr(emb).startswith("TreeEmbedding(num_nodes=4, dim=2, tau=3, precision=300 bits")


def test_bad_trees_and_options():
    with pytest.raises(ValueError, match="exactly one root"):
        combinatorial_embedding(torch.tensor([-1, -1, 0]))
    with pytest.raises(ValueError, match="cycle"):
        combinatorial_embedding(torch.tensor([-1, 2, 1]))
    with pytest.raises(TypeError, match="parent must be an int64 tensor"):
        combinatorial_embedding(torch.tensor([-1.0, 0.0]))
    with pytest.raises(ValueError, match="tau must be a positive float"):
        combinatorial_embedding(torch.tensor([-1, 0]), tau=0.0)
    with pytest.raises(ValueError, match=r"weights must have shape \(2,\)"):
        combinatorial_embedding(torch.tensor([-1, 0]), weights=torch.ones(3))
    with pytest.raises(ValueError, match="growth must be a float in"):
        combinatorial_embedding(torch.tensor([-1, 0]), growth=0.5)
    with pytest.raises(ValueError, match="epsilon must be a positive float"):
        combinatorial_tau(3, 0.0)
    # A single node is a tree too.
    assert combinatorial_embedding(torch.tensor([-1]), tau=1.0).points.tolist() == [[0.0, 0.0]]


def random_ball(n: int, dim: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=g, dtype=torch.float64)
    r = torch.rand(n, 1, generator=g, dtype=torch.float64) * 0.9
    return x / x.norm(dim=1, keepdim=True) * r


def test_hmds_recovers_hyperbolic_points():
    one = torch.tensor(1.0, dtype=torch.float64)
    x = random_ball(30, 3, 0)
    d = poincare_pairwise_dist_reference(x, x, one)
    y = hmds(d, 3)
    assert y.shape == (30, 3) and (y.norm(dim=1) < 1).all()
    assert torch.allclose(poincare_pairwise_dist_reference(y, y, one), d, atol=1e-8)
    # Dimension reduction: points of a totally geodesic plane of H^4 need only 2 dimensions.
    flat = torch.cat([random_ball(20, 2, 1), torch.zeros(20, 2, dtype=torch.float64)], 1)
    d = poincare_pairwise_dist_reference(flat, flat, one)
    y = hmds(d, 2)
    assert torch.allclose(poincare_pairwise_dist_reference(y, y, one), d, atol=1e-8)
    # More dimensions than points allow are padded with zeros; float32 in, float32 out.
    y = hmds(d[:3, :3].float(), 5)
    assert y.shape == (3, 5) and y.dtype == torch.float32


def test_hmds_on_a_tree_construction():
    # h-MDS of the combinatorial construction's distances gives back its 2-D layout.
    parent = complete_tree(2, 3)
    emb = combinatorial_embedding(parent, tau=2.0)
    d = emb.dist_rows(torch.arange(parent.numel()))
    y = hmds(d, 2)
    one = torch.tensor(1.0, dtype=torch.float64)
    assert torch.allclose(poincare_pairwise_dist_reference(y, y, one), d, atol=1e-7)


def test_hmds_bad_inputs():
    with pytest.raises(ValueError, match=r"dist must have shape \(N, N\)"):
        hmds(torch.zeros(2, 3), 2)
    with pytest.raises(ValueError, match="finite distances >= 0"):
        hmds(torch.tensor([[0.0, -1.0], [-1.0, 0.0]]), 1)
    with pytest.raises(TypeError, match="dim must be an int"):
        hmds(torch.zeros(2, 2), 1.5)
