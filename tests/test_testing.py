import pytest
import torch

from geolayers.testing import assert_equivariant, assert_invariant, permutation_within_sets


def perm(gen, inputs):
    return torch.randperm(inputs[0].shape[0], generator=gen)


def test_assert_equivariant_accepts_equivariant_and_rejects_others():
    x = torch.randn(6, 2)
    assert (
        assert_equivariant(torch.sin, (x,), perm, lambda p, i: (i[0][p],), lambda p, o: o[p])
        <= 1e-9
    )
    with pytest.raises(AssertionError, match="not equivariant: trial 0"):
        assert_equivariant(torch.cumsum, (x, 0), perm, lambda p, i: (i[0][p], 0), lambda p, o: o[p])


def test_assert_invariant_rejects_order_dependent_function():
    x = torch.randn(6)
    assert_invariant(torch.sum, (x,), perm, lambda p, i: (i[0][p],))
    with pytest.raises(AssertionError):
        assert_invariant(lambda v: v[0], (x,), perm, lambda p, i: (i[0][p],))


def test_float32_tolerance_is_looser():
    x = torch.randn(50)
    noisy = lambda v: v.sum() + 1e-6 * v[0]  # noqa: E731
    assert_invariant(noisy, (x,), perm, lambda p, i: (i[0][p],), dtype=torch.float32, atol=1e-4)
    with pytest.raises(AssertionError):
        assert_invariant(noisy, (x,), perm, lambda p, i: (i[0][p],), dtype=torch.float64)


def test_permutation_within_sets_keeps_rows_in_their_set():
    ptr = torch.tensor([0, 3, 3, 4, 9])
    p = permutation_within_sets(ptr, torch.Generator().manual_seed(0))
    assert sorted(p.tolist()) == list(range(9))
    for b in range(4):
        assert sorted(p[ptr[b] : ptr[b + 1]].tolist()) == list(range(int(ptr[b]), int(ptr[b + 1])))
