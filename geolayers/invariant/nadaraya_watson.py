"""The Nadaraya-Watson head: a nonparametric classifier over a support set of representations.

From `"Learning Invariant Representations with a Nonparametric Nadaraya-Watson Head"
<https://arxiv.org/abs/2309.13377>`_ (Wang, Nguyen and Sabuncu, NeurIPS 2023). Instead of a
learned linear layer, a query is classified by a kernel-weighted vote of labelled support
representations. Drawing the support from the query's own training environment is the paper's
route to invariant representations: within one environment the spurious correlation is
fixed, and the head rewards features that separate classes there.

Public names: :class:`NadarayaWatsonHead` and :func:`compress_support` (the paper's
"cluster" inference mode: k-means centroids per class as a small support set).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from geolayers._checks import check_positive_int, describe

_KERNELS = {"cosine": "cosine", "rbf": "rbf", "gaussian": "rbf"}


def _check_rows(name: str, value: object) -> Tensor:
    if not isinstance(value, Tensor) or not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor (rows, H), got {describe(value)}")
    if value.dim() != 2:
        raise ValueError(f"{name} must have shape (rows, H), got {tuple(value.shape)}")
    return value


def _check_index(name: str, value: object, length: int, device: torch.device) -> Tensor:
    if not isinstance(value, Tensor) or value.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"{name} must be an int64 tensor ({length},), got {describe(value)}")
    if tuple(value.shape) != (length,):
        raise ValueError(f"{name} must have shape ({length},), got {tuple(value.shape)}")
    if value.device != device:
        raise ValueError(
            f"{name} must be on the device of the support ({device}), got {value.device}"
        )
    return value.long()


def _check_positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a positive float, got {type(value).__name__}")
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a positive finite float, got {value}")
    return float(value)


def _class_logsumexp(scores: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """``out[n, c] = logsumexp(scores[n, labels == c])``, ``-inf`` for empty classes.

    Each class is stabilised by its own maximum, so a class whose kernel weights are all tiny
    next to another class still gets a finite log-weight (a shared maximum would underflow).
    """
    n = scores.shape[0]
    index = labels.unsqueeze(0).expand(n, -1)
    peak = scores.new_full((n, num_classes), -math.inf)
    # The maximum is only a stabiliser: its gradient cancels analytically, so it is detached.
    peak = peak.scatter_reduce(1, index, scores.detach(), "amax", include_self=False)
    peak = torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak))
    weights = torch.exp(scores - peak.gather(1, index))
    sums = scores.new_zeros(n, num_classes).scatter_add(1, index, weights)
    return torch.log(sums) + peak


class NadarayaWatsonHead(nn.Module):
    r"""Nadaraya-Watson classification head from `"Learning Invariant Representations with a
    Nonparametric Nadaraya-Watson Head" <https://arxiv.org/abs/2309.13377>`_.

    .. math::
        p(y = c \mid z) = \frac{\sum_{i} k(z, z_i)\, \mathbb{1}[y_i = c]}{\sum_{i} k(z, z_i)},
        \qquad
        k(z, z_i) = \begin{cases}
            \exp\!\big(\cos(z, z_i) / \tau\big) & \text{cosine} \\
            \exp\!\big(-\lVert z - z_i \rVert^2 / (2 h^2)\big) & \text{rbf}
        \end{cases}

    over a support set :math:`\{(z_i, y_i)\}` of encoded, labelled examples. The head has no
    parameters: the encoder that produces :math:`z` and :math:`z_i` is trained through it, so
    gradients reach both the queries and the support. Computed in log space (a log-sum-exp per
    class), so it returns log-probabilities that ``F.nll_loss`` takes directly; a class with no
    support point gets log-probability ``-inf``.

    Training with ``restrict_to_env=True`` gives each query a support drawn only from its own
    environment (the paper's invariant-learning setting). At inference the support is the
    whole training set ("full"), or :func:`compress_support` centroids ("cluster").

    Args:
        num_classes: ``C``.
        kernel: ``"cosine"`` or ``"rbf"`` (alias ``"gaussian"``). (default: ``"cosine"``)
        temperature: :math:`\tau` of the cosine kernel, > 0; smaller is sharper.
            (default: ``0.1``)
        bandwidth: :math:`h` of the rbf kernel, > 0. (default: ``1.0``)

    Shapes:
        ``query: (N, H)``, ``support: (M, H)``, ``support_labels: (M,)`` int64 in
        ``[0, C)``, ``support_env: (M,)`` and ``query_env: (N,)`` int64 -> ``(N, C)``
        log-probabilities.

    Example:
        >>> NadarayaWatsonHead(3)(torch.randn(4, 8), torch.randn(9, 8), torch.arange(9) % 3).shape
        torch.Size([4, 3])
    """

    def __init__(
        self,
        num_classes: int,
        kernel: str = "cosine",
        temperature: float = 0.1,
        bandwidth: float = 1.0,
    ) -> None:
        super().__init__()
        self.num_classes = check_positive_int("num_classes", num_classes)
        if kernel not in _KERNELS:
            raise ValueError(f"kernel must be 'cosine', 'rbf' or 'gaussian', got {kernel!r}")
        self.kernel = _KERNELS[kernel]
        self.temperature = _check_positive("temperature", temperature)
        self.bandwidth = _check_positive("bandwidth", bandwidth)

    def scores(self, query: Tensor, support: Tensor) -> Tensor:
        """Log-kernel ``log k(query_n, support_m)``: ``(N, H), (M, H) -> (N, M)``."""
        if self.kernel == "cosine":
            return F.normalize(query, dim=-1) @ F.normalize(support, dim=-1).T / self.temperature
        # Expanded square instead of torch.cdist: cdist's gradient is NaN at zero distance.
        sq = (
            query.square().sum(-1, keepdim=True)
            - 2 * query @ support.T
            + support.square().sum(-1).unsqueeze(0)
        ).clamp_min(0)
        return -sq / (2 * self.bandwidth**2)

    def forward(
        self,
        query: Tensor,
        support: Tensor,
        support_labels: Tensor,
        support_env: Tensor | None = None,
        query_env: Tensor | None = None,
        restrict_to_env: bool = False,
        exclude_self: bool = False,
        query_index: Tensor | None = None,
    ) -> Tensor:
        """Log-probabilities ``(N, C)`` of the classes for every query.

        Args:
            query: ``(N, H)`` query representations.
            support: ``(M, H)`` support representations.
            support_labels: ``(M,)`` int64 labels in ``[0, C)``.
            support_env: ``(M,)`` int64 environment of every support point; needed when
                ``restrict_to_env``. (default: ``None``)
            query_env: ``(N,)`` int64 environment of every query; needed when
                ``restrict_to_env``. (default: ``None``)
            restrict_to_env: use, for each query, only support points of its environment.
                (default: ``False``)
            exclude_self: the queries are the support (``query is support`` row by row,
                ``N == M``): leave support point ``n`` out of query ``n``'s vote, so that a
                point cannot vote for its own label. (default: ``False``)
            query_index: ``(N,)`` int64 position of each query in the support, ``-1`` where it
                is not there; that support point is left out of the query's vote. Generalises
                ``exclude_self`` to a query batch that is part of a larger support.
                (default: ``None``)

        Raises:
            ValueError: dimension or length mismatches, labels out of range, or a query left
                with an empty support (e.g. no support point in its environment).
        """
        query = _check_rows("query", query)
        support = _check_rows("support", support)
        n, m = query.shape[0], support.shape[0]
        device = support.device
        if query.shape[1] != support.shape[1]:
            raise ValueError(
                f"query and support must have the same feature size H, got {query.shape[1]} "
                f"(query) and {support.shape[1]} (support)"
            )
        if query.device != device:
            raise ValueError(
                f"query must be on the device of the support ({device}), got {query.device}"
            )
        if m == 0:
            raise ValueError("support must hold at least one point, got 0 rows")
        labels = _check_index("support_labels", support_labels, m, device)
        if int(labels.min()) < 0 or int(labels.max()) >= self.num_classes:
            bad = labels[(labels < 0) | (labels >= self.num_classes)][0]
            raise ValueError(
                f"support_labels must lie in [0, num_classes) = [0, {self.num_classes}), "
                f"got {int(bad)}"
            )

        allowed: Tensor | None = None
        if restrict_to_env:
            if support_env is None or query_env is None:
                raise ValueError("restrict_to_env=True needs both support_env and query_env")
            s_env = _check_index("support_env", support_env, m, device)
            q_env = _check_index("query_env", query_env, n, device)
            allowed = q_env.unsqueeze(1) == s_env.unsqueeze(0)
        if exclude_self or query_index is not None:
            if exclude_self and query_index is not None:
                raise ValueError("give exclude_self or query_index, not both")
            if exclude_self:
                if n != m:
                    raise ValueError(
                        f"exclude_self=True needs the queries to be the support (N == M), got "
                        f"N = {n} and M = {m}; pass query_index for a subset"
                    )
                index = torch.arange(n, device=device)
            else:
                index = _check_index("query_index", query_index, n, device)
                if n > 0 and (int(index.min()) < -1 or int(index.max()) >= m):
                    raise ValueError(
                        f"query_index must lie in [-1, M) = [-1, {m}), got values in "
                        f"[{int(index.min())}, {int(index.max())}]"
                    )
            not_self = index.unsqueeze(1) != torch.arange(m, device=device).unsqueeze(0)
            allowed = not_self if allowed is None else allowed & not_self
        if allowed is not None and n > 0:
            empty = ~allowed.any(dim=1)
            if bool(empty.any()):
                first = int(empty.nonzero()[0, 0])
                where = f" (environment {int(query_env[first])})" if restrict_to_env else ""
                raise ValueError(
                    f"query {first}{where} has an empty support: no support point is left "
                    f"after restrict_to_env / self-exclusion ({int(empty.sum())} such queries)"
                )

        scores = self.scores(query, support)
        if allowed is not None:
            scores = scores.masked_fill(~allowed, -math.inf)
        per_class = _class_logsumexp(scores, labels, self.num_classes)
        return per_class - torch.logsumexp(per_class, dim=1, keepdim=True)

    def __repr__(self) -> str:
        setting = (
            f"temperature={self.temperature:g}"
            if self.kernel == "cosine"
            else f"bandwidth={self.bandwidth:g}"
        )
        return f"{type(self).__name__}({self.num_classes}, kernel={self.kernel!r}, {setting})"


def _kmeans(points: Tensor, k: int, iters: int, generator: torch.Generator) -> Tensor:
    """Lloyd's k-means with k-means++ seeding; returns the cluster of every point ``(n,)``."""
    n = points.shape[0]
    first = int(torch.randint(n, (1,), generator=generator))
    centres = [points[first]]
    closest = (points - points[first]).square().sum(-1)
    for _ in range(1, k):
        total = float(closest.sum())
        # All remaining points coincide with a centre: any choice is as good as another.
        probs = closest / total if total > 0 else torch.full_like(closest, 1.0 / n)
        pick = int(torch.multinomial(probs.cpu().double(), 1, generator=generator))
        centres.append(points[pick])
        closest = torch.minimum(closest, (points - points[pick]).square().sum(-1))
    centroids = torch.stack(centres)
    assign = torch.cdist(points, centroids).argmin(dim=1)
    for _ in range(iters):
        counts = torch.bincount(assign, minlength=k)
        sums = torch.zeros_like(centroids).index_add_(0, assign, points)
        fresh = sums / counts.clamp_min(1).unsqueeze(1).to(points.dtype)
        dist_to_own = (points - centroids[assign]).square().sum(-1)
        for c in (counts == 0).nonzero().flatten().tolist():
            # An emptied cluster restarts at the point worst served by its centroid.
            far = int(dist_to_own.argmax())
            fresh[c] = points[far]
            dist_to_own[far] = -1.0
        centroids = fresh
        new_assign = torch.cdist(points, centroids).argmin(dim=1)
        if torch.equal(new_assign, assign):
            break
        assign = new_assign
    return assign


def compress_support(
    support: Tensor,
    labels: Tensor,
    per_class: int,
    *,
    num_classes: int | None = None,
    iters: int = 25,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    r"""Compress a support set to ``per_class`` k-means centroids per class (the paper's
    "cluster" inference mode of `Wang et al. 2023 <https://arxiv.org/abs/2309.13377>`_).

    Each class's points are clustered with k-means (k-means++ seeding, Lloyd iterations); the
    centroids are the means of their clusters, computed from ``support`` so that gradients
    flow back to it (the assignment itself is not differentiated). A class with fewer than
    ``per_class`` points keeps all of them; a class with none contributes nothing. Clusters
    that end up empty (possible only with repeated points) are dropped.

    Args:
        support: ``(M, H)`` representations.
        labels: ``(M,)`` int64 labels in ``[0, C)``.
        per_class: centroids per class, >= 1.
        num_classes: ``C``. (default: ``labels.max() + 1``)
        iters: maximum Lloyd iterations. (default: ``25``)
        generator: random source of the seeding. (default: seeded with 0)

    Returns:
        ``centroids: (K, H)`` and ``centroid_labels: (K,)``, classes in ascending order,
        ``K = sum_c min(per_class, M_c)`` (``C * per_class`` when every class is large enough,
        fewer if k-means leaves a cluster empty).

    Example:
        >>> z, y = torch.randn(100, 8), torch.arange(100) % 4
        >>> [t.shape for t in compress_support(z, y, per_class=5)]
        [torch.Size([20, 8]), torch.Size([20])]
    """
    support = _check_rows("support", support)
    m = support.shape[0]
    labels = _check_index("labels", labels, m, support.device)
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
        raise ValueError(f"per_class must be an int >= 1, got {per_class!r}")
    if isinstance(iters, bool) or not isinstance(iters, int) or iters < 0:
        raise ValueError(f"iters must be an int >= 0, got {iters!r}")
    if m > 0 and int(labels.min()) < 0:
        raise ValueError(f"labels must be >= 0, got {int(labels.min())}")
    if num_classes is None:
        num_classes = int(labels.max()) + 1 if m > 0 else 0
    elif m > 0 and int(labels.max()) >= num_classes:
        raise ValueError(
            f"labels must lie in [0, num_classes) = [0, {num_classes}), got {int(labels.max())}"
        )
    gen = generator if generator is not None else torch.Generator().manual_seed(0)

    centroids, centroid_labels = [], []
    for c in range(num_classes):
        members = support[labels == c]
        if members.shape[0] == 0:
            continue
        if members.shape[0] <= per_class:
            centroids.append(members)
        else:
            with torch.no_grad():
                assign = _kmeans(members.detach(), per_class, iters, gen)
            counts = torch.bincount(assign, minlength=per_class)
            sums = members.new_zeros(per_class, members.shape[1]).index_add(0, assign, members)
            means = sums / counts.clamp_min(1).unsqueeze(1).to(members.dtype)
            centroids.append(means[counts > 0])
        centroid_labels.append(labels.new_full((centroids[-1].shape[0],), c))
    if not centroids:
        return support.new_zeros(0, support.shape[1]), labels.new_zeros(0)
    return torch.cat(centroids), torch.cat(centroid_labels)


__all__ = ["NadarayaWatsonHead", "compress_support"]
