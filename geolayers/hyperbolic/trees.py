r"""Embeddings of trees and metrics without optimisation: the combinatorial construction and h-MDS.

From `"Representation Tradeoffs for Hyperbolic Embeddings" <https://arxiv.org/abs/1804.03329>`_
(Sala, De Sa, Gu and Re, ICML 2018) [1], building on `"Low Distortion Delaunay Embedding of
Trees in Hyperbolic Plane" <https://doi.org/10.1007/978-3-642-25878-7_34>`_ (Sarkar 2011) [2].

* :func:`combinatorial_embedding` (section 3 of [1], after [2]): the root sits at the origin
  of the Poincare disk; a node ``u`` with parent ``p`` is moved to the origin by an
  isometry, its ``k`` children are put at hyperbolic distance :math:`\tau` from it at angles
  spaced :math:`2\pi/(k+1)` apart, leaving the slot that points at ``p`` free, and everything
  is moved back. Every tree edge has length :math:`\tau` (times its weight for weighted
  trees) and two children of one node are separated by an angle of at least
  :math:`2\pi/\deg_{\max}`, so hyperbolic distances are :math:`\tau` times tree distances up
  to a distortion that falls as :math:`\tau` grows (:func:`combinatorial_tau` gives the
  :math:`\tau` of worst-case distortion :math:`1+\epsilon`). Points at distance :math:`R`
  from the origin have :math:`1-\lVert x\rVert \approx 2e^{-R}`, so a tree of depth
  :math:`\ell` needs about :math:`\tau\ell/\ln 2` bits: the construction runs in mpmath at
  a chosen precision (:math:`\tau\ell/\ln 2 + 64` bits by default), and
  :meth:`TreeEmbedding.dist_rows` gives float64 distances computed from those bits.
  ``dim >= 3`` spreads the children over a sphere instead of a circle.
* :func:`hmds` (section 4 of [1], h-MDS): points of the hyperboloid
  :math:`x_i = (x_{0,i}, y_i)` satisfy :math:`\cosh d_{ij} = x_{0,i}x_{0,j} - \langle y_i,
  y_j\rangle`. Moved by an isometry so that :math:`\sum_i y_i = 0` (the "centred" position),
  :math:`Y = \cosh D` gives :math:`x_0 = Y\mathbf 1 / \sqrt{\mathbf 1^\top Y \mathbf 1}` and
  the Gram matrix :math:`x_0x_0^\top - Y = \sum y y^\top`; its top ``dim`` eigenpairs give
  the coordinates (exact recovery when the distances come from ``dim`` dimensions, the
  dimension-reduction step when ``dim`` is smaller, as PCA).
* :func:`bfs_tree`: the spanning tree to embed when the hierarchy is a DAG (WordNet):
  every node hangs from the parent through which a breadth-first search from the root first
  reaches it, i.e. from one of its shallowest parents.

What the construction scores on a DAG's closure. A low-distortion embedding of a tree
reproduces tree distances, and in a tree metric a node's grandparent and its siblings are
all at distance 2: ranking ancestors before non-ancestors (the reconstruction protocol of
Nickel and Kiela, :func:`geolayers.metrics.reconstruction`) is impossible for it. On the
WordNet mammal closure (1,180 nodes, BFS tree of the hypernym graph, depth 9, ties within
1e-9 counted against) the 2-D construction with :math:`\tau = 6` scores MAP 0.9997 on the
hypernym graph itself (the protocol of [1], whose 0.989 for WordNet is on graph edges) but
0.325 on the closure. For the closure a node's children (non-neighbours) must lie farther
than its root, so distances from the root must double per level: with ``growth=2`` the edge
into depth :math:`k` has length :math:`\tau 2^{k-1}`, longer than the whole path above it,
and :math:`\tau = 5` gives closure MAP 0.9991 and mean rank 1.011, at 3,751 bits (1,129
digits; ``growth=2``, :math:`\tau = 4`: MAP 0.983 at 3,013 bits).

The curvature is :math:`-1` throughout (divide distances by :math:`\sqrt c` for another).
"""

from __future__ import annotations

import functools
import math
from collections import deque
from dataclasses import dataclass, field

import mpmath
import torch
from torch import Tensor

from geolayers._checks import check_positive_int, describe

# A coordinate rounded to float64 moves by up to 2**-53 per coordinate; the point counts as
# representable when that moves it by at most this hyperbolic distance.
_FLOAT64_MOVE = 1e-6
# Bits kept beyond those the deepest node's distance to the boundary eats.
_GUARD_BITS = 64


def _check_parent(parent: object) -> tuple[Tensor, int]:
    """``parent`` as an int64 (N,) vector with exactly one root (-1) and no cycle."""
    if not isinstance(parent, Tensor) or parent.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"parent must be an int64 tensor (N,), got {describe(parent)}")
    if parent.dim() != 1 or parent.numel() == 0:
        raise ValueError(f"parent must have shape (N,) with N >= 1, got {tuple(parent.shape)}")
    parent = parent.long().cpu()
    n = parent.numel()
    if int(parent.min()) < -1 or int(parent.max()) >= n:
        raise ValueError(f"parent values must be -1 (root) or node indices in [0, {n})")
    roots = (parent == -1).nonzero().flatten()
    if roots.numel() != 1:
        raise ValueError(f"parent must mark exactly one root with -1, got {roots.numel()}")
    return parent, int(roots[0])


def _children(parent: Tensor) -> list[list[int]]:
    kids: list[list[int]] = [[] for _ in range(parent.numel())]
    for u, p in enumerate(parent.tolist()):
        if p >= 0:
            kids[p].append(u)
    return kids


def _bfs_order(kids: list[list[int]], root: int) -> list[int]:
    order = [root]
    queue = deque([root])
    while queue:
        u = queue.popleft()
        order.extend(kids[u])
        queue.extend(kids[u])
    return order


def bfs_tree(edges: Tensor, num_nodes: int | None = None, root: int | None = None) -> Tensor:
    """Spanning tree of a hierarchy by breadth-first search from its root.

    Args:
        edges: ``(E, 2)`` int64 pairs ``(child, parent)``, e.g.
            :attr:`geolayers.datasets.wordnet.Hierarchy.direct_edges`. A node with several
            parents keeps the one the search reaches first (a shallowest one; ties go to the
            smaller index).
        num_nodes: ``N``. (default: ``None``, the largest index + 1)
        root: the root. (default: ``None``, the one node without a parent)

    Returns:
        ``parent: (N,)`` int64, ``-1`` at the root.

    Raises:
        ValueError: no single root can be found, or some node is not reachable from it.

    Example:
        >>> bfs_tree(torch.tensor([[1, 0], [2, 0], [3, 1], [3, 2]])).tolist()
        [-1, 0, 0, 1]
    """
    if not isinstance(edges, Tensor) or edges.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"edges must be an int64 tensor of shape (E, 2), got {describe(edges)}")
    if edges.dim() != 2 or edges.shape[1] != 2:
        raise ValueError(f"edges must have shape (E, 2), got {tuple(edges.shape)}")
    edges = edges.long().cpu()
    n = num_nodes if num_nodes is not None else (int(edges.max()) + 1 if edges.numel() else 1)
    n = check_positive_int("num_nodes", n)
    if edges.numel() and (int(edges.min()) < 0 or int(edges.max()) >= n):
        raise ValueError(f"edges must hold node indices in [0, {n})")
    if root is None:
        has_parent = torch.zeros(n, dtype=torch.bool)
        has_parent[edges[:, 0]] = True
        candidates = (~has_parent).nonzero().flatten().tolist()
        if len(candidates) != 1:
            raise ValueError(
                f"root=None needs exactly one node without a parent, found {len(candidates)} "
                f"(first ones: {candidates[:5]}); pass root="
            )
        root = candidates[0]
    elif isinstance(root, bool) or not isinstance(root, int) or not 0 <= root < n:
        raise ValueError(f"root must be a node index in [0, {n}), got {root!r}")
    kids: list[list[int]] = [[] for _ in range(n)]
    for child, par in sorted(map(tuple, edges.tolist())):
        if child != par:
            kids[par].append(child)
    parent = [-2] * n
    parent[root] = -1
    queue = deque([root])
    while queue:
        u = queue.popleft()
        for ch in sorted(kids[u]):
            if parent[ch] == -2:
                parent[ch] = u
                queue.append(ch)
    missing = [u for u in range(n) if parent[u] == -2]
    if missing:
        raise ValueError(
            f"{len(missing)} nodes are not below root {root} (first ones: {missing[:5]})"
        )
    return torch.tensor(parent, dtype=torch.long)


def combinatorial_tau(max_degree: int, epsilon: float = 0.1) -> float:
    r"""Scaling factor of the combinatorial construction for worst-case distortion
    :math:`1 + \epsilon` (Sala et al. 2018, Theorem 3.1 and their reference code).

    With :math:`\beta = \pi / (1.2 \deg_{\max})` (the half-angle kept around each child),
    :math:`\tau = \max\bigl(\frac{1+\epsilon}{\epsilon}\cdot(-2\log\tan\frac\beta2),
    -2\log\tan\frac\alpha2\bigr)` with :math:`\alpha = 2\pi/\deg_{\max} - 2\beta`.

    Args:
        max_degree: largest degree of the tree (children + parent), >= 1.
        epsilon: target distortion, > 0. (default: ``0.1``)

    Example:
        >>> round(combinatorial_tau(3, 1.0), 3)
        3.471
    """
    max_degree = check_positive_int("max_degree", max_degree)
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not epsilon > 0:
        raise ValueError(f"epsilon must be a positive float, got {epsilon!r}")
    d = max(max_degree, 2)
    beta = math.pi / (1.2 * d)
    alpha = 2 * math.pi / d - 2 * beta
    return max(
        (1 + epsilon) / epsilon * -2 * math.log(math.tan(beta / 2)),
        -2 * math.log(math.tan(alpha / 2)),
    )


def float64_radius(dim: int = 2) -> float:
    r"""Largest hyperbolic distance from the origin at which rounding the coordinates to
    float64 moves a point by at most 1e-6 (the ``representable`` test of
    :class:`TreeEmbedding`): :math:`R = \log\bigl(4 / (2^{-52}\sqrt{\mathrm{dim}} \cdot
    10^{6})\bigr)`, about 23.27 in 2-D.

    Example:
        >>> round(float64_radius(2), 2)
        23.27
    """
    dim = check_positive_int("dim", dim)
    return math.log(4 / (2.0**-52 * math.sqrt(dim) / _FLOAT64_MOVE))


def _to_fixed(value: mpmath.mpf, bits: int) -> int:
    """``value * 2**bits`` rounded to an int, from the binary mantissa and exponent (exact
    whatever mpmath's global precision)."""
    # mpf.man is the magnitude; the sign lives apart.
    mag, shift = int(value.man), int(value.exp) + bits
    if shift >= 0:
        mag <<= shift
    else:
        mag = (mag + (1 << (-shift - 1))) >> -shift  # half away from zero
    return -mag if value < 0 else mag


@dataclass(frozen=True, eq=False)
class TreeEmbedding:
    """A tree embedded in the Poincare ball (curvature -1) at high precision.

    Attributes:
        points: ``(N, dim)`` float64 coordinates, rounded from ``mp_points`` (a point too
            close to the boundary for float64 is still returned, pulled strictly inside).
        representable: ``(N,)`` bool: rounding to float64 moved the point by at most 1e-6
            (hyperbolic distance), so float64 code may use it.
        mp_points: ``N`` lists of ``dim`` mpmath numbers at ``precision`` bits (of a private
            ``mpmath.MPContext``, so mpmath's global precision is left alone).
        tau: the edge length.
        precision: bits of the mpmath numbers (``digits`` = ``precision * log10(2)``).
        parent: ``(N,)`` int64 tree that was embedded, ``-1`` at the root.
    """

    points: Tensor
    representable: Tensor
    mp_points: list[list[mpmath.mpf]]
    tau: float
    precision: int
    parent: Tensor
    _fixed: list[list[int]] = field(init=False, repr=False)
    _log_gap: list[float] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # Distances from P-bit fixed-point integers: the coordinate differences x - y are
        # exact integer subtractions (no cancellation), 1 - |x|^2 is exact integer arithmetic,
        # and both enter through their logarithms, so a distance of 5 or 5,000 comes out to
        # float64 accuracy however close the points sit to the rim.
        fixed = [[_to_fixed(c, self.precision) for c in p] for p in self.mp_points]
        scale2 = 4**self.precision
        log_scale2 = 2 * self.precision * math.log(2)
        log_gap = []
        for p in fixed:
            gap = scale2 - sum(c * c for c in p)
            log_gap.append(math.log(gap) - log_scale2 if gap > 0 else -math.inf)
        object.__setattr__(self, "_fixed", fixed)
        object.__setattr__(self, "_log_gap", log_gap)

    @property
    def digits(self) -> int:
        """Decimal digits of ``precision``."""
        return int(self.precision * math.log10(2))

    def dist_rows(self, rows: Tensor) -> Tensor:
        """Hyperbolic distances ``(B, N)`` float64 from the nodes ``rows (B,)`` to all nodes,
        computed from the ``precision``-bit coordinates (no float64 rounding of points);
        the form :func:`geolayers.metrics.ranking_scores` takes.

        Pure Python on big integers, about 3 us per pair (4 s for all pairs of the 1,180
        mammals); for trees of tens of thousands of nodes use ``tau="float64"`` and
        ``points`` with :func:`geolayers.metrics.reconstruction` instead.

        Example:
            >>> emb = combinatorial_embedding(torch.tensor([-1, 0, 0]), tau=2.0)
            >>> emb.dist_rows(torch.tensor([1])).round(decimals=9)
            tensor([[2., 0., 4.]], dtype=torch.float64)
        """
        log_scale2 = 2 * self.precision * math.log(2)
        log, exp, asinh, log1p = math.log, math.exp, math.asinh, math.log1p
        out = torch.empty(len(rows), len(self._fixed), dtype=torch.float64)
        for i, r in enumerate(rows.tolist()):
            x, gx = self._fixed[r], self._log_gap[r]
            values = []
            for y, gy in zip(self._fixed, self._log_gap, strict=True):
                logs = [2 * log(abs(a - b)) for a, b in zip(x, y, strict=True) if a != b]
                if not logs:
                    values.append(0.0)
                    continue
                top = max(logs)
                log_chord2 = top + log1p(sum(exp(v - top) for v in logs) - 1) - log_scale2
                # d = 2 asinh(|x - y| / sqrt((1 - |x|^2)(1 - |y|^2))), h the log of the ratio.
                h = 0.5 * (log_chord2 - gx - gy)
                # Past h = 20, asinh(e^h) = h + log 2 up to e^(-2h) / 4 < 1e-18.
                values.append(2 * asinh(exp(h)) if h < 20 else 2 * (h + math.log(2)))
            out[i] = torch.tensor(values, dtype=torch.float64)
        return out

    def __repr__(self) -> str:
        return (
            f"TreeEmbedding(num_nodes={self.points.shape[0]}, dim={self.points.shape[1]}, "
            f"tau={self.tau:.4g}, precision={self.precision} bits, "
            f"representable={int(self.representable.sum())}/{self.points.shape[0]})"
        )


def _depths(kids: list[list[int]], order: list[int]) -> list[int]:
    depth = [0] * len(kids)
    for u in order:
        for ch in kids[u]:
            depth[ch] = depth[u] + 1
    return depth


def combinatorial_embedding(
    parent: Tensor,
    *,
    tau: float | str | None = None,
    epsilon: float = 0.1,
    precision: int | None = None,
    weights: Tensor | None = None,
    growth: float = 1.0,
    dim: int = 2,
) -> TreeEmbedding:
    r"""Embed a rooted tree in the Poincare disk (or ball) by the combinatorial construction.

    Sala et al. 2018, section 3 (Algorithm 1, after Sarkar 2011), in 2-D: the root at the
    origin, its ``k`` children at angles :math:`2\pi j / k`; for every other node ``u`` the
    isometry :math:`z \mapsto (z - u) / (1 - \bar u z)` takes ``u`` to the origin and its
    parent to some angle :math:`\theta`, the ``k`` children go to angles
    :math:`\theta + 2\pi j / (k + 1)`, ``j = 1..k``, at Euclidean radius
    :math:`\tanh(\ell/2)` (hyperbolic distance :math:`\ell`, the edge length), and the
    inverse isometry :math:`v \mapsto (v + u) / (1 + \bar u v)` takes them back. Children
    are placed in index order. The edge from a node ``u`` at depth ``k`` to its parent has
    length :math:`\ell_u = \tau\, w_u\, g^{k-1}` (weights ``w``, ``growth`` ``g``); Sala et
    al.'s construction is ``g = 1``.

    With ``dim >= 3`` (their higher-dimensional variant) the children of a node with ``k``
    children and a parent go in ``k`` of ``k + 1`` directions spread over the sphere
    :math:`S^{\mathrm{dim}-1}` (a minimum of the Riesz energy, deterministic; a spherical code
    in [1]), the remaining one reflected onto the parent's direction: the angle between
    siblings is larger than on the circle, so a smaller :math:`\tau` gives the same
    distortion. Isometries are then Mobius additions.

    Args:
        parent: ``(N,)`` int64 parent of each node, ``-1`` at the (single) root, e.g. from
            :func:`bfs_tree`.
        tau: scale :math:`\tau > 0`, or ``"float64"`` for the largest one that keeps every
            point representable in float64 (:func:`float64_radius` over the weighted depth;
            what float64 consumers such as :func:`geolayers.metrics.reconstruction` need).
            (default: ``None``: :func:`combinatorial_tau` of the largest degree and
            ``epsilon``, divided by the lightest edge weight; the 2-D value, conservative for
            ``dim >= 3``)
        epsilon: target worst-case distortion when ``tau=None``. (default: ``0.1``)
        precision: mpmath bits. (default: ``None``: :math:`\lceil R/\ln 2\rceil + 64` for
            the largest distance :math:`R` from the root, i.e. 64 bits left at the deepest
            node)
        weights: ``(N,)`` positive edge weights of a weighted tree, ``weights[u]`` for the
            edge to ``parent[u]`` (the root's entry is ignored). (default: ``None``, all 1)
        growth: factor :math:`g \ge 1` by which edge lengths grow per level; ``2`` ranks
            ancestors before all other nodes (module docstring). (default: ``1.0``)
        dim: dimension of the ball, ``>= 2``. (default: ``2``, the Poincare disk)

    Returns:
        :class:`TreeEmbedding`; its ``dist_rows`` gives float64 distances computed from the
        high-precision points, whatever the precision needed.

    Example:
        >>> emb = combinatorial_embedding(torch.tensor([-1, 0, 0, 1]), tau=1.0)
        >>> emb.points.shape, emb.representable.all().item()
        (torch.Size([4, 2]), True)
    """
    parent, root = _check_parent(parent)
    dim = check_positive_int("dim", dim)
    if dim < 2:
        raise ValueError(f"dim must be >= 2, got {dim}")
    n = parent.numel()
    kids = _children(parent)
    order = _bfs_order(kids, root)
    if len(order) != n:
        raise ValueError(f"parent has a cycle: only {len(order)} of {n} nodes lie below the root")
    if weights is None:
        w = [1.0] * n
    else:
        if not isinstance(weights, Tensor) or not weights.is_floating_point():
            raise TypeError(f"weights must be a float tensor (N,), got {describe(weights)}")
        if weights.shape != (n,):
            raise ValueError(
                f"weights must have shape ({n},) like parent, got {tuple(weights.shape)}"
            )
        w = weights.double().cpu().tolist()
        w[root] = 1.0
        if not all(0 < v < math.inf for v in w):
            raise ValueError("weights must be positive and finite")
    if isinstance(growth, bool) or not isinstance(growth, (int, float)) or not 1 <= growth < 64:
        raise ValueError(f"growth must be a float in [1, 64), got {growth!r}")
    # Weighted depth: the distance to the root in units of tau; an edge at depth k (to a
    # node at depth k) weighs weights[u] * growth ** (k - 1).
    reach = [0.0] * n
    level = [0] * n
    for u in order:
        for ch in kids[u]:
            level[ch] = level[u] + 1
            w[ch] *= float(growth) ** (level[ch] - 1)
            reach[ch] = reach[u] + w[ch]
    depth = max(reach)
    max_degree = max(len(kids[u]) + (u != root) for u in range(n))
    if tau is None:
        # Sala et al.'s reference code divides by the lightest edge, so that it gets tau too.
        lightest = min((w[u] for u in range(n) if u != root), default=1.0)
        tau = combinatorial_tau(max_degree, epsilon) / lightest
    elif tau == "float64":
        tau = float64_radius(dim) / max(depth, 1)
    elif isinstance(tau, bool) or not isinstance(tau, (int, float)) or not 0 < tau < math.inf:
        raise ValueError(f"tau must be a positive float, 'float64' or None, got {tau!r}")
    tau = float(tau)
    if precision is None:
        precision = math.ceil(tau * depth / math.log(2)) + _GUARD_BITS
    precision = check_positive_int("precision", precision)

    ctx = mpmath.MPContext()
    ctx.prec = precision
    lengths = [ctx.mpf(tau) * w[u] for u in range(n)]
    if dim == 2:
        mp_points = _place_2d(ctx, parent.tolist(), kids, order, root, lengths)
    else:
        mp_points = _place_nd(ctx, parent.tolist(), kids, order, root, lengths, dim)
    points = torch.tensor([[float(c) for c in p] for p in mp_points], dtype=torch.float64)
    # Pull points that rounded onto or past the rim strictly inside.
    norms = points.norm(dim=1, keepdim=True)
    limit = 1 - 2.0**-52
    points = torch.where(norms >= limit, points / norms * (limit - 2.0**-53), points)
    representable = torch.tensor(
        [
            _moved_by(ctx, mp, pt) <= _FLOAT64_MOVE
            for mp, pt in zip(mp_points, points.tolist(), strict=True)
        ],
        dtype=torch.bool,
    )
    return TreeEmbedding(points, representable, mp_points, tau, precision, parent)


def _place_2d(ctx, parent, kids, order, root, lengths) -> list[list]:
    """Sarkar's placement with complex numbers: children at equal angles, the parent's slot
    left free."""
    z: list = [None] * len(parent)
    z[root] = ctx.mpc(0)
    for u in order:
        k = len(kids[u])
        if k == 0:
            continue
        if u == root:
            start, slots = ctx.mpc(1), k
        else:
            # The parent seen from u, moved to the origin: z -> (z - u) / (1 - conj(u) z).
            zu = z[u]
            p0 = (z[parent[u]] - zu) / (1 - ctx.conj(zu) * z[parent[u]])
            start, slots = p0 / abs(p0), k + 1
        step = ctx.expjpi(ctx.mpf(2) / slots)
        direction = start if u == root else start * step
        for ch in kids[u]:
            # Euclidean radius tanh(length / 2) puts the child at hyperbolic distance length.
            v = ctx.tanh(lengths[ch] / 2) * direction
            z[ch] = v if u == root else (v + z[u]) / (1 + ctx.conj(z[u]) * v)
            direction *= step
    return [[ctx.re(v), ctx.im(v)] for v in z]


def _mobius_add(ctx, a: list, x: list) -> list:
    """Mobius addition on the unit ball: the isometry that takes 0 to ``a``, applied to x."""
    ax = ctx.fsum(p * q for p, q in zip(a, x, strict=True))
    aa = ctx.fsum(p * p for p in a)
    xx = ctx.fsum(q * q for q in x)
    num_a, num_x = 1 + 2 * ax + xx, 1 - aa
    den = 1 + 2 * ax + aa * xx
    return [(num_a * p + num_x * q) / den for p, q in zip(a, x, strict=True)]


@functools.lru_cache(maxsize=256)
def _spread_directions(count: int, dim: int) -> tuple[tuple[float, ...], ...]:
    """``count`` unit vectors of R^dim spread over the sphere (a local minimum of the Riesz
    energy sum 1/|x_i - x_j|^(dim-1), from a seeded start): the first is e_1, the others as
    far from it and from each other as the descent gets them. Deterministic."""
    if count == 1:
        return ((1.0,) + (0.0,) * (dim - 1),)
    g = torch.Generator().manual_seed(count * 1009 + dim)
    x = torch.randn(count, dim, generator=g, dtype=torch.float64)
    x = x / x.norm(dim=1, keepdim=True)
    power = dim - 1
    steps = 400
    for it in range(steps):
        diff = x.unsqueeze(1) - x.unsqueeze(0)
        r2 = diff.square().sum(-1).fill_diagonal_(math.inf)
        force = (diff * r2.pow(-(power + 2) / 2).unsqueeze(-1)).sum(1)
        force = force - (force * x).sum(1, keepdim=True) * x  # tangent part
        spacing = r2.min().sqrt()
        step = 0.5 * spacing * 1e-5 ** (it / steps)  # geometric cooling
        x = x + step * force / force.norm(dim=1, keepdim=True).max().clamp_min(1e-300)
        x = x / x.norm(dim=1, keepdim=True)
    # Rotate (reflect) the first vector onto e_1.
    e1 = torch.zeros(dim, dtype=torch.float64)
    e1[0] = 1
    v = x[0] - e1
    if float(v.norm()) > 1e-12:
        x = x - 2 * (x @ v).unsqueeze(1) * v / v.dot(v)
    return tuple(tuple(row) for row in x.tolist())


def _place_nd(ctx, parent, kids, order, root, lengths, dim) -> list[list]:
    """The higher-dimensional variant of Sala et al.: children in directions spread over the
    sphere (they use spherical codes; here Riesz-energy points), one kept for the parent."""
    zero = [ctx.mpf(0)] * dim
    z: list = [None] * len(parent)
    z[root] = zero
    for u in order:
        k = len(kids[u])
        if k == 0:
            continue
        if u == root:
            dirs = [[ctx.mpf(c) for c in d] for d in _spread_directions(k, dim)]
        else:
            # The parent seen from u moved to the origin; reflect the reserved direction
            # (e_1) onto it, so the children keep their spread and avoid the parent.
            p0 = _mobius_add(ctx, [-c for c in z[u]], z[parent[u]])
            norm = ctx.sqrt(ctx.fsum(c * c for c in p0))
            target = [c / norm for c in p0]
            dirs = [[ctx.mpf(c) for c in d] for d in _spread_directions(k + 1, dim)]
            v = [a - b for a, b in zip(dirs[0], target, strict=True)]
            vv = ctx.fsum(c * c for c in v)
            if vv > 0:
                dirs = [
                    [
                        a - 2 * ctx.fsum(p * q for p, q in zip(d, v, strict=True)) / vv * b
                        for a, b in zip(d, v, strict=True)
                    ]
                    for d in dirs
                ]
            dirs = dirs[1:]
        for ch, d in zip(kids[u], dirs, strict=True):
            # Unit length at the working precision, then Euclidean radius tanh(length / 2).
            norm = ctx.sqrt(ctx.fsum(c * c for c in d))
            radius = ctx.tanh(lengths[ch] / 2) / norm
            local = [radius * c for c in d]
            z[ch] = local if u == root else _mobius_add(ctx, z[u], local)
    return z


def _moved_by(ctx: mpmath.MPContext, exact: list, rounded: list[float]) -> float:
    """Hyperbolic distance between a point and its float64 rounding, in ``ctx``."""
    r = [ctx.mpf(v) for v in rounded]
    chord2 = ctx.fsum((a - b) ** 2 for a, b in zip(exact, r, strict=True))
    gap_e = 1 - ctx.fsum(a * a for a in exact)
    gap_r = 1 - ctx.fsum(a * a for a in r)
    if gap_r <= 0 or gap_e <= 0:
        return math.inf
    return float(2 * ctx.asinh(ctx.sqrt(chord2 / (gap_e * gap_r))))


def hmds(dist: Tensor, dim: int) -> Tensor:
    r"""Hyperbolic multidimensional scaling (h-MDS, Sala et al. 2018, section 4, Algorithm 2).

    :math:`Y = \cosh D`, :math:`x_0 = Y\mathbf 1/\sqrt{\mathbf 1^\top Y\mathbf 1}` (the
    time coordinates of the centred configuration), Gram matrix
    :math:`G = x_0x_0^\top - Y`; the top ``dim`` eigenpairs of :math:`G` (negative ones
    clamped to 0) give the spatial coordinates :math:`y`, mapped to the ball by
    :math:`y / (1 + \sqrt{1 + \lVert y\rVert^2})`. When ``dist`` holds the distances of
    points of :math:`\mathbb H^{\mathrm{dim}}` they are recovered exactly, up to an isometry;
    with a smaller ``dim`` this is the dimension-reduction step (PCA of the centred
    configuration).

    Float64 eigen-decomposition: :math:`\cosh d` has :math:`e^{d}` range, so distances up to a
    few tens keep their digits; scale larger ones down first.

    Args:
        dist: ``(N, N)`` symmetric hyperbolic distances, zero diagonal, float32 or float64.
        dim: embedding dimension ``D >= 1``.

    Returns:
        ``(N, D)`` points of the Poincare ball (curvature -1), dtype of ``dist``.

    Example:
        >>> d = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
        >>> x = hmds(d, 1)
        >>> round(float(2 * torch.atanh((x[0] - x[1]).abs() / (1 - x[0] * x[1]))), 6)
        1.0
    """
    if not isinstance(dist, Tensor) or dist.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"dist must be a float32 or float64 tensor (N, N), got {describe(dist)}")
    if dist.dim() != 2 or dist.shape[0] != dist.shape[1] or dist.shape[0] == 0:
        raise ValueError(f"dist must have shape (N, N) with N >= 1, got {tuple(dist.shape)}")
    dim = check_positive_int("dim", dim)
    if not bool(torch.isfinite(dist).all()) or bool((dist < 0).any()):
        raise ValueError("dist must hold finite distances >= 0")
    d64 = dist.double()
    y = torch.cosh((d64 + d64.T) / 2)
    x0 = y.sum(1) / y.sum().sqrt()
    gram = torch.outer(x0, x0) - y
    values, vectors = torch.linalg.eigh((gram + gram.T) / 2)
    top = values.flip(0)[:dim].clamp_min(0)
    coords = vectors.flip(1)[:, :dim] * top.sqrt()
    if coords.shape[1] < dim:
        coords = torch.cat([coords, coords.new_zeros(coords.shape[0], dim - coords.shape[1])], 1)
    ball = coords / (1 + torch.sqrt(1 + coords.square().sum(1, keepdim=True)))
    return ball.to(dist.dtype)


__all__ = [
    "TreeEmbedding",
    "bfs_tree",
    "combinatorial_embedding",
    "combinatorial_tau",
    "float64_radius",
    "hmds",
]
