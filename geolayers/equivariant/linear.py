r"""Equivariant linear layers: the weight is a combination of the equivariant basis.

From `"A Practical Method for Constructing Equivariant Multilayer Perceptrons for Arbitrary Matrix
Groups" <https://arxiv.org/abs/2104.09459>`_ (Finzi, Welling, Wilson, ICML 2021): the
maps with :math:`\rho_{out}(g) W = W \rho_{in}(g)` for all :math:`g` are
:math:`\mathrm{vec}(W) = Q \theta` for an orthonormal basis :math:`Q` of the nullspace of the
constraints (:func:`~geolayers.groups.equivariant_basis`), and a bias must be an invariant vector
of :math:`\rho_{out}`.

A direct sum is handled summand type by summand type: ``16 * V**2 -> 16 * V**2`` of ``SO(3)``
needs one ``81 x 3`` basis and ``16 x 16 x 3`` coefficients, never the ``20736 x 768`` basis of the
whole sum (the two span the same space). Pairs whose matrices act by signed permutations use
:func:`~geolayers.groups.parameter_sharing`: ``W`` is gathered from the coefficients with signs,
in ``O(D_out D_in)``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geolayers._checks import describe
from geolayers.groups import Rep, Scalar, Sum, equivariant_basis, parameter_sharing

__all__ = ["EquivariantLinear"]


class _Layout(NamedTuple):
    """A representation as distinct summand types with multiplicities.

    ``types[t]`` occurs ``counts[t]`` times; grouping the copies of each type together (in order
    of first appearance) reorders the features, and ``inverse`` (or None when the order does not
    change) maps the original feature ``i`` to its grouped position.
    """

    types: tuple[Rep, ...]
    counts: tuple[int, ...]
    inverse: Tensor | None


def _layout(rep: Rep) -> _Layout:
    if not isinstance(rep, Sum):
        return _Layout((rep,), (1,), None)
    parts = rep.parts
    types: list[Rep] = []
    copies: list[list[int]] = []
    offset = 0
    for part in parts:
        if part in types:
            copies[types.index(part)].append(offset)
        else:
            types.append(part)
            copies.append([offset])
        offset += part.size
    order = torch.cat(
        [
            torch.arange(start, start + rep_t.size)
            for rep_t, starts in zip(types, copies, strict=True)
            for start in starts
        ]
    )
    identity = bool((order == torch.arange(rep.size)).all())
    inverse = None if identity else torch.argsort(order)
    return _Layout(tuple(types), tuple(len(c) for c in copies), inverse)


class _Block(NamedTuple):
    """The maps from ``m`` copies of an input type (size ``R``) to ``n`` copies of an output type
    (size ``S``): ``n * m * k`` coefficients from ``start`` in the flat parameter vector, folded
    with a dense basis (``kind == "dense"``), a signed gather (``"shared"``) or nothing (``k == 0``).
    """

    kind: str
    n: int
    m: int
    S: int
    R: int
    k: int
    start: int
    buffers: tuple[str, ...]


class _ExactBuffers(nn.Module):
    """Basis tensors as non-persistent buffers (derived from the representations, so not in the
    ``state_dict``) with float64 masters: casting the module to float64 after building it in
    float32 restores the exact basis, so the float64 layer is equivariant to ~1e-16 instead of
    keeping the float32 rounding (~1e-7) of its basis."""

    def __init__(self) -> None:
        super().__init__()
        self._masters: dict[str, Tensor] = {}

    def _add_basis(self, name: str, tensor: Tensor) -> None:
        if tensor.is_floating_point():
            self._masters[name] = tensor.to(torch.float64)
            tensor = tensor.to(torch.get_default_dtype())
        self.register_buffer(name, tensor, persistent=False)

    def _apply(self, fn, recurse: bool = True):
        super()._apply(fn, recurse)
        for name, master in self._masters.items():
            current = getattr(self, name)
            setattr(self, name, master.to(device=current.device, dtype=current.dtype))
        return self


class _Folded(_ExactBuffers):
    """Shared machinery of :class:`EquivariantLinear`: coefficient blocks folded into a dense
    matrix."""

    def _plan(self, prefix: str, rep_in: Rep, rep_out: Rep, start: int) -> tuple[list, int]:
        """Blocks (one row of blocks per output type) and the next free coefficient index."""
        lay_in, lay_out = _layout(rep_in), _layout(rep_out)
        rows = []
        for b, (r_out, n) in enumerate(zip(lay_out.types, lay_out.counts, strict=True)):
            row = []
            for a, (r_in, m) in enumerate(zip(lay_in.types, lay_in.counts, strict=True)):
                name = f"_{prefix}{b}_{a}"
                # Both signed permutations is what makes the sharing exist; checking it first
                # spares a failed attempt (and its constraint operators) for the other pairs.
                signed = r_in.is_signed_permutation and r_out.is_signed_permutation
                sharing = parameter_sharing(r_in, r_out) if signed else None
                if sharing is not None:
                    k = sharing.num_params
                    kept = sharing.index >= 0
                    count = torch.bincount(sharing.index[kept], minlength=k).to(torch.float64)
                    # Orbit indicators normalised to unit norm: the same orthonormal columns as
                    # equivariant_basis, so the two routes are one parametrisation.
                    values = torch.zeros(sharing.index.shape[0], dtype=torch.float64)
                    values[kept] = sharing.sign[kept] / count[sharing.index[kept]].sqrt()
                    self._add_basis(name + "_index", sharing.index.clamp_min(0))
                    self._add_basis(name + "_values", values)
                    kind, buffers = "shared", (name + "_index", name + "_values")
                else:
                    q = equivariant_basis(r_in, r_out)
                    k = q.shape[1]
                    self._add_basis(name + "_basis", q.T.contiguous())
                    kind, buffers = "dense", (name + "_basis",)
                if k == 0:
                    kind, buffers = "zero", ()
                row.append(_Block(kind, n, m, r_out.size, r_in.size, k, start, buffers))
                start += n * m * k
            rows.append(row)
        for side, lay in (("in", lay_in), ("out", lay_out)):
            if lay.inverse is not None:
                self.register_buffer(f"_{prefix}{side}_inverse", lay.inverse, persistent=False)
        return rows, start

    def _fold(self, prefix: str, rows: list, coeffs: Tensor | None, like: Tensor) -> Tensor:
        """The dense ``(D_out, D_in)`` matrix of the coefficients (once per call, not per sample)."""
        out_rows = []
        for row in rows:
            cols = []
            for blk in row:
                if blk.kind == "zero" or coeffs is None:
                    cols.append(like.new_zeros(blk.n * blk.S, blk.m * blk.R))
                    continue
                length = blk.n * blk.m * blk.k
                # Slicing is skipped for a block that holds every coefficient (the common case of
                # one summand type on each side): each autograd op costs microseconds here.
                c = coeffs if length == coeffs.shape[0] else coeffs[blk.start : blk.start + length]
                c = c.view(blk.n * blk.m, blk.k)
                if blk.kind == "dense":
                    w = c @ getattr(self, blk.buffers[0])  # (n m, S R)
                else:
                    index, values = (getattr(self, name) for name in blk.buffers)
                    w = c.index_select(1, index) * values
                if blk.m == 1 or blk.S == 1:
                    # (n, m, S, R) and (n, S, m, R) are the same memory when m or S is 1.
                    cols.append(w.view(blk.n * blk.S, blk.m * blk.R))
                    continue
                # (n, m, S, R) -> rows (n, S), columns (m, R): copy j of the input type feeds
                # copy i of the output type through the equivariant map sum_k c[i, j, k] Q_k.
                w = w.view(blk.n, blk.m, blk.S, blk.R).transpose(1, 2)
                cols.append(w.reshape(blk.n * blk.S, blk.m * blk.R))
            out_rows.append(cols[0] if len(cols) == 1 else torch.cat(cols, dim=1))
        W = out_rows[0] if len(out_rows) == 1 else torch.cat(out_rows, dim=0)
        inv_out = getattr(self, f"_{prefix}out_inverse", None)
        inv_in = getattr(self, f"_{prefix}in_inverse", None)
        if inv_out is not None:
            W = W.index_select(0, inv_out)
        if inv_in is not None:
            W = W.index_select(1, inv_in)
        return W


class EquivariantLinear(_Folded):
    r"""A linear layer that commutes with a group: :math:`\rho_{out}(g)\, f(x) = f(\rho_{in}(g) x)`.

    From `Finzi, Welling, Wilson, ICML 2021 <https://arxiv.org/abs/2104.09459>`_:

    .. math::
        f(x) = W x + b, \qquad \mathrm{vec}(W) = Q\,\theta, \qquad b = Q_b\,\beta,

    with :math:`Q` an orthonormal basis of the equivariant maps (``equivariant_basis(rep_in,
    rep_out)``, solved once and cached) and :math:`Q_b` one of the invariant vectors of
    ``rep_out``. Only :math:`\theta` and :math:`\beta` are learned. :math:`W` is folded from them
    once per forward call, by a gather with signs for signed permutation representations and a
    small matrix product otherwise, then applied as a dense ``F.linear``.

    Initialisation is variance preserving: :math:`\theta \sim \mathcal{N}(0, \sigma_t^2)` with
    :math:`\sigma_t^2 = S_t / \sum_a m_a k_{at}` for the maps into output summand type ``t`` of
    size :math:`S_t` (:math:`k_{at}` basis maps from each of the :math:`m_a` copies of input type
    ``a``), so that for unit-variance inputs the output features have mean variance 1. This is
    the fan-in scaling of a dense layer counted in basis maps; a basis map of Frobenius norm 1
    spreads its weight over :math:`S_t` rows. :math:`\beta` starts at 0.

    Args:
        rep_in: representation of the input (a :class:`~geolayers.groups.Rep`), size ``D_in``.
        rep_out: representation of the output, of the same group, size ``D_out``.
        bias: learn an invariant bias (nothing to learn when ``rep_out`` has no invariant
            vector). (default: ``True``)

    Shapes:
        - input ``x``: :math:`(*, D_{in})`
        - output: :math:`(*, D_{out})`, same dtype and device

    Attributes:
        weight: ``(num_weights,)`` coefficients :math:`\theta`.
        bias: ``(num_bias,)`` coefficients :math:`\beta`, or None.

    Example:
        >>> from geolayers.groups import SO3, Vector
        >>> V = Vector(SO3())
        >>> EquivariantLinear(V * V, V * V)(torch.randn(5, 9)).shape
        torch.Size([5, 9])
    """

    def __init__(self, rep_in: Rep, rep_out: Rep, bias: bool = True) -> None:
        super().__init__()
        for name, rep in (("rep_in", rep_in), ("rep_out", rep_out)):
            if not isinstance(rep, Rep):
                raise TypeError(f"{name} must be a Rep, got {describe(rep)}")
        if rep_in.G != rep_out.G:
            raise ValueError(
                f"rep_in and rep_out must be representations of one group, got {rep_in.G!r} and "
                f"{rep_out.G!r}"
            )
        if not isinstance(bias, bool):
            raise TypeError(f"bias must be a bool, got {type(bias).__name__}")
        self.rep_in, self.rep_out = rep_in, rep_out
        self.in_features, self.out_features = rep_in.size, rep_out.size
        self._weight_blocks, num_weights = self._plan("w", rep_in, rep_out, 0)
        self.num_weights = num_weights
        self.weight = nn.Parameter(torch.empty(num_weights))
        self.num_bias = 0
        if bias:
            self._bias_blocks, self.num_bias = self._plan("b", Scalar(rep_in.G), rep_out, 0)
        self.bias = nn.Parameter(torch.empty(self.num_bias)) if self.num_bias else None
        # The coefficients of all blocks into one output type share one init std (see above).
        self._init_std: list[tuple[int, int, float]] = []
        for row in self._weight_blocks:
            fan_in = sum(blk.m * blk.k for blk in row)
            std = math.sqrt(row[0].S / fan_in) if fan_in else 0.0
            self._init_std += [(b.start, b.n * b.m * b.k, std) for b in row if b.k]
        self.reset_parameters()

    @property
    def uses_sharing(self) -> bool:
        """True when every non-zero block is folded by parameter sharing (gather with signs)."""
        return all(b.kind != "dense" for row in self._weight_blocks for b in row)

    def reset_parameters(self) -> None:
        """Draw the weight coefficients (variance preserving, see above); zero the bias."""
        with torch.no_grad():
            for start, length, std in self._init_std:
                self.weight[start : start + length].normal_(0.0, std)
            if self.bias is not None:
                self.bias.zero_()

    def dense_weight(self) -> Tensor:
        """The equivariant matrix ``W: (D_out, D_in)`` of the current coefficients.

        Example:
            >>> from geolayers.groups import Symmetric, Vector
            >>> V = Vector(Symmetric(3))
            >>> EquivariantLinear(V, V).dense_weight().shape
            torch.Size([3, 3])
        """
        return self._fold("w", self._weight_blocks, self.weight, self.weight)

    def dense_bias(self) -> Tensor | None:
        """The invariant bias ``b: (D_out,)``, or None when the layer has no bias parameter."""
        if self.bias is None:
            return None
        return self._fold("b", self._bias_blocks, self.bias, self.bias).view(-1)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(
                f"x must have {self.in_features} features in its last axis ({self.rep_in!r}), "
                f"got shape {tuple(x.shape)}"
            )
        return F.linear(x, self.dense_weight(), self.dense_bias())

    def extra_repr(self) -> str:
        return (
            f"{self.rep_in!r} -> {self.rep_out!r}, {self.in_features} -> {self.out_features}, "
            f"weights={self.num_weights}, bias={self.num_bias}"
        )
