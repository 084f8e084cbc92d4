r"""Canonicalization and frame averaging for any finite group that can act on the data.

:class:`OrbitCanonicalizer` scores every pose of the input, :math:`s(h^{-1} \cdot x)` for
:math:`h \in G`, with any network :math:`s` and picks the best. The scores permute with the
input, :math:`\mathrm{scores}(g \cdot x)_h = s(h^{-1} g \cdot x) = \mathrm{scores}(x)_{g^{-1}h}`,
so the argmax is an equivariant canonicalization function in the sense of Kaba et al. 2023
(`arXiv:2211.06489 <https://arxiv.org/abs/2211.06489>`_, Section 3) for any scorer, with no
equivariant layer to design: this is the canonicalizer a user-defined group gets for free.
Its cost is ``|G|`` scorer evaluations per input.

:class:`FrameAveraging` is the exact alternative that averages the backbone itself over the
group, :math:`\frac{1}{|G|}\sum_h \rho_{out}(h)\, f(h^{-1} \cdot x)` (Puny et al., "Frame
Averaging for Invariant and Equivariant Network Design", ICLR 2022, eq. (3) with the whole group
as the frame): ``|G|`` backbone evaluations per input, no learned canonicalizer.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geolayers._checks import describe
from geolayers.canonical.base import Canonicalizer, Frame, OutTransform, transform_output
from geolayers.groups import Group, Rep

__all__ = ["OrbitCanonicalizer", "FrameAveraging", "straight_through_argmax"]

#: ``(g, x) -> g · x`` for one element ``g: (d, d)`` acting on a whole batch ``x``.
Action = Callable[[Tensor, Tensor], Tensor]

_ESTIMATORS = ("straight_through", "gumbel")


def straight_through_argmax(
    scores: Tensor,
    *,
    estimator: str = "straight_through",
    temperature: float = 1.0,
    training: bool = True,
) -> tuple[Tensor, Tensor]:
    r"""One-hot argmax of ``scores`` with a gradient.

    The forward value is the exact one-hot of the argmax (first maximum on ties, so the choice
    is deterministic); the backward pass is that of :math:`\mathrm{softmax}(s / \tau)`
    (``"straight_through"``, Bengio et al. 2013, arXiv:1308.3432), or of the Gumbel-softmax with
    fresh Gumbel noise added to the scores while ``training`` (``"gumbel"``, Jang et al. 2017,
    arXiv:1611.01144). Outside training both are the plain argmax.

    Args:
        scores: ``(B, K)``.
        estimator: ``"straight_through"`` or ``"gumbel"``. (default: ``"straight_through"``)
        temperature: softmax temperature :math:`\tau > 0`. (default: ``1.0``)
        training: whether to add Gumbel noise (``"gumbel"`` only). (default: ``True``)

    Returns:
        ``(weights, index)``: ``weights (B, K)`` equal to the one-hot in value, and the chosen
        ``index (B,)`` long.

    Example:
        >>> w, i = straight_through_argmax(torch.tensor([[0.1, 2.0, 0.3]], requires_grad=True))
        >>> w.detach(), i
        (tensor([[0., 1., 0.]]), tensor([1]))
    """
    if estimator not in _ESTIMATORS:
        raise ValueError(f"estimator must be one of {_ESTIMATORS}, got {estimator!r}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if not isinstance(scores, Tensor) or scores.dim() != 2:
        raise ValueError(f"scores must have shape (B, K), got {describe(scores)}")
    logits = scores
    if estimator == "gumbel" and training:
        u = torch.rand_like(scores).clamp_(torch.finfo(scores.dtype).tiny, 1.0)
        logits = scores - torch.log(-torch.log(u))
    index = logits.argmax(dim=1)
    hard = F.one_hot(index, scores.shape[1]).to(scores.dtype)
    if not scores.requires_grad:
        return hard, index
    soft = torch.softmax(logits / temperature, dim=1)
    # hard + (soft - soft) is exactly hard in value (x - x == 0 in floating point).
    return hard + (soft - soft.detach()), index


def _finite_elements(group: object, name: str = "group") -> Tensor:
    if not isinstance(group, Group):
        raise TypeError(f"{name} must be a geolayers.groups.Group, got {describe(group)}")
    if not group.is_finite:
        raise ValueError(
            f"{name} must be a finite group (use a continuous canonicalizer for {group!r})"
        )
    return group.elements().to(torch.float64)


def _poses(act: Action, inverses: Tensor, x: Tensor) -> Tensor:
    """``(|G|, B, ...)``: ``h^{-1} · x`` for every element ``h``, from the inverses
    ``(|G|, d, d)``."""
    return torch.stack([act(m.to(x.dtype) if x.is_floating_point() else m, x) for m in inverses])


class OrbitCanonicalizer(Canonicalizer):
    r"""Canonicalize by scoring every pose of the input with any network and keeping the best.

    For each input the ``|G|`` poses :math:`h^{-1} \cdot x` are scored by ``scorer`` (any
    ``nn.Module`` returning one number per input; it needs no symmetry), the best one is the
    canonical input and its :math:`h` the frame. Works for any finite group whose action on the
    data is given, including user-defined ones: the default action is
    :meth:`Group.act <geolayers.groups.Group.act>` (``g @ x`` on the last axis), override it with
    ``act`` for images (:func:`geolayers.equivariant.transform_image`), point clouds, sets.

    Ties between poses (an input fixed by some element, e.g. a constant image) resolve to the
    first maximal element in ``group.elements()`` order: the frame is always a valid element and
    the canonical input is the same pose for every tied choice, so invariance still holds.

    Args:
        group: a finite :class:`~geolayers.groups.Group`.
        scorer: ``nn.Module``, ``(N, ...) -> (N,)`` or ``(N, 1)``.
        act: ``(g, x) -> g · x`` for one element ``g: (d, d)`` and a batch ``x``.
            (default: ``group.act``)
        estimator: gradient of the argmax, see :func:`straight_through_argmax`.
            (default: ``"straight_through"``)
        temperature: softmax temperature of the estimator. (default: ``1.0``)

    Shapes:
        - input: ``(B, ...)`` what ``act`` and ``scorer`` take.
        - output: ``(x_canonical (B, ...), frame)`` with ``frame.matrix (B, d, d)``,
          ``frame.index (B,)`` and ``frame.scores (B, |G|)``.

    Example:
        >>> from geolayers.groups import Dihedral
        >>> canon = OrbitCanonicalizer(Dihedral(4), torch.nn.Linear(2, 1))
        >>> x = torch.randn(6, 2)
        >>> g = Dihedral(4).elements()[5]
        >>> torch.allclose(canon(x @ g.float().T)[0], canon(x)[0], atol=1e-6)
        True
    """

    def __init__(
        self,
        group: Group,
        scorer: nn.Module,
        act: Action | None = None,
        *,
        estimator: str = "straight_through",
        temperature: float = 1.0,
    ) -> None:
        super().__init__()
        elements = _finite_elements(group)
        if not isinstance(scorer, nn.Module):
            raise TypeError(f"scorer must be an nn.Module, got {describe(scorer)}")
        if act is not None and not callable(act):
            raise TypeError(f"act must be a function (g, x) -> g · x, got {describe(act)}")
        if estimator not in _ESTIMATORS:
            raise ValueError(f"estimator must be one of {_ESTIMATORS}, got {estimator!r}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.group = group
        self.scorer = scorer
        self.act = act if act is not None else group.act
        self.estimator = estimator
        self.temperature = float(temperature)
        self.register_buffer("elements", elements, persistent=False)
        # Inverted once here, in float64, not on every forward.
        self.register_buffer("inverses", torch.linalg.inv(elements), persistent=False)

    def scores(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(poses (|G|, B, ...), scores (B, |G|))`` with ``poses[h] = h^{-1} · x``."""
        if not isinstance(x, Tensor) or x.dim() < 1:
            raise ValueError(f"x must be a batched tensor (B, ...), got {describe(x)}")
        poses = _poses(self.act, self.inverses, x)
        n, b = poses.shape[:2]
        raw = self.scorer(poses.reshape(n * b, *poses.shape[2:]))
        if raw.numel() != n * b:
            raise ValueError(
                f"scorer must return one score per input, (N,) or (N, 1); got {tuple(raw.shape)} "
                f"for N = {n * b}"
            )
        return poses, raw.reshape(n, b).T

    def canonicalize(self, x: Tensor) -> tuple[Tensor, Frame]:
        poses, scores = self.scores(x)
        weights, index = straight_through_argmax(
            scores, estimator=self.estimator, temperature=self.temperature, training=self.training
        )
        # sum_h w_h h^{-1} x: in value the chosen pose (the other weights are exactly 0), in
        # gradient the softmax mixture that lets the scorer learn.
        w = weights.T.reshape(*weights.T.shape, *([1] * (poses.dim() - 2))).to(poses.dtype)
        x_canonical = (w * poses).sum(dim=0)
        matrix = self.elements[index]
        if x.is_floating_point():
            matrix = matrix.to(x.dtype)
        return x_canonical, Frame(matrix=matrix, index=index, scores=scores)

    def extra_repr(self) -> str:
        return f"group={self.group!r}, estimator={self.estimator!r}"


class FrameAveraging(nn.Module):
    r"""Exact invariance/equivariance by averaging the backbone over a finite group:
    :math:`\frac{1}{|G|}\sum_{h \in G} \rho_{out}(h)\, f(h^{-1} \cdot x)`
    (Puny et al. 2022, eq. (3), with the whole group as the frame).

    The same interface as :class:`~geolayers.canonical.CanonicalizedModel` without a learned
    canonicalizer, at ``|G|`` times the backbone's cost (the poses are batched into one call).

    Args:
        backbone: any ``nn.Module``.
        group: a finite :class:`~geolayers.groups.Group`.
        act: ``(g, x) -> g · x`` for one element and a batch. (default: ``group.act``)
        out_rep: ``None`` (invariant), a :class:`~geolayers.groups.Rep` of ``group``, or a
            function ``(frame, y) -> frame · y``. (default: ``None``)

    Shapes:
        - input: ``(B, ...)``; output: the backbone's ``(B, ...)``.

    Example:
        >>> from geolayers.groups import Cyclic, Vector
        >>> fa = FrameAveraging(torch.nn.Linear(2, 2), Cyclic(4), out_rep=Vector(Cyclic(4)))
        >>> fa(torch.randn(3, 2)).shape
        torch.Size([3, 2])
    """

    def __init__(
        self,
        backbone: nn.Module,
        group: Group,
        act: Action | None = None,
        out_rep: OutTransform | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(backbone, nn.Module):
            raise TypeError(f"backbone must be an nn.Module, got {describe(backbone)}")
        elements = _finite_elements(group)
        if act is not None and not callable(act):
            raise TypeError(f"act must be a function (g, x) -> g · x, got {describe(act)}")
        if isinstance(out_rep, Rep) and out_rep.G != group:
            raise ValueError(f"out_rep must be a Rep of {group!r}, got {out_rep!r}")
        self.backbone = backbone
        self.group = group
        self.act = act if act is not None else group.act
        self.out_rep = out_rep
        self.register_buffer("elements", elements, persistent=False)
        # Inverted once here, in float64, not on every forward.
        self.register_buffer("inverses", torch.linalg.inv(elements), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor) or x.dim() < 1:
            raise ValueError(f"x must be a batched tensor (B, ...), got {describe(x)}")
        poses = _poses(self.act, self.inverses, x)
        n, b = poses.shape[:2]
        y = self.backbone(poses.reshape(n * b, *poses.shape[2:]))
        y = y.reshape(n, b, *y.shape[1:])
        if self.out_rep is not None:
            dtype = x.dtype if x.is_floating_point() else torch.float64
            mats = self.elements.to(dtype)
            outs = []
            for h in range(n):
                frame = Frame(matrix=mats[h].expand(b, *mats.shape[1:]))
                outs.append(transform_output(y[h], frame, self.out_rep))
            y = torch.stack(outs)
        return y.mean(dim=0)

    def extra_repr(self) -> str:
        return f"group={self.group!r}"
