"""Invariant slot attention: exact equivariance of the module (no training), slot permutation
equivariance, the factored key/value MLP against its literal form, edge cases and errors."""

import math

import pytest
import torch

from geolayers.slots import (
    InvariantSlotAttention,
    SlotAttention,
    SlotPose,
    position_grid,
    relative_grid,
    rotation_angle,
    rotation_matrix,
    sample_pose,
)
from geolayers.testing import assert_equivariant

MODES = ["T", "TS", "TSR"]
#: The issue's exactness bounds for the equivariance tests.
EXACT = {torch.float32: 1e-5, torch.float64: 1e-10}
K, D, N = 3, 16, 24


def make_isa(mode, **kw):
    torch.manual_seed(0)
    return InvariantSlotAttention(K, D, mode=mode, **kw)


def draw(gen, batch=2, num_tokens=N, y_extent=1.0, max_angle=math.pi / 9):
    """Random tokens, token coordinates (not a lattice, so the attention is never exactly
    isotropic), initial features and poses."""
    x = 2 * torch.randn(batch, num_tokens, D, generator=gen, dtype=torch.float64)
    grid = torch.rand(num_tokens, 2, generator=gen, dtype=torch.float64) * 2 - 1
    grid[:, 1] *= y_extent
    slots = torch.randn(batch, K, D, generator=gen, dtype=torch.float64)
    pose = sample_pose(batch, K, generator=gen, dtype=torch.float64, max_angle=max_angle)
    scale = 0.2 + 0.3 * torch.rand(batch, K, 2, generator=gen, dtype=torch.float64)
    return x, grid, slots, pose.position, scale, pose.rotation


def run(module):
    def fn(x, grid, slots, position, scale, rotation):
        out = module(x, grid, slots, SlotPose(position, scale, rotation))
        return (out.slots, *out.pose)

    return fn


def check_exact(mode, dtype, sample, transform_in, transform_out, inputs=draw):
    module = make_isa(mode).to(dtype)
    return assert_equivariant(
        run(module),
        inputs,
        sample,
        transform_in,
        transform_out,
        trials=4,
        dtype=dtype,
        atol=EXACT[dtype],
        rtol=EXACT[dtype],
    )


def test_isa_t_translation_is_exact(dtype):
    def sample(gen, inputs):
        return torch.randn(2, generator=gen, dtype=torch.float64).to(dtype)

    def t_in(t, inputs):
        x, grid, slots, position, scale, rotation = inputs
        return x, grid + t, slots, position + t, scale, rotation

    def t_out(t, out):
        slots, position, scale, rotation = out
        return slots, position + t, scale, rotation

    check_exact("T", dtype, sample, t_in, t_out)


def test_isa_ts_scaling_is_exact(dtype):
    def sample(gen, inputs):
        return float(0.5 + 1.5 * torch.rand((), generator=gen, dtype=torch.float64))

    def s_in(s, inputs):
        x, grid, slots, position, scale, rotation = inputs
        return x, grid * s, slots, position * s, scale * s, rotation

    def s_out(s, out):
        slots, position, scale, rotation = out
        return slots, position * s, scale * s, rotation

    check_exact("TS", dtype, sample, s_in, s_out)
    # Translation too: TS contains T.
    t = torch.tensor([0.3, -0.6], dtype=dtype)
    check_exact(
        "TS",
        dtype,
        lambda gen, inputs: t,
        lambda t, i: (i[0], i[1] + t, i[2], i[3] + t, i[4], i[5]),
        lambda t, o: (o[0], o[1] + t, o[2], o[3]),
    )


def _rotation_inputs(gen):
    # Tokens spread mostly along x: every attention-weighted covariance is elongated along x,
    # so the estimated slot angles stay near 0, away from the +-45 degree boundary.
    return draw(gen, y_extent=0.15)


def _angle(gen, inputs):
    return float(torch.rand((), generator=gen, dtype=torch.float64) * 0.6 - 0.3)  # +-17 degrees


def _rotate_in(a, inputs):
    x, grid, slots, position, scale, rotation = inputs
    q = rotation_matrix(torch.tensor(a, dtype=grid.dtype))
    return x, grid @ q.T, slots, position @ q.T, scale, q @ rotation


def _rotate_out(a, out):
    slots, position, scale, rotation = out
    q = rotation_matrix(torch.tensor(a, dtype=position.dtype))
    return slots, position @ q.T, scale, q @ rotation


def test_isa_tsr_rotation_is_exact_away_from_the_45_degree_boundary(dtype):
    check_exact("TSR", dtype, _angle, _rotate_in, _rotate_out, inputs=_rotation_inputs)
    # The test inputs really are away from the boundary: the angles of every round (the
    # module's last pose round after 0..3 feature rounds), rotated by up to 17 degrees, stay
    # at least 10 degrees inside (-45, 45).
    module = make_isa("TSR")
    gen = torch.Generator().manual_seed(0)
    for _ in range(4):
        x, grid, slots, position, scale, rotation = _rotation_inputs(gen)
        for iters in range(1, 4):
            module.iters = iters
            pose = module(
                x.float(),
                grid.float(),
                slots.float(),
                SlotPose(position.float(), scale.float(), rotation.float()),
            ).pose
            assert rotation_angle(pose.rotation).abs().max() < math.radians(45 - 17 - 10)


def test_isa_tsr_rotation_and_translation_together(dtype):
    def sample(gen, inputs):
        return _angle(gen, inputs), torch.randn(2, generator=gen, dtype=torch.float64).to(dtype)

    def t_in(g, inputs):
        a, t = g
        x, grid, slots, position, scale, rotation = _rotate_in(a, inputs)
        return x, grid + t, slots, position + t, scale, rotation

    def t_out(g, out):
        a, t = g
        slots, position, scale, rotation = _rotate_out(a, out)
        return slots, position + t, scale, rotation

    check_exact("TSR", dtype, sample, t_in, t_out, inputs=_rotation_inputs)


@pytest.mark.parametrize("mode", MODES)
def test_permuting_initial_slots_permutes_the_outputs(mode, dtype, tol):
    def sample(gen, inputs):
        return torch.randperm(K, generator=gen)

    def p_in(p, inputs):
        x, grid, slots, position, scale, rotation = inputs
        return x, grid, slots[:, p], position[:, p], scale[:, p], rotation[:, p]

    def p_out(p, out):
        return tuple(t[:, p] for t in out)

    module = make_isa(mode, init="sampled").to(dtype)
    assert_equivariant(
        run(module), draw, sample, p_in, p_out, trials=3, dtype=dtype, atol=tol, rtol=tol
    )


def test_sa_permuting_initial_slots_permutes_the_outputs(dtype, tol):
    torch.manual_seed(0)
    module = SlotAttention(K, D, init="learned").to(dtype)

    def fn(x, slots):
        out = module(x, slots)
        return out.slots, out.attn

    def inputs(gen):
        return torch.randn(2, N, D, generator=gen), torch.randn(2, K, D, generator=gen)

    assert_equivariant(
        fn,
        inputs,
        lambda gen, inp: torch.randperm(K, generator=gen),
        lambda p, inp: (inp[0], inp[1][:, p]),
        lambda p, out: (out[0][:, p], out[1][:, p]),
        trials=3,
        dtype=dtype,
        atol=tol,
        rtol=tol,
    )


@pytest.mark.parametrize("mode", MODES)
def test_factored_key_value_mlp_equals_the_literal_one(mode, dtype, tol):
    module = make_isa(mode, grid_hidden_dim=24).to(dtype)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in module.parameters():  # move LayerNorm and biases away from their initial values
            p.normal_(0.0, 0.5, generator=gen)
    x, grid, _, position, scale, rotation = (t.to(dtype) for t in draw(gen))
    pose = SlotPose(position, scale, rotation)
    literal = module._reference_mlp(x, relative_grid(grid, pose, mode, module.scales_factor))
    consts = module._mlp_constants()
    frame = module._frame_terms(grid, pose, consts)
    # Two token sets at once (as keys and values are): x and 2 x.
    hidden, inv = module._hidden(
        module._token_terms(torch.stack([x, 2 * x], 2), consts), frame, consts
    )
    lin2 = module.grid_mlp[3]
    factored = (hidden * inv[..., None]) @ lin2.weight.T + lin2.bias
    torch.testing.assert_close(factored[..., 0, :], literal, atol=10 * tol, rtol=10 * tol)
    literal2 = module._reference_mlp(2 * x, relative_grid(grid, pose, mode, module.scales_factor))
    torch.testing.assert_close(factored[..., 1, :], literal2, atol=10 * tol, rtol=10 * tol)


@pytest.mark.parametrize("mode", MODES)
def test_shapes_dtypes_and_batched_grid(mode, dtype):
    module = make_isa(mode).to(dtype)
    gen = torch.Generator().manual_seed(0)
    x, grid, slots, position, scale, rotation = (t.to(dtype) for t in draw(gen))
    pose = SlotPose(position, scale, rotation)
    out = module(x, grid, slots, pose)
    assert out.slots.shape == (2, K, D) and out.slots.dtype == dtype
    assert out.attn.shape == (2, K, N)
    torch.testing.assert_close(out.attn.sum(-1), torch.ones(2, K, dtype=dtype))
    assert out.pose.position.shape == (2, K, 2) and out.pose.rotation.shape == (2, K, 2, 2)
    batched = module(x, grid.expand(2, N, 2), slots, pose)
    torch.testing.assert_close(batched.slots, out.slots)
    # Sampled initial poses and features, with a seeded generator: reproducible.
    a = module(x, grid, generator=torch.Generator().manual_seed(5))
    b = module(x, grid, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a.slots, b.slots)


@pytest.mark.parametrize("mode", MODES)
def test_implicit_grad_keeps_the_forward_and_trains_the_initialisation(mode):
    gen = torch.Generator().manual_seed(0)
    x, grid = draw(gen)[:2]
    x, grid = x.float(), grid.float()
    plain, implicit = make_isa(mode), make_isa(mode, implicit_grad=True)
    pose = sample_pose(2, K, generator=torch.Generator().manual_seed(1))
    a, b = plain(x, grid, pose=pose), implicit(x, grid, pose=pose)
    torch.testing.assert_close(b.slots, a.slots)
    b.slots.square().sum().backward()
    assert implicit.slot_init.mu.grad is not None and implicit.slot_init.mu.grad.abs().sum() > 0
    assert implicit.to_k.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("mode", MODES)
def test_saturated_attention_and_empty_slots_stay_finite(mode):
    module = make_isa(mode)
    gen = torch.Generator().manual_seed(0)
    # Huge tokens saturate the softmax over slots: most slots win no token at all.
    x = (1e4 * torch.randn(2, 25, D, generator=gen)).requires_grad_(True)
    out = module(x, position_grid(5, 5), generator=gen)
    assert all(bool(torch.isfinite(t).all()) for t in (out.slots, out.attn, *out.pose))
    (out.slots.sum() + sum(t.sum() for t in out.pose)).backward()
    assert bool(torch.isfinite(x.grad).all())
    # A single token: every slot attends to one pixel.
    single = module(torch.randn(2, 1, D), torch.zeros(1, 2))
    assert all(bool(torch.isfinite(t).all()) for t in (single.slots, *single.pose))


def test_repr():
    assert str(InvariantSlotAttention(4, 64, mode="TSR")) == (
        "InvariantSlotAttention(64 -> 4 slots x 64, mode='TSR', iters=3, scales_factor=5, "
        "init='learned', implicit_grad=False)"
    )
    assert str(InvariantSlotAttention(4, 32, mode="T", in_dim=8, iters=2)) == (
        "InvariantSlotAttention(8 -> 4 slots x 32, mode='T', iters=2, scales_factor=1, "
        "init='learned', implicit_grad=False)"
    )


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="mode must be one of"):
        InvariantSlotAttention(4, 8, mode="TR")
    with pytest.raises(ValueError, match="scales_factor must be positive"):
        InvariantSlotAttention(4, 8, scales_factor=0.0)
    with pytest.raises(TypeError, match="num_slots must be an int"):
        InvariantSlotAttention(4.0, 8)
    with pytest.raises(ValueError, match="init must be one of"):
        InvariantSlotAttention(4, 8, init="zeros")
    with pytest.raises(ValueError, match="min_scale must be a positive float"):
        InvariantSlotAttention(4, 8, min_scale=0)
    module = InvariantSlotAttention(2, 8)
    x, grid = torch.randn(3, 4, 8), position_grid(2, 2)
    with pytest.raises(ValueError, match=r"inputs must have shape \(B, N, 8\)"):
        module(torch.randn(3, 4, 5), grid)
    with pytest.raises(TypeError, match="inputs must be a floating-point tensor"):
        module(torch.ones(3, 4, 8, dtype=torch.long), grid)
    with pytest.raises(ValueError, match=r"grid must have shape \(N, 2\) = \(4, 2\)"):
        module(x, position_grid(3, 3))
    with pytest.raises(TypeError, match="grid must be a tensor"):
        module(x, None)
    with pytest.raises(ValueError, match="grid must have dtype torch.float32"):
        module(x, grid.double())
    with pytest.raises(ValueError, match=r"slots must have shape \(B, K, D\) = \(3, 2, 8\)"):
        module(x, grid, torch.randn(3, 3, 8))
    with pytest.raises(TypeError, match="pose must be a SlotPose"):
        module(x, grid, pose=(torch.zeros(3, 2, 2),) * 3)
    with pytest.raises(ValueError, match=r"pose.scale must have shape \(3, 2, 2\)"):
        pose = sample_pose(3, 2)
        module(x, grid, pose=SlotPose(pose.position, pose.scale[..., :1], pose.rotation))
