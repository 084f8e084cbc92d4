r"""Reconstruction and link prediction scores of hierarchy embeddings: mean rank and MAP.

The protocol of `"Poincare Embeddings for Learning Hierarchical Representations"
<https://arxiv.org/abs/1705.08039>`_ (Nickel and Kiela 2017, section 4.1), evaluated over
every node, not a sample. Given relations :math:`\mathcal D` (the transitive closure, pairs
``(u, v)`` with ``u`` the hyponym), the neighbours of a node are
:math:`\mathcal N(u) = \{v : (u, v) \in \mathcal D\}`. For each relation ``(u, v)``, ``v``
is ranked by distance to ``u`` among itself and the nodes that are not neighbours of ``u``
(``u`` excluded):

.. math::
    \operatorname{rank}(u, v) = 1 + \bigl|\{w \notin \mathcal N(u) \cup \{u\} :
        d(u, w) \le d(u, v)\}\bigr|,

so a relation ranked before every non-neighbour has rank 1 (other neighbours never push it
down). The average precision of ``u`` ranks all nodes but ``u`` by distance:

.. math::
    \operatorname{AP}(u) = \frac{1}{|\mathcal N(u)|} \sum_{v \in \mathcal N(u)}
        \frac{|\{v' \in \mathcal N(u) : d(u, v') \le d(u, v)\}|}
             {|\{w \ne u : d(u, w) \le d(u, v)\}|}.

The **mean rank** averages the rank over all relations, the **MAP** averages AP over the
nodes that have neighbours (both as the official implementation reports them).

Definitions to be careful about:

* Direction. The official evaluation (``embed.py``/``hype/graph.py``) builds the neighbour
  sets from the training pairs as given, hyponym -> hypernyms; the closure files hold each
  pair once, so the neighbours of ``u`` are its ancestors and its descendants count as
  non-neighbours; the root has no neighbours and is no query. That is the default
  (``symmetric=False``); ``symmetric=True`` uses both directions (neighbours = ancestors and
  descendants), a different task whose figures are not comparable with the paper's.
* Ranks start at 1 and the query is never a candidate: gensim's ``ReconstructionEvaluation``
  counts the query node itself among the candidates, so its ranks are one higher; do not
  compare with its printout.
* Ties count against the embedding: a non-neighbour at exactly the distance of ``v`` ranks
  before it, as in the precision of scikit-learn's ``average_precision_score`` (which the
  official code uses for AP). A constant embedding therefore scores the worst ranks, not
  the best. Pass float64 embeddings: in float32 nearby points near the boundary round to
  equal distances. ``tie_rtol`` widens ties to a relative tolerance, for constructions whose
  exact distances tie but reach float64 through different roundings.
* Self loops ``(u, u)`` are dropped (the official loader drops them too).

Link prediction (:func:`link_prediction_split`) holds out relations that involve neither the
root nor a leaf (the paper: such links are trivial or impossible to predict); score the
held-out ones with ``ignore=`` the training pairs, so that a training neighbour is neither
a positive nor a negative.

The work is chunked over query nodes: distances of a block of rows at a time through
:func:`geolayers.ops.poincare_pairwise_dist`; then, per row, the candidates no farther than
its farthest neighbour (a handful for a good embedding) are bucketed into its sorted
neighbour distances and counted, so memory stays at one ``(rows, N)`` block (32 MB) for the
82,115-node noun closure.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor
from tqdm.auto import tqdm

from geolayers._checks import check_positive_int, describe
from geolayers.ops import poincare_pairwise_dist
from geolayers.ops.embedding import relation_csr

# Elements of one (rows, N) block of distances: 4 Mi, 32 MB in float64.
_BLOCK_ELEMENTS = 1 << 22


class RankingScores(NamedTuple):
    """Scores of :func:`reconstruction` / :func:`ranking_scores`.

    Attributes:
        mean_rank: mean over relations of the rank (1 is best).
        map: mean over query nodes of the average precision (1 is best).
        num_queries: nodes with at least one neighbour (the terms of the MAP).
        num_relations: ranked relations (the terms of the mean rank).
    """

    mean_rank: float
    map: float
    num_queries: int
    num_relations: int


class LinkPredictionSplit(NamedTuple):
    """Relations split by :func:`link_prediction_split`, each ``(E_i, 2)`` int64, sorted."""

    train: Tensor
    valid: Tensor
    test: Tensor


def _check_edges(name: str, edges: object, num_nodes: int) -> Tensor:
    if not isinstance(edges, Tensor) or edges.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{name} must be an int64 tensor of shape (E, 2), got {describe(edges)}")
    if edges.dim() != 2 or edges.shape[1] != 2:
        raise ValueError(f"{name} must have shape (E, 2), got {tuple(edges.shape)}")
    edges = edges.long().cpu()
    if edges.numel():
        lo, hi = int(edges.min()), int(edges.max())
        if lo < 0 or hi >= num_nodes:
            raise ValueError(
                f"{name} must hold node indices in [0, {num_nodes}), got the range [{lo}, {hi}]"
            )
    return edges


def _csr(edges: Tensor, num_nodes: int) -> tuple[Tensor, Tensor]:
    """``(ptr (N+1,), col (E,))`` of unique pairs without self loops, sorted by (row, col)."""
    return relation_csr(edges[edges[:, 0] != edges[:, 1]], num_nodes, both_directions=False)


def _padded(ptr: Tensor, col: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
    """Neighbour lists of ``rows`` as a ``(B, K)`` index matrix (K the longest list, rows
    padded with a valid index) and the list lengths."""
    start, count = ptr[rows], ptr[rows + 1] - ptr[rows]
    width = int(count.max()) if rows.numel() else 0
    offsets = torch.arange(width)
    index = torch.where(offsets < count.unsqueeze(1), start.unsqueeze(1) + offsets, 0)
    return (col[index] if col.numel() else torch.zeros_like(index)), count


def _score_block(
    dist: Tensor,
    rows: Tensor,
    pos: Tensor,
    count: Tensor,
    ign: Tensor | None,
    ign_count: Tensor | None,
    tie_rtol: float,
) -> tuple[float, float]:
    """Sum of ranks and sum of APs of the query ``rows`` from their distance rows
    ``dist: (B, N)`` (left unchanged); ``pos: (B, K)`` padded neighbour lists of lengths
    ``count``; ``ign: (B, K')`` padded lists of lengths ``ign_count`` of non-candidates."""
    if bool(torch.isnan(dist).any()):
        raise ValueError("dist_rows returned NaN distances")
    pos_d = dist.gather(1, pos)
    rank_sum = torch.zeros((), dtype=torch.float64, device=dist.device)
    ap_sum = torch.zeros((), dtype=torch.float64, device=dist.device)
    for i, k in enumerate(count.tolist()):
        thr = pos_d[i, :k].sort().values
        reach = thr * (1 + tie_rtol) if tie_rtol else thr
        # Only candidates at or below the farthest neighbour matter, and for a good
        # embedding they are a handful of the N: compact them before bucketing. The query
        # itself and the ignored pairs are no candidates.
        keep = dist[i] <= reach[-1]
        keep[rows[i]] = False
        if ign is not None:
            keep[ign[i, : int(ign_count[i])]] = False
        near = dist[i][keep]
        # bucket = number of thresholds strictly below d, so d <= reach[j] iff bucket <= j.
        at_or_below = torch.bincount(torch.bucketize(near, reach), minlength=k).cumsum(0)
        hits = torch.searchsorted(thr, reach, right=True)
        rank_sum += (1 + at_or_below - hits).sum()
        ap_sum += (hits.double() / at_or_below.double()).sum() / k
    return float(rank_sum), float(ap_sum)


def ranking_scores(
    dist_rows: Callable[[Tensor], Tensor],
    edges: Tensor,
    num_nodes: int,
    *,
    symmetric: bool = False,
    ignore: Tensor | None = None,
    tie_rtol: float = 0.0,
    chunk: int | None = None,
    progress: bool = True,
) -> RankingScores:
    r"""Mean rank and MAP of the relations ``edges`` under any distance (module docstring).

    Args:
        dist_rows: ``rows (B,) int64 -> (B, N)`` distances from the nodes ``rows`` to all
            ``N`` nodes (float, finite or ``+inf``; the ``rows`` entries themselves are
            ignored).
        edges: ``(E, 2)`` int64 relations ``(u, v)``, ``u`` the specific node.
        num_nodes: ``N``.
        symmetric: neighbours in both directions. (default: ``False``, as the paper)
        ignore: ``(E', 2)`` int64 pairs ``(u, w)`` whose ``w`` is no candidate for ``u`` (with
            ``symmetric``, in both directions): the training relations when scoring held-out
            ones. Pairs also in ``edges`` are ranked as relations. (default: ``None``)
        tie_rtol: distances within this relative difference count as tied (against the
            embedding): for constructions whose exact distances tie (symmetric placements)
            and reach float64 through different roundings. (default: ``0.0``, exact ties)
        chunk: query rows per block. (default: ``None``: about 4M distances per block)
        progress: show a tqdm bar over the query nodes. (default: ``True``)

    Returns:
        :class:`RankingScores`; ``nan`` scores when no node has a neighbour.

    Example:
        >>> d = torch.tensor([[0.0, 1.0, 2.0], [1.0, 0.0, 1.0], [2.0, 1.0, 0.0]])
        >>> ranking_scores(lambda rows: d[rows], torch.tensor([[0, 2]]), 3, progress=False)
        RankingScores(mean_rank=2.0, map=0.5, num_queries=1, num_relations=1)
    """
    if not callable(dist_rows):
        raise TypeError(f"dist_rows must be callable (rows -> (B, N)), got {describe(dist_rows)}")
    num_nodes = check_positive_int("num_nodes", num_nodes)
    edges = _check_edges("edges", edges, num_nodes)
    if chunk is not None:
        chunk = check_positive_int("chunk", chunk)
    if (
        isinstance(tie_rtol, bool)
        or not isinstance(tie_rtol, (int, float))
        or not (0 <= tie_rtol < 1)
    ):
        raise ValueError(f"tie_rtol must be a float in [0, 1), got {tie_rtol!r}")
    if symmetric:
        edges = torch.cat([edges, edges.flip(1)])
    ptr, col = _csr(edges, num_nodes)
    ign_ptr = ign_col = None
    if ignore is not None:
        ignore = _check_edges("ignore", ignore, num_nodes)
        if symmetric:
            ignore = torch.cat([ignore, ignore.flip(1)])
        keys = torch.unique(ignore[:, 0] * num_nodes + ignore[:, 1])
        rel_keys = torch.repeat_interleave(torch.arange(num_nodes), ptr.diff()) * num_nodes + col
        keys = keys[~torch.isin(keys, rel_keys)]
        ign_ptr, ign_col = _csr(torch.stack([keys // num_nodes, keys % num_nodes], 1), num_nodes)

    degree = ptr.diff()
    # Rows of similar degree share a block, so the (B, K) padding stays small when a few
    # nodes (the root with symmetric=True) have tens of thousands of neighbours.
    queries = (degree > 0).nonzero().flatten()
    queries = queries[torch.argsort(degree[queries], stable=True)]
    rows_per_block = chunk or max(1, _BLOCK_ELEMENTS // num_nodes)
    rank_sum = ap_sum = 0.0
    with (
        torch.no_grad(),
        tqdm(total=queries.numel(), disable=not progress, unit="node", desc="ranking") as bar,
    ):
        for start in range(0, queries.numel(), rows_per_block):
            rows = queries[start : start + rows_per_block]
            dist = dist_rows(rows)
            if not isinstance(dist, Tensor) or dist.shape != (rows.numel(), num_nodes):
                raise ValueError(
                    f"dist_rows must return a ({rows.numel()}, {num_nodes}) tensor, got "
                    f"{describe(dist)}"
                )
            pos, count = _padded(ptr, col, rows)
            ign = ign_count = None
            if ign_ptr is not None:
                ign, ign_count = _padded(ign_ptr, ign_col, rows)
                ign = ign.to(dist.device)
            r, a = _score_block(
                dist, rows.to(dist.device), pos.to(dist.device), count, ign, ign_count, tie_rtol
            )
            rank_sum += r
            ap_sum += a
            bar.update(rows.numel())
    num_relations = int(degree.sum())
    if queries.numel() == 0:
        return RankingScores(float("nan"), float("nan"), 0, 0)
    return RankingScores(
        rank_sum / num_relations, ap_sum / queries.numel(), queries.numel(), num_relations
    )


def reconstruction(
    emb: Tensor,
    edges: Tensor,
    c: float | Tensor = 1.0,
    *,
    symmetric: bool = False,
    ignore: Tensor | None = None,
    tie_rtol: float = 0.0,
    chunk: int | None = None,
    progress: bool = True,
) -> RankingScores:
    r"""Mean rank and MAP of a Poincare-ball embedding on relations, as Nickel and Kiela 2017.

    Distances are :func:`geolayers.ops.poincare_pairwise_dist` (eq. 1 of the paper), computed
    a block of query rows at a time; the protocol, its direction and its tie rule are in the
    module docstring. Runs where ``emb`` lives (CPU or CUDA), without gradients.

    Args:
        emb: ``(N, D)`` points of the ball of curvature :math:`-c`, float32 or float64
            (float64 for exact ties near the boundary).
        edges: ``(E, 2)`` int64 relations ``(u, v)`` (the closure, hyponym first).
        c: curvature magnitude, ``c > 0``. (default: ``1.0``)
        symmetric: neighbours in both directions. (default: ``False``, as the official code)
        ignore: ``(E', 2)`` pairs that are neither relations nor candidates (link prediction:
            the training relations). (default: ``None``)
        tie_rtol: relative difference under which distances tie. (default: ``0.0``)
        chunk: query rows per block. (default: ``None``: about 4M distances per block, 51
            rows for the nouns)
        progress: tqdm bar over query nodes. (default: ``True``)

    Returns:
        :class:`RankingScores` ``(mean_rank, map, num_queries, num_relations)``.

    Example:
        >>> emb = torch.tensor([[0.0, 0.0], [0.5, 0.0], [-0.5, 0.0]], dtype=torch.float64)
        >>> reconstruction(emb, torch.tensor([[1, 0], [2, 0]]), progress=False)
        RankingScores(mean_rank=1.0, map=1.0, num_queries=2, num_relations=2)
    """
    if not isinstance(emb, Tensor) or emb.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"emb must be a float32 or float64 tensor (N, D), got {describe(emb)}")
    if emb.dim() != 2 or emb.shape[0] == 0:
        raise ValueError(f"emb must have shape (N, D) with N >= 1, got {tuple(emb.shape)}")
    if not bool(torch.isfinite(emb).all()):
        raise ValueError("emb must be finite (it holds NaN or inf)")
    emb = emb.detach()

    def dist_rows(rows: Tensor) -> Tensor:
        return poincare_pairwise_dist(emb[rows.to(emb.device)], emb, c)

    return ranking_scores(
        dist_rows,
        edges,
        emb.shape[0],
        symmetric=symmetric,
        ignore=ignore,
        tie_rtol=tie_rtol,
        chunk=chunk,
        progress=progress,
    )


def link_prediction_split(
    edges: Tensor,
    *,
    test_fraction: float = 0.1,
    valid_fraction: float = 0.0,
    seed: int = 0,
) -> LinkPredictionSplit:
    """Hold out relations for link prediction, never ones that involve a root or a leaf.

    Nickel and Kiela 2017, section 4.1: validation and test relations "do not contain links
    involving root or leaf nodes as these links would either be trivial to predict or
    impossible to predict reliably". In a closure, ``(u, v)`` involves a root iff ``v`` has no
    ancestor and a leaf iff ``u`` has no descendant; every other node keeps a training
    relation (to each of its ancestors from a leaf below it). The fractions are of all
    relations, drawn uniformly (seeded) from the eligible ones.

    Args:
        edges: ``(E, 2)`` int64 relations ``(u, v)``, ``u`` the specific node; duplicates are
            kept once.
        test_fraction: share of the ``E`` relations held out for test. (default: ``0.1``)
        valid_fraction: share held out for validation. (default: ``0.0``)
        seed: seed of the draw. (default: ``0``)

    Returns:
        :class:`LinkPredictionSplit` ``(train, valid, test)``, disjoint, their union the
        unique relations.

    Raises:
        ValueError: a fraction is outside ``[0, 1)`` or more relations are asked for than
            are eligible (the message gives both numbers).

    Example:
        >>> chain = torch.tensor([[1, 0], [2, 0], [2, 1], [3, 0], [3, 1], [3, 2]])
        >>> link_prediction_split(chain, test_fraction=0.2).test.tolist()
        [[2, 1]]
    """
    if not isinstance(edges, Tensor):
        raise TypeError(f"edges must be an int64 tensor of shape (E, 2), got {describe(edges)}")
    hi = int(edges.max()) + 1 if edges.numel() else 1
    edges = _check_edges("edges", edges, hi)
    for name, value in (("test_fraction", test_fraction), ("valid_fraction", valid_fraction)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
            raise ValueError(f"{name} must be a float in [0, 1), got {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    edges = edges[edges[:, 0] != edges[:, 1]]
    key = torch.unique(edges[:, 0] * hi + edges[:, 1])
    edges = torch.stack([key // hi, key % hi], 1)
    has_ancestor = torch.zeros(hi, dtype=torch.bool)
    has_ancestor[edges[:, 0]] = True
    has_descendant = torch.zeros(hi, dtype=torch.bool)
    has_descendant[edges[:, 1]] = True
    eligible = (has_descendant[edges[:, 0]] & has_ancestor[edges[:, 1]]).nonzero().flatten()
    n_test = round(test_fraction * edges.shape[0])
    n_valid = round(valid_fraction * edges.shape[0])
    if n_test + n_valid > eligible.numel():
        raise ValueError(
            f"test_fraction + valid_fraction ask for {n_test + n_valid} of {edges.shape[0]} "
            f"relations, but only {eligible.numel()} involve neither a root nor a leaf"
        )
    g = torch.Generator().manual_seed(seed)
    drawn = eligible[torch.randperm(eligible.numel(), generator=g)]
    test_idx = drawn[:n_test].sort().values
    valid_idx = drawn[n_test : n_test + n_valid].sort().values
    train = torch.ones(edges.shape[0], dtype=torch.bool)
    train[drawn[: n_test + n_valid]] = False
    return LinkPredictionSplit(edges[train], edges[valid_idx], edges[test_idx])


__all__ = [
    "LinkPredictionSplit",
    "RankingScores",
    "link_prediction_split",
    "ranking_scores",
    "reconstruction",
]
