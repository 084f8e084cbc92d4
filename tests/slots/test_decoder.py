import pytest
import torch

from geolayers.slots import SlotPose, SpatialBroadcastDecoder, sample_pose


@pytest.mark.parametrize("mode", [None, "T", "TS", "TSR"])
@pytest.mark.parametrize("kernel_size", [1, 3])
def test_shapes_and_masks_sum_to_one(mode, kernel_size, dtype, tol):
    torch.manual_seed(0)
    dec = SpatialBroadcastDecoder(8, (6, 7), hidden_dim=12, kernel_size=kernel_size, mode=mode)
    dec = dec.to(dtype)
    slots = torch.randn(2, 3, 8, dtype=dtype)
    pose = sample_pose(2, 3, dtype=dtype) if mode else None
    out = dec(slots, pose)
    assert out.recon.shape == (2, 3, 6, 7) and out.recon.dtype == dtype
    assert out.masks.shape == (2, 3, 6, 7) and out.mask_logits.shape == (2, 3, 6, 7)
    assert out.rgb.shape == (2, 3, 3, 6, 7)
    torch.testing.assert_close(out.masks.sum(1), torch.ones(2, 6, 7, dtype=dtype), atol=tol, rtol=0)
    torch.testing.assert_close(out.recon, (out.masks[:, :, None] * out.rgb).sum(1))


@pytest.mark.parametrize("mode", ["T", "TS", "TSR"])
def test_relative_decoder_moves_a_slot_with_its_pose(mode, dtype, tol):
    """Each slot is drawn in its own frame: moving a slot's position by whole pixels moves its
    image and mask logits by those pixels (the per-pixel MLP decoder is exactly equivariant)."""
    torch.manual_seed(0)
    dec = SpatialBroadcastDecoder(8, (12, 12), hidden_dim=16, mode=mode).to(dtype)
    slots = torch.randn(1, 2, 8, dtype=dtype)
    pose = sample_pose(1, 2, scale=0.2, dtype=dtype, generator=torch.Generator().manual_seed(0))
    shift = torch.tensor([3, -2])  # pixels along x (columns), y (rows)
    moved = SlotPose(pose.position + shift.to(dtype) * 2 / 12, pose.scale, pose.rotation)
    a, b = dec(slots, pose), dec(slots, moved)
    # Pixels (i, j) of the moved decoding equal pixels (i + 2, j - 3) of the original.
    torch.testing.assert_close(
        b.mask_logits[..., :10, 3:], a.mask_logits[..., 2:, :9], atol=10 * tol, rtol=tol
    )
    torch.testing.assert_close(b.rgb[..., :10, 3:], a.rgb[..., 2:, :9], atol=10 * tol, rtol=tol)


def test_absolute_decoder_needs_no_pose_and_position_weights_start_scaled():
    torch.manual_seed(0)
    dec = SpatialBroadcastDecoder(4, (5, 5), position_init_scale=5.0)
    out = dec(torch.randn(1, 2, 4))
    assert out.masks.shape == (1, 2, 5, 5)
    # Default Linear(2, H) initialisation is uniform in +-1/sqrt(2); here 5 times that.
    assert 1 / 2**0.5 < dec.grid_in.weight.abs().max() <= 5 / 2**0.5


def test_repr():
    assert str(SpatialBroadcastDecoder(64, (35, 35), mode="TS")) == (
        "SpatialBroadcastDecoder(64 -> 3 x 35 x 35, hidden_dim=64, num_layers=3, kernel_size=1, "
        "mode='TS')"
    )


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="num_layers must be >= 2"):
        SpatialBroadcastDecoder(4, (5, 5), num_layers=1)
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        SpatialBroadcastDecoder(4, (5, 5), kernel_size=2)
    with pytest.raises(ValueError, match="resolution must be"):
        SpatialBroadcastDecoder(4, (5, 5, 5))
    with pytest.raises(ValueError, match="mode must be one of"):
        SpatialBroadcastDecoder(4, (5, 5), mode="R")
    with pytest.raises(ValueError, match="position_init_scale must be a positive float"):
        SpatialBroadcastDecoder(4, (5, 5), position_init_scale=0.0)
    dec = SpatialBroadcastDecoder(4, (5, 5), mode="T")
    with pytest.raises(ValueError, match="pose is required"):
        dec(torch.randn(1, 2, 4))
    with pytest.raises(ValueError, match=r"slots must have shape \(B, K, 4\)"):
        dec(torch.randn(1, 2, 3), sample_pose(1, 2))
    with pytest.raises(ValueError, match=r"pose.position must have shape \(1, 2, 2\)"):
        dec(torch.randn(1, 2, 4), sample_pose(1, 3))
