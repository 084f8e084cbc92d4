import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from geolayers.slots import (
    SlotPose,
    pose_from_attention,
    position_grid,
    relative_grid,
    rotation_angle,
    rotation_matrix,
    sample_pose,
)
from geolayers.slots.frames import frame_map, project_relative_grid

seeds = st.integers(min_value=0, max_value=2**31 - 1)


def random_pose(gen, batch, slots, dtype, max_angle=math.pi / 4):
    pose = sample_pose(batch, slots, generator=gen, dtype=dtype, max_angle=max_angle)
    scale = 0.05 + 0.5 * torch.rand(batch, slots, 2, generator=gen, dtype=dtype)
    return SlotPose(pose.position, scale, pose.rotation)


def random_attn(gen, batch, slots, tokens, dtype):
    attn = torch.rand(batch, slots, tokens, generator=gen, dtype=dtype) ** 3
    return attn / attn.sum(-1, keepdim=True)


def test_position_grid_pixel_centres(dtype):
    grid = position_grid(2, 4, dtype=dtype)
    assert grid.shape == (8, 2) and grid.dtype == dtype
    assert grid[:4, 0].tolist() == [-0.75, -0.25, 0.25, 0.75]
    assert grid[::4, 1].tolist() == [-0.5, 0.5]
    # A whole-pixel shift is an exact shift by 2 / width in the grid.
    grid35 = position_grid(35, 35, dtype=torch.float64).view(35, 35, 2)
    torch.testing.assert_close(
        grid35[:, 3:, 0] - grid35[:, :-3, 0], torch.full((35, 32), 6 / 35, dtype=torch.float64)
    )


@pytest.mark.parametrize("bad", [0, -1, 2.0, True])
def test_position_grid_rejects_bad_sizes(bad):
    with pytest.raises(ValueError, match="height"):
        position_grid(bad, 3)


def test_rotation_matrix_and_angle_round_trip(dtype, tol):
    angles = torch.linspace(-3.0, 3.0, 13, dtype=dtype)
    rot = rotation_matrix(angles)
    assert rot.shape == (13, 2, 2)
    torch.testing.assert_close(
        rot @ rot.transpose(-1, -2), torch.eye(2, dtype=dtype).expand(13, 2, 2), atol=tol, rtol=0
    )
    torch.testing.assert_close(rotation_angle(rot), angles, atol=tol, rtol=0)


def test_sample_pose_ranges_and_determinism(dtype):
    pose = sample_pose(64, 5, scale=0.2, generator=torch.Generator().manual_seed(3), dtype=dtype)
    again = sample_pose(64, 5, scale=0.2, generator=torch.Generator().manual_seed(3), dtype=dtype)
    assert all(torch.equal(a, b) for a, b in zip(pose, again, strict=True))
    assert pose.position.abs().max() <= 1 and pose.position.dtype == dtype
    assert torch.all(pose.scale == 0.2)
    assert rotation_angle(pose.rotation).abs().max() <= math.pi / 4 + 1e-6


@settings(max_examples=20, deadline=None)
@given(seed=seeds)
def test_relative_grid_is_invariant_to_moving_grid_and_poses_together(seed):
    gen = torch.Generator().manual_seed(seed)
    dtype = torch.float64
    grid = torch.rand(2, 9, 2, generator=gen, dtype=dtype) * 2 - 1
    pose = random_pose(gen, 2, 3, dtype)
    t = torch.randn(2, generator=gen, dtype=dtype)
    s = 0.5 + torch.rand((), generator=gen, dtype=dtype)
    q = rotation_matrix(torch.rand((), generator=gen, dtype=dtype) * 6 - 3)
    for mode in ("T", "TS", "TSR"):
        ref = relative_grid(grid, pose, mode, 5.0)
        assert ref.shape == (2, 3, 9, 2)
        shifted = relative_grid(
            grid + t, SlotPose(pose.position + t, pose.scale, pose.rotation), mode, 5.0
        )
        torch.testing.assert_close(shifted, ref, atol=1e-12, rtol=1e-12)
    for mode in ("TS", "TSR"):
        scaled = relative_grid(
            grid * s, SlotPose(pose.position * s, pose.scale * s, pose.rotation), mode, 5.0
        )
        torch.testing.assert_close(
            scaled, relative_grid(grid, pose, mode, 5.0), atol=1e-12, rtol=1e-12
        )
    rotated = relative_grid(
        grid @ q.T, SlotPose(pose.position @ q.T, pose.scale, q @ pose.rotation), "TSR", 5.0
    )
    torch.testing.assert_close(
        rotated, relative_grid(grid, pose, "TSR", 5.0), atol=1e-12, rtol=1e-12
    )


def test_relative_grid_values():
    pose = SlotPose(
        torch.tensor([[[0.5, 0.0]]]),
        torch.tensor([[[0.1, 0.2]]]),
        rotation_matrix(torch.tensor([[math.pi / 2]])),
    )
    g = torch.tensor([[0.5, 1.0]])  # one unit of y above the slot
    assert relative_grid(g, pose, "T", 2.0).tolist() == [[[[0.0, 0.5]]]]
    torch.testing.assert_close(relative_grid(g, pose, "TS"), torch.tensor([[[[0.0, 5.0]]]]))
    # Rotated by 90 degrees, the slot's first axis is the image's y axis.
    torch.testing.assert_close(
        relative_grid(g, pose, "TSR"), torch.tensor([[[[10.0, 0.0]]]]), atol=1e-6, rtol=0
    )
    with pytest.raises(ValueError, match="mode"):
        relative_grid(g, pose, "R")


@pytest.mark.parametrize("mode", ["T", "TS", "TSR"])
def test_frame_map_and_projection_agree_with_relative_grid(mode, dtype, tol):
    gen = torch.Generator().manual_seed(0)
    pose = random_pose(gen, 2, 3, dtype)
    for grid in (position_grid(4, 5, dtype=dtype), torch.rand(2, 7, 2, generator=gen, dtype=dtype)):
        rel = relative_grid(grid, pose, mode, 5.0)
        m, b = frame_map(pose, mode, 5.0)
        lhs = (grid[:, None] if grid.dim() == 3 else grid) @ m.transpose(-1, -2) + b[:, :, None]
        torch.testing.assert_close(lhs, rel, atol=10 * tol, rtol=tol)
        w, bias = (
            torch.randn(6, 2, generator=gen, dtype=dtype),
            torch.randn(2, 3, 6, generator=gen, dtype=dtype),
        )
        out = project_relative_grid(grid, pose, mode, w, bias, 5.0)
        torch.testing.assert_close(out, rel @ w.T + bias[:, :, None], atol=10 * tol, rtol=tol)


def test_pose_from_attention_known_values(dtype, tol):
    # Uniform attention over 2 x 2 pixel centres (+-0.5): centre 0, extent 0.5 on both axes.
    grid = position_grid(2, 2, dtype=dtype)
    attn = torch.full((1, 1, 4), 0.25, dtype=dtype)
    prev = sample_pose(1, 1, dtype=dtype, generator=torch.Generator().manual_seed(0))
    for mode in ("TS", "TSR"):
        pose = pose_from_attention(attn, grid, prev, mode)
        torch.testing.assert_close(
            pose.position, torch.zeros(1, 1, 2, dtype=dtype), atol=tol, rtol=0
        )
        torch.testing.assert_close(
            pose.scale, torch.full((1, 1, 2), 0.5, dtype=dtype), atol=tol, rtol=0
        )
    # "T" carries scale and rotation; "TS" carries rotation.
    t = pose_from_attention(attn, grid, prev, "T")
    assert torch.equal(t.scale, prev.scale) and torch.equal(t.rotation, prev.rotation)
    assert torch.equal(pose_from_attention(attn, grid, prev, "TS").rotation, prev.rotation)


def test_principal_axes_of_an_elongated_slot(dtype, tol):
    # Points spread along the direction at 30 degrees (long) and across it (short).
    angle = math.radians(30.0)
    axis = torch.tensor([math.cos(angle), math.sin(angle)], dtype=dtype)
    normal = torch.tensor([-math.sin(angle), math.cos(angle)], dtype=dtype)
    pts = torch.stack([c * axis + d * normal for c in (-0.4, 0.4) for d in (-0.1, 0.1)]) + 0.2
    attn = torch.full((1, 1, 4), 0.25, dtype=dtype)
    prev = sample_pose(1, 1, dtype=dtype)
    pose = pose_from_attention(attn, pts, prev, "TSR")
    assert abs(float(rotation_angle(pose.rotation)) - angle) < 10 * tol
    torch.testing.assert_close(
        pose.scale, torch.tensor([[[0.4, 0.1]]], dtype=dtype), atol=10 * tol, rtol=0
    )
    # The same cloud turned by a quarter turn has the same frame (angles stay in +-45 degrees),
    # with the two extents swapped.
    turned = pts @ rotation_matrix(torch.tensor(math.pi / 2, dtype=dtype)).T
    other = pose_from_attention(attn, turned, prev, "TSR")
    assert abs(float(rotation_angle(other.rotation)) - angle) < 10 * tol
    torch.testing.assert_close(
        other.scale, torch.tensor([[[0.1, 0.4]]], dtype=dtype), atol=10 * tol, rtol=0
    )


@settings(max_examples=25, deadline=None)
@given(seed=seeds)
def test_estimated_rotation_stays_within_45_degrees(seed):
    gen = torch.Generator().manual_seed(seed)
    attn = random_attn(gen, 2, 3, 12, torch.float64)
    grid = torch.rand(12, 2, generator=gen, dtype=torch.float64) * 2 - 1
    pose = pose_from_attention(
        attn, grid, random_pose(gen, 2, 3, torch.float64, max_angle=3.0), "TSR"
    )
    assert rotation_angle(pose.rotation).abs().max() <= math.pi / 4 + 1e-12
    torch.testing.assert_close(
        torch.linalg.det(pose.rotation), torch.ones(2, 3, dtype=torch.float64)
    )


@pytest.mark.parametrize("mode", ["T", "TS", "TSR"])
def test_frames_stay_finite_for_empty_and_single_pixel_slots(mode, dtype):
    grid = position_grid(5, 5, dtype=dtype)
    prev = sample_pose(1, 3, dtype=dtype, generator=torch.Generator().manual_seed(1))
    # Slot 0 won no token: after the +eps of slot attention its weights are uniform (exactly
    # isotropic); slot 1 attends to a single pixel (zero spread); slot 2 to two pixels.
    attn = torch.zeros(1, 3, 25, dtype=dtype)
    attn[0, 0] = 1 / 25
    attn[0, 1, 7] = 1
    attn[0, 2, [3, 4]] = 0.5
    attn.requires_grad_(True)
    pose = pose_from_attention(attn, grid, prev, mode, min_scale=1e-3)
    assert all(bool(torch.isfinite(t).all()) for t in pose)
    assert pose.scale.min() >= 1e-3
    if mode == "TSR":
        # No preferred axis: the previous rotation is kept.
        assert torch.equal(pose.rotation[0, 0], prev.rotation[0, 0])
    total = sum(t.sum() for t in pose) + relative_grid(grid, pose, mode, 5.0).square().sum()
    (grad,) = torch.autograd.grad(total, attn)
    assert bool(torch.isfinite(grad).all())


@pytest.mark.parametrize("mode", ["T", "TS", "TSR"])
def test_gradcheck_frame_computation(mode):
    gen = torch.Generator().manual_seed(2)
    attn = random_attn(gen, 2, 3, 8, torch.float64).requires_grad_(True)
    grid = (torch.rand(8, 2, generator=gen, dtype=torch.float64) * 2 - 1).requires_grad_(True)
    prev = random_pose(gen, 2, 3, torch.float64)
    position = prev.position.clone().requires_grad_(True)
    scale = prev.scale.clone().requires_grad_(True)

    def frames(attn, grid, position, scale):
        pose = pose_from_attention(attn, grid, SlotPose(position, scale, prev.rotation), mode)
        return (*pose, relative_grid(grid, SlotPose(position, scale, prev.rotation), mode, 5.0))

    assert torch.autograd.gradcheck(frames, (attn, grid, position, scale))


def test_bad_modes_are_rejected():
    pose = sample_pose(1, 1)
    with pytest.raises(ValueError, match="mode must be one of"):
        pose_from_attention(torch.ones(1, 1, 4) / 4, position_grid(2, 2), pose, "S")
    with pytest.raises(ValueError, match="mode must be one of"):
        frame_map(pose, "TR")
