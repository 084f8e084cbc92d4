"""Moving, scaling and rotating a rendered object moves its slot's frame the same way and
leaves the slot's features nearly unchanged with invariant slot attention; plain slot
attention (absolute position embedding) and the less invariant ISA modes change them.

No training: the weights are set so that slot 0 attends to the object's pixels and slots 1
and 2 to the background (keys keyed to the pixel's colour, a large query temperature), and so
that the GRU's update gate keeps the first ``IDENT`` dimensions of every slot (its identity,
which is what the queries read) while the other dimensions (its content) are rewritten from
the attended values each round. Everything else (relative position code and key/value MLP,
pose estimation, slot update) is the modules' own computation with random weights. The
compared "slot vector" is the content part of slot 0.

Tolerances (float64, 32 x 32 pixels): a whole-pixel shift moves S_p by the shift to 1e-6 and
changes the slot vector by less than 1e-6 (relative), where slot attention changes it by more
than 1e-2. Scaling by 1.25 and rotating by 20 degrees change the object's rasterisation, so
there the bounds are looser: S_s grows by 1.25 to within 5%, the angle by 0.35 rad to within
0.03 rad, the ISA-TS (scaling) and ISA-TSR (rotation) slot vectors change by less than 1e-3,
at least 10 times less than those of ISA-T and ISA-TS respectively.
"""

import pytest
import torch

from geolayers.datasets.multi_object import SHAPES, render_scenes
from geolayers.slots import (
    InvariantSlotAttention,
    SlotAttention,
    SlotPose,
    position_grid,
    rotation_angle,
    rotation_matrix,
)

D, K, SIZE = 8, 3, 32
IDENT = 3  # dims 0..2 hold the slot identity, dims 3..7 its content
F64 = torch.float64
PIXEL = 2 / SIZE
# Token features: +U on the object, -U on the background (both already layer-normalised).
U = torch.tensor([1.0, -1.0] * (D // 2), dtype=F64)
GRID = position_grid(SIZE, SIZE, dtype=F64)


def object_tokens(x, y, scale, angle=0.0, shape="ellipse"):
    """``(1, SIZE * SIZE, D)`` tokens of one object drawn at pose (x, y, scale, angle)."""
    _, masks = render_scenes(
        torch.tensor([[SHAPES.index(shape)]]),
        torch.tensor([[[x, y]]], dtype=F64),
        torch.tensor([[scale]], dtype=F64),
        torch.tensor([[angle]], dtype=F64),
        torch.ones(1, 1, 3),
        size=SIZE,
    )
    inside = masks.view(1, -1, 1) == 1
    return torch.where(inside, U, -U), inside[..., 0]


def object_seeking(module, temperature=200.0, content=20.0, code=3.0):
    """Set ``module``'s weights as described in the module docstring; returns it (float64)
    and the initial slots ``(1, K, D)``."""
    module = module.to(F64)
    with torch.no_grad():
        module.to_k.weight.copy_(content * torch.eye(D, dtype=F64))
        gru, z = module.update.gru, slice(D, 2 * D)
        gru.weight_ih[z] = 0
        gru.weight_hh[z] = 0
        gru.bias_hh[z] = 0
        # Update gate 1 (keep) on the identity dims, 0 (rewrite) on the content dims.
        gru.bias_ih[z] = torch.tensor([100.0] * IDENT + [-100.0] * (D - IDENT), dtype=F64)
        module.update.mlp[-1].weight.zero_()
        module.update.mlp[-1].bias.zero_()
        slots = torch.zeros(1, K, D, dtype=F64)
        slots[0, torch.arange(K), torch.arange(K)] = 10.0
        if isinstance(module, InvariantSlotAttention):
            module.grid_proj.weight.mul_(code)  # a position code the values clearly feel
            # Centre the key MLP's output between object and background keys.
            f_obj = module.grid_mlp(content * U + module.grid_proj.bias)
            f_bg = module.grid_mlp(-content * U + module.grid_proj.bias)
            module.grid_mlp[3].bias -= (f_obj + f_bg) / 2
            direction = (f_obj - f_bg) / (f_obj - f_bg).norm()
        else:
            direction = U / U.norm()
        queries = torch.stack([direction, -direction, -direction], dim=1) * temperature
        module.to_q.weight.copy_(queries @ torch.linalg.pinv(module.norm_slots(slots[0]).T))
    return module, slots


def initial_pose(x, y, scale=0.15, angle=0.0):
    position = torch.tensor([[[x, y], [-0.8, 0.8], [0.8, -0.8]]], dtype=F64)
    return SlotPose(
        position,
        torch.full((1, K, 2), scale, dtype=F64),
        rotation_matrix(torch.full((1, K), angle, dtype=F64)),
    )


def content_change(a, b):
    """Relative change of slot 0's content."""
    before, after = a.slots[0, 0, IDENT:], b.slots[0, 0, IDENT:]
    return float((after - before).norm() / before.norm())


def isa(mode):
    torch.manual_seed(0)
    return object_seeking(InvariantSlotAttention(K, D, mode=mode))


@pytest.mark.parametrize("mode", ["T", "TS", "TSR"])
@torch.no_grad()
def test_moving_an_object_moves_its_slot_and_keeps_its_vector(mode):
    shift = torch.tensor([2 * PIXEL, -3 * PIXEL], dtype=F64)  # 2 pixels right, 3 up
    before, inside = object_tokens(-0.2, 0.1, 0.5, 0.3, shape="T")
    after, _ = object_tokens(-0.2 + 2 * PIXEL, 0.1 - 3 * PIXEL, 0.5, 0.3, shape="T")
    module, slots = isa(mode)
    pose = initial_pose(-0.2, 0.1)
    a = module(before, GRID, slots, pose)
    b = module(after, GRID, slots, SlotPose(pose.position + shift, pose.scale, pose.rotation))
    assert float((a.attn[0, 0] * inside[0]).sum()) > 0.999999  # slot 0 is the object's slot
    assert float((b.pose.position[0, 0] - a.pose.position[0, 0] - shift).abs().max()) < 1e-6
    assert content_change(a, b) < 1e-6


@torch.no_grad()
def test_moving_an_object_changes_the_slot_vector_of_slot_attention():
    before, inside = object_tokens(-0.2, 0.1, 0.5, 0.3, shape="T")
    after, _ = object_tokens(-0.2 + 2 * PIXEL, 0.1 - 3 * PIXEL, 0.5, 0.3, shape="T")
    torch.manual_seed(0)
    module, slots = object_seeking(SlotAttention(K, D))
    embed = torch.nn.Linear(2, D).to(F64)  # the absolute position embedding of the encoder
    a = module(before + embed(GRID), slots)
    b = module(after + embed(GRID), slots)
    assert float((a.attn[0, 0] * inside[0]).sum()) > 0.9999
    assert content_change(a, b) > 1e-2


@torch.no_grad()
def test_scaling_an_object_scales_its_slot_and_keeps_its_vector_with_isa_ts():
    before, inside = object_tokens(-0.1, 0.0, 0.6)
    after, _ = object_tokens(-0.1, 0.0, 0.6 * 1.25)
    pose = initial_pose(-0.1, 0.0)
    scaled = SlotPose(pose.position, pose.scale * 1.25, pose.rotation)
    changes = {}
    for mode in ("T", "TS"):
        module, slots = isa(mode)
        a, b = module(before, GRID, slots, pose), module(after, GRID, slots, scaled)
        assert float((a.attn[0, 0] * inside[0]).sum()) > 0.999999
        changes[mode] = content_change(a, b)
        if mode == "TS":
            ratio = b.pose.scale[0, 0] / a.pose.scale[0, 0]
            torch.testing.assert_close(
                ratio, torch.full((2,), 1.25, dtype=F64), atol=0.05 * 1.25, rtol=0
            )
    assert changes["TS"] < 1e-3
    assert changes["T"] > 10 * changes["TS"]


@torch.no_grad()
def test_rotating_an_object_rotates_its_slot_and_keeps_its_vector_with_isa_tsr():
    # An elongated ellipse at 0.1 rad, then at 0.1 + 0.35 rad (20 degrees), inside +-45.
    before, inside = object_tokens(-0.1, 0.0, 0.7, 0.1)
    after, _ = object_tokens(-0.1, 0.0, 0.7, 0.45)
    pose = initial_pose(-0.1, 0.0, angle=0.1)
    turn = rotation_matrix(torch.tensor(0.35, dtype=F64))
    rotated = SlotPose(pose.position, pose.scale, turn @ pose.rotation)
    changes = {}
    for mode in ("TS", "TSR"):
        module, slots = isa(mode)
        a, b = module(before, GRID, slots, pose), module(after, GRID, slots, rotated)
        assert float((a.attn[0, 0] * inside[0]).sum()) > 0.999999
        changes[mode] = content_change(a, b)
        if mode == "TSR":
            turned = rotation_angle(b.pose.rotation[0, 0]) - rotation_angle(a.pose.rotation[0, 0])
            assert abs(float(turned) - 0.35) < 0.03
    assert changes["TSR"] < 1e-3
    assert changes["TS"] > 10 * changes["TSR"]
