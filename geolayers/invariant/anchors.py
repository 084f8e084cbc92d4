"""Choosing anchors for relative representations among the data points themselves.

Relative representations (`"Relative representations enable zero-shot latent space
communication" <https://arxiv.org/abs/2209.15430>`_, Moschella et al., ICLR 2023) describe every
sample by its similarities to a set of *anchor* samples. Anchors must be actual inputs: two
independently trained encoders can only be compared through the embeddings of the *same*
inputs. :func:`select_anchors` therefore always returns row indices into the data, never
synthetic points, whatever the selection rule.
"""

from __future__ import annotations

import torch
from torch import Tensor

from geolayers._checks import describe

_METHODS = ("random", "farthest", "kmeans")


def _farthest(x: Tensor, num_anchors: int, generator: torch.Generator | None) -> Tensor:
    """Greedy maximin (farthest-point) sampling from a random first point."""
    n = x.shape[0]
    first = int(torch.randint(n, (1,), generator=generator))
    chosen = torch.empty(num_anchors, dtype=torch.long, device=x.device)
    chosen[0] = first
    # Distance of every point to its nearest chosen anchor, updated one anchor at a time:
    # O(N K D) work and O(N) memory instead of an (N, K) distance matrix.
    nearest = (x - x[first]).square().sum(-1)
    for i in range(1, num_anchors):
        # Chosen points have distance 0; duplicates of chosen points too, so argmax picks a
        # new distinct index as long as any point lies at positive distance.
        nxt = int(nearest.argmax())
        if nearest[nxt] <= 0:
            # Every remaining point duplicates an anchor: fill with unused indices, in order.
            used = torch.zeros(n, dtype=torch.bool, device=x.device)
            used[chosen[:i]] = True
            chosen[i:] = torch.nonzero(~used).flatten()[: num_anchors - i]
            break
        chosen[i] = nxt
        nearest = torch.minimum(nearest, (x - x[nxt]).square().sum(-1))
    return chosen


def _kmeans(
    x: Tensor, num_anchors: int, generator: torch.Generator | None, iterations: int
) -> Tensor:
    """Lloyd's k-means from a k-means++ start, then the data point nearest each centroid."""
    n = x.shape[0]
    work = x.detach().to(torch.float64)
    # k-means++ seeding: each new centre is drawn with probability proportional to its squared
    # distance to the nearest centre so far (Arthur and Vassilvitskii 2007).
    centres = [int(torch.randint(n, (1,), generator=generator))]
    nearest = (work - work[centres[0]]).square().sum(-1)
    for _ in range(1, num_anchors):
        total = nearest.sum()
        probs = nearest / total if total > 0 else torch.ones_like(nearest)
        nxt = int(torch.multinomial(probs.cpu(), 1, generator=generator))
        centres.append(nxt)
        nearest = torch.minimum(nearest, (work - work[nxt]).square().sum(-1))
    centroids = work[centres].clone()
    for _ in range(iterations):
        assign = torch.cdist(work, centroids).argmin(dim=1)
        sums = torch.zeros_like(centroids).index_add_(0, assign, work)
        counts = torch.bincount(assign, minlength=num_anchors).to(work.dtype)
        # An emptied cluster keeps its previous centroid rather than collapsing to the origin.
        filled = counts > 0
        centroids[filled] = sums[filled] / counts[filled, None]
    # Snap each centroid to a distinct data point: centroids in turn take their nearest point
    # not yet taken, so the anchors are real (and distinct) samples.
    dist = torch.cdist(centroids, work)
    chosen = torch.empty(num_anchors, dtype=torch.long, device=x.device)
    taken = torch.zeros(n, dtype=torch.bool, device=x.device)
    for k in range(num_anchors):
        row = dist[k].masked_fill(taken, float("inf"))
        idx = int(row.argmin())
        chosen[k] = idx
        taken[idx] = True
    return chosen


def select_anchors(
    x: Tensor,
    num_anchors: int,
    method: str = "random",
    generator: torch.Generator | None = None,
    iterations: int = 20,
) -> Tensor:
    r"""Pick ``num_anchors`` distinct rows of ``x`` to serve as anchors.

    * ``"random"``: a uniformly random subset (the choice of Moschella et al.).
    * ``"farthest"``: greedy farthest-point (maximin) sampling: starting from a random row,
      repeatedly take the row farthest, in Euclidean distance, from the anchors so far. This
      2-approximates the max-min spacing and covers outlying regions of the data.
    * ``"kmeans"``: k-means (k-means++ start, ``iterations`` Lloyd steps) and then, for each
      centroid in turn, its nearest row not taken yet, so the anchors stay real data points
      (centroids themselves are averages of inputs and could not be fed to another encoder).

    ``x`` is whatever space the selection should cover: raw inputs flattened to ``(N, D)``,
    or the embeddings of one reference encoder. The indices then select the anchor *inputs*
    that every encoder embeds.

    Args:
        x: ``(N, D)`` floating-point data.
        num_anchors: ``K``, ``1 <= K <= N``.
        method: ``"random"``, ``"farthest"`` or ``"kmeans"``. (default: ``"random"``)
        generator: random source for the subset, the first farthest point or the k-means++
            start; fixes the result. (default: ``None``, torch's global generator)
        iterations: Lloyd iterations of ``"kmeans"``, ``>= 0``. (default: ``20``)

    Returns:
        ``(K,)`` int64 indices into the rows of ``x``, all distinct.

    Example:
        >>> select_anchors(torch.randn(100, 8), 10, "farthest").shape
        torch.Size([10])
    """
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor (N, D), got {describe(x)}")
    if x.dim() != 2:
        raise ValueError(f"x must have shape (N, D), got {tuple(x.shape)}")
    if isinstance(num_anchors, bool) or not isinstance(num_anchors, int):
        raise TypeError(f"num_anchors must be an int, got {type(num_anchors).__name__}")
    n = x.shape[0]
    if not 1 <= num_anchors <= n:
        raise ValueError(f"num_anchors must lie in [1, N] = [1, {n}], got {num_anchors}")
    if method not in _METHODS:
        raise ValueError(f"method must be 'random', 'farthest' or 'kmeans', got {method!r}")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
        raise ValueError(f"iterations must be an int >= 0, got {iterations!r}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {describe(generator)}")
    with torch.no_grad():
        if method == "random":
            return torch.randperm(n, generator=generator)[:num_anchors].to(x.device)
        if method == "farthest":
            return _farthest(x.detach(), num_anchors, generator)
        return _kmeans(x, num_anchors, generator, iterations)


__all__ = ["select_anchors"]
