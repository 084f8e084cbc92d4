r"""Non-linearities that keep a layer equivariant, and the rule for which ones are legal.

A function applied coordinate by coordinate, :math:`\sigma(x)_i = \sigma(x_i)`, commutes with
:math:`\rho(g)` for every :math:`g` only in a few cases (`"A Characterization Theorem for
Equivariant Networks with Point-wise Activations" <https://arxiv.org/abs/2401.09235>`_, Pacini,
Dong, Lepri, Santin, ICLR 2024):

* any activation, when every :math:`\rho(g)` is a permutation matrix (regular and permutation
  representations, scalars);
* odd activations (:math:`\sigma(-x) = -\sigma(x)`, e.g. ``tanh``), when every :math:`\rho(g)` is
  a signed permutation matrix (``V`` of ``C_4``, ``D_4``, ``Q_8``); ReLU is not equivariant there;
* linear activations, always.

In particular a connected compact group such as ``SO(3)`` acts by signed permutations only on
scalars (its Lie algebra must act by zero). Everything else needs a non-linearity built for the
representation: :class:`GatedNonlinearity` (scalar gates, `Weiler et al., NeurIPS 2018
<https://arxiv.org/abs/1807.02547>`_) for any representation, or :class:`NormNonlinearity`
(a function of the norm of each block) for orthogonal ones. :func:`pointwise` checks the rule
and says which to use instead.

Linear maps and gates alone cannot make a non-constant invariant of the vector features of a
connected group (``SO(3)`` has no linear map ``V -> Scalar``, so every gate would be a
constant): :class:`QuadraticInvariants` supplies the invariant quadratic forms of the features,
the bilinear source of invariants that EMLP's bilinear layers play the role of.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geolayers._checks import describe, safe_sqrt
from geolayers.equivariant.linear import _ExactBuffers
from geolayers.groups import Rep, Scalar, Sum, invariant_basis

__all__ = [
    "ACTIVATIONS",
    "activation_kind",
    "pointwise",
    "PointwiseNonlinearity",
    "GatedNonlinearity",
    "NormNonlinearity",
    "QuadraticInvariants",
]

#: Activations known by name. Callables (functions, modules) are accepted too.
ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": F.relu,
    "leaky_relu": F.leaky_relu,
    "elu": F.elu,
    "gelu": F.gelu,
    "silu": F.silu,
    "swish": F.silu,
    "softplus": F.softplus,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "sin": torch.sin,
    "softsign": F.softsign,
    "hardtanh": F.hardtanh,
    "tanhshrink": F.tanhshrink,
    "identity": lambda x: x,
}

_ODD_EXAMPLES = "'tanh', 'sin' or 'softsign'"

#: Where the rule on point-wise activations comes from, quoted by every error message.
_PAPER = "Pacini et al., ICLR 2024, arXiv:2401.09235"


def _resolve(name: str, activation: str | Callable[[Tensor], Tensor]) -> tuple[str, Callable]:
    """``(display name, function)`` of an activation given by name or as a callable."""
    if isinstance(activation, str):
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"{name} must be one of {sorted(ACTIVATIONS)} or a callable, got {activation!r}"
            )
        return activation, ACTIVATIONS[activation]
    if not callable(activation):
        raise TypeError(f"{name} must be a str or a callable, got {describe(activation)}")
    label = getattr(activation, "__name__", None) or type(activation).__name__
    return label, activation


def activation_kind(activation: str | Callable[[Tensor], Tensor]) -> str:
    r"""``"linear"``, ``"odd"`` or ``"general"``: which representations the activation may act on
    point-wise (any, signed permutations, permutations).

    Decided numerically on a grid of 121 points in ``[-6, 6]`` in float64: odd when
    :math:`\sigma(-x) = -\sigma(x)`, linear when moreover :math:`\sigma(x) = x \sigma(1)`.

    Example:
        >>> activation_kind("tanh"), activation_kind("relu"), activation_kind(lambda x: 2 * x)
        ('odd', 'general', 'linear')
    """
    _, fn = _resolve("activation", activation)
    xs = torch.linspace(-6.0, 6.0, 121, dtype=torch.float64)
    try:
        ys, neg, one = fn(xs), fn(-xs), fn(torch.ones(1, dtype=torch.float64))
        tol = 1e-12
    except RuntimeError:  # e.g. a module whose parameters are float32
        xs = xs.float()
        ys, neg, one = fn(xs), fn(-xs), fn(torch.ones(1))
        tol = 1e-6
    ys, neg, one = (t.detach().to(torch.float64) for t in (ys, neg, one))
    xs = xs.to(torch.float64)
    scale = max(1.0, float(ys.abs().max()))
    if float((neg + ys).abs().max()) > tol * scale:
        return "general"
    return "linear" if float((ys - xs * one).abs().max()) <= tol * scale else "odd"


def _why_illegal(rep: Rep, name: str, kind: str) -> str | None:
    """Why ``name`` (of ``kind``) may not act point-wise on ``rep``, or None when it may."""
    if kind == "linear" or rep.is_permutation:
        return None
    if rep.is_signed_permutation:
        if kind == "odd":
            return None
        return (
            f"activation {name!r} is not odd, so it is not equivariant point-wise on {rep!r}: "
            f"some elements act by signed permutations, and flipping the sign of a coordinate "
            f"commutes with a point-wise function only when f(-x) = -f(x) ({_PAPER}). Use an odd "
            f"activation ({_ODD_EXAMPLES}), a permutation representation (e.g. Regular(G)), or "
            f"GatedNonlinearity / NormNonlinearity instead"
        )
    return (
        f"activation {name!r} is not equivariant point-wise on {rep!r}: its elements do not act "
        f"by (signed) permutations of the coordinates, and only those commute with a point-wise "
        f"non-linear function ({_PAPER}). Use GatedNonlinearity(rep) (scalar gates, any "
        f"representation) or NormNonlinearity(rep) (norms of the blocks, orthogonal "
        f"representations) instead, or a permutation representation such as Regular(G) for a "
        f"finite group"
    )


class PointwiseNonlinearity(nn.Module):
    r"""An activation applied coordinate by coordinate on a representation where that is legal;
    build it with :func:`pointwise`, which checks the rule.

    Shapes:
        - input: :math:`(*, D)`, ``D = rep.size``
        - output: :math:`(*, D)`
    """

    def __init__(self, rep: Rep, name: str, fn: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.rep_in = self.rep_out = self.rep = rep
        self.name = name
        # Registered as a child when it is a module, so .to() reaches its parameters.
        self.fn = fn

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x)

    def extra_repr(self) -> str:
        return f"{self.name} on {self.rep!r}"


def pointwise(
    rep: Rep, activation: str | Callable[[Tensor], Tensor] = "relu"
) -> PointwiseNonlinearity:
    r"""A point-wise activation on ``rep``, after checking that it is equivariant.

    Legal (`Pacini et al., ICLR 2024 <https://arxiv.org/abs/2401.09235>`_): any activation on a
    permutation representation, an odd one on a signed permutation representation, a linear one
    anywhere (see :func:`activation_kind`).

    Args:
        rep: the representation of the features.
        activation: a name in :data:`ACTIVATIONS` or a callable. (default: ``"relu"``)

    Raises:
        ValueError: saying why the activation is not equivariant on ``rep`` and what to use
            instead (an odd activation, :class:`GatedNonlinearity`, :class:`NormNonlinearity`).

    Example:
        >>> from geolayers.groups import Cyclic, Vector
        >>> pointwise(Vector(Cyclic(4)), "tanh")
        PointwiseNonlinearity(tanh on V of Cyclic(4))
    """
    if not isinstance(rep, Rep):
        raise TypeError(f"rep must be a Rep, got {describe(rep)}")
    name, fn = _resolve("activation", activation)
    why = _why_illegal(rep, name, activation_kind(fn))
    if why is not None:
        raise ValueError(why)
    return PointwiseNonlinearity(rep, name, fn)


def _parts(rep: Rep) -> tuple[Rep, ...]:
    return rep.parts if isinstance(rep, Sum) else (rep,)


class GatedNonlinearity(nn.Module):
    r"""Gated non-linearity (`Weiler, Geiger, Welling, Boomsma, Cohen, NeurIPS 2018
    <https://arxiv.org/abs/1807.02547>`_): every non-scalar summand is multiplied by a
    function of its own invariant scalar gate; scalar summands get the activation directly.

    .. math::
        y_s = \sigma(x_s) \ \text{for scalar summands}, \qquad
        y_b = x_b\, \gamma(s_b) \ \text{for the others},

    where the gates :math:`s_b` are extra scalar inputs, one per non-scalar summand, appended after
    the features. Equivariant for any representation: a scalar times a vector commutes with every
    linear :math:`\rho(g)`. The layer before it must therefore output :attr:`rep_in`
    (``rep + num_gates * Scalar``).

    Args:
        rep: representation of the output features.
        activation: for the scalar summands (any: they are invariant). (default: ``"relu"``)
        gate: :math:`\gamma`, applied to the gates. (default: ``"sigmoid"``)

    Shapes:
        - input: :math:`(*, D + n_{gates})`, ``rep_in.size``
        - output: :math:`(*, D)`, ``rep.size``

    Example:
        >>> from geolayers.groups import SO3, Scalar, Vector
        >>> G = SO3()
        >>> gated = GatedNonlinearity(2 * Scalar(G) + 3 * Vector(G))
        >>> gated.num_gates, gated(torch.randn(4, gated.rep_in.size)).shape
        (3, torch.Size([4, 11]))
    """

    def __init__(
        self,
        rep: Rep,
        activation: str | Callable[[Tensor], Tensor] = "relu",
        gate: str | Callable[[Tensor], Tensor] = "sigmoid",
    ) -> None:
        super().__init__()
        if not isinstance(rep, Rep):
            raise TypeError(f"rep must be a Rep, got {describe(rep)}")
        self.rep = self.rep_out = rep
        self.activation_name, self.activation = _resolve("activation", activation)
        self.gate_name, self.gate = _resolve("gate", gate)
        scalar = Scalar(rep.G)
        source, is_scalar, gates, offset = [], [], 0, 0
        for part in _parts(rep):
            if part == scalar:
                source.append(torch.tensor([offset]))
                is_scalar.append(True)
            else:
                # Every feature of this summand reads the summand's gate, stored after the features.
                source.append(torch.full((part.size,), rep.size + gates))
                is_scalar += [False] * part.size
                gates += 1
            offset += part.size
        self.num_gates = gates
        self.rep_in = rep + gates * scalar if gates else rep
        self.register_buffer("_source", torch.cat(source), persistent=False)
        self.register_buffer("_is_scalar", torch.tensor(is_scalar), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        values = x[..., : self.rep.size]
        gated = values * self.gate(x[..., self._source])
        return torch.where(self._is_scalar, self.activation(values), gated)

    def extra_repr(self) -> str:
        return (
            f"{self.rep!r}, gates={self.num_gates}, activation={self.activation_name}, "
            f"gate={self.gate_name}"
        )


def _orthogonal(rep: Rep, atol: float = 1e-9) -> bool:
    """Whether every ``rho(g)`` is orthogonal: orthogonal discrete generators and antisymmetric
    images of the Lie algebra (then every product and exponential is orthogonal)."""
    G = rep.G
    if G.discrete_generators.shape[0]:
        R = rep.rho(G.discrete_generators)
        eye = torch.eye(rep.size, dtype=R.dtype).expand_as(R)
        if not torch.allclose(R @ R.mT, eye, atol=atol):
            return False
    if G.lie_algebra.shape[0]:
        A = rep.drho(G.lie_algebra)
        if not torch.allclose(A, -A.mT, atol=atol):
            return False
    return True


#: The norm is floored at this value before dividing by it (per dtype).
_NORM_EPS = {torch.float64: 1e-12, torch.float32: 1e-6, torch.float16: 1e-3, torch.bfloat16: 1e-3}


class NormNonlinearity(nn.Module):
    r"""Norm non-linearity: every non-scalar summand is rescaled by a function of its norm
    (the norm-ReLU of `Worrall et al., CVPR 2017 <https://arxiv.org/abs/1612.04642>`_ and
    `Weiler et al., NeurIPS 2018 <https://arxiv.org/abs/1807.02547>`_); scalar summands get the
    activation directly.

    .. math::
        y_b = \frac{x_b}{\lVert x_b \rVert}\, \sigma\big(\lVert x_b \rVert + \beta_b\big),

    with a learned :math:`\beta_b` per summand, initialised to -1 (so with ReLU, blocks of norm
    below 1 are switched off). Equivariant when every summand acts by orthogonal matrices, which
    keep its norm: for the ``Sum`` of copies of ``V`` of a Lie group these are the ``V`` blocks.

    Args:
        rep: representation of the features; every non-scalar summand must be orthogonal.
        activation: :math:`\sigma`, also used on the scalar summands. (default: ``"relu"``)
        bias: learn :math:`\beta` (else it stays 0). (default: ``True``)

    Raises:
        ValueError: when a summand is not orthogonal (use :class:`GatedNonlinearity`).

    Shapes:
        - input: :math:`(*, D)`
        - output: :math:`(*, D)`

    Example:
        >>> from geolayers.groups import SO3, Vector
        >>> NormNonlinearity(4 * Vector(SO3()))(torch.randn(2, 12)).shape
        torch.Size([2, 12])
    """

    def __init__(
        self,
        rep: Rep,
        activation: str | Callable[[Tensor], Tensor] = "relu",
        bias: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(rep, Rep):
            raise TypeError(f"rep must be a Rep, got {describe(rep)}")
        self.rep = self.rep_in = self.rep_out = rep
        self.activation_name, self.activation = _resolve("activation", activation)
        scalar = Scalar(rep.G)
        checked: dict[Rep, bool] = {}
        block, is_scalar, blocks = [], [], 0
        for part in _parts(rep):
            if part == scalar:
                block.append(-1)
                is_scalar.append(True)
                continue
            if part not in checked:
                checked[part] = _orthogonal(part)
            if not checked[part]:
                raise ValueError(
                    f"NormNonlinearity needs summands whose matrices are orthogonal (so that "
                    f"their norm is invariant), but {part!r} in rep is not; use "
                    f"GatedNonlinearity(rep) instead"
                )
            block += [blocks] * part.size
            is_scalar += [False] * part.size
            blocks += 1
        self.num_blocks = blocks
        # Scalars are summed into an extra block whose value is never used.
        index = torch.tensor([b if b >= 0 else blocks for b in block])
        self.register_buffer("_block", index, persistent=False)
        self.register_buffer("_is_scalar", torch.tensor(is_scalar), persistent=False)
        self.bias = nn.Parameter(torch.empty(blocks)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.bias is not None:
            nn.init.constant_(self.bias, -1.0)

    def forward(self, x: Tensor) -> Tensor:
        squares = x.new_zeros(*x.shape[:-1], self.num_blocks + 1)
        norm = safe_sqrt(squares.index_add(-1, self._block, x * x))
        shifted = (
            norm if self.bias is None else norm + torch.cat([self.bias, self.bias.new_zeros(1)])
        )
        scale = self.activation(shifted) / norm.clamp_min(_NORM_EPS.get(x.dtype, 1e-12))
        return torch.where(self._is_scalar, self.activation(x), x * scale[..., self._block])

    def extra_repr(self) -> str:
        return f"{self.rep!r}, blocks={self.num_blocks}, activation={self.activation_name}"


class QuadraticInvariants(_ExactBuffers):
    r"""The invariant quadratic forms of every copy of every non-scalar summand.

    .. math::
        q_{c,k}(x) = x_c^\top B_k\, x_c, \qquad \rho_T(g)^\top B_k\, \rho_T(g) = B_k,

    for each copy :math:`x_c` of a summand type :math:`T` and an orthonormal basis :math:`B_k`
    of the invariant bilinear forms of :math:`T` (the invariant vectors of ``T.T * T.T``). For
    ``V`` of ``SO(3)`` this is :math:`|x_c|^2 / \sqrt{3}`. The outputs are invariant scalars,
    quadratic in ``x``: the source of non-constant gates and scalars for
    :class:`GatedNonlinearity` networks of connected groups (see the module notes).

    Args:
        rep: representation of the features.

    Attributes:
        num_invariants: number of outputs; ``rep_out`` is ``num_invariants * Scalar`` (None when
            there are none).

    Shapes:
        - input: :math:`(*, D)`
        - output: :math:`(*, n_{invariants})`

    Example:
        >>> from geolayers.groups import SO3, Vector
        >>> V = Vector(SO3())
        >>> QuadraticInvariants(2 * V + V * V).num_invariants  # |v1|^2, |v2|^2, 3 for V**2
        5
    """

    def __init__(self, rep: Rep) -> None:
        super().__init__()
        if not isinstance(rep, Rep):
            raise TypeError(f"rep must be a Rep, got {describe(rep)}")
        self.rep_in = rep
        scalar = Scalar(rep.G)
        offsets: dict[Rep, list[int]] = {}
        start = 0
        for part in _parts(rep):
            if part != scalar:
                offsets.setdefault(part, []).append(start)
            start += part.size
        self._types: list[tuple[int, int, int, int]] = []
        for t, (part, starts) in enumerate(offsets.items()):
            forms = invariant_basis(part.T * part.T)  # vec(B) row-major, (S * S, k)
            S, k = part.size, forms.shape[1]
            if k == 0:
                continue
            self._add_basis(f"_forms{t}", forms.T.reshape(k, S, S))
            index = (torch.tensor(starts)[:, None] + torch.arange(S)[None, :]).reshape(-1)
            self.register_buffer(f"_index{t}", index, persistent=False)
            self._types.append((t, len(starts), S, k))
        self.num_invariants = sum(m * k for _, m, _, k in self._types)
        self.rep_out = self.num_invariants * scalar if self.num_invariants else None

    def forward(self, x: Tensor) -> Tensor:
        lead = x.shape[:-1]
        out = []
        for t, m, S, k in self._types:
            xs = x.index_select(-1, getattr(self, f"_index{t}")).view(*lead, m, 1, S)
            forms = getattr(self, f"_forms{t}")  # (k, S, S)
            bx = (forms @ xs.unsqueeze(-1)).squeeze(-1)  # (*, m, k, S): B_k x_c
            out.append((bx * xs).sum(-1).reshape(*lead, m * k))
        if not out:
            return x.new_zeros(*lead, 0)
        return out[0] if len(out) == 1 else torch.cat(out, dim=-1)

    def extra_repr(self) -> str:
        return f"{self.rep_in!r}, invariants={self.num_invariants}"
