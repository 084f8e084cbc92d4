import math

import pytest
import torch

from geolayers.metrics.reconstruction import (
    RankingScores,
    link_prediction_split,
    ranking_scores,
    reconstruction,
)
from geolayers.ops import poincare_pairwise_dist

# Five points on a diameter of the disk. Hyperbolic distance along a diameter grows with the
# Mobius difference |a - b| / (1 - a b), which fixes every ranking below by hand.
LINE = torch.tensor([[0.0, 0.0], [0.1, 0.0], [0.3, 0.0], [0.5, 0.0], [-0.2, 0.0]])


def brute_force(dist, edges, symmetric=False, ignore=None, tie_rtol=0.0):
    """The protocol written as loops: ranks and APs from the full distance matrix."""
    n = dist.shape[0]
    nbr = {u: set() for u in range(n)}
    for u, v in edges.tolist():
        if u != v:
            nbr[u].add(v)
            if symmetric:
                nbr[v].add(u)
    skip = {u: set() for u in range(n)}
    for u, v in [] if ignore is None else ignore.tolist():
        skip[u].add(v)
        if symmetric:
            skip[v].add(u)
    ranks, aps = [], []
    for u in range(n):
        if not nbr[u]:
            continue
        cands = [w for w in range(n) if w != u and (w in nbr[u] or w not in skip[u])]
        precisions = []
        for v in nbr[u]:
            reach = dist[u, v] * (1 + tie_rtol)
            closer = [w for w in cands if dist[u, w] <= reach]
            hits = sum(1 for w in closer if w in nbr[u])
            ranks.append(1 + len(closer) - hits)
            precisions.append(hits / len(closer))
        aps.append(sum(precisions) / len(precisions))
    return sum(ranks) / len(ranks), sum(aps) / len(aps), len(aps), len(ranks)


def test_hand_computed_directed(dtype):
    emb = LINE.to(dtype)
    # From node 0: 1 (0.1), 4 (0.2), 2 (0.3), 3 (0.5). Relations 0 -> 2 and 0 -> 3: both
    # have the non-neighbours 1 and 4 before them (rank 3); precisions 1/3 and 2/4.
    # From node 1: 0 (0.1) comes first (rank 1, AP 1).
    edges = torch.tensor([[0, 2], [0, 3], [1, 0]])
    out = reconstruction(emb, edges, progress=False)
    assert isinstance(out, RankingScores)
    assert out.num_queries == 2 and out.num_relations == 3
    assert out.mean_rank == pytest.approx(7 / 3, abs=1e-12)
    assert out.map == pytest.approx((5 / 12 + 1) / 2, abs=1e-12)


def test_hand_computed_symmetric(dtype):
    edges = torch.tensor([[0, 2], [0, 3], [1, 0]])
    out = reconstruction(LINE.to(dtype), edges, symmetric=True, progress=False)
    # Node 0: neighbours 1, 2, 3 in the order 1, 4, 2, 3: ranks 1, 2, 2, AP (1 + 2/3 + 3/4) / 3.
    # Nodes 2 and 3: node 0 behind two non-neighbours (rank 3, AP 1/3); node 1: rank 1.
    assert out.num_queries == 4 and out.num_relations == 6
    assert out.mean_rank == pytest.approx(12 / 6, abs=1e-12)
    assert out.map == pytest.approx((29 / 36 + 1 + 1 / 3 + 1 / 3) / 4, abs=1e-12)


def test_ties_count_against_and_query_never_a_candidate():
    # All points equal: every other node ties with the neighbours, so each relation ranks
    # behind all N - 1 - k non-neighbours and AP = k / (N - 1). The query itself (at distance
    # 0 too) is not counted: gensim's off-by-one would give rank N - k and AP k / N.
    n = 6
    emb = torch.zeros(n, 3, dtype=torch.float64)
    edges = torch.tensor([[0, 1], [0, 2], [3, 4]])
    out = reconstruction(emb, edges, progress=False)
    assert out.mean_rank == pytest.approx((2 * (1 + 3) + (1 + 4)) / 3)
    assert out.map == pytest.approx((2 / 5 + 1 / 5) / 2)


def test_perfect_tree_embedding_has_map_one():
    # A star: the centre at the origin, leaves on a circle; each leaf's only neighbour (the
    # centre) is its nearest node, and the centre's neighbours are all the others.
    angles = torch.arange(7, dtype=torch.float64) * 2 * math.pi / 7
    emb = torch.cat(
        [torch.zeros(1, 2, dtype=torch.float64), 0.6 * torch.stack([angles.cos(), angles.sin()], 1)]
    )
    edges = torch.stack([torch.arange(1, 8), torch.zeros(7, dtype=torch.long)], 1)
    for symmetric in (False, True):
        out = reconstruction(emb, edges, symmetric=symmetric, progress=False)
        assert (out.mean_rank, out.map) == (1.0, 1.0)


@pytest.mark.parametrize("symmetric", [False, True])
def test_matches_brute_force_on_random_data(dtype, symmetric):
    g = torch.Generator().manual_seed(0)
    n = 40
    emb = (torch.rand(n, 3, generator=g, dtype=torch.float64) - 0.5) * 1.2
    emb[5] = emb[7]  # exact ties
    emb = emb.to(dtype)
    # Random DAG (edges from higher to lower index) and its duplicates and self loops.
    pairs = torch.randint(0, n, (150, 2), generator=g)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]].sort(dim=1, descending=True).values
    edges = torch.cat([pairs, pairs[:5], torch.tensor([[3, 3]])])
    dist = poincare_pairwise_dist(emb, emb)
    expected = brute_force(dist, edges, symmetric)
    for chunk in (None, 7):
        out = reconstruction(emb, edges, symmetric=symmetric, chunk=chunk, progress=False)
        assert out.num_queries == expected[2] and out.num_relations == expected[3]
        assert out.mean_rank == pytest.approx(expected[0], rel=1e-12)
        assert out.map == pytest.approx(expected[1], rel=1e-12)
    # Held-out scoring: a third of the relations ranked, the rest ignored.
    ignore = pairs[::3]
    scored = pairs[1::3]
    out = reconstruction(emb, scored, symmetric=symmetric, ignore=ignore, progress=False)
    mean_rank, map_, _, _ = brute_force(dist, scored, symmetric, ignore)
    assert (out.mean_rank, out.map) == (pytest.approx(mean_rank), pytest.approx(map_))


def test_generic_distances_and_tie_tolerance():
    g = torch.Generator().manual_seed(1)
    n = 25
    d = torch.rand(n, n, generator=g, dtype=torch.float64)
    d = (d + d.T).round(decimals=1)  # many exact ties
    edges = torch.randint(0, n, (60, 2), generator=g)
    out = ranking_scores(lambda rows: d[rows].clone(), edges, n, progress=False)
    expected = brute_force(d, edges)
    assert (out.mean_rank, out.map) == (pytest.approx(expected[0]), pytest.approx(expected[1]))
    # Perturbed by 1e-13 relative, the ties come back with tie_rtol.
    noisy = d * (1 + 1e-13 * torch.randn(n, n, generator=g, dtype=torch.float64))
    loose = ranking_scores(
        lambda rows: noisy[rows].clone(), edges, n, progress=False, tie_rtol=1e-9
    )
    assert (loose.mean_rank, loose.map) == (pytest.approx(expected[0]), pytest.approx(expected[1]))
    # The distance rows handed over are read, never written.
    handed = []

    def keep_rows(rows):
        handed.append((d[rows].clone(), d[rows]))
        return handed[-1][1]

    ranking_scores(keep_rows, edges, n, progress=False, ignore=edges[:10].flip(1))
    assert all(torch.equal(a, b) for a, b in handed)
    none = ranking_scores(
        lambda rows: d[rows], torch.zeros(0, 2, dtype=torch.long), n, progress=False
    )
    assert none.num_queries == 0 and math.isnan(none.map)


def test_bad_inputs():
    emb = torch.zeros(3, 2)
    edges = torch.tensor([[0, 1]])
    with pytest.raises(TypeError, match="emb must be a float32 or float64 tensor"):
        reconstruction(emb.long(), edges)
    with pytest.raises(ValueError, match=r"emb must have shape \(N, D\)"):
        reconstruction(torch.zeros(3), edges)
    with pytest.raises(ValueError, match="emb must be finite"):
        reconstruction(torch.full((3, 2), float("nan")), edges)
    with pytest.raises(ValueError, match=r"edges must hold node indices in \[0, 3\)"):
        reconstruction(emb, torch.tensor([[0, 3]]))
    with pytest.raises(TypeError, match="edges must be an int64 tensor"):
        reconstruction(emb, edges.float())
    with pytest.raises(ValueError, match="chunk must be >= 1"):
        reconstruction(emb, edges, chunk=0)
    with pytest.raises(ValueError, match="tie_rtol must be a float"):
        reconstruction(emb, edges, tie_rtol=-1.0)
    with pytest.raises(ValueError, match="c must be positive"):
        reconstruction(emb, edges, c=-1.0, progress=False)
    with pytest.raises(ValueError, match=r"dist_rows must return a \(1, 3\) tensor"):
        ranking_scores(lambda rows: torch.zeros(1, 2), edges, 3, progress=False)
    with pytest.raises(ValueError, match="NaN"):
        ranking_scores(lambda rows: torch.full((1, 3), float("nan")), edges, 3, progress=False)


def tree_closure(depth: int, branching: int) -> torch.Tensor:
    """Closure edges (child, ancestor) of a complete tree, nodes numbered breadth first."""
    parent = [-1]
    frontier = [0]
    for _ in range(depth):
        nxt = []
        for p in frontier:
            for _ in range(branching):
                parent.append(p)
                nxt.append(len(parent) - 1)
        frontier = nxt
    pairs = []
    for u in range(len(parent)):
        a = parent[u]
        while a >= 0:
            pairs.append((u, a))
            a = parent[a]
    return torch.tensor(pairs)


def test_link_prediction_split():
    edges = tree_closure(4, 2)  # 31 nodes, root 0, leaves 15..30, 98 relations
    split = link_prediction_split(edges, test_fraction=0.1, valid_fraction=0.05, seed=3)
    e = edges.shape[0]
    assert split.test.shape[0] == round(0.1 * e) and split.valid.shape[0] == round(0.05 * e)
    keys = lambda t: set(map(tuple, t.tolist()))  # noqa: E731
    assert keys(split.train) | keys(split.valid) | keys(split.test) == keys(edges)
    assert not keys(split.train) & keys(split.test) and not keys(split.valid) & keys(split.test)
    held = torch.cat([split.valid, split.test])
    assert (held[:, 1] != 0).all() and (held[:, 0] < 15).all()  # no root, no leaf
    # Every node keeps a training relation; the same seed gives the same split.
    assert set(split.train.flatten().tolist()) == set(range(31))
    again = link_prediction_split(edges, test_fraction=0.1, valid_fraction=0.05, seed=3)
    assert torch.equal(again.test, split.test)
    assert not torch.equal(link_prediction_split(edges, test_fraction=0.1, seed=4).test, split.test)
    with pytest.raises(ValueError, match="only 20 involve neither a root nor a leaf"):
        link_prediction_split(edges, test_fraction=0.5)
    with pytest.raises(ValueError, match=r"test_fraction must be a float in \[0, 1\)"):
        link_prediction_split(edges, test_fraction=1.0)
