r"""Segmentation scores of object discovery, batched over images: the adjusted Rand index on
foreground pixels (FG-ARI) and the mean best overlap (mBO).

FG-ARI is the protocol of slot attention and ISA (Locatello et al. 2020, section 4.1; Biza
et al. 2023): the adjusted Rand index (`Hubert and Arabie 1985
<https://doi.org/10.1007/BF01908075>`_) between the ground-truth instance labels and the
predicted segments (argmax of the slot masks), counted over the pixels that the ground truth
does not label as background. It is invariant to relabelling segments, and indifferent to
how the background is split. mBO (`Pont-Tuset et al. 2016 <https://arxiv.org/abs/1503.00848>`_)
averages, over ground-truth objects, the best intersection over union any segment reaches.

Predictions are given either as masks ``(B, K, H, W)`` (any float scores; the argmax over
``K`` is taken) or as integer labels of the same shape as the ground truth.
"""

from __future__ import annotations

import torch
from torch import Tensor

from geolayers._checks import describe


def _labels(name: str, value: object) -> Tensor:
    if not isinstance(value, Tensor) or value.is_floating_point() or value.is_complex():
        raise TypeError(f"{name} must be an integer tensor of labels, got {describe(value)}")
    if value.dim() < 1:
        raise ValueError(f"{name} must have a batch dimension (B, ...), got a scalar")
    if value.numel() and int(value.min()) < 0:
        raise ValueError(f"{name} must hold labels >= 0, got {int(value.min())}")
    return value.long()


def _pred_labels(pred: object, true: Tensor) -> Tensor:
    """``pred`` as labels with the shape of ``true``: the argmax of masks ``(B, K, ...)``."""
    if isinstance(pred, Tensor) and pred.is_floating_point():
        if (
            pred.dim() != true.dim() + 1
            or pred.shape[0] != true.shape[0]
            or (pred.shape[2:] != true.shape[1:])
        ):
            raise ValueError(
                f"pred masks must have shape (B, K, *{tuple(true.shape[1:])}) with "
                f"B = {true.shape[0]} to match true, got {tuple(pred.shape)}"
            )
        if pred.shape[1] < 1:
            raise ValueError("pred masks must have at least one slot (K >= 1), got 0")
        return pred.argmax(dim=1)
    labels = _labels("pred", pred)
    if labels.shape != true.shape:
        raise ValueError(
            f"pred labels must have the shape of true {tuple(true.shape)}, got "
            f"{tuple(labels.shape)}"
        )
    return labels


def _contingency(true: Tensor, pred: Tensor, weight: Tensor) -> Tensor:
    """``(B, T, P)`` counts of pixels with true label t and predicted label p, float64."""
    batch = true.shape[0]
    true, pred, weight = true.reshape(batch, -1), pred.reshape(batch, -1), weight.reshape(batch, -1)
    num_true = int(true.max()) + 1 if true.numel() else 1
    num_pred = int(pred.max()) + 1 if pred.numel() else 1
    # One flat index per (true, pred) pair: a bincount per image without a (B, N, T, P) tensor.
    flat = (
        true * num_pred
        + pred
        + torch.arange(batch, device=true.device)[:, None] * (num_true * num_pred)
    )
    counts = torch.bincount(
        flat.reshape(-1), weights=weight.reshape(-1).double(), minlength=batch * num_true * num_pred
    )
    return counts.view(batch, num_true, num_pred)


def adjusted_rand_index(true: Tensor, pred: Tensor, mask: Tensor | None = None) -> Tensor:
    r"""Adjusted Rand index per image between two labellings, counted over ``mask``.

    With :math:`n_{ij}` the pixels labelled :math:`i` in ``true`` and :math:`j` in ``pred``,
    :math:`a_i, b_j` its margins and :math:`n` their total (Hubert and Arabie 1985):

    .. math::
        \mathrm{ARI} = \frac{\sum_{ij}\binom{n_{ij}}{2} - \sum_i\binom{a_i}{2}\sum_j
        \binom{b_j}{2} \big/ \binom n2}{\tfrac12\big[\sum_i\binom{a_i}{2} + \sum_j
        \binom{b_j}{2}\big] - \sum_i\binom{a_i}{2}\sum_j\binom{b_j}{2} \big/ \binom n2}

    computed from pair counts in float64 exactly as scikit-learn's ``adjusted_rand_score``,
    including its convention that labellings with no disagreeing pair score 1 (one pixel, one
    segment on both sides, or all singletons). An image with no counted pixel scores NaN
    (scikit-learn returns 1 for empty input; here there is nothing to score).

    Args:
        true: ``(B, ...)`` integer ground-truth labels ``>= 0``.
        pred: integer labels of the same shape, or float masks ``(B, K, ...)`` (argmax over
            ``K``).
        mask: ``(B, ...)`` bool, the pixels to count. (default: all)

    Returns:
        ``(B,)`` float64 scores in :math:`[-1, 1]` (NaN where nothing is counted).

    Example:
        >>> adjusted_rand_index(torch.tensor([[0, 0, 1, 1]]), torch.tensor([[1, 1, 0, 0]]))
        tensor([1.], dtype=torch.float64)
    """
    true = _labels("true", true)
    pred = _pred_labels(pred, true)
    if mask is None:
        weight = torch.ones_like(true, dtype=torch.float64)
    else:
        if not isinstance(mask, Tensor) or mask.dtype != torch.bool or mask.shape != true.shape:
            raise ValueError(
                f"mask must be a bool tensor of shape {tuple(true.shape)}, got {describe(mask)}"
            )
        weight = mask.double()
    counts = _contingency(true, pred, weight)
    n = counts.sum(dim=(1, 2))
    sum_squares = counts.square().sum(dim=(1, 2))
    true_sq = counts.sum(dim=2).square().sum(dim=1)
    pred_sq = counts.sum(dim=1).square().sum(dim=1)
    # Ordered pair counts (twice the unordered ones; the factor cancels in the ratio).
    tp = sum_squares - n
    fp = pred_sq - sum_squares  # same segment predicted, different true objects
    fn = true_sq - sum_squares  # same true object, split by the prediction
    tn = n.square() - fp - fn - sum_squares
    denom = (tp + fn) * (fn + tn) + (tp + fp) * (fp + tn)
    perfect = (fn == 0) & (fp == 0)
    ari = 2.0 * (tp * tn - fn * fp) / torch.where(perfect, torch.ones_like(denom), denom)
    ari = torch.where(perfect, torch.ones_like(ari), ari)
    return torch.where(n > 0, ari, torch.full_like(ari, float("nan")))


def fg_ari(pred: Tensor, true: Tensor, *, background: int | None = 0) -> Tensor:
    """Foreground adjusted Rand index per image: :func:`adjusted_rand_index` over the pixels
    whose ground-truth label is not ``background``.

    Args:
        pred: ``(B, K, H, W)`` masks (argmax over slots) or ``(B, H, W)`` integer segments.
        true: ``(B, H, W)`` integer instance labels.
        background: label excluded from the count; ``None`` counts every pixel (plain ARI).
            (default: ``0``)

    Returns:
        ``(B,)`` float64, NaN for images without foreground (average with ``nanmean``).

    Example:
        >>> true = torch.tensor([[[0, 1], [2, 2]]])
        >>> fg_ari(torch.tensor([[[5, 1], [0, 0]]]), true)
        tensor([1.], dtype=torch.float64)
    """
    true = _labels("true", true)
    mask = None if background is None else true != background
    return adjusted_rand_index(true, pred, mask)


def mean_best_overlap(pred: Tensor, true: Tensor, *, background: int | None = 0) -> Tensor:
    r"""Mean best overlap per image: for every ground-truth object, the largest intersection
    over union with a predicted segment, averaged over the objects present.

    .. math:: \mathrm{mBO} = \frac{1}{|G|} \sum_{g \in G} \max_{s} \frac{|g \cap s|}{|g \cup s|}

    Args:
        pred: ``(B, K, H, W)`` masks (argmax over slots) or ``(B, H, W)`` integer segments.
        true: ``(B, H, W)`` integer instance labels.
        background: ground-truth label that is not an object; ``None`` scores every label.
            (default: ``0``)

    Returns:
        ``(B,)`` float64 in :math:`[0, 1]`, NaN for images without objects.

    Example:
        >>> mean_best_overlap(torch.tensor([[0, 1, 1, 1]]), torch.tensor([[0, 1, 1, 2]]))
        tensor([0.5000], dtype=torch.float64)
    """
    true = _labels("true", true)
    pred = _pred_labels(pred, true)
    counts = _contingency(true, pred, torch.ones_like(true, dtype=torch.float64))  # (B, T, P)
    true_size = counts.sum(dim=2, keepdim=True)
    union = true_size + counts.sum(dim=1, keepdim=True) - counts
    iou = counts / union.clamp_min(1)
    best = iou.amax(dim=2)  # (B, T)
    present = true_size.squeeze(2) > 0
    if background is not None and background < present.shape[1]:
        present[:, background] = False
    total = torch.where(present, best, torch.zeros_like(best)).sum(dim=1)
    count = present.sum(dim=1)
    return torch.where(count > 0, total / count.clamp_min(1), torch.full_like(total, float("nan")))


__all__ = ["adjusted_rand_index", "fg_ari", "mean_best_overlap"]
