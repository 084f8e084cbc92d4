r"""Soft equivariance: a penalty that pulls the linear layers of any model towards the
equivariant maps of several candidate groups, with strengths that the data sets.

From `"Regularizing Towards Soft Equivariance Under Mixed Symmetries"
<https://arxiv.org/abs/2306.00356>`_ (Kim, Lee, Yang, Lee, ICML 2023), the projection-based
equivariance regularizer of a model with linear layers :math:`y = W_l x + b_l` and a candidate
group :math:`G_j` (representations :math:`\rho^{(l)}_{in}, \rho^{(l)}_{out}` of :math:`G_j` on
the input and output of layer :math:`l`):

.. math::
    R_j(\theta) = \sum_l \tfrac12 \lVert W_l - P_{G_j} W_l \rVert_F^2
                 + \tfrac12 \lVert b_l - P_{G_j} b_l \rVert^2,
    \qquad
    \mathcal{L}(\theta) = \mathcal{L}_{data}(\theta) + \sum_j \lambda_j R_j(\theta),

where :math:`P_{G_j} W` is the orthogonal (Frobenius) projection onto the maps with
:math:`\rho_{out}(g) W = W \rho_{in}(g)` and :math:`P_{G_j} b` the projection onto the
invariant vectors of :math:`\rho_{out}` (:math:`R_j = 0` exactly when every matched layer is
:math:`G_j`-equivariant, which with pointwise nonlinearities and permutation representations
on the hidden layers makes the whole network equivariant). The projections come from
:mod:`geolayers.groups`: an orbit average for signed permutation representations
(:func:`~geolayers.groups.parameter_sharing`, ``O(D)``), else :math:`Q Q^\top` with the
orthonormal :func:`~geolayers.groups.equivariant_basis` ``Q``.

**Strengths.** The paper tunes the strengths during training, without being told which
symmetries hold. The authors' reference implementation (``AdjustEquiv`` in their training
script) trains with fixed, equal strengths for a warm-up and then rescales each by how far its
regularizer (the smallest value seen) is from the smallest of all:

.. math::
    \lambda_j \leftarrow \lambda_j \left(\frac{\min_k R_k}{R_j}\right)^{p},

so a symmetry that the data respect (the weights stay near its equivariant subspace: small
:math:`R_j`) keeps its strength, and one the data break loses strength in proportion. Here
:meth:`SoftEquivarianceRegularizer.update_strengths` applies that rule to an exponential moving
average :math:`\bar R_j` of the penalties, from the initial strengths :math:`\lambda^0_j` (so
calling it every step does not compound), after ``warmup`` calls:

.. math::
    \bar R_j \leftarrow m \bar R_j + (1 - m) R_j, \qquad
    \lambda_j = \lambda^0_j \left(\frac{\min_k \bar R_k + \epsilon}{\bar R_j + \epsilon}\right)^{p}.

That is :math:`\lambda_j \propto 1 / \bar R_j` for :math:`p = 1`, normalised so that the most
nearly respected candidate has its initial strength.

With ``normalize=True`` each :math:`\bar R_j` is first divided by its value for isotropic
random weights of the same norm, :math:`\tfrac12 \lVert W \rVert^2 (1 - r/D)` (``r`` the
dimension of the equivariant subspace among ``D`` entries). Groups constrain very different
fractions of the weights (``1 - 1/|G|`` for regular representations of a finite group, so 1/2
for a sign flip, against ``1 - 2/n^2`` for ``S_n`` acting on ``k`` copies of
:math:`\mathbb{R}^n`); the raw :math:`R_j` of a weak constraint is small for any weights, and
the normalised one compares candidates on the fraction of their constraint that is violated.
This is an addition of geolayers, off by default.

Example:
    >>> from torch import nn
    >>> from geolayers.groups import Symmetric, Vector, Scalar
    >>> V = Vector(Symmetric(3))
    >>> model = nn.Sequential(nn.Linear(3, 3), nn.Tanh(), nn.Linear(3, 1))
    >>> reg = SoftEquivarianceRegularizer(model, [("S3", V, V), ("S3", V, Scalar(V.G))])
    >>> bool(reg() > 0)
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from geolayers._checks import describe
from geolayers.groups import (
    Group,
    Rep,
    Scalar,
    equivariant_projector,
    parameter_sharing,
)

__all__ = ["SoftEquivarianceRegularizer", "soft_equivariance_penalty"]


class _Projection(nn.Module):
    r"""Orthogonal projection :math:`P` of ``R^D`` onto the equivariant maps ``rep_in ->
    rep_out`` (flattened row-major, ``D = D_out * D_in``), as buffers.

    Signed permutation representations use parameter sharing: ``P w`` replaces each entry by
    the signed mean of its orbit (``O(D)``, no basis matrix); others the dense orthonormal basis
    ``Q: (D, r)`` and ``P w = Q (Q^T w)``. The two agree: the basis columns of a signed
    permutation representation are the normalised orbit indicators.
    """

    def __init__(self, rep_in: Rep, rep_out: Rep) -> None:
        super().__init__()
        self.size = rep_in.size * rep_out.size
        sharing = parameter_sharing(rep_in, rep_out)
        if sharing is not None:
            index, sign, rank = sharing
            # Entries that no equivariant map can have (index -1) point at an extra slot whose
            # sum stays 0, since their sign is 0: one gather, no masking.
            slot = torch.where(index < 0, rank, index)
            counts = torch.bincount(slot, minlength=rank + 1).to(torch.float64).clamp_min(1.0)
            self.register_buffer("slot", slot)
            self.register_buffer("sign", sign)
            self.register_buffer("inv_counts", 1.0 / counts)
            self.basis = None
        else:
            self.register_buffer("basis", equivariant_projector(rep_in, rep_out).basis)
            rank = self.basis.shape[1]
        self.rank = int(rank)

    def forward(self, x: Tensor) -> Tensor:
        """``P x`` for ``x: (D,)``."""
        # The casts are no-ops once the buffers match x (move the regularizer with .to()).
        if self.basis is None:
            slot = self.slot.to(x.device)
            sign = self.sign.to(device=x.device, dtype=x.dtype)
            sums = x.new_zeros(self.rank + 1).index_add(0, slot, sign * x)
            return sign * (sums * self.inv_counts.to(device=x.device, dtype=x.dtype))[slot]
        q = self.basis.to(device=x.device, dtype=x.dtype)
        return q @ (q.T @ x)

    def extra_repr(self) -> str:
        kind = "dense" if self.basis is not None else "sharing"
        return f"size={self.size}, rank={self.rank}, {kind}"


def _half_residual(x: Tensor, proj: _Projection) -> Tensor:
    r""":math:`\tfrac12 \lVert x - P x \rVert^2` for a flat ``x``."""
    return 0.5 * (x - proj(x)).square().sum()


def _check_rep_pair(name: str, rep_in: object, rep_out: object) -> None:
    for what, rep in (("rep_in", rep_in), ("rep_out", rep_out)):
        if not isinstance(rep, Rep):
            raise TypeError(f"{name}: {what} must be a Rep, got {describe(rep)}")
    if rep_in.G != rep_out.G:
        raise ValueError(
            f"{name}: rep_in and rep_out must be representations of one group, got "
            f"{rep_in.G!r} and {rep_out.G!r}"
        )


def soft_equivariance_penalty(
    weight: Tensor, bias: Tensor | None, rep_in: Rep, rep_out: Rep
) -> Tensor:
    r"""The regularizer of one linear layer (Kim et al. 2023):
    :math:`\tfrac12 \lVert W - P_G W \rVert_F^2 + \tfrac12 \lVert b - P_G b \rVert^2`.

    Its gradient is the non-equivariant part, :math:`(W - P_G W, b - P_G b)`.

    Args:
        weight: ``W: (D_out, D_in)``, as ``nn.Linear.weight``.
        bias: ``b: (D_out,)``, or ``None``.
        rep_in: representation of the layer's input (size ``D_in``).
        rep_out: representation of its output (same group, size ``D_out``).

    Returns:
        A scalar tensor of ``weight``'s dtype, differentiable in ``weight`` and ``bias``.

    Example:
        >>> from geolayers.groups import Symmetric, Vector
        >>> V = Vector(Symmetric(3))
        >>> soft_equivariance_penalty(torch.eye(3), None, V, V)
        tensor(0.)
    """
    _check_rep_pair("soft_equivariance_penalty", rep_in, rep_out)
    shape = (rep_out.size, rep_in.size)
    if not isinstance(weight, Tensor) or not weight.is_floating_point() or weight.shape != shape:
        raise ValueError(f"weight must be a floating {shape} tensor, got {describe(weight)}")
    if bias is not None and (
        not isinstance(bias, Tensor) or bias.shape != (rep_out.size,) or bias.dtype != weight.dtype
    ):
        raise ValueError(
            f"bias must be None or a ({rep_out.size},) tensor of weight's dtype {weight.dtype}, "
            f"got {describe(bias)}"
        )
    out = _half_residual(weight.reshape(-1), _Projection(rep_in, rep_out).to(weight.device))
    if bias is not None:
        proj_b = _Projection(Scalar(rep_out.G), rep_out).to(weight.device)
        out = out + _half_residual(bias, proj_b)
    return out


class _Term:
    """One (layer, candidate) pair: the layer and the projections of its weight and bias."""

    __slots__ = ("layer", "candidate", "proj_w", "proj_b")

    def __init__(
        self, layer: nn.Linear, candidate: int, proj_w: _Projection, proj_b: _Projection | None
    ) -> None:
        self.layer, self.candidate, self.proj_w, self.proj_b = layer, candidate, proj_w, proj_b


def _check_float(name: str, value: object, low: float, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError(f"{name} must be a finite float, got {value!r}")
    if value < low or (high is not None and value > high):
        rng = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be {rng}, got {value}")
    return float(value)


class SoftEquivarianceRegularizer(nn.Module):
    r"""Penalty :math:`\sum_j \lambda_j R_j` pulling the ``nn.Linear`` layers of ``model``
    towards equivariance under each candidate group, with automatic strengths
    (`Kim et al., ICML 2023 <https://arxiv.org/abs/2306.00356>`_; rule in the module notes).

    .. math::
        R_j = \sum_{l} \tfrac12 \lVert W_l - P_{G_j} W_l \rVert_F^2
              + \tfrac12 \lVert b_l - P_{G_j} b_l \rVert^2, \qquad
        \lambda_j = \lambda^0_j \Big(\frac{\min_k \bar R_k + \epsilon}
                                          {\bar R_j + \epsilon}\Big)^{p}.

    A candidate is a name (or a :class:`~geolayers.groups.Group`, named by its ``repr``) and,
    for each layer shape it constrains, a pair of representations of one group: every
    ``nn.Linear`` of ``model`` (``model.modules()``, in order) with ``in_features ==
    rep_in.size`` and ``out_features == rep_out.size`` is matched. Several layers of one shape
    (the hidden layers of an MLP) share the pair; a layer a candidate has no pair for is left
    free by that candidate. The model is not a submodule: ``.to()`` moves only the buffers
    (projections and strengths).

    Use: ``loss = data_loss + reg()``; after the optimiser step, ``reg.update_strengths()``
    (it uses the penalties of the last call).

    Args:
        model: the model whose ``nn.Linear`` layers are regularized.
        candidates: triples ``(name_or_group, rep_in, rep_out)``; triples with the same name
            form one candidate. A name may not give two different pairs for one layer shape.
        strength: initial strength :math:`\lambda^0`, one float for all candidates or one per
            candidate (in order of first appearance), ``>= 0``. (default: ``1.0``)
        power: exponent :math:`p >= 0` of the update; 0 keeps the strengths fixed.
            (default: ``1.0``)
        momentum: EMA factor :math:`m \in [0, 1)` of the penalties seen by
            :meth:`update_strengths`. (default: ``0.9``)
        warmup: calls of :meth:`update_strengths` that only accumulate the EMA before the
            strengths start to move (the paper trains with equal strengths first).
            (default: ``0``)
        eps: :math:`\epsilon >= 0`, keeps the ratio finite when a candidate is met exactly.
            (default: ``1e-12``)
        bias: also regularize the biases towards invariant vectors. (default: ``True``)
        normalize: compare :math:`\bar R_j` relative to isotropic random weights (module
            notes). (default: ``False``)

    Shapes:
        - **output:** scalar, the dtype of the matched weights.
        - :meth:`penalties`: ``(J,)`` for ``J`` candidates; :attr:`lambdas`: ``(J,)`` float64.

    Raises:
        ValueError: a candidate with no matching layer, or two pairs for one shape.

    Example:
        >>> from torch import nn
        >>> from geolayers.groups import Symmetric, Vector, Scalar
        >>> V = Vector(Symmetric(4))
        >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
        >>> H = 2 * V
        >>> reg = SoftEquivarianceRegularizer(model, [("S4", V, H), ("S4", H, Scalar(V.G))])
        >>> reg.strengths
        {'S4': 1.0}
    """

    lambdas: Tensor
    base_lambdas: Tensor
    ema: Tensor
    num_updates: Tensor

    def __init__(
        self,
        model: nn.Module,
        candidates: Sequence[tuple[str | Group, Rep, Rep]],
        *,
        strength: float | Sequence[float] = 1.0,
        power: float = 1.0,
        momentum: float = 0.9,
        warmup: int = 0,
        eps: float = 1e-12,
        bias: bool = True,
        normalize: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {describe(model)}")
        self.power = _check_float("power", power, 0.0)
        self.momentum = _check_float("momentum", momentum, 0.0, 1.0)
        if self.momentum == 1.0:
            raise ValueError("momentum must be < 1 (1 would never update the average), got 1.0")
        self.eps = _check_float("eps", eps, 0.0)
        if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
            raise ValueError(f"warmup must be an int >= 0, got {warmup!r}")
        self.warmup, self.bias, self.normalize = warmup, bool(bias), bool(normalize)

        self.names, pairs = self._parse_candidates(candidates)
        num = len(self.names)
        if isinstance(strength, (int, float)) and not isinstance(strength, bool):
            strengths = [_check_float("strength", strength, 0.0)] * num
        else:
            if not isinstance(strength, Sequence) or len(strength) != num:
                raise ValueError(
                    f"strength must be a float or {num} floats (one per candidate "
                    f"{self.names}), got {strength!r}"
                )
            strengths = [_check_float(f"strength[{i}]", s, 0.0) for i, s in enumerate(strength)]

        # One projection per distinct pair of representations, shared by the layers using it.
        self.projections = nn.ModuleDict()
        cache: dict[tuple[Rep, Rep], _Projection] = {}

        def projection(rep_in: Rep, rep_out: Rep) -> _Projection:
            if (rep_in, rep_out) not in cache:
                cache[rep_in, rep_out] = _Projection(rep_in, rep_out)
                self.projections[str(len(cache) - 1)] = cache[rep_in, rep_out]
            return cache[rep_in, rep_out]

        layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
        terms: list[_Term] = []
        for j, name in enumerate(self.names):
            found = 0
            for layer in layers:
                pair = pairs[j].get((layer.in_features, layer.out_features))
                if pair is None:
                    continue
                rep_in, rep_out = pair
                proj_b = None
                if self.bias and layer.bias is not None:
                    proj_b = projection(Scalar(rep_out.G), rep_out)
                terms.append(_Term(layer, j, projection(rep_in, rep_out), proj_b))
                found += 1
            if not found:
                shapes = sorted({(m.in_features, m.out_features) for m in layers})
                raise ValueError(
                    f"candidate {name!r} matches no nn.Linear of model: its (in, out) sizes "
                    f"{sorted(pairs[j])} are not among the model's {shapes}"
                )
        # A plain list: the layers belong to the model, not to this module.
        self._terms = terms

        base = torch.tensor(strengths, dtype=torch.float64)
        self.register_buffer("base_lambdas", base)
        self.register_buffer("lambdas", base.clone())
        self.register_buffer("ema", torch.zeros(num, dtype=torch.float64))
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))
        self._last: Tensor | None = None
        self._last_scale: Tensor | None = None

    @staticmethod
    def _parse_candidates(
        candidates: object,
    ) -> tuple[list[str], list[dict[tuple[int, int], tuple[Rep, Rep]]]]:
        if isinstance(candidates, (str, bytes)) or not isinstance(candidates, Sequence):
            raise TypeError(
                "candidates must be a sequence of (name_or_group, rep_in, rep_out) triples, got "
                f"{describe(candidates)}"
            )
        if not candidates:
            raise ValueError("candidates must hold at least one (name, rep_in, rep_out) triple")
        names: list[str] = []
        groups: list[Group] = []
        pairs: list[dict[tuple[int, int], tuple[Rep, Rep]]] = []
        for i, item in enumerate(candidates):
            if not isinstance(item, (tuple, list)) or len(item) != 3:
                raise TypeError(
                    f"candidates[{i}] must be a (name_or_group, rep_in, rep_out) triple, got "
                    f"{describe(item)}"
                )
            key, rep_in, rep_out = item
            _check_rep_pair(f"candidates[{i}]", rep_in, rep_out)
            if isinstance(key, Group):
                if key != rep_in.G:
                    raise ValueError(
                        f"candidates[{i}]: the representations are of {rep_in.G!r}, not of the "
                        f"group {key!r} given"
                    )
                name = repr(key)
            elif isinstance(key, str) and key:
                name = key
            else:
                raise TypeError(
                    f"candidates[{i}][0] must be a non-empty name or a Group, got {describe(key)}"
                )
            if name not in names:
                names.append(name)
                groups.append(rep_in.G)
                pairs.append({})
            j = names.index(name)
            if rep_in.G != groups[j]:
                raise ValueError(
                    f"candidates[{i}]: candidate {name!r} mixes groups {groups[j]!r} and "
                    f"{rep_in.G!r}; give each group its own name"
                )
            shape = (rep_in.size, rep_out.size)
            old = pairs[j].get(shape)
            if old is not None and old != (rep_in, rep_out):
                raise ValueError(
                    f"candidates[{i}]: candidate {name!r} gives two different pairs of "
                    f"representations for layers of (in, out) = {shape}: {old} and "
                    f"{(rep_in, rep_out)}; layers are matched by shape"
                )
            pairs[j][shape] = (rep_in, rep_out)
        return names, pairs

    # -- the penalty ------------------------------------------------------------------------

    def penalties(self) -> Tensor:
        r"""The regularizers :math:`R_j`, ``(J,)``, differentiable in the model's weights.

        Example:
            >>> from torch import nn
            >>> from geolayers.groups import Symmetric, Vector
            >>> V = Vector(Symmetric(2))
            >>> lin = nn.Linear(2, 2, bias=False)
            >>> _ = lin.weight.data.copy_(torch.tensor([[1.0, 0.0], [0.0, 3.0]]))
            >>> SoftEquivarianceRegularizer(lin, [("S2", V, V)]).penalties()  # 0.5 * (1 + 1)
            tensor([1.], grad_fn=<StackBackward0>)
        """
        return self._penalties()[0]

    def _penalties(self) -> tuple[Tensor, Tensor | None]:
        """``R: (J,)`` and, with ``normalize``, the isotropic baselines (detached)."""
        values: list[Tensor | None] = [None] * len(self.names)
        scales: list[float] = [0.0] * len(self.names)
        for term in self._terms:
            w = term.layer.weight.reshape(-1)
            r = _half_residual(w, term.proj_w)
            if self.normalize:
                scales[term.candidate] += self._iso(w, term.proj_w)
            if term.proj_b is not None:
                r = r + _half_residual(term.layer.bias, term.proj_b)
                if self.normalize:
                    scales[term.candidate] += self._iso(term.layer.bias, term.proj_b)
            j = term.candidate
            values[j] = r if values[j] is None else values[j] + r
        # Every candidate matched at least one layer (checked in __init__).
        out = torch.stack(values)
        scale = torch.tensor(scales, dtype=torch.float64) if self.normalize else None
        return out, scale

    @staticmethod
    def _iso(x: Tensor, proj: _Projection) -> float:
        r""":math:`E[\tfrac12 \lVert x' - P x' \rVert^2]` over isotropic ``x'`` with
        ``|x'| = |x|``: the complement holds the fraction ``1 - r/D`` of the squared norm."""
        return 0.5 * float(x.detach().square().sum()) * (1.0 - proj.rank / proj.size)

    def forward(self) -> Tensor:
        r""":math:`\sum_j \lambda_j R_j`, a scalar; remembers the :math:`R_j` for
        :meth:`update_strengths`."""
        values, scale = self._penalties()
        self._last, self._last_scale = values.detach(), scale
        return (self.lambdas.to(device=values.device, dtype=values.dtype) * values).sum()

    # -- the strengths ------------------------------------------------------------------------

    @torch.no_grad()
    def update_strengths(self, penalties: Tensor | None = None) -> Tensor:
        r"""One step of the strength rule (module notes): update the EMA :math:`\bar R` with
        ``penalties`` (default: those of the last :meth:`forward`) and, past ``warmup`` calls,
        set :math:`\lambda_j = \lambda^0_j ((\min_k \bar R_k + \epsilon) / (\bar R_j +
        \epsilon))^p`.

        Args:
            penalties: ``(J,)`` values of :math:`R_j` (with ``normalize``, already divided by
                their isotropic baselines). (default: the last forward's)

        Returns:
            The strengths :attr:`lambdas` ``(J,)`` float64.

        Example:
            >>> from torch import nn
            >>> from geolayers.groups import Symmetric, Vector
            >>> V = Vector(Symmetric(2))
            >>> reg = SoftEquivarianceRegularizer(
            ...     nn.Linear(2, 2), [("a", V, V), ("b", V, V)], momentum=0.0
            ... )
            >>> reg.update_strengths(torch.tensor([1.0, 4.0]))
            tensor([1.0000, 0.2500], dtype=torch.float64)
        """
        if penalties is None:
            if self._last is None:
                raise RuntimeError(
                    "update_strengths() needs penalties: call the regularizer first, or pass them"
                )
            values = self._last.to(torch.float64).cpu()
            if self.normalize:
                values = values / self._last_scale.clamp_min(torch.finfo(torch.float64).tiny)
        else:
            if not isinstance(penalties, Tensor) or penalties.shape != (len(self.names),):
                raise ValueError(
                    f"penalties must be a ({len(self.names)},) tensor (one per candidate "
                    f"{self.names}), got {describe(penalties)}"
                )
            values = penalties.detach().to(torch.float64).cpu()
        if not bool(torch.isfinite(values).all()) or bool((values < 0).any()):
            raise ValueError(f"penalties must be finite and >= 0, got {values.tolist()}")
        values = values.to(self.ema.device)
        if int(self.num_updates) == 0:
            self.ema.copy_(values)
        else:
            self.ema.mul_(self.momentum).add_((1.0 - self.momentum) * values)
        self.num_updates += 1
        if int(self.num_updates) > self.warmup:
            ratio = (self.ema.min() + self.eps) / (self.ema + self.eps)
            # 0/0 (every candidate met exactly with eps=0) means no evidence either way.
            ratio = torch.nan_to_num(ratio, nan=1.0)
            self.lambdas.copy_(self.base_lambdas * ratio.pow(self.power))
        return self.lambdas.clone()

    def reset_strengths(self) -> None:
        """Back to the initial strengths, with an empty average."""
        self.lambdas.copy_(self.base_lambdas)
        self.ema.zero_()
        self.num_updates.zero_()
        self._last = self._last_scale = None

    @property
    def strengths(self) -> dict[str, float]:
        """The current strengths :math:`\\lambda_j` by candidate name."""
        return {n: float(v) for n, v in zip(self.names, self.lambdas, strict=True)}

    def __repr__(self) -> str:
        strengths = ", ".join(f"{n}={v:.3g}" for n, v in self.strengths.items())
        return (
            f"{type(self).__name__}(candidates={self.names}, terms={len(self._terms)}, "
            f"strengths=({strengths}), power={self.power}, normalize={self.normalize})"
        )
