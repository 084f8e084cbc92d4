import pytest
import torch

from geolayers.slots import SlotAttention


def test_shapes_dtype_and_attention_normalisation(dtype):
    torch.manual_seed(0)
    module = SlotAttention(4, 16, in_dim=8).to(dtype)
    out = module(torch.randn(3, 20, 8, dtype=dtype))
    assert out.slots.shape == (3, 4, 16) and out.slots.dtype == dtype
    assert out.attn.shape == (3, 4, 20) and out.pose is None
    torch.testing.assert_close(out.attn.sum(-1), torch.ones(3, 4, dtype=dtype))
    assert bool((out.attn > 0).all())


def test_sampled_init_is_reproducible_with_a_generator_and_learned_init_is_deterministic():
    torch.manual_seed(0)
    x = torch.randn(2, 10, 16)
    sampled = SlotAttention(3, 16, init="sampled")
    a = sampled(x, generator=torch.Generator().manual_seed(1)).slots
    b = sampled(x, generator=torch.Generator().manual_seed(1)).slots
    c = sampled(x, generator=torch.Generator().manual_seed(2)).slots
    assert torch.equal(a, b) and not torch.equal(a, c)
    learned = SlotAttention(3, 16, init="learned")
    assert torch.equal(learned(x).slots, learned(x).slots)


def test_slots_are_invariant_to_permuting_the_tokens(dtype, tol):
    torch.manual_seed(0)
    module = SlotAttention(4, 16).to(dtype)
    x, slots = torch.randn(2, 12, 16, dtype=dtype), torch.randn(2, 4, 16, dtype=dtype)
    perm = torch.randperm(12)
    a, b = module(x, slots), module(x[:, perm], slots)
    torch.testing.assert_close(b.slots, a.slots, atol=tol, rtol=tol)
    torch.testing.assert_close(b.attn, a.attn[:, :, perm], atol=tol, rtol=tol)


def test_implicit_grad_keeps_the_forward_and_trains_the_initialisation():
    torch.manual_seed(0)
    plain = SlotAttention(3, 8, init="learned")
    torch.manual_seed(0)
    implicit = SlotAttention(3, 8, init="learned", implicit_grad=True)
    x = torch.randn(2, 10, 8)
    a, b = plain(x), implicit(x)
    torch.testing.assert_close(b.slots, a.slots)
    torch.testing.assert_close(b.attn, a.attn)
    b.slots.sum().backward()
    assert implicit.slot_init.mu.grad.abs().sum() > 0
    assert implicit.to_q.weight.grad.abs().sum() > 0


def test_gradcheck_through_the_iterations():
    torch.manual_seed(0)
    module = SlotAttention(2, 4, iters=2).double()
    x = torch.randn(1, 5, 4, dtype=torch.float64, requires_grad=True)
    slots = torch.randn(1, 2, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, s: module(x, s).slots, (x, slots))


def test_repr():
    assert str(SlotAttention(4, 64)) == (
        "SlotAttention(64 -> 4 slots x 64, iters=3, init='sampled', implicit_grad=False)"
    )


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="iters must be >= 1"):
        SlotAttention(4, 8, iters=0)
    with pytest.raises(ValueError, match="init must be one of"):
        SlotAttention(4, 8, init="uniform")
    module = SlotAttention(2, 8)
    with pytest.raises(ValueError, match=r"inputs must have shape \(B, N, 8\)"):
        module(torch.randn(4, 8))
    with pytest.raises(ValueError, match=r"slots must have shape \(B, K, D\) = \(1, 2, 8\)"):
        module(torch.randn(1, 4, 8), torch.randn(1, 2, 4))
    with pytest.raises(ValueError, match="slots must have dtype torch.float32"):
        module(torch.randn(1, 4, 8), torch.randn(1, 2, 8, dtype=torch.float64))
