import pytest
import torch

from geolayers.slots import (
    KINDS,
    CNNEncoder,
    InvariantSlotAttention,
    SlotAttention,
    SlotAutoencoder,
    SpatialBroadcastDecoder,
    sample_pose,
)

SMALL = {"num_slots": 3, "slot_dim": 8, "encoder_channels": (4,), "encoder_kernel_size": 3}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_reconstructs_with_masks_summing_to_one(kind, dtype, tol):
    torch.manual_seed(0)
    model = SlotAutoencoder.build(kind, (9, 11), decoder_hidden_dim=8, **SMALL).to(dtype)
    images = torch.rand(2, 3, 9, 11, dtype=dtype)
    out = model(images, generator=torch.Generator().manual_seed(0))
    assert out.recon.shape == images.shape and out.recon.dtype == dtype
    assert out.masks.shape == (2, 3, 9, 11) and out.rgb.shape == (2, 3, 3, 9, 11)
    assert out.slots.shape == (2, 3, 8) and out.attn.shape == (2, 3, 99)
    torch.testing.assert_close(
        out.masks.sum(1), torch.ones(2, 9, 11, dtype=dtype), atol=tol, rtol=0
    )
    assert (out.pose is None) == (kind == "sa")
    out.recon.square().mean().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_isa_model_takes_initial_poses_and_sa_refuses_them():
    isa = SlotAutoencoder.build("isa-tsr", (8, 8), **SMALL)
    pose = sample_pose(2, 3, generator=torch.Generator().manual_seed(0))
    a = isa(torch.rand(2, 3, 8, 8), pose=pose)
    assert a.pose.rotation.shape == (2, 3, 2, 2)
    sa = SlotAutoencoder.build("sa", (8, 8), **SMALL)
    with pytest.raises(ValueError, match="pose is only accepted"):
        sa(torch.rand(2, 3, 8, 8), pose=pose)


def test_build_uses_the_same_sizes_for_sa_and_isa():
    sa = SlotAutoencoder.build("sa", (35, 35))
    isa = SlotAutoencoder.build("isa-ts", (35, 35))
    assert sa.encoder.position_embedding and not isa.encoder.position_embedding
    assert sa.decoder.mode is None and isa.decoder.mode == "TS"
    assert isa.slot_attention.mode == "TS"
    # ISA adds its position code and key/value MLP; everything else has the same size.
    extra = sum(p.numel() for p in isa.slot_attention.grid_mlp.parameters())
    extra += sum(p.numel() for p in isa.slot_attention.grid_proj.parameters())
    sa_pos = sum(p.numel() for p in sa.encoder.pos.parameters())
    sa_init = isa.slot_attention.slot_init.mu.numel() - sum(
        p.numel() for p in sa.slot_attention.slot_init.parameters()
    )
    total = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert total(isa) - total(sa) == extra - sa_pos + sa_init


def test_inconsistent_parts_are_rejected():
    enc = CNNEncoder(channels=(4,), out_dim=8, position_embedding=False)
    isa = InvariantSlotAttention(2, 8, mode="TS")
    with pytest.raises(ValueError, match="decoder.mode must be set exactly"):
        SlotAutoencoder(enc, isa, SpatialBroadcastDecoder(8, (5, 5)))
    with pytest.raises(ValueError, match="must match slot_attention.mode"):
        SlotAutoencoder(enc, isa, SpatialBroadcastDecoder(8, (5, 5), mode="T"))
    with pytest.raises(ValueError, match="must not embed absolute positions"):
        SlotAutoencoder(
            CNNEncoder(channels=(4,), out_dim=8), isa, SpatialBroadcastDecoder(8, (5, 5), mode="TS")
        )
    with pytest.raises(ValueError, match="decoder.mode must be set exactly"):
        SlotAutoencoder(enc, SlotAttention(2, 8), SpatialBroadcastDecoder(8, (5, 5), mode="T"))
    with pytest.raises(ValueError, match="kind must be one of"):
        SlotAutoencoder.build("isa-r", (5, 5))
    model = SlotAutoencoder.build("sa", (8, 8), **SMALL)
    with pytest.raises(ValueError, match=r"images must have spatial size \(8, 8\)"):
        model(torch.rand(1, 3, 9, 8))
    with pytest.raises(ValueError, match=r"images must be a tensor \(B, C, H, W\)"):
        model(torch.rand(3, 8, 8))


def test_repr_names_the_parts():
    text = str(SlotAutoencoder.build("isa-t", (35, 35)))
    assert text.startswith("SlotAutoencoder(CNNEncoder(3 -> [32, 32, 32, 32] -> 64")
    assert "InvariantSlotAttention(64 -> 4 slots x 64, mode='T'" in text
    assert "SpatialBroadcastDecoder(64 -> 3 x 35 x 35" in text


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("implicit_grad", [False, True])
def test_iters_of_a_call_equal_a_model_built_with_that_many(kind, implicit_grad):
    torch.manual_seed(0)
    kw = dict(decoder_hidden_dim=8, implicit_grad=implicit_grad, **SMALL)
    three = SlotAutoencoder.build(kind, (9, 11), iters=3, **kw).double()
    five = SlotAutoencoder.build(kind, (9, 11), iters=5, **kw).double()
    five.load_state_dict(three.state_dict())
    images = torch.rand(2, 3, 9, 11, dtype=torch.float64)
    ran = three(images, generator=torch.Generator().manual_seed(1), iters=5)
    built = five(images, generator=torch.Generator().manual_seed(1))
    default = three(images, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(ran.recon, built.recon, atol=1e-12, rtol=0)
    torch.testing.assert_close(ran.slots, built.slots, atol=1e-12, rtol=0)
    assert not torch.allclose(ran.slots, default.slots)  # the rounds did change the slots
    assert three.slot_attention.iters == 3  # a call's rounds leave the module's setting
    with pytest.raises(ValueError, match="iters must be >= 1"):
        three(images, iters=0)
