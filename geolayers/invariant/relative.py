r"""Relative representations and their product of invariances.

* :class:`RelativeProjection` and :func:`relative_projection`, from `"Relative representations
  enable zero-shot latent space communication" <https://arxiv.org/abs/2209.15430>`_ (Moschella
  et al., ICLR 2023): describe each latent vector by its similarities to the latents of a fixed
  set of anchor inputs. Two encoders whose latent spaces differ by a transformation the
  similarity ignores (an orthogonal map and a rescaling, for the cosine) give the same relative
  representation, so a head trained on one encoder works on the other with no training
  ("zero-shot stitching").
* :class:`ProductOfInvariances`, from `"From Bricks to Bridges: Product of Invariances to
  Enhance Latent Space Communication" <https://arxiv.org/abs/2310.01211>`_ (Cannistraci et al.,
  ICLR 2024): several relative projections with different similarities, each invariant to its
  own class of transformations, normalised and aggregated, for when the transformation
  between latent spaces is not known in advance.

Invariance classes (``T`` acts on the latents *and* on the anchors' latents alike):

* ``"cosine"``, :math:`\cos(x, a)`: orthogonal maps and positive rescaling;
* ``"euclidean"``, :math:`-\lVert x - a \rVert_2`: isometries (orthogonal maps and
  translations);
* ``"l1"``, :math:`-\lVert x - a \rVert_1`, and ``"linf"``, :math:`-\lVert x - a \rVert_\infty`:
  translations and signed permutations of the coordinates (the isometries of those norms).

With ``normalize="standard"`` (standardisation of each row across the anchors), the three
distance-based projections become invariant to positive rescaling as well.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from geolayers._checks import describe, safe_sqrt

SIMILARITIES = ("cosine", "euclidean", "l1", "linf")
NORMALIZATIONS = ("none", "l2", "standard")
AGGREGATIONS = ("concat", "sum", "attention")


def _check_latents(name: str, value: object, slot: str) -> Tensor:
    if not isinstance(value, Tensor) or value.dtype not in (torch.float32, torch.float64):
        raise TypeError(
            f"{name} must be a float32 or float64 tensor ({slot}, D), got {describe(value)}"
        )
    if value.dim() != 2:
        raise ValueError(f"{name} must have shape ({slot}, D), got {tuple(value.shape)}")
    return value


def _check_choice(name: str, value: object, choices: Sequence[str]) -> str:
    if value not in choices:
        options = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {options}, got {value!r}")
    return value  # type: ignore[return-value]


def _check_pair(x: Tensor, anchors: Tensor) -> None:
    if x.shape[1] != anchors.shape[1]:
        raise ValueError(
            f"x and anchors must have the same latent size D, got {x.shape[1]} (x) and "
            f"{anchors.shape[1]} (anchors)"
        )
    if x.dtype != anchors.dtype:
        raise TypeError(f"x and anchors must share a dtype, got {x.dtype} and {anchors.dtype}")
    if x.device != anchors.device:
        raise ValueError(
            f"x and anchors must be on the same device, got {x.device} and {anchors.device}"
        )
    if anchors.shape[0] == 0:
        raise ValueError("anchors must hold at least one row, got 0")


def _similarities(x: Tensor, anchors: Tensor, similarity: str) -> Tensor:
    if similarity == "cosine":
        eps = torch.finfo(x.dtype).tiny ** 0.5
        return F.normalize(x, dim=-1, eps=eps) @ F.normalize(anchors, dim=-1, eps=eps).T
    # Distances ignore a common translation: centring both on the anchors' mean makes the
    # result translation invariant to rounding, and keeps the expanded square below accurate
    # when the latents sit far from the origin.
    centre = anchors.mean(dim=0, keepdim=True)
    x, anchors = x - centre, anchors - centre
    if similarity == "euclidean":
        # Expanded square (one matmul, no (N, K, D) difference tensor), clamped because
        # rounding can make it slightly negative for coinciding points.
        sq = (
            x.square().sum(-1, keepdim=True)
            - 2 * x @ anchors.T
            + anchors.square().sum(-1).unsqueeze(0)
        ).clamp_min(0)
        # A sample coinciding with an anchor gets the subgradient 0, not NaN.
        return -safe_sqrt(sq)
    # cdist with p = 1 or inf reduces exact differences without storing (N, K, D).
    p = 1.0 if similarity == "l1" else float("inf")
    return -torch.cdist(x, anchors, p=p)


def _normalize(r: Tensor, normalize: str) -> Tensor:
    if normalize == "l2":
        return F.normalize(r, dim=-1, eps=torch.finfo(r.dtype).tiny ** 0.5)
    if normalize == "standard":
        # Per-row standardisation across anchors (population std), so each sample's
        # representation has mean 0 and unit variance whatever the scale of the latents.
        mean = r.mean(dim=-1, keepdim=True)
        centred = r - mean
        std = centred.square().mean(dim=-1, keepdim=True).sqrt()
        return centred / std.clamp_min(torch.finfo(r.dtype).eps)
    return r


def relative_projection(
    x: Tensor, anchors: Tensor, similarity: str = "cosine", normalize: str = "none"
) -> Tensor:
    r"""Relative representation of ``x`` with respect to ``anchors``.

    .. math::
        r(x)_k = \operatorname{sim}(x, a_k), \qquad k = 1, \dots, K

    with the similarities of the module docstring's table, then the optional normalisation of
    each row :math:`r`: ``"l2"`` divides by :math:`\lVert r \rVert_2`; ``"standard"`` maps
    :math:`r \mapsto (r - \bar r) / \sigma(r)`, the mean and (population) standard deviation
    taken over the ``K`` anchors.

    Args:
        x: ``(N, D)`` latents, float32 or float64.
        anchors: ``(K, D)`` latents of the anchor inputs, same dtype and device as ``x``.
        similarity: ``"cosine"``, ``"euclidean"``, ``"l1"`` or ``"linf"``. (default:
            ``"cosine"``)
        normalize: ``"none"``, ``"l2"`` or ``"standard"``. (default: ``"none"``)

    Returns:
        ``(N, K)`` relative representation, differentiable in ``x`` and ``anchors``.

    Example:
        >>> relative_projection(torch.randn(5, 8), torch.randn(3, 8)).shape
        torch.Size([5, 3])
    """
    x = _check_latents("x", x, "N")
    anchors = _check_latents("anchors", anchors, "K")
    _check_pair(x, anchors)
    similarity = _check_choice("similarity", similarity, SIMILARITIES)
    normalize = _check_choice("normalize", normalize, NORMALIZATIONS)
    return _normalize(_similarities(x, anchors, similarity), normalize)


class RelativeProjection(nn.Module):
    r"""Relative projection from `"Relative representations enable zero-shot latent space
    communication" <https://arxiv.org/abs/2209.15430>`_ (Moschella et al., ICLR 2023).

    .. math::
        r(x)_k = \operatorname{sim}(x, a_k), \qquad k = 1, \dots, K

    See :func:`relative_projection` for the similarities, their invariance classes and the
    normalisations. The anchors are the latents of a fixed set of anchor *inputs*, so in
    training they are usually recomputed by the encoder at every step and passed to
    :meth:`forward`; a fixed ``anchors`` tensor given here is stored as a buffer (it moves
    with ``.to()`` and is saved in the ``state_dict``) and used when none is passed.

    Args:
        anchors: ``(K, D)`` fixed anchor latents, or ``None`` to pass them at every call.
            (default: ``None``)
        similarity: ``"cosine"``, ``"euclidean"``, ``"l1"`` or ``"linf"``. (default:
            ``"cosine"``)
        normalize: ``"none"``, ``"l2"`` or ``"standard"``. (default: ``"none"``)

    Shapes:
        ``x: (N, D)``, ``anchors: (K, D)`` -> ``(N, K)``.

    Example:
        >>> RelativeProjection()(torch.randn(5, 8), torch.randn(3, 8)).shape
        torch.Size([5, 3])
    """

    anchors: Tensor | None

    def __init__(
        self,
        anchors: Tensor | None = None,
        similarity: str = "cosine",
        normalize: str = "none",
    ) -> None:
        super().__init__()
        self.similarity = _check_choice("similarity", similarity, SIMILARITIES)
        self.normalize = _check_choice("normalize", normalize, NORMALIZATIONS)
        if anchors is not None:
            anchors = _check_latents("anchors", anchors, "K")
            if anchors.shape[0] == 0:
                raise ValueError("anchors must hold at least one row, got 0")
            anchors = anchors.detach().clone()
        self.register_buffer("anchors", anchors)

    def forward(self, x: Tensor, anchors: Tensor | None = None) -> Tensor:
        """``(N, D)`` latents -> ``(N, K)`` similarities to ``anchors`` (or the stored ones)."""
        if anchors is None:
            if self.anchors is None:
                raise ValueError(
                    "anchors must be passed to forward when the module holds no fixed anchors"
                )
            anchors = self.anchors
        return relative_projection(x, anchors, self.similarity, self.normalize)

    @property
    def num_anchors(self) -> int | None:
        """``K`` of the stored anchors, ``None`` without them."""
        return None if self.anchors is None else self.anchors.shape[0]

    def __repr__(self) -> str:
        fixed = "" if self.anchors is None else f"anchors={tuple(self.anchors.shape)}, "
        return (
            f"{type(self).__name__}({fixed}similarity={self.similarity!r}, "
            f"normalize={self.normalize!r})"
        )


class ProductOfInvariances(nn.Module):
    r"""Product of invariances from `"From Bricks to Bridges: Product of Invariances to Enhance
    Latent Space Communication" <https://arxiv.org/abs/2310.01211>`_ (Cannistraci et al., ICLR
    2024).

    :math:`S` relative projections :math:`r^{(s)}`, one per similarity, each normalised, then
    aggregated:

    .. math::
        \text{concat: } [\,r^{(1)} \,\|\, \cdots \,\|\, r^{(S)}\,], \qquad
        \text{sum: } \sum_s r^{(s)}, \qquad
        \text{attention: } \sum_s \alpha_s(x)\, r^{(s)},\quad
        \alpha(x) = \operatorname{softmax}_s\big(w^\top \tanh(W r^{(s)} + b_s)\big)

    Each component :math:`r^{(s)}` is invariant to the class of its similarity (table in the
    module docstring; :meth:`components` returns them one by one); the aggregate is invariant
    to the intersection of the classes, and the head downstream learns which component to
    trust. The paper normalises every subspace before aggregating them so that no similarity
    dominates by scale; here that is a parameter-free per-row standardisation across anchors
    (``normalize="standard"``), which keeps each component's invariances (a learned affine or
    batch statistics would tie the output to a batch) and makes the distance-based components
    invariant to positive rescaling too.

    Args:
        similarities: a sequence of similarity names (``"cosine"``, ``"euclidean"``, ``"l1"``,
            ``"linf"``) and/or :class:`RelativeProjection` modules, one per subspace.
            (default: all four names)
        aggregation: ``"concat"``, ``"sum"`` or ``"attention"``. (default: ``"concat"``)
        anchors: ``(K, D)`` fixed anchors shared by the components built from names, or
            ``None`` to pass them to :meth:`forward`. (default: ``None``)
        num_anchors: ``K``; needed by ``"attention"`` (its scoring layer reads ``K`` values)
            unless ``anchors`` is given. (default: ``None``)
        normalize: normalisation of the components built from names. (default:
            ``"standard"``)
        attention_hidden: hidden width of the attention scorer. (default: ``32``)

    Shapes:
        ``x: (N, D)``, ``anchors: (K, D)`` -> ``(N, S K)`` for ``"concat"``, ``(N, K)``
        otherwise.

    Example:
        >>> ProductOfInvariances()(torch.randn(5, 8), torch.randn(3, 8)).shape
        torch.Size([5, 12])
    """

    def __init__(
        self,
        similarities: Sequence[str | RelativeProjection] = SIMILARITIES,
        aggregation: str = "concat",
        anchors: Tensor | None = None,
        num_anchors: int | None = None,
        normalize: str = "standard",
        attention_hidden: int = 32,
    ) -> None:
        super().__init__()
        if isinstance(similarities, str) or not isinstance(similarities, Sequence):
            raise TypeError(
                "similarities must be a sequence of names or RelativeProjection modules, got "
                f"{type(similarities).__name__}"
            )
        if len(similarities) == 0:
            raise ValueError("similarities must name at least one similarity, got none")
        self.aggregation = _check_choice("aggregation", aggregation, AGGREGATIONS)
        normalize = _check_choice("normalize", normalize, NORMALIZATIONS)
        if anchors is not None:
            anchors = _check_latents("anchors", anchors, "K")
            if num_anchors is not None and num_anchors != anchors.shape[0]:
                raise ValueError(
                    f"num_anchors ({num_anchors}) must equal the number of rows of anchors "
                    f"({anchors.shape[0]})"
                )
            num_anchors = anchors.shape[0]
        if num_anchors is not None and (
            isinstance(num_anchors, bool) or not isinstance(num_anchors, int) or num_anchors < 1
        ):
            raise ValueError(f"num_anchors must be an int >= 1 or None, got {num_anchors!r}")
        if aggregation == "attention" and num_anchors is None:
            raise ValueError("aggregation='attention' needs num_anchors (or anchors) to be given")
        if isinstance(attention_hidden, bool) or not isinstance(attention_hidden, int):
            raise TypeError(
                f"attention_hidden must be an int, got {type(attention_hidden).__name__}"
            )
        if attention_hidden < 1:
            raise ValueError(f"attention_hidden must be >= 1, got {attention_hidden}")
        projections = []
        for i, item in enumerate(similarities):
            if isinstance(item, RelativeProjection):
                projections.append(item)
            elif isinstance(item, str):
                if item not in SIMILARITIES:
                    options = ", ".join(repr(c) for c in SIMILARITIES)
                    raise ValueError(f"similarities[{i}] must be one of {options}, got {item!r}")
                projections.append(RelativeProjection(anchors, item, normalize))
            else:
                raise TypeError(
                    f"similarities[{i}] must be a similarity name or a RelativeProjection, "
                    f"got {type(item).__name__}"
                )
        self.projections = nn.ModuleList(projections)
        self.num_anchors = num_anchors
        self.attention_hidden = attention_hidden
        if self.aggregation == "attention":
            s = len(projections)
            # Shared scorer; a per-subspace bias b_s lets it prefer a subspace a priori.
            self.score_in = nn.Linear(num_anchors, attention_hidden, bias=False)
            self.subspace_bias = nn.Parameter(torch.empty(s, attention_hidden))
            self.score_out = nn.Linear(attention_hidden, 1, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.aggregation == "attention":
            self.score_in.reset_parameters()
            self.score_out.reset_parameters()
            nn.init.zeros_(self.subspace_bias)

    @property
    def num_subspaces(self) -> int:
        """``S``, the number of relative projections."""
        return len(self.projections)

    def components(self, x: Tensor, anchors: Tensor | None = None) -> list[Tensor]:
        """The ``S`` normalised relative representations ``(N, K)``, before aggregation."""
        return [proj(x, anchors) for proj in self.projections]

    def attention_weights(self, parts: Sequence[Tensor]) -> Tensor:
        """Weights ``(N, S)`` (rows sum to 1) that ``"attention"`` gives the components."""
        if self.aggregation != "attention":
            raise ValueError(
                f"attention_weights needs aggregation='attention', got {self.aggregation!r}"
            )
        stacked = torch.stack(list(parts), dim=1)  # (N, S, K)
        if stacked.shape[-1] != self.num_anchors:
            raise ValueError(
                f"anchors must have num_anchors = {self.num_anchors} rows for "
                f"aggregation='attention', got {stacked.shape[-1]}"
            )
        hidden = torch.tanh(self.score_in(stacked) + self.subspace_bias)
        return torch.softmax(self.score_out(hidden).squeeze(-1), dim=1)

    def forward(self, x: Tensor, anchors: Tensor | None = None) -> Tensor:
        """``(N, D)`` latents -> ``(N, S K)`` (concat) or ``(N, K)`` (sum, attention)."""
        parts = self.components(x, anchors)
        if self.aggregation == "concat":
            return torch.cat(parts, dim=-1)
        if self.aggregation == "sum":
            return torch.stack(parts, dim=0).sum(dim=0)
        weights = self.attention_weights(parts)
        return (weights.unsqueeze(-1) * torch.stack(parts, dim=1)).sum(dim=1)

    def __repr__(self) -> str:
        names = ", ".join(repr(p.similarity) for p in self.projections)
        k = "" if self.num_anchors is None else f", num_anchors={self.num_anchors}"
        return f"{type(self).__name__}([{names}], aggregation={self.aggregation!r}{k})"


__all__ = [
    "ProductOfInvariances",
    "RelativeProjection",
    "relative_projection",
]
