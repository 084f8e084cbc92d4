import pytest
import torch
from hypothesis import given, settings
from torch import nn

from geolayers.sets import (
    AttentionPooling,
    DeepSets,
    DeepSetsEquivariant,
    PermEquivariantLinear,
    SetPool,
)
from geolayers.testing import assert_equivariant, assert_invariant
from tests.sets.strategies import (
    apply_row_perm,
    padded_from_ragged,
    permute_rows_out,
    ragged_batch,
    seeds,
    set_sizes,
    shuffle_rows,
)

POOLS = ["sum", "mean", "max", "min", "attention"]


def make_deepsets(pool, channels=3, hidden=8):
    torch.manual_seed(0)
    pool_module = AttentionPooling(hidden, heads=2, num_queries=2) if pool == "attention" else pool
    width = 2 * hidden if pool == "attention" else hidden
    phi = nn.Sequential(nn.Linear(channels, hidden), nn.Tanh(), nn.Linear(hidden, hidden))
    return DeepSets(
        phi, nn.Sequential(nn.Linear(width, 5), nn.Tanh(), nn.Linear(5, 2)), pool=pool_module
    )


@pytest.mark.parametrize("pool", POOLS)
@settings(max_examples=15, deadline=None)
@given(sizes=set_sizes, seed=seeds)
def test_deepsets_is_permutation_invariant(pool, sizes, seed):
    model = make_deepsets(pool)
    for dtype in (torch.float64, torch.float32):
        x, ptr, gen = ragged_batch(sizes, 3, seed, dtype)
        typed = model.to(dtype)
        assert_invariant(
            lambda x, ptr, m=typed: m(x, ptr=ptr),
            (x, ptr),
            shuffle_rows,
            apply_row_perm,
            dtype=dtype,
            generator=gen,
            trials=3,
        )


@pytest.mark.parametrize("pool", ["sum", "mean", "max"])
@settings(max_examples=15, deadline=None)
@given(sizes=set_sizes, seed=seeds)
def test_perm_equivariant_layers(pool, sizes, seed):
    torch.manual_seed(0)
    for model in (
        PermEquivariantLinear(3, 4, pool=pool),
        DeepSetsEquivariant([3, 6, 2], pool=pool),
    ):
        for dtype in (torch.float64, torch.float32):
            x, ptr, gen = ragged_batch(sizes, 3, seed, dtype)
            typed = model.to(dtype)
            assert_equivariant(
                lambda x, ptr, m=typed: m(x, ptr=ptr),
                (x, ptr),
                shuffle_rows,
                apply_row_perm,
                permute_rows_out,
                dtype=dtype,
                generator=gen,
                trials=3,
            )


@pytest.mark.parametrize("pool", POOLS)
@settings(max_examples=10, deadline=None)
@given(sizes=set_sizes, seed=seeds)
def test_padded_ragged_and_batch_forms_agree(pool, sizes, seed):
    model = make_deepsets(pool).double()
    x, ptr, _ = ragged_batch(sizes, 3, seed, torch.float64)
    padded, mask = padded_from_ragged(x, ptr)
    batch = torch.repeat_interleave(torch.arange(len(sizes)), ptr[1:] - ptr[:-1])
    ragged_out = model(x, ptr=ptr)
    torch.testing.assert_close(model(padded, mask=mask), ragged_out, atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(
        model(x, batch=batch, num_sets=len(sizes)), ragged_out, atol=1e-9, rtol=1e-9
    )


@settings(max_examples=10, deadline=None)
@given(sizes=set_sizes, seed=seeds)
def test_equivariant_padded_output_matches_ragged(sizes, seed):
    torch.manual_seed(1)
    model = DeepSetsEquivariant([3, 5, 2], pool="max").double()
    x, ptr, _ = ragged_batch(sizes, 3, seed, torch.float64)
    padded, mask = padded_from_ragged(x, ptr)
    out = model(padded, mask=mask)
    assert out.shape == (*mask.shape, 2)
    torch.testing.assert_close(out[mask], model(x, ptr=ptr), atol=1e-9, rtol=1e-9)
    assert torch.equal(out[~mask], torch.zeros_like(out[~mask]))


def test_set_pool_values():
    x = torch.tensor([[1.0], [2.0], [6.0]])
    ptr = torch.tensor([0, 2, 2, 3])
    assert SetPool("sum")(x, ptr=ptr).flatten().tolist() == [3.0, 0.0, 6.0]
    assert SetPool("mean")(x, ptr=ptr).flatten().tolist() == [1.5, 0.0, 6.0]
    assert SetPool("max")(x, ptr=ptr).flatten().tolist() == [2.0, 0.0, 6.0]


def test_attention_pooling_weights_sum_to_one_within_sets():
    from geolayers.sets import segment_softmax

    scores = torch.randn(9, 2, 3, dtype=torch.float64)
    ptr = torch.tensor([0, 4, 4, 9])
    w = segment_softmax(scores, ptr)
    totals = torch.stack([w[0:4].sum(0), w[4:9].sum(0)])
    torch.testing.assert_close(totals, torch.ones_like(totals))


def test_single_set_when_no_ptr_and_gradients_flow():
    model = make_deepsets("mean")
    x = torch.randn(4, 3, requires_grad=True)
    out = model(x)
    assert out.shape == (1, 2)
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_shapes_dtypes_and_repr():
    layer = PermEquivariantLinear(3, 8, pool="max")
    assert str(layer) == "PermEquivariantLinear(3, 8, pool='max')"
    assert str(DeepSetsEquivariant([3, 4, 1])) == "DeepSetsEquivariant([3, 4, 1], pool='mean')"
    assert str(AttentionPooling(8, heads=2)) == "AttentionPooling(8, heads=2, num_queries=1)"
    assert str(SetPool("max")) == "SetPool('max')"
    out = layer.double()(torch.randn(2, 5, 3, dtype=torch.float64))
    assert out.shape == (2, 5, 8) and out.dtype == torch.float64
    assert make_deepsets("attention")(torch.randn(3, 4, 3)).shape == (3, 2)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (
            dict(x=torch.randn(2, 3, 3), mask=torch.ones(2, 4, dtype=torch.bool)),
            ValueError,
            r"mask must have shape \(B, N\) = \(2, 3\)",
        ),
        (
            dict(x=torch.randn(2, 3, 3), mask=torch.ones(2, 3)),
            TypeError,
            "mask must be a bool tensor",
        ),
        (
            dict(x=torch.randn(5, 3), ptr=torch.tensor([0, 3, 2, 5])),
            ValueError,
            "ptr must be non-decreasing",
        ),
        (
            dict(x=torch.randn(5, 3), ptr=torch.tensor([0, 2, 4])),
            ValueError,
            r"ptr\[-1\] must equal the number of rows of x \(5\), got 4",
        ),
        (
            dict(x=torch.randn(3, 3), batch=torch.tensor([0, 1, 0])),
            ValueError,
            "batch must be sorted",
        ),
        (
            dict(x=torch.randn(3, 3), batch=torch.tensor([0, 1])),
            ValueError,
            r"batch must have shape \(M,\) = \(3,\)",
        ),
        (
            dict(x=torch.randn(3, 3), batch=torch.tensor([0.0, 0.0, 1.0])),
            TypeError,
            "batch must be an int64 tensor",
        ),
        (
            dict(x=torch.randn(3, 3), ptr=torch.tensor([0, 3]), batch=torch.tensor([0, 0, 0])),
            ValueError,
            "give ptr or batch, not both",
        ),
        (
            dict(x=torch.randn(3, 3), mask=torch.ones(3, dtype=torch.bool)),
            ValueError,
            "mask belongs to padded input",
        ),
        (
            dict(x=torch.randn(2, 3, 3), ptr=torch.tensor([0, 3])),
            ValueError,
            "ptr and batch belong to ragged input",
        ),
        (dict(x=torch.randn(3)), ValueError, r"x must be padded \(B, N, D\) or ragged \(M, D\)"),
        (dict(x=torch.ones(3, 3, dtype=torch.long)), TypeError, "x must be floating point"),
        (dict(x=torch.randn(3, 5)), ValueError, "x must have 3 channels, got 5"),
    ],
)
def test_bad_input_messages(kwargs, error, message):
    layer = PermEquivariantLinear(3, 2)
    with pytest.raises(error, match=message):
        layer(**kwargs)


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="heads \\(3\\) must divide in_channels \\(8\\)"):
        AttentionPooling(8, heads=3)
    with pytest.raises(ValueError, match="pool must be"):
        PermEquivariantLinear(2, 2, pool="median")
    with pytest.raises(TypeError, match="pool must be"):
        DeepSets(nn.Identity(), nn.Identity(), pool=nn.ReLU())
