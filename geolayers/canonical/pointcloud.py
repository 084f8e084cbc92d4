r"""Canonicalization of 3-D point clouds under rotations, reflections and translations.

A small vector-neuron network (`"Vector Neurons: A General Framework for SO(3)-Equivariant
Networks" <https://arxiv.org/abs/2104.12229>`_, Deng et al., ICCV 2021: linear maps that mix
channels of 3-vectors, the VN-LeakyReLU, mean pooling over points) predicts a few equivariant
vectors of the cloud, :math:`v_k(g \cdot X) = g\, v_k(X)`, and Gram-Schmidt turns them into an
orthonormal frame :math:`R(X)` with :math:`R(g \cdot X) = g\, R(X)`: the canonicalization
function of Kaba et al. 2023 (`arXiv:2211.06489 <https://arxiv.org/abs/2211.06489>`_) for
:math:`SO(3)`, :math:`O(3)` and, centring the cloud, :math:`E(3)`. The canonical cloud
:math:`R^\top (x_i - t)` is then the same for every pose of the input.

Vector-neuron layers are :math:`O(3)`-equivariant (they only take linear combinations of
vectors with coefficients built from dot products). For :math:`SO(3)`, two vectors suffice:
:math:`e_3 = e_1 \times e_2` makes :math:`\det R = +1`. For :math:`O(3)` the cross product is
wrong under reflections (:math:`(g a) \times (g b) = \det(g)\, g (a \times b)`), so a third
predicted vector :math:`v_3` picks the sign: :math:`e_3 = \mathrm{sign}(v_3 \cdot (e_1 \times e_2))
\, e_1 \times e_2`, which turns with the input as :math:`g e_3` for reflections too, and
:math:`\det R = \pm 1` records the handedness of the input.

Degenerate clouds. A frame cannot be continuous and equivariant on every input (a collinear
cloud is fixed by the rotations about its line, so no equivariant second vector exists). When a
predicted vector is (nearly) zero or parallel to the previous ones, a fixed completion is used
instead: the result is always a valid orthogonal matrix, finite with finite gradients, and the
canonical cloud is still invariant when the degeneracy comes from a symmetry of the cloud (the
coordinates along the arbitrary axes are then zero). Vector neurons are odd functions, so a cloud
symmetric under :math:`x \mapsto -x` has no nonzero equivariant vector under :math:`O(3)`; for
:math:`SO(3)` the network adds normalized cross products of channels, which are even, so such
clouds still get a frame unless they have rotational symmetries.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from geolayers._checks import check_positive_int, describe, safe_sqrt
from geolayers.canonical.base import Canonicalizer, Frame
from geolayers.groups import O3, SO3, Group

__all__ = ["PointCloudCanonicalizer", "restore_points", "orthonormal_frame"]

#: A vector whose part orthogonal to the previous frame vectors is below this many machine
#: epsilons times the input's magnitude counts as degenerate (see :func:`orthonormal_frame`).
_DEGENERATE = 64


def _norm(v: Tensor, keepdim: bool = False) -> Tensor:
    """Euclidean norm on the last axis with gradient 0, not NaN, at 0."""
    return safe_sqrt(v.square().sum(dim=-1, keepdim=keepdim))


class _VNLinear(nn.Module):
    """Mixes channels of 3-vectors, ``(..., C_in, 3) -> (..., C_out, 3)``, without bias (a bias
    vector would not rotate with the input)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        # Variance 1 / C_in: the norms of the features neither grow nor shrink with depth.
        bound = math.sqrt(3 / in_channels)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels).uniform_(-bound, bound))

    def forward(self, v: Tensor) -> Tensor:
        # One (..., 3, C_in) @ (C_in, C_out) product instead of a batch of tiny (C_out, C_in) @
        # (C_in, 3) ones: the same numbers, about twice as fast.
        return (v.transpose(-1, -2) @ self.weight.T).transpose(-1, -2)


class _VNLeakyReLU(nn.Module):
    r"""VN-LeakyReLU (Deng et al. 2021, eq. (9)): a learned direction :math:`k = U q` per
    channel; where :math:`q \cdot k < 0` the component of :math:`q` along :math:`k` is removed.
    Continuous (the removed part vanishes at :math:`q \cdot k = 0`) and equivariant, as the
    coefficients are dot products."""

    def __init__(self, channels: int, negative_slope: float = 0.2) -> None:
        super().__init__()
        self.direction = _VNLinear(channels, channels)
        self.negative_slope = negative_slope

    def forward(self, q: Tensor) -> Tensor:
        k = self.direction(q)
        dot = (q * k).sum(dim=-1, keepdim=True)
        # The clamp acts on an invariant, so equivariance is exact; it keeps dot / |k|^2 and its
        # gradient finite when k vanishes (zero features of a degenerate cloud).
        k_sq = k.square().sum(dim=-1, keepdim=True).clamp_min(torch.finfo(q.dtype).eps ** 2)
        relu = torch.where(dot >= 0, q, q - (dot / k_sq) * k)
        return self.negative_slope * q + (1 - self.negative_slope) * relu


class _VNCross(nn.Module):
    r"""Cross products of two linear maps of the channels, :math:`(A q) \times (B q)`, divided
    by :math:`|A q| + |B q|` to stay of degree one in the input. Equivariant under rotations
    only (a reflection :math:`g` gives :math:`\det(g)\, g (a \times b)`)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.a = _VNLinear(channels, channels)
        self.b = _VNLinear(channels, channels)

    def forward(self, q: Tensor) -> Tensor:
        a, b = self.a(q), self.b(q)
        scale = _norm(a, keepdim=True) + _norm(b, keepdim=True)
        # An eps floor, not tiny: the gradient of x / s is x / s^2, which must not overflow.
        return torch.linalg.cross(a, b, dim=-1) / scale.clamp_min(torch.finfo(q.dtype).eps)


def _masked_mean(v: Tensor, weights: Tensor, count: Tensor) -> Tensor:
    """Mean over the points axis 1 of ``v (B, N, ...)`` with ``weights (B, N)`` 0/1."""
    w = weights.reshape(*weights.shape, *([1] * (v.dim() - 2)))
    c = count.reshape(-1, *([1] * (v.dim() - 2)))
    return (v * w).sum(dim=1) / c


class _VNBlock(nn.Module):
    """Point features plus the cloud's mean (and, for SO(3), cross products), mixed and
    rectified: ``(B, N, C_in, 3) -> (B, N, C_out, 3)``."""

    def __init__(self, in_channels: int, out_channels: int, cross: bool) -> None:
        super().__init__()
        self.cross = _VNCross(in_channels) if cross else None
        width = (3 if cross else 2) * in_channels
        self.linear = _VNLinear(width, out_channels)
        self.act = _VNLeakyReLU(out_channels)

    def forward(self, f: Tensor, weights: Tensor, count: Tensor) -> Tensor:
        pooled = _masked_mean(f, weights, count)[:, None].expand_as(f)
        parts = [f, pooled]
        if self.cross is not None:
            parts.append(self.cross(f))
        return self.act(self.linear(torch.cat(parts, dim=-2)))


def orthonormal_frame(vectors: Tensor, *, special: bool = True, scale: Tensor | None = None):
    r"""An orthogonal frame ``(B, 3, 3)``, columns :math:`e_1, e_2, e_3`, from predicted
    vectors by Gram-Schmidt, equivariant: ``orthonormal_frame(v @ g.T) = g @ orthonormal_frame(v)``
    for rotations (and reflections, with ``special=False``).

    :math:`e_1 = v_1 / |v_1|`; :math:`e_2` is :math:`v_2` minus its :math:`e_1` part, normalized
    (projected twice, which makes it orthogonal to machine precision); :math:`e_3 = e_1 \times e_2`
    (``special``) or that times the sign of :math:`v_3 \cdot (e_1 \times e_2)`.

    A vector counts as degenerate when what is left of it is at most
    :math:`64\,\epsilon_{dtype}\,` ``scale`` (the input's magnitude, so that the test does not
    depend on units; ``eps`` is ``1.2e-7`` in float32); then a fixed completion replaces it: :math:`e_1 = (1, 0, 0)`, :math:`e_2`
    from the standard basis vector least aligned with :math:`e_1`, sign :math:`+1`. The result is
    always orthogonal with finite gradients.

    Args:
        vectors: ``(B, K, 3)``, ``K >= 2`` (``K >= 3`` unless ``special``).
        special: return rotations (:math:`\det = +1`). (default: ``True``)
        scale: ``(B,)`` the magnitude of the input the vectors came from. (default: the largest
            norm among ``vectors``)

    Returns:
        ``(B, 3, 3)``, the frame vectors as columns.

    Example:
        >>> v = torch.tensor([[[2.0, 0.0, 0.0], [1.0, 3.0, 0.0]]])
        >>> orthonormal_frame(v)[0]
        tensor([[1., 0., 0.],
                [0., 1., 0.],
                [0., 0., 1.]])
    """
    need = 2 if special else 3
    if not isinstance(vectors, Tensor) or vectors.dim() != 3 or vectors.shape[-1] != 3:
        raise ValueError(f"vectors must have shape (B, K, 3), got {describe(vectors)}")
    if vectors.shape[1] < need:
        raise ValueError(f"vectors must hold at least {need} vectors (K), got {vectors.shape[1]}")
    finfo = torch.finfo(vectors.dtype)
    if scale is None:
        scale = _norm(vectors).amax(dim=1).detach()
    # 64 eps: above the rounding noise of an exactly degenerate cloud's vectors, yet small, as
    # every cloud whose vectors cross it gets a discontinuous frame. The floor sqrt(tiny) keeps
    # 1 / |v| (the gradient of v / |v|) far from overflow.
    threshold = (_DEGENERATE * finfo.eps * scale + math.sqrt(finfo.tiny))[:, None]
    v1, v2 = vectors[:, 0], vectors[:, 1]
    eye = torch.eye(3, dtype=vectors.dtype, device=vectors.device)

    n1 = _norm(v1, keepdim=True)
    ok1 = n1 > threshold
    # Dividing by 1 where the vector is rejected: the unused branch's gradient must be finite
    # too, or 0 * inf would make it NaN.
    e1 = torch.where(ok1, v1 / torch.where(ok1, n1, 1.0), eye[0])

    def orthogonal_part(v: Tensor) -> Tensor:
        v = v - (v * e1).sum(-1, keepdim=True) * e1
        return v - (v * e1).sum(-1, keepdim=True) * e1

    u = orthogonal_part(v2)
    nu = _norm(u, keepdim=True)
    ok2 = nu > threshold
    # The basis vector least aligned with e1 keeps at least sqrt(2/3) of its length.
    least = eye[e1.detach().abs().argmin(dim=-1)]
    w = orthogonal_part(least)
    fallback = w / _norm(w, keepdim=True)
    e2 = torch.where(ok2, u / torch.where(ok2, nu, 1.0), fallback)
    e3 = torch.linalg.cross(e1, e2, dim=-1)
    if not special:
        d = (vectors[:, 2] * e3).sum(-1, keepdim=True).detach()
        # The sign is piecewise constant: it carries no gradient, and +1 when undecided.
        sign = torch.where(d.abs() > threshold, torch.sign(d), 1.0)
        e3 = sign * e3
    return torch.stack([e1, e2, e3], dim=-1)


def restore_points(frame: Frame, y: Tensor) -> Tensor:
    r"""Positions predicted in the canonical frame, back in the input's: :math:`R y + t`.

    The ``out_rep`` of a :class:`~geolayers.canonical.CanonicalizedModel` whose backbone
    outputs points ``(B, ..., 3)`` (use :class:`~geolayers.groups.Vector` instead for directions,
    forces, velocities: they do not translate).

    Example:
        >>> frame = Frame(matrix=torch.eye(3)[None], translation=torch.ones(1, 3))
        >>> restore_points(frame, torch.zeros(1, 2, 3))[0, 0]
        tensor([1., 1., 1.])
    """
    if not isinstance(frame, Frame) or frame.matrix is None or frame.matrix.shape[-2:] != (3, 3):
        raise ValueError(f"frame must be a Frame with a (B, 3, 3) matrix, got {describe(frame)}")
    b = frame.matrix.shape[0]
    if not isinstance(y, Tensor) or y.dim() < 2 or y.shape[0] != b or y.shape[-1] != 3:
        raise ValueError(f"y must have shape (B, ..., 3) with B = {b}, got {describe(y)}")
    flat = y.reshape(b, -1, 3)
    out = flat @ frame.matrix.mT.to(y.dtype)
    if frame.translation is not None:
        out = out + frame.translation.to(y.dtype)[:, None]
    return out.reshape(y.shape)


class PointCloudCanonicalizer(Canonicalizer):
    r"""Canonicalize point clouds ``(B, N, 3)`` under :math:`SO(3)` or :math:`O(3)`, and
    translations with ``translation=True`` (:math:`SE(3)` / :math:`E(3)`).

    A vector-neuron network (Deng et al. 2021) on the centred points predicts two (SO(3)) or
    three (O(3)) equivariant vectors, which :func:`orthonormal_frame` turns into the frame
    :math:`R`; with ``translation`` the frame's origin :math:`t` is the centroid of the cloud,
    plus a learned equivariant offset with ``learned_offset``. The canonical cloud
    :math:`R^\top (x_i - t)` is invariant, and outputs of the backbone map back with
    :meth:`invert` (:class:`~geolayers.groups.Vector` for vectors, :func:`restore_points` for
    positions). See the module notes for degenerate clouds.

    Args:
        group: ``SO3()`` or ``O3()``.
        hidden_channels: vector channels of the network. (default: ``16``)
        num_layers: VN blocks (linear + VN-LeakyReLU, with the cloud's mean as context).
            (default: ``3``)
        translation: also canonicalize translations: centre the cloud. (default: ``False``)
        learned_offset: add a predicted equivariant vector to the centroid (needs
            ``translation``). (default: ``False``)

    Shapes:
        - input: ``x (B, N, 3)``, optional bool ``mask (B, N)`` (``True`` = point present).
        - output: ``x_canonical (B, N, 3)`` (zeros at masked points) and a
          :class:`~geolayers.canonical.Frame` with ``matrix (B, 3, 3)`` (the frame vectors as
          columns: ``x_canonical = (x - translation) @ matrix``) and ``translation (B, 3)`` or
          ``None``.

    Without ``translation`` the network still runs on centred points, with the centroid as an
    extra input channel: the frame then rotates about the origin, as the group does.

    Example:
        >>> from geolayers.groups import SO3
        >>> canon = PointCloudCanonicalizer(SO3(), translation=True).double()
        >>> x, g = torch.randn(2, 10, 3, dtype=torch.float64), SO3().sample(1)[0]
        >>> torch.allclose(canon(x @ g.T + 1.0)[0], canon(x)[0], atol=1e-9)
        True
    """

    def __init__(
        self,
        group: Group,
        *,
        hidden_channels: int = 16,
        num_layers: int = 3,
        translation: bool = False,
        learned_offset: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(group, Group):
            raise TypeError(f"group must be a geolayers.groups.Group, got {describe(group)}")
        if group == SO3():
            special = True
        elif group == O3():
            special = False
        else:
            raise ValueError(f"group must be SO3() or O3(), got {group!r}")
        hidden_channels = check_positive_int("hidden_channels", hidden_channels)
        num_layers = check_positive_int("num_layers", num_layers)
        for name, value in (("translation", translation), ("learned_offset", learned_offset)):
            if not isinstance(value, bool):
                raise TypeError(f"{name} must be a bool, got {describe(value)}")
        if learned_offset and not translation:
            raise ValueError("learned_offset needs translation=True (it moves the origin)")
        self.group = group
        self.special = special
        self.translation = translation
        self.learned_offset = learned_offset
        in_channels = 3 if translation else 4
        widths = [in_channels] + [hidden_channels] * num_layers
        self.blocks = nn.ModuleList(
            _VNBlock(a, b, cross=special) for a, b in zip(widths[:-1], widths[1:], strict=True)
        )
        self.num_vectors = 2 if special else 3
        pooled_channels = in_channels + hidden_channels * num_layers
        self.head = _VNLinear(3 * pooled_channels, self.num_vectors + int(learned_offset))

    def vectors(self, x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """``(vectors (B, K, 3), centroid (B, 3), scale (B,))``: the network's equivariant
        vectors (the frame's, then the offset), the centroid of the present points, and the
        RMS norm of the network's input."""
        return self._vectors(*self._check(x, mask))

    def _vectors(self, x: Tensor, weights: Tensor, count: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        centroid = _masked_mean(x, weights, count)
        p = (x - centroid[:, None]) * weights[..., None]
        # Centred points alone are useless to a vector-neuron net: every channel would stay a
        # per-channel multiple of p_i and average to 0. Two more equivariant inputs, of degree
        # one like p_i, break that: |p_i| p_i / s and C p_i / s^2, with C = mean p p^T the
        # covariance and s the RMS radius (s = 0 only for a single point, where all are 0).
        radius = safe_sqrt(_masked_mean(p.square().sum(-1), weights, count))
        s = torch.where(radius > 0, radius, 1.0)[:, None, None]
        cov = p.mT @ p / count[:, None, None]
        channels = [p, _norm(p, keepdim=True) * p / s, p @ cov / s.square()]
        if not self.translation:
            # The centroid turns with the cloud about the origin: a valid input under SO(3)/O(3)
            # (not under translations), and the only clue to a cloud's offset from the origin.
            channels.append(centroid[:, None].expand_as(p))
        f = torch.stack(channels, dim=2)
        sq = (f.square().sum(dim=(-2, -1)) * weights).sum(dim=1) / count
        scale = safe_sqrt(sq).detach()
        pooled = [_masked_mean(f, weights, count)]
        for block in self.blocks:
            f = block(f, weights, count) * weights[:, :, None, None]
            pooled.append(_masked_mean(f, weights, count))
        # The head sees the pooled features of every depth (the input's moments such as
        # mean |p| p directly), and their images under C / s^2 and (C / s^2)^2: a vector m and
        # C m, C^2 m span space for a generic cloud, which keeps the frame well conditioned.
        m = torch.cat(pooled, dim=1)
        cm = m @ cov / s.square()
        return self.head(torch.cat([m, cm, cm @ cov / s.square()], dim=1)), centroid, scale

    def canonicalize(self, x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Frame]:
        """``x -> (x_canonical, frame)``; see the class for the shapes."""
        x, weights, count = self._check(x, mask)
        vectors, centroid, scale = self._vectors(x, weights, count)
        matrix = orthonormal_frame(vectors, special=self.special, scale=scale)
        t = None
        if self.translation:
            t = centroid + vectors[:, -1] if self.learned_offset else centroid
            x = x - t[:, None]
        x_canonical = x @ matrix
        if mask is not None:
            x_canonical = torch.where(mask[..., None], x_canonical, 0)
        return x_canonical, Frame(matrix=matrix, translation=t)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Frame]:  # type: ignore[override]
        """Same as :meth:`canonicalize`."""
        return self.canonicalize(x, mask)

    def _check(self, x: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """``(x, weights (B, N) 0/1 in x's dtype, count (B,) >= 1)``."""
        if not isinstance(x, Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {describe(x)}")
        if not x.is_floating_point():
            raise TypeError(f"x must be floating point, got {describe(x)}")
        if x.dim() != 3 or x.shape[-1] != 3:
            raise ValueError(f"x must have shape (B, N, 3), got {describe(x)}")
        b, n = x.shape[:2]
        if mask is None:
            weights = x.new_ones(b, n)
        else:
            if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
                raise TypeError(f"mask must be a bool tensor (B, N), got {describe(mask)}")
            if tuple(mask.shape) != (b, n):
                raise ValueError(f"mask must have shape (B, N) = ({b}, {n}), got {describe(mask)}")
            if mask.device != x.device:
                raise ValueError(f"mask must be on the device of x ({x.device}), got {mask.device}")
            weights = mask.to(x.dtype)
            # Masked points may hold anything, even NaN: keep them out of every sum.
            x = torch.where(mask[..., None], x, 0)
        # An empty cloud counts as one point at the origin: no 0/0.
        count = weights.sum(dim=1).clamp_min(1)
        return x, weights, count

    def extra_repr(self) -> str:
        return (
            f"group={self.group!r}, translation={self.translation}, "
            f"learned_offset={self.learned_offset}"
        )
