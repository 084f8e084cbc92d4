r"""Slot-centric reference frames of `"Invariant Slot Attention: Object Discovery with
Slot-Centric Reference Frames" <https://arxiv.org/abs/2302.04973>`_ (Biza et al. 2023).

Every slot carries a pose: a position :math:`S_p \in \mathbb{R}^2`, a scale
:math:`S_s \in \mathbb{R}^2_{>0}` (one per axis of the slot frame) and a rotation
:math:`S_R \in SO(2)`. Positions of input tokens and output pixels are expressed in that frame
(:func:`relative_grid`), and the pose is re-estimated from the slot's attention map
(:func:`pose_from_attention`). Both are exactly equivariant: moving, scaling or rotating the
token coordinates together with the poses leaves the relative grid unchanged and moves the
new poses the same way, which is what makes the slot features invariant.

Coordinates follow :func:`position_grid`: ``(x, y)`` pairs in ``[-1, 1]``, ``x`` along image
columns and ``y`` along rows, at pixel centres.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from geolayers._checks import describe

#: Modes of the slot frame: translation, translation + scale, translation + scale + rotation.
MODES = ("T", "TS", "TSR")


class SlotPose(NamedTuple):
    """The reference frame of every slot.

    Attributes:
        position: ``(B, K, 2)`` slot centres :math:`S_p`.
        scale: ``(B, K, 2)`` positive extents :math:`S_s` along the two slot axes (used by
            modes ``"TS"`` and ``"TSR"``; carried unchanged by ``"T"``).
        rotation: ``(B, K, 2, 2)`` rotations :math:`S_R` whose columns are the slot axes in
            image coordinates (used by ``"TSR"``; carried unchanged by ``"T"`` and ``"TS"``).
    """

    position: Tensor
    scale: Tensor
    rotation: Tensor

    def detach(self) -> SlotPose:
        """The same pose cut from the autograd graph."""
        return SlotPose(self.position.detach(), self.scale.detach(), self.rotation.detach())

    def permute_slots(self, perm: Tensor) -> SlotPose:
        """The pose with slots reordered by ``perm: (K,)`` (slot ``i`` of the result is slot
        ``perm[i]`` of this one)."""
        return SlotPose(self.position[:, perm], self.scale[:, perm], self.rotation[:, perm])


def check_mode(mode: object) -> str:
    """``mode`` as one of :data:`MODES`, or a ValueError naming ``mode``."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    return mode  # type: ignore[return-value]


def position_grid(
    height: int,
    width: int,
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Coordinates of the pixel centres of a ``height x width`` image in ``[-1, 1]``.

    Pixel ``(i, j)`` (row, column) sits at ``x = -1 + (2 j + 1) / width``,
    ``y = -1 + (2 i + 1) / height``. Centres rather than corners make grids of different
    resolutions (an encoder's downsampled feature map, the decoder's full image) share one
    coordinate system, and make a shift by one pixel a shift by exactly ``2 / width``.

    Returns:
        ``(height * width, 2)`` ``(x, y)`` pairs in row-major pixel order.

    Example:
        >>> position_grid(1, 2).tolist()
        [[-0.5, 0.0], [0.5, 0.0]]
    """
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    dtype = dtype or torch.get_default_dtype()
    ys = (torch.arange(height, dtype=dtype, device=device) * 2 + 1) / height - 1
    xs = (torch.arange(width, dtype=dtype, device=device) * 2 + 1) / width - 1
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx, yy], dim=-1).reshape(-1, 2)


def rotation_matrix(angle: Tensor) -> Tensor:
    r"""Rotation matrices ``(..., 2, 2)`` by ``angle: (...)`` radians:
    :math:`\begin{pmatrix}\cos\theta & -\sin\theta\\ \sin\theta & \cos\theta\end{pmatrix}`.

    Example:
        >>> rotation_matrix(torch.tensor(0.0)).tolist()
        [[1.0, -0.0], [0.0, 1.0]]
    """
    c, s = torch.cos(angle), torch.sin(angle)
    return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)


def rotation_angle(rotation: Tensor) -> Tensor:
    """Angles ``(...)`` in radians of rotation matrices ``(..., 2, 2)``, in ``(-pi, pi]``.

    Example:
        >>> round(float(rotation_angle(rotation_matrix(torch.tensor(0.5)))), 6)
        0.5
    """
    return torch.atan2(rotation[..., 1, 0], rotation[..., 0, 0])


def sample_pose(
    batch: int,
    num_slots: int,
    *,
    scale: float = 0.1,
    max_angle: float = math.pi / 4,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> SlotPose:
    """Initial poses of ISA: position uniform in ``[-1, 1]^2``, both scales equal to ``scale``,
    rotation angle uniform in ``[-max_angle, max_angle]``.

    Args:
        batch: ``B``.
        num_slots: ``K``.
        scale: initial extent of every slot along both axes. (default: ``0.1``)
        max_angle: largest initial rotation in radians. (default: ``pi / 4``)
        generator: random source. (default: torch's global one)
        dtype: (default: torch's default dtype)
        device: (default: CPU)

    Example:
        >>> sample_pose(2, 4).rotation.shape
        torch.Size([2, 4, 2, 2])
    """
    dtype = dtype or torch.get_default_dtype()
    # Drawn on the CPU so that a seeded CPU generator gives the same poses on every device.
    u = torch.rand(batch, num_slots, 3, generator=generator, dtype=dtype)
    position = (2 * u[..., :2] - 1).to(device)
    angle = ((2 * u[..., 2] - 1) * max_angle).to(device)
    scales = torch.full((batch, num_slots, 2), float(scale), dtype=dtype, device=device)
    return SlotPose(position, scales, rotation_matrix(angle))


def check_pose(pose: object, batch: int, num_slots: int, like: Tensor, name: str = "pose") -> None:
    """TypeError/ValueError naming ``name`` unless ``pose`` is a :class:`SlotPose` of ``B``
    batches of ``K`` slots on the dtype and device of ``like``."""
    if not isinstance(pose, SlotPose):
        raise TypeError(f"{name} must be a SlotPose, got {describe(pose)}")
    expected = {
        "position": (batch, num_slots, 2),
        "scale": (batch, num_slots, 2),
        "rotation": (batch, num_slots, 2, 2),
    }
    for field, shape in expected.items():
        value = getattr(pose, field)
        if not isinstance(value, Tensor) or tuple(value.shape) != shape:
            raise ValueError(f"{name}.{field} must have shape {shape}, got {describe(value)}")
        if value.dtype != like.dtype or value.device != like.device:
            raise ValueError(
                f"{name}.{field} must have dtype {like.dtype} on {like.device}, got "
                f"{value.dtype} on {value.device}"
            )


def check_grid(grid: object, batch: int, num_tokens: int, like: Tensor) -> None:
    """TypeError/ValueError naming ``grid`` unless it is ``(N, 2)`` or ``(B, N, 2)`` floats on
    the dtype and device of ``like``."""
    if not isinstance(grid, Tensor):
        raise TypeError(f"grid must be a tensor (N, 2) or (B, N, 2), got {describe(grid)}")
    if tuple(grid.shape) not in ((num_tokens, 2), (batch, num_tokens, 2)):
        raise ValueError(
            f"grid must have shape (N, 2) = ({num_tokens}, 2) or (B, N, 2) = "
            f"({batch}, {num_tokens}, 2), got {tuple(grid.shape)}"
        )
    if grid.dtype != like.dtype or grid.device != like.device:
        raise ValueError(
            f"grid must have dtype {like.dtype} on {like.device}, got {grid.dtype} on {grid.device}"
        )


def _offsets(grid: Tensor, position: Tensor) -> Tensor:
    """``grid - position`` as ``(B, K, N, 2)`` for ``grid: (N, 2) | (B, N, 2)``."""
    if grid.dim() == 2:
        return grid[None, None] - position[:, :, None]
    return grid[:, None] - position[:, :, None]


def relative_grid(grid: Tensor, pose: SlotPose, mode: str, scales_factor: float = 1.0) -> Tensor:
    r"""Token or pixel coordinates expressed in every slot's reference frame (ISA, section 3).

    .. math::
        \text{T}:\ \frac{g - S_p}{\delta}, \qquad
        \text{TS}:\ \frac{g - S_p}{\delta\, S_s}, \qquad
        \text{TSR}:\ \frac{S_R^\top (g - S_p)}{\delta\, S_s}

    with the division by the two-vector :math:`S_s` taken per axis and :math:`\delta` the
    ``scales_factor``. A translation, scaling or rotation applied to ``grid`` and to the poses
    together leaves the result unchanged (for ``"TSR"``, :math:`g \mapsto Qg`,
    :math:`S_p \mapsto Q S_p`, :math:`S_R \mapsto Q S_R`).

    Args:
        grid: ``(N, 2)`` coordinates shared by the batch, or ``(B, N, 2)``.
        pose: :class:`SlotPose` of ``B`` batches of ``K`` slots.
        mode: ``"T"``, ``"TS"`` or ``"TSR"``.
        scales_factor: :math:`\delta > 0`. (default: ``1.0``)

    Returns:
        ``(B, K, N, 2)``.

    Example:
        >>> relative_grid(position_grid(4, 4), sample_pose(2, 3), "TSR", 5.0).shape
        torch.Size([2, 3, 16, 2])
    """
    offsets = _offsets(grid, pose.position)
    if mode == "T":
        return offsets / scales_factor
    if mode == "TSR":
        # S_R^T d for every token: rows of the result are d . (columns of S_R).
        offsets = torch.einsum("bknc,bkca->bkna", offsets, pose.rotation)
    elif mode != "TS":
        check_mode(mode)
    return offsets / (scales_factor * pose.scale[:, :, None])


def frame_map(pose: SlotPose, mode: str, scales_factor: float = 1.0) -> tuple[Tensor, Tensor]:
    """The affine map of :func:`relative_grid`: ``relative_grid(g) = g @ M^T + m``.

    Returns:
        ``M: (B, K, 2, 2)`` (``I / delta``, ``diag(1 / (delta S_s))`` or
        ``diag(1 / (delta S_s)) S_R^T``) and ``m = -M S_p: (B, K, 2)``.

    Example:
        >>> pose = sample_pose(1, 2)
        >>> m, b = frame_map(pose, "TSR", 5.0)
        >>> g = position_grid(3, 3)
        >>> torch.allclose(g @ m.transpose(-1, -2) + b[:, :, None], relative_grid(g, pose, "TSR", 5.0))
        True
    """
    check_mode(mode)
    position = pose.position
    if mode == "T":
        eye = torch.eye(2, dtype=position.dtype, device=position.device)
        m = (eye / scales_factor).expand(*position.shape[:2], 2, 2)
    else:
        inv = (scales_factor * pose.scale).reciprocal()  # (B, K, 2)
        axes = pose.rotation.transpose(-1, -2) if mode == "TSR" else None
        m = torch.diag_embed(inv) if axes is None else axes * inv[..., None]
    return m, -(m @ position[..., None]).squeeze(-1)


def project_relative_grid(
    grid: Tensor,
    pose: SlotPose,
    mode: str,
    weight: Tensor,
    bias: Tensor | None = None,
    scales_factor: float = 1.0,
) -> Tensor:
    r"""A linear map of the relative grid, :math:`W r_{kn} + b_k` with
    :math:`r = ` :func:`relative_grid`, computed as :math:`(W M_k) g_n + (W m_k + b_k)`
    (:func:`frame_map`): one product of the shared grid with a per-slot ``(H, 3)`` matrix
    instead of a ``(B K N, 2) x (2, H)`` product, whose backward pass is several times slower
    on CPU.

    Args:
        grid: ``(N, 2)`` or ``(B, N, 2)``.
        pose: :class:`SlotPose` of ``B x K`` slots.
        mode: ``"T"``, ``"TS"`` or ``"TSR"``.
        weight: ``(H, 2)``, the weight of a ``Linear(2, H)``.
        bias: ``(H,)`` or per slot ``(B, K, H)``. (default: none)
        scales_factor: :math:`\delta`. (default: ``1.0``)

    Returns:
        ``(B, K, N, H)``.

    Example:
        >>> pose, g, w = sample_pose(2, 3), position_grid(4, 4), torch.randn(5, 2)
        >>> out = project_relative_grid(g, pose, "TS", w)
        >>> torch.allclose(out, relative_grid(g, pose, "TS") @ w.T, atol=1e-6)
        True
    """
    m, shift = frame_map(pose, mode, scales_factor)
    a = weight @ m  # (B, K, H, 2)
    b = (weight @ shift[..., None]).squeeze(-1)  # (B, K, H)
    if bias is not None:
        b = b + bias
    ones = grid.new_ones(*grid.shape[:-1], 1)
    grid1 = torch.cat([grid, ones], dim=-1)  # (N, 3) or (B, N, 3)
    if grid1.dim() == 3:
        grid1 = grid1[:, None]
    return torch.matmul(grid1, torch.cat([a, b[..., None]], dim=-1).transpose(-1, -2))


def pose_from_attention(
    attn: Tensor,
    grid: Tensor,
    previous: SlotPose,
    mode: str,
    *,
    min_scale: float = 1e-3,
) -> SlotPose:
    r"""Re-estimate every slot's pose from its attention over the tokens (ISA, eqs. 5-7).

    With the attention normalised over tokens, :math:`\sum_n a_{kn} = 1`:

    .. math::
        S_p = \sum_n a_n g_n, \qquad
        C = \sum_n a_n (g_n - S_p)(g_n - S_p)^\top, \qquad
        S_{s,i} = \sqrt{e_i^\top C\, e_i}

    where :math:`e_i` are the slot axes: the columns of the new :math:`S_R` for ``"TSR"``, the
    image axes for ``"TS"``. ``"TSR"`` takes :math:`S_R` from the eigenvectors of :math:`C`:
    the four rotations whose columns are eigenvectors differ by quarter turns, and the one with
    angle in :math:`(-45^\circ, 45^\circ]` is kept. In closed form, with
    :math:`u = C_{00} - C_{11}` and :math:`v = 2 C_{01}` (the major axis is at
    :math:`\tfrac12 \operatorname{atan2}(v, u)`), that angle is
    :math:`\tfrac14 \operatorname{atan2}(2uv,\, u^2 - v^2)`; this avoids ``eigh``, whose
    eigenvectors and gradients are unstable when the two eigenvalues are close. Where
    :math:`C` is isotropic to rounding (:math:`\sqrt{u^2 + v^2} \le \sqrt{\epsilon}\,
    \operatorname{tr} C`, e.g. a slot that attends uniformly) no axis is preferred and the
    previous rotation is kept, which is equivariant too and keeps the gradient finite.

    Scales are clamped below at ``min_scale`` so a slot attending to a single token keeps a
    finite frame. The rotation is exactly equivariant while the rotated angle stays inside
    :math:`(-45^\circ, 45^\circ]`; at that boundary the chosen frame jumps by a quarter turn.

    Args:
        attn: ``(B, K, N)`` non-negative attention, each row summing to 1 over the tokens.
        grid: ``(N, 2)`` or ``(B, N, 2)`` token coordinates.
        previous: the poses the attention was computed with: ``"T"`` keeps their scale and
            rotation, ``"TS"`` their rotation, ``"TSR"`` uses their rotation for isotropic
            slots.
        mode: ``"T"``, ``"TS"`` or ``"TSR"``.
        min_scale: lower bound of the scales, ``> 0``. (default: ``1e-3``)

    Returns:
        The new :class:`SlotPose`.

    Example:
        >>> attn = torch.full((1, 1, 4), 0.25)
        >>> pose_from_attention(attn, position_grid(2, 2), sample_pose(1, 1), "TS").scale
        tensor([[[0.5000, 0.5000]]])
    """
    check_mode(mode)
    position = attn @ grid  # (B, K, N) @ (N, 2) or (B, N, 2): (B, K, 2)
    if mode == "T":
        return SlotPose(position, previous.scale, previous.rotation)
    centred = _offsets(grid, position)
    # Centred second moments (not E[g g^T] - p p^T, which cancels for small slots far
    # from the origin and could turn negative).
    weighted = attn[..., None, :]  # (B, K, 1, N)
    rotation = previous.rotation
    if mode == "TS":
        # Only the diagonal of C is needed: the second moment along each image axis.
        var = (weighted @ centred.square()).squeeze(-2)
    else:
        cov = (weighted * centred.transpose(-1, -2)) @ centred  # (B, K, 2, 2)
        rotation = _principal_rotation(cov, previous.rotation)
        # diag(S_R^T C S_R): the second moment along each new slot axis.
        var = ((cov @ rotation) * rotation).sum(dim=-2)
    # The clamp comes before the sqrt, so its derivative is finite even for a zero variance.
    scale = var.clamp_min(min_scale**2).sqrt()
    return SlotPose(position, scale, rotation)


def _principal_rotation(cov: Tensor, previous: Tensor) -> Tensor:
    """Eigenvector frame of ``cov: (..., 2, 2)`` with angle in (-45, 45] degrees, or
    ``previous`` where ``cov`` is isotropic to rounding (see :func:`pose_from_attention`)."""
    u = cov[..., 0, 0] - cov[..., 1, 1]
    v = cov[..., 0, 1] + cov[..., 1, 0]
    r2 = u.square() + v.square()
    trace = cov[..., 0, 0] + cov[..., 1, 1]
    tol = torch.finfo(cov.dtype).eps ** 0.5
    isotropic = r2 <= (tol * trace).square() + torch.finfo(cov.dtype).tiny
    # atan2's gradient divides by y^2 + x^2 = r2^2: substitute (0, 1) where it would be 0.
    y = torch.where(isotropic, torch.zeros_like(u), 2 * u * v)
    x = torch.where(isotropic, torch.ones_like(u), u.square() - v.square())
    angle = 0.25 * torch.atan2(y, x)
    return torch.where(isotropic[..., None, None], previous, rotation_matrix(angle))


__all__ = [
    "MODES",
    "SlotPose",
    "frame_map",
    "pose_from_attention",
    "position_grid",
    "project_relative_grid",
    "relative_grid",
    "rotation_angle",
    "rotation_matrix",
    "sample_pose",
]
