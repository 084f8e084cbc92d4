"""Hamiltonian node embeddings (HamGNN, Kang et al. 2023): node features flow along the orbits
of a learned graph Hamiltonian, integrated with a symplectic scheme."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch_geometric.nn import MessagePassing
from torch_geometric.utils import degree

HAMILTONIANS = ("separable", "mlp")
INTEGRATORS = ("leapfrog", "symplectic_euler", "implicit_midpoint")
MOMENTUM_INITS = ("linear", "zeros")
_DEFAULT_INTEGRATOR = {"separable": "leapfrog", "mlp": "implicit_midpoint"}


class _Adjacency(NamedTuple):
    adj_t: Tensor
    adj: Tensor


class _SparseMatmul(torch.autograd.Function):
    """``a @ z`` for a constant sparse ``a``, differentiable any number of times in ``z``.

    The backward pass is the same function with ``a`` and its transpose swapped, so the
    gradient of ``H`` taken inside the flow (``create_graph=True``) can itself be
    differentiated in training.
    """

    @staticmethod
    def forward(ctx, a: Tensor, a_transposed: Tensor, z: Tensor) -> Tensor:
        ctx.a, ctx.a_transposed = a, a_transposed
        return torch.sparse.mm(a, z)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[None, None, Tensor]:
        return None, None, _SparseMatmul.apply(ctx.a_transposed, ctx.a, grad)


def _check_time_steps(time: object, steps: object) -> None:
    # bool is an int subclass: True would silently mean one step or T = 1.
    if isinstance(time, bool) or not isinstance(time, (int, float)):
        raise TypeError(f"time must be a number, got {type(time).__name__}")
    if not (math.isfinite(time) and time > 0):
        raise ValueError(f"time must be a finite number > 0, got {time!r}")
    if isinstance(steps, bool) or not isinstance(steps, int):
        raise TypeError(f"steps must be an int, got {type(steps).__name__}")
    if steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")


class HamiltonianNodeEmbedding(MessagePassing):
    r"""Node embedding by a learned Hamiltonian flow on the graph, from `"Node Embedding from
    Neural Hamiltonian Orbits in Graph Neural Networks" <https://arxiv.org/abs/2305.18965>`_
    (Kang et al., ICML 2023).

    The input features are the positions :math:`\mathbf{q}(0) = \mathbf{X}` of a Hamiltonian
    system on the graph; the momenta start at :math:`\mathbf{p}(0) = \mathbf{X}\mathbf{W}_p`
    (``momentum_init="linear"``, as the paper's learned momentum map, here linear) or at
    :math:`\mathbf{0}` (``"zeros"``). Both evolve for a time :math:`T` by Hamilton's equations
    (paper, Sec. 3)

    .. math::
        \frac{d\mathbf{q}}{dt} = \frac{\partial H}{\partial \mathbf{p}}, \qquad
        \frac{d\mathbf{p}}{dt} = -\frac{\partial H}{\partial \mathbf{q}},

    and the layer returns :math:`\mathbf{q}(T)` (or :math:`[\mathbf{q}(T) \,\|\, \mathbf{p}(T)]`).
    The graph enters :math:`H` through the symmetrically normalised neighbour aggregate
    :math:`\hat{\mathbf{A}}\mathbf{z}`, :math:`(\hat{\mathbf{A}}\mathbf{z})_i = \sum_{j \in
    \mathcal{N}(i)} \mathbf{z}_j / \sqrt{d_i d_j}` (message passing; no self loops: a node's own
    state enters separately). Two learned Hamiltonians (the paper's family of learnable
    :math:`H`, reduced to two forms with a single tanh hidden layer of width :math:`h`):

    * ``"separable"``, kinetic plus graph potential,

      .. math::
          H = \sum_i \tfrac12 \mathbf{p}_i^\top \mathbf{M}^{-1} \mathbf{p}_i + V(\mathbf{q}),
          \qquad V(\mathbf{q}) = \sum_i \mathbf{w}^\top \tanh\big(\mathbf{W}_s \mathbf{q}_i
          + \mathbf{W}_n (\hat{\mathbf{A}}\mathbf{q})_i + \mathbf{b}\big),

      with a learned diagonal :math:`\mathbf{M}^{-1} = \mathrm{diag}(\mathrm{softplus}(\rho))`
      (1 at initialisation). The force :math:`-\partial V / \partial \mathbf{q}_i` gathers from
      the node and its neighbours, like a graph convolution.
    * ``"mlp"``, non-separable: the same kinetic term plus
      :math:`\sum_i \mathbf{w}^\top \tanh(\mathbf{W}_1 \mathbf{q}_i + \mathbf{W}_2 \mathbf{p}_i
      + \mathbf{W}_3 (\hat{\mathbf{A}}\mathbf{q})_i + \mathbf{W}_4 (\hat{\mathbf{A}}\mathbf{p})_i
      + \mathbf{b})`, coupling positions and momenta of a node and its neighbours.

    Gradients of :math:`H` come from :func:`torch.autograd.grad` (with ``create_graph`` while
    gradients are enabled, so training differentiates through the flow). The flow is integrated
    with ``steps`` steps of size :math:`h = T / \text{steps}` of a symplectic integrator
    (Hairer, Lubich and Wanner, *Geometric Numerical Integration*, 2006, Sec. I.1 and VI.3):

    * ``"leapfrog"`` (Störmer-Verlet, order 2, explicit, separable :math:`H` only):

      .. math::
          \mathbf{p}_{n+\frac12} = \mathbf{p}_n - \tfrac{h}{2}\nabla V(\mathbf{q}_n), \quad
          \mathbf{q}_{n+1} = \mathbf{q}_n + h \mathbf{M}^{-1}\mathbf{p}_{n+\frac12}, \quad
          \mathbf{p}_{n+1} = \mathbf{p}_{n+\frac12} - \tfrac{h}{2}\nabla V(\mathbf{q}_{n+1});

    * ``"symplectic_euler"`` (order 1): :math:`\mathbf{p}_{n+1} = \mathbf{p}_n - h\,\partial_q
      H(\mathbf{q}_n, \mathbf{p}_{n+1})`, :math:`\mathbf{q}_{n+1} = \mathbf{q}_n + h\,\partial_p
      H(\mathbf{q}_n, \mathbf{p}_{n+1})`; explicit for separable :math:`H`, otherwise the
      implicit equation for :math:`\mathbf{p}_{n+1}` is solved by fixed-point iteration;
    * ``"implicit_midpoint"`` (order 2, any :math:`H`): :math:`\mathbf{z}_{n+1} = \mathbf{z}_n +
      h\,\mathbf{J}\nabla H\big(\tfrac12(\mathbf{z}_n + \mathbf{z}_{n+1})\big)` with
      :math:`\mathbf{z} = (\mathbf{q}, \mathbf{p})`, :math:`\mathbf{J} = \begin{pmatrix} 0 & I
      \\ -I & 0 \end{pmatrix}`, solved by ``fixed_point_iters`` fixed-point iterations from an
      explicit Euler guess.

    The implicit schemes are symplectic up to the residual of the fixed-point iteration, which
    shrinks by a factor of about :math:`hL/2` per iteration (:math:`L` the Lipschitz constant of
    :math:`\nabla H`); the iteration converges only for :math:`hL < 2`, so take more ``steps``
    when :math:`H` is steep. Leapfrog costs one evaluation of :math:`\nabla V` per step; the
    implicit schemes ``fixed_point_iters + 1`` (midpoint) or ``+ 2`` (Euler) evaluations of
    :math:`\nabla H`.

    A symplectic integrator does not conserve :math:`H` exactly: the energy error is
    :math:`O(h^r)` for an integrator of order :math:`r` (2 for leapfrog and implicit midpoint,
    1 for symplectic Euler) and, by backward error analysis, stays bounded over long times
    instead of drifting (Hairer, Lubich and Wanner, Sec. IX.8). Leapfrog and implicit midpoint
    are also symmetric: for the ``"separable"`` form, whose :math:`H` is even in
    :math:`\mathbf{p}`, integrating from :math:`(\mathbf{q}(T), -\mathbf{p}(T))` returns to
    :math:`(\mathbf{q}(0), -\mathbf{p}(0))` up to rounding. The ``"mlp"`` form is not even in
    :math:`\mathbf{p}`, so flipping the momentum does not reverse its flow.

    Relation to the paper: its reference code evolves every node under a node-wise learned
    :math:`H` with an ODE solver and aggregates neighbours after the flow; here the graph enters
    :math:`H` itself, so the flow is a message-passing flow (a node's force depends on its
    neighbours), and the integrators are written out instead of taken from an ODE library.

    Args:
        channels: feature width ``d`` of ``q`` and ``p``.
        hamiltonian: ``"separable"`` or ``"mlp"``. (default: ``"separable"``)
        time: integration time ``T > 0``. (default: ``1.0``)
        steps: integration steps, ``>= 1``. (default: ``4``)
        integrator: ``"leapfrog"``, ``"symplectic_euler"``, ``"implicit_midpoint"`` or ``None``
            for leapfrog with a separable and implicit midpoint with an ``"mlp"`` Hamiltonian.
            (default: ``None``)
        hidden_channels: hidden width ``h`` of the Hamiltonian. (default: ``None``, ``channels``)
        momentum_init: ``"linear"`` (learned :math:`\mathbf{W}_p`) or ``"zeros"``.
            (default: ``"linear"``)
        return_momentum: return :math:`[\mathbf{q}(T) \,\|\, \mathbf{p}(T)]` instead of
            :math:`\mathbf{q}(T)`. (default: ``False``)
        fixed_point_iters: fixed-point iterations per step of the implicit schemes, ``>= 1``.
            (default: ``3``)
        cached: keep the normalised adjacency of the first call and reuse it (transductive
            learning on one fixed graph: later ``edge_index`` arguments are then ignored, as
            with :class:`~torch_geometric.nn.conv.GCNConv`). (default: ``False``)

    Shapes:
        - **input:** node features ``x: (|V|, d)``, edge indices ``edge_index: (2, |E|)`` int64
          (source, target), node ids in ``0..|V|-1``.
        - **output:** ``(|V|, d)``, or ``(|V|, 2d)`` with ``return_momentum=True``.

    Example:
        >>> HamiltonianNodeEmbedding(8)(torch.randn(5, 8), torch.tensor([[0, 1], [1, 0]])).shape
        torch.Size([5, 8])
    """

    def __init__(
        self,
        channels: int,
        hamiltonian: str = "separable",
        time: float = 1.0,
        steps: int = 4,
        integrator: str | None = None,
        hidden_channels: int | None = None,
        momentum_init: str = "linear",
        return_momentum: bool = False,
        fixed_point_iters: int = 3,
        cached: bool = False,
    ) -> None:
        super().__init__(aggr="add")
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"channels must be a positive int, got {channels!r}")
        if hamiltonian not in HAMILTONIANS:
            raise ValueError(
                f"hamiltonian must be one of {list(HAMILTONIANS)}, got {hamiltonian!r}"
            )
        integrator = _DEFAULT_INTEGRATOR[hamiltonian] if integrator is None else integrator
        if integrator not in INTEGRATORS:
            raise ValueError(
                f"integrator must be one of {list(INTEGRATORS)} or None, got {integrator!r}"
            )
        if integrator == "leapfrog" and hamiltonian != "separable":
            raise ValueError(
                "integrator='leapfrog' needs a separable Hamiltonian (hamiltonian='separable'); "
                f"for hamiltonian={hamiltonian!r} use 'implicit_midpoint' or 'symplectic_euler'"
            )
        _check_time_steps(time, steps)
        hidden = channels if hidden_channels is None else hidden_channels
        if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
            raise ValueError(f"hidden_channels must be a positive int or None, got {hidden!r}")
        if momentum_init not in MOMENTUM_INITS:
            raise ValueError(
                f"momentum_init must be one of {list(MOMENTUM_INITS)}, got {momentum_init!r}"
            )
        if (
            isinstance(fixed_point_iters, bool)
            or not isinstance(fixed_point_iters, int)
            or fixed_point_iters < 1
        ):
            raise ValueError(f"fixed_point_iters must be an int >= 1, got {fixed_point_iters!r}")

        self.channels = channels
        self.hamiltonian_type = hamiltonian
        self.time = float(time)
        self.steps = steps
        self.integrator = integrator
        self.hidden_channels = hidden
        self.momentum_init = momentum_init
        self.return_momentum = return_momentum
        self.fixed_point_iters = fixed_point_iters
        self.cached = cached
        self._cached_adjacency: _Adjacency | None = None
        self.out_channels = 2 * channels if return_momentum else channels

        self.inv_mass_raw = nn.Parameter(torch.empty(channels))
        # Inputs of the tanh layer: [q, Aq] for "separable", [q, p, Aq, Ap] for "mlp".
        inputs = 2 if hamiltonian == "separable" else 4
        self.lin_in = nn.Linear(inputs * channels, hidden)
        self.lin_out = nn.Linear(hidden, 1, bias=False)
        self.lin_momentum = nn.Linear(channels, channels) if momentum_init == "linear" else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        self._cached_adjacency = None
        # softplus(log(e - 1)) = 1: unit masses at initialisation.
        nn.init.constant_(self.inv_mass_raw, math.log(math.e - 1.0))
        self.lin_in.reset_parameters()
        self.lin_out.reset_parameters()
        if self.lin_momentum is not None:
            self.lin_momentum.reset_parameters()

    # ----------------------------------------------------------------------------- energy

    @property
    def inv_mass(self) -> Tensor:
        """The diagonal of :math:`\\mathbf{M}^{-1}`, ``(d,)``, positive."""
        return nn.functional.softplus(self.inv_mass_raw)

    def _adjacency(self, edge_index: Tensor, num_nodes: int, dtype: torch.dtype) -> _Adjacency:
        """:math:`\\hat{\\mathbf{A}}` (rows = targets) and its transpose, sparse COO.

        Weights are :math:`1/\\sqrt{d_i d_j}` with in-degrees :math:`d`; isolated nodes get no
        messages. Built once per forward pass and reused by every evaluation of :math:`H`.
        """
        cache = self._cached_adjacency
        if (
            self.cached
            and cache is not None
            and cache.adj.dtype == dtype
            and cache.adj.device == edge_index.device
        ):
            if cache.adj.size(0) != num_nodes:
                raise ValueError(
                    f"x must have the {cache.adj.size(0)} nodes of the graph cached by the first "
                    f"call (cached=True), got {num_nodes}; call reset_parameters() or use "
                    "cached=False for a new graph"
                )
            return cache
        src, dst = edge_index
        deg = degree(dst, num_nodes, dtype=dtype)
        deg_inv_sqrt = deg.pow(-0.5).masked_fill(deg == 0, 0.0)
        weight = deg_inv_sqrt[src] * deg_inv_sqrt[dst]
        shape = (num_nodes, num_nodes)
        adj_t = torch.sparse_coo_tensor(
            torch.stack([dst, src]), weight, shape, check_invariants=True
        ).coalesce()
        adj = torch.sparse_coo_tensor(
            torch.stack([src, dst]), weight, shape, check_invariants=True
        ).coalesce()
        if self.cached:
            self._cached_adjacency = _Adjacency(adj_t, adj)
        return _Adjacency(adj_t, adj)

    def message_and_aggregate(self, adj_t: Tensor, x: Tensor, adj: Tensor) -> Tensor:
        # One sparse-dense product per aggregation: an order of magnitude faster on CPU than
        # gathering |E| messages and scattering them back (measured on the Facebook graph).
        return _SparseMatmul.apply(adj_t, adj, x)

    def _aggregate_neighbours(self, z: Tensor, adjacency: _Adjacency) -> Tensor:
        return self.propagate(adjacency.adj_t, x=z, adj=adjacency.adj)

    def _kinetic(self, p: Tensor) -> Tensor:
        return 0.5 * (self.inv_mass * p.square()).sum()

    def _coupling(self, q: Tensor, p: Tensor | None, adjacency: _Adjacency) -> Tensor:
        """The learned part: :math:`V(\\mathbf{q})` (separable) or the q-p coupling (mlp)."""
        if self.hamiltonian_type == "separable":
            parts = [q, self._aggregate_neighbours(q, adjacency)]
        else:
            assert p is not None
            both = self._aggregate_neighbours(torch.cat([q, p], dim=-1), adjacency)
            parts = [q, p, both]
        return self.lin_out(torch.tanh(self.lin_in(torch.cat(parts, dim=-1)))).sum()

    def hamiltonian(self, q: Tensor, p: Tensor, edge_index: Tensor) -> Tensor:
        """The total energy :math:`H(\\mathbf{q}, \\mathbf{p})` of the graph, a 0-dim tensor.

        Args:
            q: positions ``(|V|, d)``.
            p: momenta ``(|V|, d)``.
            edge_index: ``(2, |E|)`` int64.

        Example:
            >>> layer = HamiltonianNodeEmbedding(4)
            >>> layer.hamiltonian(torch.randn(3, 4), torch.randn(3, 4), torch.tensor([[0], [1]])).shape
            torch.Size([])
        """
        self._check_inputs(q, edge_index, "q")
        self._check_inputs(p, edge_index, "p")
        adjacency = self._adjacency(edge_index, q.size(0), q.dtype)
        return self._kinetic(p) + self._coupling(q, p, adjacency)

    # -------------------------------------------------------------------------- gradients

    @staticmethod
    def _leaf(z: Tensor) -> Tensor:
        # autograd.grad(H, z) sums every path from H back to z. H must be differentiated in its
        # arguments as independent variables, but inside the flow one argument can depend on
        # the other (symplectic Euler evaluates H(q_n, p_{n+1}) with p_{n+1} built from q_n),
        # and then the total derivative would be taken: a wrong force, and a graph that grows
        # exponentially with the fixed-point iterations. A fresh view is a new node that only
        # H uses, so the gradient with respect to it is the partial derivative. A tensor outside
        # any graph (no-grad inference) gets requires_grad instead.
        return z.view_as(z) if z.requires_grad else z.detach().requires_grad_(True)

    def _grad_potential(self, q: Tensor, adjacency: _Adjacency, create: bool) -> Tensor:
        """:math:`\\nabla V(\\mathbf{q})` of the separable Hamiltonian."""
        with torch.enable_grad():
            q = self._leaf(q)
            (grad_q,) = torch.autograd.grad(
                self._coupling(q, None, adjacency), q, create_graph=create
            )
        return grad_q

    def _grad_hamiltonian(
        self, q: Tensor, p: Tensor, adjacency: _Adjacency, create: bool
    ) -> tuple[Tensor, Tensor]:
        """:math:`(\\partial H / \\partial \\mathbf{q}, \\partial H / \\partial \\mathbf{p})`."""
        # The kinetic gradient M^{-1} p is written out: autograd would return the same at the
        # cost of one more backward pass per evaluation.
        kinetic = self.inv_mass * p
        if self.hamiltonian_type == "separable":
            return self._grad_potential(q, adjacency, create), kinetic
        with torch.enable_grad():
            q, p = self._leaf(q), self._leaf(p)
            grad_q, grad_p = torch.autograd.grad(
                self._coupling(q, p, adjacency), (q, p), create_graph=create
            )
        return grad_q, grad_p + kinetic

    # -------------------------------------------------------------------------- integrators

    def integrate(
        self,
        q: Tensor,
        p: Tensor,
        edge_index: Tensor,
        *,
        time: float | None = None,
        steps: int | None = None,
        return_trajectory: bool = False,
    ) -> tuple[Tensor, Tensor]:
        """Integrate Hamilton's equations from ``(q, p)`` with the layer's integrator.

        Args:
            q: positions ``(|V|, d)``.
            p: momenta ``(|V|, d)``.
            edge_index: ``(2, |E|)`` int64.
            time: integration time. (default: ``None``, the layer's ``time``)
            steps: number of steps. (default: ``None``, the layer's ``steps``)
            return_trajectory: return every state, ``(steps + 1, |V|, d)`` each, instead of
                the final one. (default: ``False``)

        Returns:
            ``(q(T), p(T))``, each ``(|V|, d)``, or the stacked trajectories.

        Example:
            >>> layer = HamiltonianNodeEmbedding(4)
            >>> q, p = layer.integrate(torch.randn(3, 4), torch.zeros(3, 4), torch.tensor([[0], [1]]))
        """
        time = self.time if time is None else time
        steps = self.steps if steps is None else steps
        _check_time_steps(time, steps)
        self._check_inputs(q, edge_index, "q")
        self._check_inputs(p, edge_index, "p")
        if p.shape != q.shape:
            raise ValueError(f"p must have the shape of q {tuple(q.shape)}, got {tuple(p.shape)}")
        return self._integrate(q, p, edge_index, float(time), steps, return_trajectory)

    def _integrate(
        self, q: Tensor, p: Tensor, edge_index: Tensor, time: float, steps: int, trajectory: bool
    ) -> tuple[Tensor, Tensor]:
        # Without grad mode (inference), each step is detached so no graph builds up.
        create = torch.is_grad_enabled()
        adjacency = self._adjacency(edge_index, q.size(0), q.dtype)
        h = time / steps
        qs, ps = [q], [p]
        separable = self.hamiltonian_type == "separable"
        force = None
        for _ in range(steps):
            if self.integrator == "leapfrog":
                # The force at the end of a step is the force at the start of the next one.
                if force is None:
                    force = self._grad_potential(q, adjacency, create)
                p = p - 0.5 * h * force
                q = q + h * self.inv_mass * p
                force = self._grad_potential(q, adjacency, create)
                p = p - 0.5 * h * force
            elif self.integrator == "symplectic_euler":
                if separable:
                    p = p - h * self._grad_potential(q, adjacency, create)
                    q = q + h * self.inv_mass * p
                else:
                    p_next = p
                    for _ in range(self.fixed_point_iters + 1):
                        grad_q, _ = self._grad_hamiltonian(q, p_next, adjacency, create)
                        p_next = p - h * grad_q
                    _, grad_p = self._grad_hamiltonian(q, p_next, adjacency, create)
                    q, p = q + h * grad_p, p_next
            else:
                grad_q, grad_p = self._grad_hamiltonian(q, p, adjacency, create)
                q_next, p_next = q + h * grad_p, p - h * grad_q
                for _ in range(self.fixed_point_iters):
                    grad_q, grad_p = self._grad_hamiltonian(
                        0.5 * (q + q_next), 0.5 * (p + p_next), adjacency, create
                    )
                    q_next, p_next = q + h * grad_p, p - h * grad_q
                q, p = q_next, p_next
            if not create:
                q, p = q.detach(), p.detach()
            if trajectory:
                qs.append(q)
                ps.append(p)
        if trajectory:
            return torch.stack(qs), torch.stack(ps)
        return q, p

    # ---------------------------------------------------------------------------- forward

    def _check_inputs(self, x: Tensor, edge_index: Tensor, name: str = "x") -> None:
        if not isinstance(x, Tensor) or not x.is_floating_point():
            got = x.dtype if isinstance(x, Tensor) else type(x).__name__
            raise TypeError(f"{name} must be a floating-point tensor, got {got}")
        if x.dim() != 2 or x.size(1) != self.channels:
            raise ValueError(
                f"{name} must have shape (num_nodes, {self.channels}) (channels={self.channels}), "
                f"got {tuple(x.shape)}"
            )
        if x.dtype != self.lin_in.weight.dtype:
            raise TypeError(
                f"{name} must have the layer's dtype {self.lin_in.weight.dtype}, got {x.dtype}; "
                "convert the layer with .to(dtype) or the input"
            )
        if not isinstance(edge_index, Tensor) or edge_index.dtype != torch.long:
            got = edge_index.dtype if isinstance(edge_index, Tensor) else type(edge_index).__name__
            raise TypeError(f"edge_index must be an int64 (torch.long) tensor, got {got}")
        if edge_index.dim() != 2 or edge_index.size(0) != 2:
            raise ValueError(f"edge_index must have shape (2, E), got {tuple(edge_index.shape)}")
        if edge_index.numel() > 0:
            low, high = int(edge_index.min()), int(edge_index.max())
            if low < 0 or high >= x.size(0):
                raise ValueError(
                    f"edge_index must hold node ids in 0..{x.size(0) - 1} ({name} has "
                    f"{x.size(0)} rows), got ids in {low}..{high}"
                )

    def initial_momentum(self, q: Tensor) -> Tensor:
        """:math:`\\mathbf{p}(0)` from the positions ``q: (|V|, d)``: ``q W_p`` or zeros."""
        return torch.zeros_like(q) if self.lin_momentum is None else self.lin_momentum(q)

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        """Embed the nodes: ``x: (|V|, d)``, ``edge_index: (2, |E|)`` -> ``(|V|, d)`` (or
        ``(|V|, 2d)`` with ``return_momentum``)."""
        self._check_inputs(x, edge_index)
        q, p = self._integrate(
            x, self.initial_momentum(x), edge_index, self.time, self.steps, trajectory=False
        )
        return torch.cat([q, p], dim=-1) if self.return_momentum else q

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.channels}, hamiltonian={self.hamiltonian_type!r}, "
            f"integrator={self.integrator!r}, time={self.time}, steps={self.steps})"
        )


__all__ = ["HAMILTONIANS", "INTEGRATORS", "HamiltonianNodeEmbedding"]
