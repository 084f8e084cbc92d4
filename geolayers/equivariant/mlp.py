r"""Equivariant multilayer perceptrons: equivariant linear layers and legal non-linearities.

The architecture of EMLP (`Finzi, Welling, Wilson, ICML 2021 <https://arxiv.org/abs/2104.09459>`_):
:class:`~geolayers.equivariant.EquivariantLinear` layers between hidden representations, each
followed by a non-linearity that is equivariant for it (`Pacini et al., ICLR 2024
<https://arxiv.org/abs/2401.09235>`_, see :mod:`geolayers.equivariant.nonlinear`): a point-wise
activation where the representation allows it, otherwise a gated one. Gated (and norm) layers
also pass on the invariant quadratic forms of their features (:class:`QuadraticInvariants`):
linear maps and gates alone compute only constant invariants of the vectors of a connected
group, the role that EMLP's bilinear layers play.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from geolayers._checks import check_positive_int, describe
from geolayers.equivariant.linear import EquivariantLinear
from geolayers.equivariant.nonlinear import (
    GatedNonlinearity,
    NormNonlinearity,
    PointwiseNonlinearity,
    QuadraticInvariants,
    _resolve,
    _why_illegal,
    activation_kind,
    pointwise,
)
from geolayers.groups import Group, GroupTooLargeError, Regular, Rep, Scalar, Vector

__all__ = ["EquivariantMLP", "WithInvariants", "default_hidden_rep", "REGULAR_MAX"]

#: Finite groups of at most this order get regular hidden representations by default.
REGULAR_MAX = 64

_NONLINEARITIES = ("auto", "pointwise", "gated", "norm")


class WithInvariants(nn.Module):
    r"""A non-linearity followed by the invariant quadratic forms of its output, appended as
    scalars: :math:`y = \sigma(x)`, output :math:`(y, q(y))` with :math:`q` a
    :class:`QuadraticInvariants` of ``nonlinearity.rep_out``.

    Shapes:
        - input: :math:`(*, D_{in})`, ``nonlinearity.rep_in.size``
        - output: :math:`(*, D + n_{invariants})`, ``rep_out.size``
    """

    def __init__(self, nonlinearity: nn.Module, invariants: QuadraticInvariants) -> None:
        super().__init__()
        self.nonlinearity, self.invariants = nonlinearity, invariants
        self.rep_in = nonlinearity.rep_in
        self.rep_out = nonlinearity.rep_out + invariants.rep_out

    def forward(self, x: Tensor) -> Tensor:
        y = self.nonlinearity(x)
        return torch.cat([y, self.invariants(y)], dim=-1)


def default_hidden_rep(G: Group, multiplicity: int) -> Rep:
    r"""The hidden representation :class:`EquivariantMLP` uses for ``hidden=multiplicity``.

    * a finite group of order at most :data:`REGULAR_MAX`: ``multiplicity * Regular(G)``, a
      permutation representation, so any point-wise activation is legal (group convolution
      features);
    * otherwise ``multiplicity`` copies of ``Scalar + V``, plus ``V**2`` when ``d <= 4`` (tensors of
      order 2 for small defining representations, as EMLP's hidden layers mix tensor orders).

    Example:
        >>> from geolayers.groups import SO3, Dihedral
        >>> default_hidden_rep(SO3(), 2).size, default_hidden_rep(Dihedral(4), 2).size
        (26, 16)
    """
    if not isinstance(G, Group):
        raise TypeError(f"G must be a Group, got {describe(G)}")
    multiplicity = check_positive_int("multiplicity", multiplicity)
    if G.is_finite:
        try:
            small = G.order <= REGULAR_MAX
        except GroupTooLargeError:
            small = False
        if small:
            return multiplicity * Regular(G)
    V = Vector(G)
    rep = multiplicity * Scalar(G) + multiplicity * V
    return rep + multiplicity * (V * V) if G.d <= 4 else rep


class EquivariantMLP(nn.Module):
    r"""An equivariant multilayer perceptron
    :math:`f(\rho_{in}(g) x) = \rho_{out}(g) f(x)` (`EMLP, Finzi et al., ICML 2021
    <https://arxiv.org/abs/2104.09459>`_).

    .. math::
        f = L_{k+1} \circ \sigma_k \circ L_k \circ \dots \circ \sigma_1 \circ L_1,

    with :class:`EquivariantLinear` layers :math:`L_i` between ``rep_in``, the hidden
    representations :math:`H_1, \dots, H_k` and ``rep_out``, and non-linearities :math:`\sigma_i`
    legal on :math:`H_i`. With ``nonlinearity="auto"`` a point-wise activation is used where it
    is equivariant (a permutation :math:`H_i`; a signed permutation one and an odd activation),
    and a :class:`GatedNonlinearity` otherwise (the layer before it then also outputs one scalar
    gate per non-scalar summand). After a gated or norm non-linearity the invariant quadratic
    forms of the features are appended as scalars (``invariants=True``, :class:`WithInvariants`):
    without them the gates and scalars of an ``SO(3)`` network with vector input are constants
    and it cannot learn, say, :math:`|x|^2`.

    Args:
        rep_in: representation of the input.
        rep_out: representation of the output (same group).
        hidden_reps: the hidden representations, or one used for every hidden layer.
            (default: ``num_layers`` times :func:`default_hidden_rep` of ``hidden``)
        hidden: multiplicity of the default hidden representation; not with ``hidden_reps``.
            (default: ``16``)
        num_layers: number of hidden layers when ``hidden_reps`` is not a sequence. (default: ``2``)
        activation: a name in :data:`~geolayers.equivariant.nonlinear.ACTIVATIONS` or a callable.
            (default: ``"relu"``)
        nonlinearity: ``"auto"``, ``"pointwise"`` (raises ``ValueError`` where illegal),
            ``"gated"`` or ``"norm"`` (orthogonal representations). (default: ``"auto"``)
        bias: invariant biases in the linear layers. (default: ``True``)
        invariants: append quadratic invariants after gated and norm non-linearities.
            (default: ``True``)

    Shapes:
        - input: :math:`(*, D_{in})`
        - output: :math:`(*, D_{out})`

    Example:
        >>> from geolayers.groups import SO3, Scalar, Vector
        >>> G = SO3()
        >>> mlp = EquivariantMLP(Vector(G) * Vector(G), Scalar(G), hidden=4)
        >>> mlp(torch.randn(8, 9)).shape
        torch.Size([8, 1])
    """

    def __init__(
        self,
        rep_in: Rep,
        rep_out: Rep,
        hidden_reps: Rep | Sequence[Rep] | None = None,
        *,
        hidden: int | None = None,
        num_layers: int = 2,
        activation: str | Callable[[Tensor], Tensor] = "relu",
        nonlinearity: str = "auto",
        bias: bool = True,
        invariants: bool = True,
    ) -> None:
        super().__init__()
        for name, rep in (("rep_in", rep_in), ("rep_out", rep_out)):
            if not isinstance(rep, Rep):
                raise TypeError(f"{name} must be a Rep, got {describe(rep)}")
        if rep_in.G != rep_out.G:
            raise ValueError(
                f"rep_in and rep_out must be representations of one group, got {rep_in.G!r} and "
                f"{rep_out.G!r}"
            )
        if nonlinearity not in _NONLINEARITIES:
            raise ValueError(f"nonlinearity must be one of {_NONLINEARITIES}, got {nonlinearity!r}")
        num_layers = check_positive_int("num_layers", num_layers)
        if hidden_reps is not None and hidden is not None:
            raise ValueError("pass hidden_reps or hidden, not both")
        if hidden_reps is None:
            hidden_reps = default_hidden_rep(rep_in.G, 16 if hidden is None else hidden)
        if isinstance(hidden_reps, Rep):
            hidden_reps = [hidden_reps] * num_layers
        hidden_reps = list(hidden_reps)
        for i, rep in enumerate(hidden_reps):
            if not isinstance(rep, Rep) or rep.G != rep_in.G:
                got = repr(rep) if isinstance(rep, Rep) else describe(rep)
                raise ValueError(f"hidden_reps[{i}] must be a Rep of {rep_in.G!r}, got {got}")
        act_name, act = _resolve("activation", activation)
        kind = activation_kind(act)
        del act
        self.rep_in, self.rep_out, self.hidden_reps = rep_in, rep_out, tuple(hidden_reps)
        self.activation_name, self.nonlinearity = act_name, nonlinearity
        layers: list[nn.Module] = []
        prev = rep_in
        for rep in hidden_reps:
            nonlin = self._nonlinearity(rep, activation, kind, nonlinearity)
            if invariants and not isinstance(nonlin, PointwiseNonlinearity):
                quad = QuadraticInvariants(rep)
                nonlin = WithInvariants(nonlin, quad) if quad.num_invariants else nonlin
            layers += [EquivariantLinear(prev, nonlin.rep_in, bias=bias), nonlin]
            prev = nonlin.rep_out
        layers.append(EquivariantLinear(prev, rep_out, bias=bias))
        self.layers = nn.Sequential(*layers)

    @staticmethod
    def _nonlinearity(rep: Rep, act: str | Callable, kind: str, choice: str) -> nn.Module:
        if choice == "pointwise" or (choice == "auto" and _why_illegal(rep, "", kind) is None):
            return pointwise(rep, act)
        if choice == "norm":
            return NormNonlinearity(rep, act)
        return GatedNonlinearity(rep, act)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)

    def extra_repr(self) -> str:
        return f"{self.rep_in!r} -> {self.rep_out!r}, activation={self.activation_name}"
