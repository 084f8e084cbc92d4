r"""The canonicalization interface: :class:`Frame`, :class:`Canonicalizer`,
:class:`CanonicalizedModel`.

From `"Equivariance with Learned Canonicalization Functions"
<https://arxiv.org/abs/2211.06489>`_ (Kaba et al., ICML 2023). A canonicalization function
:math:`h` maps an input to a group element and is equivariant, :math:`h(g \cdot x) = g\,h(x)`
(their eq. (2)). Then :math:`h(x)^{-1} \cdot x` is invariant, so any backbone :math:`f` gives an
invariant model :math:`f(h(x)^{-1} \cdot x)` and an equivariant one
:math:`\rho_{out}(h(x))\, f(h(x)^{-1} \cdot x)` (their eq. (3)).

Conventions in this package:

- A canonicalizer returns ``(x_canonical, frame)`` with ``x_canonical = frame^{-1} · x``.
- :class:`Frame` carries the chosen elements in the group's defining representation
  (``matrix: (B, d, d)``), or as a permutation of the set axis for permutation groups, plus
  what the prior loss and the metrics need (scores over a finite group, the element index).
- The prior of `"Equivariant Adaptation of Large Pretrained Models"
  <https://arxiv.org/abs/2310.01647>`_ (Mondal et al., NeurIPS 2023, their eq. (5) and (6)) pulls
  the frames of upright training data towards the identity, so that a pretrained backbone keeps
  seeing the poses it was trained on: cross-entropy of the scores against the identity for finite
  groups, :math:`\|\rho(g) - I\|_F^2` for continuous ones (:meth:`Canonicalizer.prior_loss`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geolayers._checks import describe
from geolayers.groups import Group, Rep

__all__ = ["Frame", "Canonicalizer", "CanonicalizedModel", "OutTransform", "transform_output"]

#: What :meth:`Canonicalizer.invert` accepts for the output's transformation law: a
#: :class:`~geolayers.groups.Rep` (outputs ``(B, ..., D)`` transformed by ``rho_out(g)`` on the
#: last axis), or a function ``(frame, y) -> g · y`` for outputs that are not vectors (images,
#: point clouds, per-element set outputs).
OutTransform = Rep | Callable[["Frame", Tensor], Tensor]


@dataclass(frozen=True)
class Frame:
    """The group elements a canonicalizer chose, one per input.

    Attributes:
        matrix: ``(B, d, d)`` the elements in the defining representation, or ``None`` for
            permutation frames of large sets (then :attr:`permutation` is set).
        permutation: ``(B, N)`` long, for permutation groups acting on a set axis:
            ``x_canonical[b, i] = x[b, permutation[b, i]]``. (default: ``None``)
        translation: ``(B, d)`` the translation part of a Euclidean frame,
            ``x_canonical = matrix^T (x - translation)``. (default: ``None``)
        index: ``(B,)`` long, the element's position in ``group.elements()`` for finite groups
            (``0`` is the identity). (default: ``None``)
        scores: ``(B, |G|)`` the logits the element was picked from (finite groups); the prior
            loss is their cross-entropy against the identity. (default: ``None``)
    """

    matrix: Tensor | None
    permutation: Tensor | None = None
    translation: Tensor | None = None
    index: Tensor | None = None
    scores: Tensor | None = None

    @property
    def batch_size(self) -> int:
        for value in (self.matrix, self.permutation):
            if value is not None:
                return int(value.shape[0])
        raise ValueError("a Frame needs a matrix or a permutation")

    def detach(self) -> Frame:
        """The same frame with every tensor detached from the graph."""
        return replace(
            self,
            **{
                name: value.detach()
                for name, value in vars(self).items()
                if isinstance(value, Tensor)
            },
        )

    def __getitem__(self, item: slice | Tensor) -> Frame:
        """The frames of a sub-batch (``frame[mask]``, ``frame[:4]``)."""
        return replace(
            self,
            **{
                name: value[item] for name, value in vars(self).items() if isinstance(value, Tensor)
            },
        )


def transform_output(y: Tensor, frame: Frame, out_rep: OutTransform) -> Tensor:
    r"""``frame · y``: :math:`\rho_{out}(g)\,y` on the last axis for a
    :class:`~geolayers.groups.Rep`, else ``out_rep(frame, y)``.

    Example:
        >>> from geolayers.groups import Cyclic, Vector
        >>> frame = Frame(matrix=Cyclic(4).elements()[1:2].float())
        >>> transform_output(torch.tensor([[1.0, 0.0]]), frame, Vector(Cyclic(4))).round()
        tensor([[0., 1.]])
    """
    if isinstance(out_rep, Rep):
        if frame.matrix is None:
            raise ValueError(
                "out_rep is a Rep but this frame has no matrix (a permutation frame); "
                "pass a function (frame, y) -> frame · y instead"
            )
        if not isinstance(y, Tensor) or y.dim() < 2 or y.shape[-1] != out_rep.size:
            raise ValueError(
                f"y must have shape (B, ..., {out_rep.size}) for {out_rep!r}, got {describe(y)}"
            )
        rho = out_rep.rho(frame.matrix.to(torch.float64)).to(y.dtype)
        flat = y.reshape(y.shape[0], -1, y.shape[-1])
        return (flat @ rho.mT).reshape(y.shape)
    if callable(out_rep):
        return out_rep(frame, y)
    raise TypeError(f"out_rep must be a Rep or a function (frame, y) -> y, got {describe(out_rep)}")


class Canonicalizer(nn.Module):
    r"""Base class: an equivariant map from inputs to group elements, and the inverse action.

    Subclasses implement :meth:`canonicalize`; the rest is shared. A subclass must guarantee
    ``canonicalize(g · x)[0] == canonicalize(x)[0]`` for every group element ``g`` (exactly, or
    within a documented interpolation tolerance), and is tested with
    :func:`geolayers.testing.assert_group_invariant` through :class:`CanonicalizedModel`.

    Attributes:
        group: the :class:`~geolayers.groups.Group` the frames belong to.

    Example:
        >>> from geolayers.canonical import OrbitCanonicalizer
        >>> from geolayers.groups import Cyclic
        >>> canon = OrbitCanonicalizer(Cyclic(4), torch.nn.Linear(2, 1))
        >>> x_canonical, frame = canon(torch.randn(3, 2))
        >>> frame.matrix.shape
        torch.Size([3, 2, 2])
    """

    group: Group

    def canonicalize(self, x: Tensor) -> tuple[Tensor, Frame]:
        """``x -> (frame^{-1} · x, frame)``; see the subclass for the shapes."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> tuple[Tensor, Frame]:
        """Same as :meth:`canonicalize`."""
        return self.canonicalize(x)

    # -- outputs -----------------------------------------------------------------------------

    def invert(self, y: Tensor, frame: Frame, out_rep: OutTransform) -> Tensor:
        r"""Map a backbone output computed on the canonical input back: :math:`\rho_{out}(g)\,y`.

        Args:
            y: ``(B, ..., D)`` backbone outputs (for a :class:`~geolayers.groups.Rep`), or what
                ``out_rep`` takes.
            frame: the frames :meth:`canonicalize` returned for the same batch.
            out_rep: a :class:`~geolayers.groups.Rep` of :attr:`group` of size ``D``, or a
                function ``(frame, y) -> frame · y``.

        Returns:
            The equivariant output, the shape of ``y``.
        """
        return transform_output(y, frame, out_rep)

    # -- prior and metrics -------------------------------------------------------------------

    def prior_loss(self, frame: Frame) -> Tensor:
        r"""The canonicalization prior (Mondal et al. 2023, eq. (5)-(6)), mean over the batch.

        Cross-entropy of :attr:`Frame.scores` against the identity (index 0) when the frame has
        scores (finite groups), else :math:`\|\rho(g) - I\|_F^2` on :attr:`Frame.matrix`.
        Use it on upright (unaugmented) data, added to the task loss with a weight.

        Returns:
            A scalar tensor.
        """
        if frame.scores is not None:
            target = torch.zeros(
                frame.scores.shape[0], dtype=torch.long, device=frame.scores.device
            )
            return F.cross_entropy(frame.scores, target)
        if frame.matrix is None:
            raise ValueError("prior_loss needs a frame with scores or a matrix")
        eye = torch.eye(
            frame.matrix.shape[-1], dtype=frame.matrix.dtype, device=frame.matrix.device
        )
        return (frame.matrix - eye).square().sum(dim=(-2, -1)).mean()

    def identity_fraction(self, frame: Frame, atol: float = 0.1) -> Tensor:
        r"""Fraction of the batch whose frame is the identity.

        Exact for finite groups (:attr:`Frame.index` ``== 0``); for continuous groups, frames with
        :math:`\|\rho(g) - I\|_F \le` ``atol`` (``0.1`` is a rotation of about 4 degrees in 2-D).

        Returns:
            A scalar float tensor in ``[0, 1]``.
        """
        if frame.index is not None:
            return (frame.index == 0).float().mean()
        if frame.permutation is not None and frame.matrix is None:
            ident = torch.arange(frame.permutation.shape[1], device=frame.permutation.device)
            return (frame.permutation == ident).all(dim=1).float().mean()
        eye = torch.eye(
            frame.matrix.shape[-1], dtype=frame.matrix.dtype, device=frame.matrix.device
        )
        dist = torch.linalg.matrix_norm(frame.matrix.detach() - eye)
        return (dist <= atol).float().mean()


class CanonicalizedModel(nn.Module):
    r"""Any backbone made invariant (or equivariant) by a canonicalizer:
    :math:`\rho_{out}(h(x))\, f(h(x)^{-1} \cdot x)` (Kaba et al. 2023, eq. (3)).

    Args:
        canonicalizer: a :class:`Canonicalizer`.
        backbone: any ``nn.Module`` taking the canonical input.
        out_rep: ``None`` for an invariant model, else how outputs transform (see
            :meth:`Canonicalizer.invert`). (default: ``None``)

    Shapes:
        - input: whatever the canonicalizer takes, e.g. ``(B, C, H, W)`` images.
        - output: the backbone's output, ``(B, ...)``.

    Example:
        >>> from geolayers.canonical import OrbitCanonicalizer
        >>> from geolayers.groups import Cyclic
        >>> model = CanonicalizedModel(OrbitCanonicalizer(Cyclic(4), torch.nn.Linear(2, 1)),
        ...                            torch.nn.Linear(2, 3))
        >>> model(torch.randn(5, 2)).shape
        torch.Size([5, 3])
    """

    def __init__(
        self,
        canonicalizer: Canonicalizer,
        backbone: nn.Module,
        out_rep: OutTransform | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(canonicalizer, Canonicalizer):
            raise TypeError(f"canonicalizer must be a Canonicalizer, got {describe(canonicalizer)}")
        if not isinstance(backbone, nn.Module):
            raise TypeError(f"backbone must be an nn.Module, got {describe(backbone)}")
        self.canonicalizer = canonicalizer
        self.backbone = backbone
        self.out_rep = out_rep

    def forward_with_frame(self, x: Tensor) -> tuple[Tensor, Frame]:
        """The output and the frames (for :meth:`Canonicalizer.prior_loss` during training)."""
        x_canonical, frame = self.canonicalizer(x)
        y = self.backbone(x_canonical)
        if self.out_rep is not None:
            y = self.canonicalizer.invert(y, frame, self.out_rep)
        return y, frame

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_with_frame(x)[0]
