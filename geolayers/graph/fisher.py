"""Fisher information embedding (FIE, Chen, Pellizzoni and Borgwardt 2023): each node's
neighbourhood is summarised by one EM step of a Gaussian mixture started at a learned anchor
mixture, which reads as an attention over the neighbours; the anchor means are initialised
without labels by spherical k-means."""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch_geometric.nn import MessagePassing

from geolayers._checks import check_positive_int, describe

#: Smallest norm of a cluster sum that still gives a direction (below it the centre is kept).
_DIRECTION_EPS = 1e-12


class _Adjacency(NamedTuple):
    """The weighted neighbourhoods, self loops included: rows of ``adj_t`` are targets."""

    adj_t: Tensor  # (N, N) sparse CSR, adj_t[i, j] = sum of the weights of the edges j -> i
    adj: Tensor  # its transpose, sparse CSR, for the backward pass
    src: Tensor  # (E',) sources of the edges (with the added loops), in input order
    dst: Tensor  # (E',) targets
    weight: Tensor  # (E',) edge weights, the added loops weigh 1


class _NeighbourSum(torch.autograd.Function):
    """``adj_t @ z`` for the weighted adjacency, differentiable in ``z`` and in the edge weights.

    The product and its ``z`` gradient are CSR sparse-dense products (an order of magnitude
    faster on CPU than gathering and scattering |E| messages); the weight gradient
    :math:`\\partial L / \\partial w_{e} = \\langle g_{\\mathrm{dst}(e)}, z_{\\mathrm{src}(e)}
    \\rangle` is formed per edge only when the weights require it.
    """

    @staticmethod
    def forward(ctx, weight: Tensor, z: Tensor, adjacency: _Adjacency) -> Tensor:
        ctx.adjacency = adjacency
        ctx.save_for_backward(z)
        return torch.sparse.mm(adjacency.adj_t, z)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        adjacency = ctx.adjacency
        (z,) = ctx.saved_tensors
        grad_weight = grad_z = None
        if ctx.needs_input_grad[0]:
            grad_weight = (grad[adjacency.dst] * z[adjacency.src]).sum(-1)
        if ctx.needs_input_grad[1]:
            grad_z = torch.sparse.mm(adjacency.adj, grad)
        return grad_weight, grad_z, None


def _check_floating_2d(name: str, x: object) -> Tensor:
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {describe(x)}")
    if x.dim() != 2:
        raise ValueError(f"{name} must have shape (N, F), got {tuple(x.shape)}")
    return x


def _check_int(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return value


def _check_node_weight(name: str, weight: object, x: Tensor) -> Tensor:
    if not isinstance(weight, Tensor) or not weight.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {describe(weight)}")
    if weight.shape != (x.size(0),):
        raise ValueError(
            f"{name} must have shape ({x.size(0)},) (one weight per row of x), "
            f"got {tuple(weight.shape)}"
        )
    if not bool(torch.isfinite(weight).all()) or bool((weight < 0).any()):
        raise ValueError(f"{name} must be finite and >= 0")
    if not float(weight.sum()) > 0:
        raise ValueError(f"{name} must have a positive sum")
    return weight


def _sample(probs: Tensor, gen: torch.Generator) -> int:
    """One index drawn with probability proportional to ``probs``, on the CPU generator, so a
    seed gives the same draw on every device."""
    return int(torch.multinomial(probs.detach().to("cpu", torch.float64), 1, generator=gen))


def spherical_kmeans(
    x: Tensor,
    k: int,
    *,
    iters: int = 50,
    seed: int = 0,
    weight: Tensor | None = None,
    init: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    r"""Spherical k-means: ``k`` unit directions that maximise the (weighted) cosine similarity
    of the rows of ``x`` to their closest direction (Dhillon and Modha, 2001).

    The rows are L2-normalised to :math:`\hat{x}_i`; each iteration assigns every row to the
    centre of largest :math:`\langle \hat{x}_i, c_k\rangle` and moves each centre to the
    direction of the weighted sum of its rows, :math:`c_k = \sum_{i \in k} w_i \hat{x}_i /
    \lVert \sum_{i \in k} w_i \hat{x}_i \rVert`, until the assignment stops changing or after
    ``iters`` iterations.

    Seeding is k-means++ (Arthur and Vassilvitskii, 2007) for the cosine distance: the first
    centre is a row drawn with probability :math:`\propto w_i`, each next one a row drawn with
    probability :math:`\propto w_i (1 - \max_c \langle \hat{x}_i, c\rangle)`, i.e. :math:`w_i`
    times the squared Euclidean distance to the nearest centre on the sphere. The draws use a
    CPU :class:`torch.Generator` seeded with ``seed``, so the result depends on the seed only.

    A cluster left empty by an assignment is re-seeded at the row farthest from its own centre
    (distinct rows for several empty clusters), as in Lloyd's algorithm with restarts. When
    ``x`` has fewer than ``k`` distinct directions some clusters stay empty and their centres
    repeat directions of others.

    Args:
        x: points ``(N, F)``, floating point; rows of norm 0 take part with similarity 0.
        k: number of clusters, ``1 <= k <= N``.
        iters: Lloyd iterations at most, ``>= 1``. (default: ``50``)
        seed: seed of the k-means++ draws. (default: ``0``)
        weight: non-negative weights of the rows ``(N,)`` (multiplicities), or ``None`` for
            1 each. (default: ``None``)
        init: starting centres ``(k, F)`` (normalised here) instead of the k-means++ seeding.
            (default: ``None``)

    Returns:
        ``(centers, assignment)``: centres ``(k, F)`` of unit norm in the dtype and device of
        ``x``, and the index ``(N,)`` int64 of each row's closest centre.

    Example:
        >>> centers, assignment = spherical_kmeans(torch.randn(20, 3), 2)
        >>> centers.shape, assignment.shape
        (torch.Size([2, 3]), torch.Size([20]))
    """
    x = _check_floating_2d("x", x)
    k = check_positive_int("k", k)
    if x.size(0) < k:
        raise ValueError(f"k must be <= the number of rows of x ({x.size(0)}), got {k}")
    _check_int("iters", iters, 1)
    _check_int("seed", seed, -(2**63))
    if weight is None:
        weight = torch.ones(x.size(0), dtype=x.dtype, device=x.device)
    else:
        weight = _check_node_weight("weight", weight, x).to(x.dtype)
    if init is not None:
        if not isinstance(init, Tensor) or not init.is_floating_point():
            raise TypeError(f"init must be a floating-point tensor, got {describe(init)}")
        if init.shape != (k, x.size(1)):
            raise ValueError(
                f"init must have shape (k, F) = ({k}, {x.size(1)}), got {tuple(init.shape)}"
            )
    with torch.no_grad():
        return _spherical_kmeans(F.normalize(x.detach(), dim=-1), k, iters, seed, weight, init)


def _spherical_kmeans(
    xn: Tensor, k: int, iters: int, seed: int, weight: Tensor, init: Tensor | None
) -> tuple[Tensor, Tensor]:
    if init is not None:
        centers = F.normalize(init.to(xn), dim=-1)
    else:
        gen = torch.Generator().manual_seed(seed)
        centers = xn.new_empty(k, xn.size(1))
        centers[0] = xn[_sample(weight, gen)]
        closest = xn @ centers[0]
        for c in range(1, k):
            probs = weight * (1 - closest).clamp_min(0)
            # Fewer distinct directions than centres so far: any row of positive weight.
            index = _sample(probs if float(probs.sum()) > 0 else weight, gen)
            centers[c] = xn[index]
            closest = torch.maximum(closest, xn @ centers[c])

    member = weight > 0
    assignment = None
    for _ in range(iters):
        similarity, new_assignment = (xn @ centers.T).max(dim=-1)
        counts = torch.bincount(new_assignment[member], minlength=k)
        empty = (counts == 0).nonzero().flatten()
        if assignment is not None and empty.numel() == 0:
            if torch.equal(new_assignment, assignment):
                break
        assignment = new_assignment
        sums = xn.new_zeros(k, xn.size(1)).index_add_(0, assignment, weight[:, None] * xn)
        norms = sums.norm(dim=-1, keepdim=True)
        # A cluster whose rows cancel out has no direction: it keeps its centre.
        centers = torch.where(
            norms > _DIRECTION_EPS, sums / norms.clamp_min(_DIRECTION_EPS), centers
        )
        if empty.numel() > 0:
            # Farthest rows of positive weight first (lowest similarity to their own centre).
            order = torch.argsort(torch.where(member, similarity, math.inf), stable=True)
            available = order[: int(member.sum())]
            take = available[: empty.numel()]
            centers[empty[: take.numel()]] = xn[take]
    assignment = (xn @ centers.T).argmax(dim=-1)
    return centers, assignment


class FisherInformationEmbedding(MessagePassing):
    r"""Fisher information embedding of each node's neighbourhood, from `"Fisher Information
    Embedding for Node and Graph Learning" <https://arxiv.org/abs/2305.07580>`_ (Chen,
    Pellizzoni and Borgwardt, ICML 2023).

    The neighbourhood of node :math:`i` is the weighted multiset of the features of the nodes
    :math:`j` with an edge :math:`j \to i` (node :math:`i` itself included through a self
    loop), :math:`\mathcal{X}_i = \{(\mathbf{x}_j, w_{ij})\}`. The paper embeds such a multiset
    by fitting a parametric model to it and taking the estimated parameters relative to an
    anchor model :math:`\theta_0` (the retraction of the fit to the tangent space at
    :math:`\theta_0`), the fit being one EM step started at :math:`\theta_0`. With the model of
    the paper, a mixture of :math:`K` Gaussians with a shared isotropic variance

    .. math::
        p_\theta(\mathbf{x}) = \sum_{k=1}^K \pi_k\, \mathcal{N}(\mathbf{x};\,
        \boldsymbol{\mu}_k, \sigma^2 \mathbf{I}),

    whose means are re-estimated (the weights :math:`\pi` and the variance stay at the
    anchor's), the E step gives each feature its responsibilities

    .. math::
        \gamma_k(\mathbf{x}) = \frac{\pi_k \mathcal{N}(\mathbf{x}; \boldsymbol{\mu}_k,
        \sigma^2\mathbf{I})}{\sum_l \pi_l \mathcal{N}(\mathbf{x}; \boldsymbol{\mu}_l,
        \sigma^2\mathbf{I})} = \operatorname{softmax}_k\!\Big(\frac{\langle \mathbf{x},
        \boldsymbol{\mu}_k\rangle + b_k}{\tau}\Big),

    exactly so when the means have unit norm (the :math:`\lVert\mathbf{x}\rVert^2` term is
    common to all :math:`k` and cancels), with :math:`\tau = \sigma^2` the temperature and
    :math:`b_k = \tau \log \pi_k` (up to a constant) the mixture logits; the M step moves every
    mean to the responsibility-weighted average of the multiset. The embedding of node
    :math:`i` is that displacement, concatenated over the components:

    .. math::
        \phi(i) = \big[\hat{\boldsymbol{\mu}}_k(\mathcal{X}_i) - \boldsymbol{\mu}_k\big]_{k=1}^K
        = \Big[\sum_{j \in \mathcal{N}(i)} \alpha_{ijk} (\mathbf{x}_j - \boldsymbol{\mu}_k)
        \Big]_{k=1}^K, \qquad \alpha_{ijk} = \frac{w_{ij}\, \gamma_k(\mathbf{x}_j)}
        {\sum_{j' \in \mathcal{N}(i)} w_{ij'}\, \gamma_k(\mathbf{x}_{j'})}.

    :math:`\alpha_{ijk}` is an attention of node :math:`i` over its neighbours, one per
    component, summing to 1 over :math:`\mathcal{N}(i)`; unlike GAT's, its score depends on the
    neighbour and the component only. It is also the Fisher score of the mixture's
    log-likelihood of :math:`\mathcal{X}_i` with respect to :math:`\boldsymbol{\mu}_k`,
    :math:`\sum_j w_{ij}\gamma_k(\mathbf{x}_j)(\mathbf{x}_j - \boldsymbol{\mu}_k)/\sigma^2`,
    multiplied by the inverse of the complete-data Fisher information of
    :math:`\boldsymbol{\mu}_k`, :math:`\sigma^2 / \sum_j w_{ij}\gamma_k(\mathbf{x}_j)`: a
    natural-gradient step from the anchor, hence the name.

    With ``heads`` :math:`H > 1` the layer holds :math:`H` independent mixtures (the
    ``num_heads`` of the authors' code) and concatenates their embeddings. The responsibilities are computed
    once per node, then a single sparse product per forward pass sums
    :math:`w_{ij}\gamma_k(\mathbf{x}_j)\mathbf{x}_j` and :math:`w_{ij}\gamma_k(\mathbf{x}_j)`
    over the neighbourhoods. A node whose neighbourhood is empty (no edges, no self loop) or
    whose neighbours all have responsibility 0 for a component (underflow) leaves that mean at
    the anchor: its embedding there is 0.

    Use in a network, as in the authors' supervised networks: a linear (or kernel) map to width ``in_channels``, then
    alternately this layer and a map from its ``H K d`` outputs back to a width ``d`` (a
    linear layer with a ReLU), several times; the means can be learned by backpropagation,
    initialised before training by :meth:`init_means` (spherical k-means of the neighbourhood
    features, the paper's unsupervised learning of the anchor), or frozen at that
    initialisation (``learn_means=False``) for a purely unsupervised embedding.

    Differences from the authors' code: it normalises :math:`\alpha` by a softmax of the
    responsibilities over the neighbours and uses normalised features in the responsibilities
    but raw ones in the average; this layer computes the EM step above exactly, on the
    normalised features (``normalize=True``) or on the raw ones (``normalize=False``).

    Args:
        in_channels: feature width :math:`d`.
        num_mixtures: mixture components :math:`K` per head, ``>= 1``.
        heads: independent mixtures :math:`H`, ``>= 1``. (default: ``1``)
        temperature: :math:`\tau = \sigma^2 > 0`. (default: ``None``, :math:`d`, as in the
            authors' code)
        normalize: L2-normalise the node features first, onto the unit sphere where the anchor
            means live (the authors' code normalises them for the responsibilities and for
            k-means). (default: ``True``)
        learn_means: the means :math:`\boldsymbol{\mu}` are trained by backpropagation;
            ``False`` keeps them where :meth:`reset_parameters` or :meth:`init_means` put them.
            (default: ``True``)
        learn_weights: the mixture logits :math:`b` are trained; ``False`` keeps uniform
            weights :math:`\pi_k = 1/K`. (default: ``True``)
        add_self_loops: add a self loop of weight 1 to every node that has none, so that a node
            belongs to its own neighbourhood. (default: ``True``)
        cached: keep the adjacency of the first call and reuse it (transductive learning on one
            fixed graph: later ``edge_index`` and ``edge_weight`` arguments are then ignored,
            as with :class:`~torch_geometric.nn.conv.GCNConv`). (default: ``False``)

    Shapes:
        - **input:** node features ``x: (|V|, d)``, edge indices ``edge_index: (2, |E|)`` int64
          (source, target), node ids in ``0..|V|-1``, optional ``edge_weight: (|E|,)`` >= 0.
        - **output:** ``(|V|, H K d)``, the :math:`d` columns of head :math:`h` and component
          :math:`k` at ``(h K + k) d``.

    Example:
        >>> FisherInformationEmbedding(8, 4)(torch.randn(5, 8), torch.tensor([[0, 1], [1, 0]])).shape
        torch.Size([5, 32])
    """

    def __init__(
        self,
        in_channels: int,
        num_mixtures: int,
        *,
        heads: int = 1,
        temperature: float | None = None,
        normalize: bool = True,
        learn_means: bool = True,
        learn_weights: bool = True,
        add_self_loops: bool = True,
        cached: bool = False,
    ) -> None:
        super().__init__(aggr="add")
        check_positive_int("in_channels", in_channels)
        check_positive_int("num_mixtures", num_mixtures)
        check_positive_int("heads", heads)
        if temperature is None:
            temperature = float(in_channels)
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
            raise TypeError(f"temperature must be a number or None, got {describe(temperature)}")
        if not (math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
        self.in_channels = in_channels
        self.num_mixtures = num_mixtures
        self.heads = heads
        self.temperature = float(temperature)
        self.normalize = bool(normalize)
        self.add_self_loops = bool(add_self_loops)
        self.cached = bool(cached)
        self._cached_adjacency: _Adjacency | None = None
        self.out_channels = heads * num_mixtures * in_channels

        self.means = nn.Parameter(
            torch.empty(heads, num_mixtures, in_channels), requires_grad=learn_means
        )
        self.mixture_logits = nn.Parameter(
            torch.empty(heads, num_mixtures), requires_grad=learn_weights
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Means drawn uniformly on the unit sphere (normalised Gaussians), uniform weights."""
        super().reset_parameters()
        self._cached_adjacency = None
        with torch.no_grad():
            self.means.copy_(F.normalize(torch.randn_like(self.means), dim=-1))
            self.mixture_logits.zero_()

    # ------------------------------------------------------------------------------ checks

    def _check_x(self, x: object, name: str = "x") -> Tensor:
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got {describe(x)}")
        if x.dim() != 2 or x.size(1) != self.in_channels:
            raise ValueError(
                f"{name} must have shape (num_nodes, {self.in_channels}) "
                f"(in_channels={self.in_channels}), got {tuple(x.shape)}"
            )
        if x.dtype != self.means.dtype:
            raise TypeError(
                f"{name} must have the layer's dtype {self.means.dtype}, got {x.dtype}; "
                "convert the layer with .to(dtype) or the input"
            )
        return x

    @staticmethod
    def _check_graph(edge_index: object, edge_weight: object, x: Tensor) -> None:
        if not isinstance(edge_index, Tensor) or edge_index.dtype != torch.long:
            raise TypeError(
                f"edge_index must be an int64 (torch.long) tensor, got {describe(edge_index)}"
            )
        if edge_index.dim() != 2 or edge_index.size(0) != 2:
            raise ValueError(f"edge_index must have shape (2, E), got {tuple(edge_index.shape)}")
        if edge_index.device != x.device:
            raise ValueError(
                f"edge_index must be on the device of x ({x.device}), got {edge_index.device}"
            )
        if edge_index.numel() > 0:
            low, high = int(edge_index.min()), int(edge_index.max())
            if low < 0 or high >= x.size(0):
                raise ValueError(
                    f"edge_index must hold node ids in 0..{x.size(0) - 1} (x has {x.size(0)} "
                    f"rows), got ids in {low}..{high}"
                )
        if edge_weight is None:
            return
        if not isinstance(edge_weight, Tensor) or edge_weight.dtype != x.dtype:
            raise TypeError(
                f"edge_weight must be a tensor of the dtype of x ({x.dtype}) or None, "
                f"got {describe(edge_weight)}"
            )
        if edge_weight.shape != (edge_index.size(1),):
            raise ValueError(
                f"edge_weight must have shape (E,) = ({edge_index.size(1)},), "
                f"got {tuple(edge_weight.shape)}"
            )
        if edge_weight.device != x.device:
            raise ValueError(
                f"edge_weight must be on the device of x ({x.device}), got {edge_weight.device}"
            )
        if edge_weight.numel() > 0:
            detached = edge_weight.detach()
            if not bool(torch.isfinite(detached).all()) or bool((detached < 0).any()):
                raise ValueError("edge_weight must be finite and >= 0")

    # ---------------------------------------------------------------------------- the graph

    def _edges(
        self, edge_index: Tensor, edge_weight: Tensor | None, num_nodes: int, like: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Sources, targets and weights, with a unit self loop added where a node has none."""
        src, dst = edge_index[0], edge_index[1]
        weight = (
            torch.ones(src.numel(), dtype=like.dtype, device=like.device)
            if edge_weight is None
            else edge_weight
        )
        if self.add_self_loops:
            has_loop = torch.zeros(num_nodes, dtype=torch.bool, device=src.device)
            has_loop[src[src == dst]] = True
            missing = (~has_loop).nonzero().flatten()
            src, dst = torch.cat([src, missing]), torch.cat([dst, missing])
            weight = torch.cat([weight, weight.new_ones(missing.numel())])
        return src, dst, weight

    def _adjacency(
        self, edge_index: Tensor, edge_weight: Tensor | None, num_nodes: int, like: Tensor
    ) -> _Adjacency:
        cache = self._cached_adjacency
        if (
            self.cached
            and cache is not None
            and cache.weight.dtype == like.dtype
            and cache.weight.device == like.device
        ):
            if cache.adj_t.size(0) != num_nodes:
                raise ValueError(
                    f"x must have the {cache.adj_t.size(0)} nodes of the graph cached by the "
                    f"first call (cached=True), got {num_nodes}; call reset_parameters() or use "
                    "cached=False for a new graph"
                )
            return cache
        src, dst, weight = self._edges(edge_index, edge_weight, num_nodes, like)
        shape = (num_nodes, num_nodes)
        values = weight.detach()

        def csr(rows: Tensor, cols: Tensor) -> Tensor:
            coo = torch.sparse_coo_tensor(
                torch.stack([rows, cols]), values, shape, check_invariants=False
            )
            with warnings.catch_warnings():
                # "Sparse CSR tensor support is in beta": spmm with CSR is all that is used.
                warnings.filterwarnings("ignore", message="Sparse CSR tensor support")
                return coo.coalesce().to_sparse_csr()

        adjacency = _Adjacency(csr(dst, src), csr(src, dst), src, dst, weight)
        if self.cached:
            # Detached: a cached graph is a constant, not part of later autograd graphs.
            adjacency = adjacency._replace(weight=values)
            self._cached_adjacency = adjacency
        return adjacency

    # ------------------------------------------------------------------ the mixture model

    def _features(self, x: Tensor) -> Tensor:
        return F.normalize(x, dim=-1) if self.normalize else x

    def _log_responsibilities(self, features: Tensor) -> Tensor:
        """:math:`\\log\\gamma_k(\\mathbf{x}_j)` per node, ``(N, H, K)``."""
        logits = features @ self.means.flatten(0, 1).T  # (N, H K)
        logits = logits.view(-1, self.heads, self.num_mixtures) + self.mixture_logits
        return torch.log_softmax(logits / self.temperature, dim=-1)

    def responsibilities(self, x: Tensor) -> Tensor:
        """The E step: :math:`\\gamma_k(\\mathbf{x}_j)` of every node and component.

        Args:
            x: node features ``(|V|, d)``.

        Returns:
            ``(|V|, H, K)``, summing to 1 over the last dimension.

        Example:
            >>> FisherInformationEmbedding(4, 3).responsibilities(torch.randn(5, 4)).shape
            torch.Size([5, 1, 3])
        """
        self._check_x(x)
        return self._log_responsibilities(self._features(x)).exp()

    @property
    def mixture_weights(self) -> Tensor:
        """The anchor's mixture weights :math:`\\pi = \\operatorname{softmax}(b / \\tau)`,
        ``(H, K)``."""
        return torch.softmax(self.mixture_logits / self.temperature, dim=-1)

    # -------------------------------------------------------------------- message passing

    def message(self, z_j: Tensor, edge_weight: Tensor) -> Tensor:
        return edge_weight.unsqueeze(-1) * z_j

    def message_and_aggregate(self, adj_t: Tensor, z: Tensor, adjacency: _Adjacency) -> Tensor:
        return _NeighbourSum.apply(adjacency.weight, z, adjacency)

    def forward(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None) -> Tensor:
        """Embed the nodes: ``x: (|V|, d)``, ``edge_index: (2, |E|)``, ``edge_weight: (|E|,)``
        or ``None`` -> ``(|V|, H K d)``."""
        self._check_x(x)
        if not (self.cached and self._cached_adjacency is not None):
            self._check_graph(edge_index, edge_weight, x)
        adjacency = self._adjacency(edge_index, edge_weight, x.size(0), x)
        features = self._features(x)
        log_gamma = self._log_responsibilities(features)  # (N, H, K)
        # alpha is invariant to scaling gamma_k by a constant per component: shifting the log by
        # its maximum over the nodes keeps the largest responsibility at 1 against underflow.
        if log_gamma.size(0) > 0:
            log_gamma = log_gamma - log_gamma.detach().amax(dim=0, keepdim=True)
        gamma = log_gamma.exp()
        n, hk, d = x.size(0), self.heads * self.num_mixtures, self.in_channels
        weighted = (gamma.unsqueeze(-1) * features[:, None, None, :]).reshape(n, hk * d)
        z = torch.cat([weighted, gamma.reshape(n, hk)], dim=-1)
        # Unfused (message(), e.g. with fuse=False) the weights are the CSR values of adj_t.
        sums = self.propagate(adjacency.adj_t, z=z, adjacency=adjacency, edge_weight=None)
        numerator = sums[:, : hk * d].view(n, self.heads, self.num_mixtures, d)
        denominator = sums[:, hk * d :].view(n, self.heads, self.num_mixtures, 1)
        present = denominator > 0
        mean = numerator / torch.where(present, denominator, torch.ones_like(denominator))
        out = torch.where(present, mean - self.means, torch.zeros_like(mean))
        return out.reshape(n, self.out_channels)

    def attention_weights(
        self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """The attention :math:`\\alpha_{ijk}` of every edge, computed edge by edge.

        Args:
            x: node features ``(|V|, d)``.
            edge_index: ``(2, |E|)`` int64.
            edge_weight: ``(|E|,)`` or ``None``.

        Returns:
            ``(edge_index, alpha)``: the edges with the added self loops ``(2, |E'|)`` (the
            input edges first, in order) and ``alpha: (|E'|, H, K)``, summing to 1 over the
            edges into each node (0 where all responsibilities of a neighbourhood underflow).

        Example:
            >>> layer = FisherInformationEmbedding(4, 2)
            >>> edges, alpha = layer.attention_weights(torch.randn(3, 4), torch.tensor([[0], [1]]))
            >>> edges.shape, alpha.shape
            (torch.Size([2, 4]), torch.Size([4, 1, 2]))
        """
        self._check_x(x)
        self._check_graph(edge_index, edge_weight, x)
        src, dst, weight = self._edges(edge_index, edge_weight, x.size(0), x)
        log_gamma = self._log_responsibilities(self._features(x))
        if log_gamma.size(0) > 0:
            log_gamma = log_gamma - log_gamma.detach().amax(dim=0, keepdim=True)
        score = weight[:, None, None] * log_gamma.exp()[src]  # (E', H, K)
        total = torch.zeros_like(log_gamma).index_add_(0, dst, score)[dst]
        alpha = score / torch.where(total > 0, total, torch.ones_like(total))
        return torch.stack([src, dst]), alpha

    # --------------------------------------------------------------- unsupervised anchors

    @torch.no_grad()
    def init_means(
        self,
        x: Tensor,
        edge_index: Tensor | None = None,
        *,
        edge_weight: Tensor | None = None,
        iters: int = 50,
        seed: int = 0,
    ) -> Tensor:
        """Set the anchor means by spherical k-means of the features, without labels.

        With ``edge_index``, the clustered data is the union of the neighbourhood multisets
        the layer embeds: each node's feature counted with its total out-going edge weight
        (self loops included when the layer adds them), as the authors' code fits the anchor
        to sampled neighbour features; without, every node once. The features are normalised
        first (k-means on the sphere). Head :math:`h` runs with seed ``seed + h``; the mixture
        logits are reset to uniform weights. A cached adjacency is kept.

        Args:
            x: node features ``(|V|, d)``.
            edge_index: ``(2, |E|)`` int64, or ``None``. (default: ``None``)
            edge_weight: ``(|E|,)`` or ``None``. (default: ``None``)
            iters: Lloyd iterations at most. (default: ``50``)
            seed: seed of the k-means++ seeding. (default: ``0``)

        Returns:
            The cluster index of every node for head 0, ``(|V|,)`` int64.

        Example:
            >>> layer = FisherInformationEmbedding(3, 2)
            >>> layer.init_means(torch.randn(10, 3)).shape
            torch.Size([10])
        """
        self._check_x(x)
        _check_int("seed", seed, -(2**63))
        if x.size(0) < self.num_mixtures:
            raise ValueError(
                f"x must have at least num_mixtures={self.num_mixtures} rows to seed the "
                f"means, got {x.size(0)}"
            )
        if edge_index is None:
            if edge_weight is not None:
                raise ValueError("edge_weight needs edge_index")
            weight = None
        else:
            self._check_graph(edge_index, edge_weight, x)
            src, _, w = self._edges(edge_index, edge_weight, x.size(0), x)
            weight = torch.zeros(x.size(0), dtype=x.dtype, device=x.device).index_add_(
                0, src, w.detach()
            )
            if not float(weight.sum()) > 0:
                raise ValueError(
                    "edge_index and edge_weight must give some node a positive weight "
                    "(no edges and no self loops)"
                )
        assignment = None
        for h in range(self.heads):
            centers, labels = spherical_kmeans(
                x.detach(), self.num_mixtures, iters=iters, seed=seed + h, weight=weight
            )
            self.means[h].copy_(centers)
            assignment = labels if assignment is None else assignment
        self.mixture_logits.zero_()
        assert assignment is not None
        return assignment

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.in_channels}, num_mixtures={self.num_mixtures}, "
            f"heads={self.heads}, temperature={self.temperature:g}, normalize={self.normalize})"
        )


__all__ = ["FisherInformationEmbedding", "spherical_kmeans"]
