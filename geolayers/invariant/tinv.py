"""Transformation-invariant initial representations of point clouds (TinvNN).

From `"Revisiting Transformation Invariant Geometric Deep Learning: Are Initial
Representations All You Need?" <https://arxiv.org/abs/2112.12345>`_: replace the
raw coordinates of a point cloud by the coordinates that (modified) classical
multidimensional scaling recovers from its pairwise distance matrix. Distances do not change
under rotations, reflections and translations, so neither do the recovered coordinates, once
the choices left open by the eigendecomposition (eigenvector signs) are fixed by a rule that
depends on the data only. Any backbone fed with these coordinates is then invariant to the
Euclidean group E(D) without being designed for it.

Public functions:

* :func:`tinv_coordinates`: from points ``(B, N, D)``;
* :func:`classical_mds`: from a distance matrix ``(B, N, N)``;
* :class:`TinvInitialRepresentation`: the module face of :func:`tinv_coordinates`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from geolayers._checks import check_positive_int, describe

# Odd moments tried, in order, to orient an eigenvector (see ``_fix_signs``).
_SIGN_MOMENTS = (3, 5, 7)


def _check_mask(mask: Tensor | None, batch: int, num_points: int, device: torch.device) -> Tensor:
    if mask is None:
        return torch.ones(batch, num_points, dtype=torch.bool, device=device)
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        raise TypeError(f"mask must be a bool tensor (B, N), got {describe(mask)}")
    if tuple(mask.shape) != (batch, num_points):
        raise ValueError(
            f"mask must have shape (B, N) = ({batch}, {num_points}), got {tuple(mask.shape)}"
        )
    if mask.device != device:
        raise ValueError(f"mask must be on the device of the input ({device}), got {mask.device}")
    return mask


def _fix_signs(coords: Tensor) -> Tensor:
    r"""Orient every column of ``coords: (B, N, K)`` by the sign of its first non-vanishing odd
    moment :math:`\sum_i c_i^3`, then :math:`\sum_i c_i^5`, then :math:`\sum_i c_i^7`.

    Sums over points are invariant to point permutations, so the rule keeps the output
    permutation-equivariant (a "largest entry" rule would not, when two entries tie). A moment
    counts as vanishing when it is below ``sqrt(eps)`` times the matching absolute moment. A
    column whose tried moments all vanish (its values are, to rounding, symmetric about zero,
    as in a centrally symmetric cloud) keeps the sign ``eigh`` gave: there negating the column
    is itself a relabelling of the points, so no permutation-equivariant rule can choose.
    """
    # Column-wise rescaling to [-1, 1] keeps 7th powers inside float32's range.
    scale = coords.abs().amax(dim=1, keepdim=True)
    unit = coords / torch.where(scale > 0, scale, torch.ones_like(scale))
    tol = torch.finfo(coords.dtype).eps ** 0.5
    sign = torch.ones_like(scale)
    undecided = torch.ones_like(scale, dtype=torch.bool)
    for k in _SIGN_MOMENTS:
        moment = unit.pow(k).sum(dim=1, keepdim=True)
        size = unit.abs().pow(k).sum(dim=1, keepdim=True)
        decided = undecided & (moment.abs() > tol * size)
        sign = torch.where(decided, torch.sign(moment), sign)
        undecided = undecided & ~decided
    return coords * sign


def _finish(coords: Tensor, evals: Tensor, out_dim: int, weights: Tensor) -> Tensor:
    """Drop numerically-zero directions, orient columns, cut or zero-pad to ``out_dim``.

    ``coords: (B, N, K)`` with eigenvalues ``evals: (B, K)`` sorted in descending order.
    """
    batch, num_points, k = coords.shape
    eps = torch.finfo(coords.dtype).eps
    # Eigenvalues of a rank-r Gram matrix beyond r come out as rounding noise of size
    # ~eps * lambda_max; the max(N, K) factor is numpy.linalg.matrix_rank's margin.
    cut = max(num_points, k) * eps * evals[:, :1].clamp_min(0)
    keep = evals > cut
    # where() rather than a product, so that dropped directions are +0, not -0.
    coords = torch.where(keep.unsqueeze(1) & (weights > 0), coords, torch.zeros_like(coords))
    coords = _fix_signs(coords)
    if k >= out_dim:
        return coords[..., :out_dim]
    return torch.cat([coords, coords.new_zeros(batch, num_points, out_dim - k)], dim=-1)


def _gram_coordinates(gram: Tensor, out_dim: int, weights: Tensor) -> Tensor:
    """Coordinates ``V sqrt(Lambda)`` of a (masked, double-centred) Gram matrix ``(B, N, N)``."""
    evals, evecs = torch.linalg.eigh(gram)
    evals, evecs = evals.flip(-1), evecs.flip(-1)
    coords = evecs * evals.clamp_min(0).sqrt().unsqueeze(1)
    return _finish(coords, evals, out_dim, weights)


def tinv_coordinates(x: Tensor, out_dim: int, mask: Tensor | None = None) -> Tensor:
    r"""TinvNN initial representation of point clouds: classical MDS of their distances.

    With :math:`J = I - \tfrac{1}{N}\mathbf{1}\mathbf{1}^\top` and the squared distances
    :math:`D^{(2)}_{ij} = \lVert x_i - x_j \rVert^2`, the double-centred Gram matrix is

    .. math::
        G = -\tfrac12 J D^{(2)} J = (JX)(JX)^\top = V \Lambda V^\top,
        \qquad \hat X = V_{:, 1:K} \Lambda_{1:K}^{1/2}

    with eigenvalues in descending order and :math:`K` = ``out_dim``.
    :math:`\hat X` reproduces every pairwise distance when ``out_dim`` is at least the rank of
    the centred cloud, and is the best rank-``out_dim`` approximation otherwise. When
    :math:`D \le N` the same coordinates are computed more cheaply as :math:`JX\,U`, with
    :math:`U` the eigenvectors of the :math:`D \times D` scatter matrix :math:`(JX)^\top JX`;
    the Gram matrix itself is only formed when :math:`N < D`.

    Ambiguities and how they are resolved:

    * **signs** of eigenvectors: each output column is negated so that its third moment
      :math:`\sum_i \hat X_{ik}^3` is positive; if that vanishes (to ``sqrt(eps)`` relative),
      the fifth, then the seventh moment decides. Columns that are symmetric about zero (e.g.
      centrally symmetric clouds) keep the sign ``torch.linalg.eigh`` returns, so for them the
      output is invariant only up to that column's sign.
    * **repeated eigenvalues** (e.g. a regular polygon, a cube, an isotropic cloud): the
      eigenvectors of a repeated eigenvalue are only defined up to a rotation inside their
      eigenspace, and so is the output, restricted to those columns. The same holds when
      ``out_dim`` cuts through a group of equal eigenvalues. Distances are preserved either way.
    * **rank deficiency**: directions whose eigenvalue is below
      ``max(N, D) * eps * lambda_max`` (numerically zero) come out as zero columns, and columns
      beyond ``min(N, D)`` are zero padding. Singletons and empty sets give all zeros.

    For generic clouds (distinct, non-zero eigenvalues and non-zero third moments) the output
    is exactly invariant to rotations, reflections and translations of the input, equivariant
    to permutations of its points, and differentiable (``eigh``'s backward needs distinct
    eigenvalues).

    Args:
        x: points, ``(B, N, D)`` or a single cloud ``(N, D)``; float32 or float64.
        out_dim: ``K``, number of output coordinates.
        mask: ``(B, N)`` bool, ``True`` for real points; padded points neither shift the
            centroid nor enter the distances, and get zero rows. (default: all real)

    Returns:
        ``(B, N, K)``, or ``(N, K)`` for an unbatched input; zeros at masked rows.

    Example:
        >>> tinv_coordinates(torch.randn(2, 10, 3), out_dim=3).shape
        torch.Size([2, 10, 3])
    """
    out_dim = check_positive_int("out_dim", out_dim)
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a tensor (B, N, D) or (N, D), got {describe(x)}")
    if not x.is_floating_point():
        raise TypeError(f"x must be floating point (float32 or float64), got dtype {x.dtype}")
    if x.dim() not in (2, 3):
        raise ValueError(f"x must have shape (B, N, D) or (N, D), got {tuple(x.shape)}")
    unbatched = x.dim() == 2
    if unbatched:
        if mask is not None:
            raise ValueError("mask is only accepted with batched input x: (B, N, D)")
        x = x.unsqueeze(0)
    batch, num_points, dim = x.shape
    mask = _check_mask(mask, batch, num_points, x.device)

    weights = mask.unsqueeze(-1).to(x.dtype)
    count = weights.sum(dim=1, keepdim=True).clamp_min(1)
    # Masked centring: padding must not move the centroid of the real points.
    centred = (x - (x * weights).sum(dim=1, keepdim=True) / count) * weights
    if dim <= num_points:
        scatter = centred.transpose(1, 2) @ centred
        evals, evecs = torch.linalg.eigh(scatter)
        evals, evecs = evals.flip(-1), evecs.flip(-1)
        out = _finish(centred @ evecs, evals, out_dim, weights)
    else:
        out = _gram_coordinates(centred @ centred.transpose(1, 2), out_dim, weights)
    return out.squeeze(0) if unbatched else out


def classical_mds(distances: Tensor, out_dim: int, mask: Tensor | None = None) -> Tensor:
    r"""Classical MDS of distance matrices, with the sign rule of :func:`tinv_coordinates`.

    .. math::
        G = -\tfrac12 J D^{(2)} J = V \Lambda V^\top, \qquad
        \hat X = V_{:, 1:K} \max(\Lambda_{1:K}, 0)^{1/2}

    For Euclidean distances of a cloud ``x`` this equals ``tinv_coordinates(x, out_dim)``
    up to rounding. Non-Euclidean dissimilarities give negative eigenvalues, whose directions
    are dropped (zero columns): the result is then the closest Euclidean configuration in the
    sense of classical scaling, not an exact embedding.

    Args:
        distances: ``(B, N, N)`` or ``(N, N)``, symmetric, non-negative, zero diagonal.
        out_dim: ``K``, number of output coordinates.
        mask: ``(B, N)`` bool, ``True`` for real points; rows and columns of padded points
            are ignored. (default: all real)

    Returns:
        ``(B, N, K)``, or ``(N, K)`` for an unbatched input; zeros at masked rows.

    Example:
        >>> x = torch.randn(6, 2, dtype=torch.float64)
        >>> classical_mds(torch.cdist(x, x), out_dim=2).shape
        torch.Size([6, 2])
    """
    out_dim = check_positive_int("out_dim", out_dim)
    if not isinstance(distances, Tensor) or not distances.is_floating_point():
        raise TypeError(
            f"distances must be a floating-point tensor (B, N, N), got {describe(distances)}"
        )
    if distances.dim() not in (2, 3) or distances.shape[-1] != distances.shape[-2]:
        raise ValueError(
            f"distances must have shape (B, N, N) or (N, N), got {tuple(distances.shape)}"
        )
    unbatched = distances.dim() == 2
    if unbatched:
        if mask is not None:
            raise ValueError("mask is only accepted with batched distances: (B, N, N)")
        distances = distances.unsqueeze(0)
    batch, num_points, _ = distances.shape
    mask = _check_mask(mask, batch, num_points, distances.device)

    w = mask.to(distances.dtype)
    pair = w.unsqueeze(-1) * w.unsqueeze(-2)
    sq = distances.square() * pair
    count = w.sum(dim=1).clamp_min(1)
    # Double centring over the real points only: G = -1/2 (D2 - row - col + total).
    row = sq.sum(dim=2) / count.unsqueeze(-1)
    total = (row * w).sum(dim=1) / count
    gram = -0.5 * (sq - row.unsqueeze(-1) - row.unsqueeze(-2) + total[:, None, None]) * pair
    out = _gram_coordinates(gram, out_dim, w.unsqueeze(-1))
    return out.squeeze(0) if unbatched else out


class TinvInitialRepresentation(nn.Module):
    r"""E(D)-invariant initial coordinates of point clouds, from `"Revisiting Transformation
    Invariant Geometric Deep Learning: Are Initial Representations All You Need?"
    <https://arxiv.org/abs/2112.12345>`_ (TinvNN): classical multidimensional scaling of the
    pairwise distances, with deterministic eigenvector signs.

    .. math::
        -\tfrac12 J D^{(2)} J = V \Lambda V^\top, \qquad
        \hat X = V_{:, 1:K} \Lambda_{1:K}^{1/2}

    The output is invariant to rotations, reflections and translations of each input cloud,
    permutation-equivariant, and has the input's pairwise distances when ``out_dim`` is at
    least the rank of the centred cloud (at most ``D``). Feed it to any backbone (an MLP per
    point, DeepSets, a graph network) to make that backbone E(D)-invariant. See
    :func:`tinv_coordinates` for the sign rule and for what happens with repeated
    eigenvalues (invariance up to a rotation inside the tied eigenspace) and rank deficiency
    (zero columns). The module has no parameters.

    Args:
        out_dim: ``K``, number of output coordinates; ``K >= D`` keeps all distances, extra
            columns are zero.

    Shapes:
        ``x: (B, N, D)`` with optional ``mask: (B, N)`` -> ``(B, N, K)`` (zeros at masked
        rows); ``x: (N, D)`` -> ``(N, K)``.

    Example:
        >>> TinvInitialRepresentation(3)(torch.randn(4, 20, 3)).shape
        torch.Size([4, 20, 3])
    """

    def __init__(self, out_dim: int) -> None:
        super().__init__()
        self.out_dim = check_positive_int("out_dim", out_dim)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        return tinv_coordinates(x, self.out_dim, mask)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(out_dim={self.out_dim})"


__all__ = ["TinvInitialRepresentation", "classical_mds", "tinv_coordinates"]
