r"""Canonicalization of sets and graphs under permutations: sort the elements by a learned score.

The :math:`S_n` case of `"Equivariance with Learned Canonicalization Functions"
<https://arxiv.org/abs/2211.06489>`_ (Kaba et al., ICML 2023): a permutation-equivariant network
gives every element a score, :math:`s(\sigma \cdot X) = \sigma \cdot s(X)`, and the canonical
order is the sort of the scores. Sorting an equivariant vector is an equivariant map to
permutations, :math:`h(\sigma \cdot X) = \sigma\, h(X)`, so the sorted set
:math:`h(X)^{-1} \cdot X` is the same for every ordering of the input and any backbone on it (an
MLP on the flattened set, a sequence model) becomes permutation invariant; per-element outputs
computed on the canonical order become equivariant once put back in the input order
(:func:`restore_order`).

Ties. Elements with equal scores are ordered by their features (lexicographically), so the
canonical set is unique even when the scorer cannot tell elements apart; elements that are equal
in every feature give the same canonical set in any order. Only the per-element outputs of such
exact duplicates depend on which of them the backbone saw first: :func:`restore_order` averages
them (``average_ties=True``), which is what equivariance requires (a permutation swapping two
equal elements fixes the input, so it must fix the output too).

Gradients. The permutation is discrete. The canonical set carries the exact gradient with
respect to the input features for the chosen order; the scorer is trained through a relaxation:
the SoftSort matrix of Prillo & Eisenschlos (`"SoftSort: A Continuous Relaxation for the argsort
Operator" <https://arxiv.org/abs/2006.12057>`_, ICML 2020),
:math:`P_{ij} = \mathrm{softmax}_j(-|s_{[i]} - s_j| / \tau)`, enters as the straight-through term
:math:`P X - \mathrm{stopgrad}(P X)`, which is exactly zero in value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from geolayers._checks import check_positive_int, describe
from geolayers.canonical.base import Canonicalizer, Frame
from geolayers.groups import permutation_matrices
from geolayers.sets.base import SetModule
from geolayers.sets.batch import to_ragged
from geolayers.sets.deepsets import DeepSetsEquivariant

__all__ = ["PermutationCanonicalizer", "PermutationFrame", "restore_order", "MATRIX_MAX"]

#: Largest set size ``N`` for which :attr:`Frame.matrix` holds the ``(B, N, N)`` permutation
#: matrices; above it the matrix would cost ``O(B N^2)`` memory for no use, and is ``None``.
MATRIX_MAX = 64

_ESTIMATORS = ("softsort", "none")


@dataclass(frozen=True)
class PermutationFrame(Frame):
    """A :class:`~geolayers.canonical.Frame` of permutations of the set axis.

    Every set of the batch is described on ``N`` slots: the padded width for padded input, the
    largest set size for ragged input. Row ``b`` of :attr:`permutation` is a permutation of
    ``range(N)``; its first ``sizes[b]`` entries are the set's elements in canonical order, the
    rest are the padding slots (in increasing order; for ragged input, ``permutation[b, i] = i``).

    Attributes:
        sizes: ``(B,)`` long, the number of elements of each set.
        ties: ``(B, N)`` long, over canonical positions: the first canonical position of the run
            of elements equal (in every feature) to the one at that position; ``i`` itself for a
            unique element and for padding.
        element_scores: ``(B, N)`` the scores in the input's slots (0 at padding), with their
            gradient, for :meth:`PermutationCanonicalizer.prior_loss`.
        ragged: whether the input was ragged ``(M, D)``; :func:`restore_order` then takes and
            returns rows ``(M, ...)``.

    Example:
        >>> frame = PermutationFrame(matrix=None, permutation=torch.tensor([[1, 0, 2]]),
        ...                          sizes=torch.tensor([2]))
        >>> frame.canonical_mask(), frame.input_mask()
        (tensor([[ True,  True, False]]), tensor([[ True,  True, False]]))
    """

    sizes: Tensor | None = None
    ties: Tensor | None = None
    element_scores: Tensor | None = None
    ragged: bool = False

    def _sizes(self) -> Tensor:
        perm = self.permutation
        if perm is None:
            raise ValueError("a PermutationFrame needs a permutation")
        if self.sizes is not None:
            return self.sizes
        return torch.full((perm.shape[0],), perm.shape[1], dtype=torch.long, device=perm.device)

    def canonical_mask(self) -> Tensor:
        """``(B, N)`` bool: the slots of the canonical order that hold elements (a prefix)."""
        perm = self.permutation
        slots = torch.arange(perm.shape[1], device=perm.device)
        return slots < self._sizes()[:, None]

    def input_mask(self) -> Tensor:
        """``(B, N)`` bool: the slots of the input that hold elements."""
        mask = self.canonical_mask()
        return torch.zeros_like(mask).scatter_(1, self.permutation, mask)


def _canonical_order(rows: Tensor, scores: Tensor, set_id: Tensor) -> Tensor:
    """``(M,)`` rows sorted by set, then score (descending), then features (lexicographically).

    A chain of stable sorts from the least to the most significant key. The feature keys only
    matter when two scores of one set are equal, so they are skipped otherwise (a set of ``D``
    features would cost ``D`` more sorts).
    """
    order = torch.argsort(-scores, stable=True)
    order = order[torch.argsort(set_id[order], stable=True)]
    s, sid = scores[order], set_id[order]
    if not bool(((s[1:] == s[:-1]) & (sid[1:] == sid[:-1])).any()):
        return order
    order = torch.arange(rows.shape[0], device=rows.device)
    for k in reversed(range(rows.shape[1])):
        order = order[torch.argsort(rows[order, k], stable=True)]
    order = order[torch.argsort(-scores[order], stable=True)]
    return order[torch.argsort(set_id[order], stable=True)]


def _runs_of_equal_rows(rows: Tensor, set_id: Tensor, ptr: Tensor) -> Tensor:
    """``(M,)`` for sorted rows: the set-local position where each run of equal rows starts."""
    m = rows.shape[0]
    position = torch.arange(m, device=rows.device)
    same = torch.zeros(m, dtype=torch.bool, device=rows.device)
    if m > 1:
        same[1:] = (rows[1:] == rows[:-1]).all(dim=1) & (set_id[1:] == set_id[:-1])
    if m == 0:
        return position
    first = torch.cummax(torch.where(same, 0, position), dim=0).values
    return first - ptr[set_id]


def _pad(rows: Tensor, mask: Tensor) -> Tensor:
    """``rows (M, ...)`` into the ``True`` slots of ``mask (B, N)``, zeros elsewhere."""
    out = rows.new_zeros((*mask.shape, *rows.shape[1:]))
    return out.index_put((mask,), rows)


def _gather_slots(y: Tensor, index: Tensor) -> Tensor:
    """``out[b, i] = y[b, index[b, i]]`` for ``y (B, N, ...)`` and ``index (B, N)``."""
    flat = y.reshape(*y.shape[:2], math.prod(y.shape[2:]))  # -1 fails on 0 slots
    out = flat.gather(1, index[..., None].expand(-1, -1, flat.shape[-1]))
    return out.reshape(y.shape)


def _average_runs(y: Tensor, ties: Tensor) -> Tensor:
    """``y (B, N, ...)`` with every run of :attr:`PermutationFrame.ties` replaced by its mean."""
    flat = y.reshape(*y.shape[:2], math.prod(y.shape[2:]))  # -1 fails on 0 slots
    index = ties[..., None].expand(-1, -1, flat.shape[-1])
    sums = torch.zeros_like(flat).scatter_add(1, index, flat)
    counts = torch.zeros(ties.shape, dtype=flat.dtype, device=flat.device)
    counts = counts.scatter_add(1, ties, torch.ones_like(counts))
    # A unique element is its own run: 0 + y, divided by 1, is y again, bit for bit.
    out = sums.gather(1, index) / counts.gather(1, ties)[..., None]
    return out.reshape(y.shape)


def restore_order(frame: Frame, y: Tensor, *, average_ties: bool = True) -> Tensor:
    r"""Per-element outputs computed on the canonical order, put back in the input's order.

    ``out[b, permutation[b, i]] = y[b, i]``: the action :math:`\rho_{out}(g)\,y` of the frame on
    per-element outputs, so this is the ``out_rep`` of a
    :class:`~geolayers.canonical.CanonicalizedModel` with per-element outputs.

    Args:
        frame: the frame :meth:`PermutationCanonicalizer.canonicalize` returned (any
            :class:`~geolayers.canonical.Frame` with a ``permutation`` works, every slot taken
            as an element).
        y: ``(B, N, ...)`` outputs in canonical order for padded input, ``(M, ...)`` rows in
            canonical order for ragged input.
        average_ties: replace the outputs of elements equal in every feature by their mean, so
            that the result is exactly equivariant also for sets with repeated elements.
            (default: ``True``)

    Returns:
        The outputs in the input's order, the shape of ``y``; zeros at padding slots.

    Example:
        >>> frame = PermutationFrame(matrix=None, permutation=torch.tensor([[2, 0, 1]]))
        >>> restore_order(frame, torch.tensor([[10.0], [20.0], [30.0]])[None]).squeeze(-1)
        tensor([[20., 30., 10.]])
    """
    if not isinstance(frame, Frame) or frame.permutation is None:
        raise ValueError(f"frame must be a Frame with a permutation, got {describe(frame)}")
    if not isinstance(y, Tensor):
        raise TypeError(f"y must be a torch.Tensor, got {describe(y)}")
    perm = frame.permutation
    b, n = perm.shape
    if isinstance(frame, PermutationFrame):
        canon_mask = frame.canonical_mask()
        ragged, ties = frame.ragged, frame.ties
    else:
        canon_mask = torch.ones(b, n, dtype=torch.bool, device=perm.device)
        ragged, ties = False, None
    if ragged:
        m = int(canon_mask.sum())
        if y.dim() < 1 or y.shape[0] != m:
            raise ValueError(
                f"y must have shape (M, ...) = ({m}, ...) for this ragged frame, got {describe(y)}"
            )
        y_slots = _pad(y, canon_mask)
    else:
        if y.dim() < 2 or tuple(y.shape[:2]) != (b, n):
            raise ValueError(
                f"y must have shape (B, N, ...) = ({b}, {n}, ...) for this frame, got {describe(y)}"
            )
        y_slots = y
    if average_ties and ties is not None:
        y_slots = _average_runs(y_slots, ties)
    inverse = torch.argsort(perm, dim=1)
    out = _gather_slots(y_slots, inverse)
    in_mask = canon_mask.gather(1, inverse)
    if ragged:
        return out[in_mask]
    return torch.where(in_mask.reshape(b, n, *([1] * (y.dim() - 2))), out, 0)


class PermutationCanonicalizer(Canonicalizer):
    r"""Canonicalize sets (or the nodes of graphs) by sorting a learned equivariant score.

    A permutation-equivariant ``scorer`` gives one score per element (the default: a
    :class:`~geolayers.sets.DeepSetsEquivariant` network, so every score sees the element and the
    mean of its set); each set is sorted by score, highest first, ties broken by the features
    (lexicographically), and padding stays at the end. The canonical set is exactly the same for
    every ordering of the input, up to the rounding of the scorer's pooled sums changing the
    order of two elements whose scores agree to a few ulps.

    Use :func:`restore_order` as the ``out_rep`` of per-element outputs, and
    :meth:`prior_loss` (the Plackett-Luce likelihood of the input order) to keep upright data in
    its given order, as Mondal et al. 2023 do for other groups.

    Args:
        in_features: ``D``, the features per element.
        hidden_features: width of the default scorer (two hidden
            :class:`~geolayers.sets.PermEquivariantLinear` layers). (default: ``32``)
        scorer: a permutation-equivariant module giving one score per element: a
            :class:`~geolayers.sets.SetModule` (called on ragged rows with ``ptr``), or any other
            ``nn.Module`` applied row-wise, ``(M, D) -> (M,)`` or ``(M, 1)``, such as an MLP of
            each element alone. (default: ``DeepSetsEquivariant([D, H, H, 1])``)
        estimator: ``"softsort"`` trains the scorer through the SoftSort relaxation (costs a
            ``(B, N, N)`` matrix when gradients are on); ``"none"`` gives the scorer no gradient
            through the ordering. (default: ``"softsort"``)
        temperature: SoftSort temperature :math:`\tau > 0`. (default: ``1.0``)

    Shapes:
        - input: padded ``x (B, N, D)`` with optional bool ``mask (B, N)``, or ragged
          ``x (M, D)`` with ``ptr (B + 1,)`` or ``batch (M,)`` (e.g. the nodes of a batch of
          graphs; nodes are permuted within their graph).
        - output: ``x_canonical`` in the input's layout (``(B, N, D)``: each set's elements first,
          in canonical order, then zeros; ``(M, D)``: each set's rows reordered in place) and a
          :class:`PermutationFrame` with ``permutation (B, N)`` long,
          ``x_canonical[b, i] = x[b, permutation[b, i]]`` for the elements, and ``matrix``
          ``(B, N, N)`` (the permutation matrices, ``x = matrix @ x_canonical``) when
          ``N <= MATRIX_MAX``, else ``None``.

    Attributes:
        group: ``None``: the group is :math:`S_N` for a set of ``N`` elements, and ``N`` varies.

    Example:
        >>> canon = PermutationCanonicalizer(3)
        >>> x = torch.randn(2, 5, 3)
        >>> torch.equal(canon(x[:, torch.randperm(5)])[0], canon(x)[0])
        True
    """

    def __init__(
        self,
        in_features: int,
        *,
        hidden_features: int = 32,
        scorer: nn.Module | None = None,
        estimator: str = "softsort",
        temperature: float = 1.0,
    ) -> None:
        super().__init__()
        self.in_features = check_positive_int("in_features", in_features)
        hidden_features = check_positive_int("hidden_features", hidden_features)
        if scorer is None:
            scorer = DeepSetsEquivariant([in_features, hidden_features, hidden_features, 1])
        if not isinstance(scorer, nn.Module):
            raise TypeError(f"scorer must be an nn.Module, got {describe(scorer)}")
        if estimator not in _ESTIMATORS:
            raise ValueError(f"estimator must be one of {_ESTIMATORS}, got {estimator!r}")
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
            raise TypeError(f"temperature must be a float, got {describe(temperature)}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.group = None
        self.scorer = scorer
        self.estimator = estimator
        self.temperature = float(temperature)

    def scores(self, rows: Tensor, ptr: Tensor) -> Tensor:
        """``(M,)`` one score per element of validated ragged ``rows (M, D)``."""
        if isinstance(self.scorer, SetModule):
            raw = self.scorer.forward_ragged(rows, ptr)
        else:
            raw = self.scorer(rows)
        if not isinstance(raw, Tensor) or raw.numel() != rows.shape[0]:
            raise ValueError(
                f"scorer must return one score per element, (M,) or (M, 1) with M = "
                f"{rows.shape[0]}, got {describe(raw)}"
            )
        return raw.reshape(rows.shape[0])

    def canonicalize(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        ptr: Tensor | None = None,
        batch: Tensor | None = None,
        num_sets: int | None = None,
    ) -> tuple[Tensor, PermutationFrame]:
        """``x -> (x_canonical, frame)``; the layouts are those of :mod:`geolayers.sets`."""
        rows, layout = to_ragged(x, mask, ptr, batch, num_sets)
        if rows.shape[-1] != self.in_features:
            raise ValueError(
                f"x must have {self.in_features} features on its last axis, got {describe(x)}"
            )
        ragged = x.dim() == 2
        device = rows.device
        ptr, sizes = layout.ptr, layout.sizes()
        num, m = sizes.numel(), rows.shape[0]
        set_id = torch.repeat_interleave(torch.arange(num, device=device), sizes, output_size=m)
        local = torch.arange(m, device=device) - ptr[set_id]

        scores = self.scores(rows, ptr)
        order = _canonical_order(rows.detach(), scores.detach(), set_id)

        if ragged:
            width = int(sizes.max()) if num > 0 and m > 0 else 0
            in_mask = torch.arange(width, device=device) < sizes[:, None]
        else:
            width, in_mask = x.shape[1], layout.mask
        slots = torch.arange(width, device=device).expand(num, width)
        canon_mask = slots < sizes[:, None]

        # rank[r]: the canonical position of input row r in its set. Position k of `order`
        # belongs to set set_id[k] (sets stay contiguous and keep their sizes), so its
        # set-local position is local[k].
        rank = torch.empty_like(order)
        rank[order] = local
        # Where each input slot goes: elements to their rank, padding after the elements,
        # in the order it came.
        dest = sizes[:, None] + torch.cumsum((~in_mask).long(), dim=1) - 1
        dest = dest.masked_scatter(in_mask, rank)
        perm = torch.empty_like(dest).scatter_(1, dest, slots)

        delta = self._soft_sort_term(rows, scores, in_mask, perm, canon_mask)
        if ragged:
            x_canonical = rows[order]
            if delta is not None:
                x_canonical = x_canonical + delta[canon_mask]
        else:
            gathered = _gather_slots(x, perm)
            # Padding is zeroed: its content would otherwise move with the input's mask.
            x_canonical = torch.where(canon_mask[..., None], gathered, 0)
            if delta is not None:
                x_canonical = x_canonical + delta

        ties = slots.clone()
        ties[canon_mask] = _runs_of_equal_rows(rows.detach()[order], set_id, ptr)
        matrix = None
        if width == 0:  # one_hot cannot size an empty permutation
            matrix = rows.new_zeros(num, 0, 0)
        elif width <= MATRIX_MAX:
            matrix = permutation_matrices(perm).to(rows.dtype)
        frame = PermutationFrame(
            matrix=matrix,
            permutation=perm,
            sizes=sizes,
            ties=ties,
            element_scores=_pad(scores, in_mask),
            ragged=ragged,
        )
        return x_canonical, frame

    def forward(  # type: ignore[override]
        self,
        x: Tensor,
        mask: Tensor | None = None,
        ptr: Tensor | None = None,
        batch: Tensor | None = None,
        num_sets: int | None = None,
    ) -> tuple[Tensor, PermutationFrame]:
        """Same as :meth:`canonicalize`."""
        return self.canonicalize(x, mask, ptr, batch, num_sets)

    def _soft_sort_term(
        self, rows: Tensor, scores: Tensor, in_mask: Tensor, perm: Tensor, canon_mask: Tensor
    ) -> Tensor | None:
        """``(B, N, D)`` in canonical slots: ``P X - stopgrad(P X)`` with the SoftSort ``P``.

        Zero in value; its gradient reaches the scores only (``X`` is detached, the input
        already has its exact gradient through the hard gather).
        """
        if self.estimator == "none" or not (torch.is_grad_enabled() and scores.requires_grad):
            return None
        s = _pad(scores, in_mask)
        s_sorted = s.gather(1, perm)
        logits = -(s_sorted[:, :, None] - s[:, None, :]).abs() / self.temperature
        # A finite fill, not -inf: a row of padding then gives a uniform softmax, not NaN.
        logits = logits.masked_fill(~in_mask[:, None, :], torch.finfo(logits.dtype).min)
        soft = torch.softmax(logits, dim=-1) @ _pad(rows.detach(), in_mask)
        delta = soft - soft.detach()
        return torch.where(canon_mask[..., None], delta, 0)

    def invert(self, y: Tensor, frame: Frame, out_rep: object = None) -> Tensor:
        """Per-element outputs back in the input's order: :func:`restore_order` by default, or
        ``out_rep`` as in :meth:`Canonicalizer.invert`."""
        if out_rep is None:
            return restore_order(frame, y)
        return super().invert(y, frame, out_rep)  # type: ignore[arg-type]

    def prior_loss(self, frame: Frame) -> Tensor:
        r"""Negative log-likelihood of the input order under the Plackett-Luce model of the scores.

        Sorting by score is the mode of the Plackett-Luce distribution
        :math:`P(\pi) = \prod_i e^{s_{\pi_i}} / \sum_{j \ge i} e^{s_{\pi_j}}`, so
        :math:`-\log P(\mathrm{id}) = \sum_i \big(\log \sum_{j \ge i} e^{s_j} - s_i\big)` is the
        cross-entropy against the identity that the prior of Mondal et al. 2023 uses for finite
        groups. Summed over each set's elements, averaged over the batch.

        Returns:
            A scalar tensor.

        Example:
            >>> canon = PermutationCanonicalizer(2)
            >>> bool(canon.prior_loss(canon(torch.randn(3, 4, 2))[1]) >= 0)
            True
        """
        if not isinstance(frame, PermutationFrame) or frame.element_scores is None:
            return super().prior_loss(frame)
        s, in_mask = frame.element_scores, frame.input_mask()
        # The elements first, in the input's order, then the padding.
        compact = torch.argsort((~in_mask).to(torch.int8), dim=1, stable=True)
        s = s.gather(1, compact)
        valid = frame.canonical_mask()
        if not bool(valid.any()):
            return s.sum() * 0
        # Padding gets a finite score far below all others: exp of it is 0, and unlike -inf
        # it cannot make the backward pass of logcumsumexp NaN.
        low = s.detach()[valid].min()
        s_filled = torch.where(valid, s, low - 100 * (1 + low.abs()))
        suffix = torch.logcumsumexp(s_filled.flip(1), dim=1).flip(1)
        return torch.where(valid, suffix - s, 0).sum(dim=1).mean()

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, estimator={self.estimator!r}"
