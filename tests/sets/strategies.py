"""Hypothesis strategies and transformations shared by the set-layer tests."""

import torch
from hypothesis import strategies as st

from geolayers.testing import permutation_within_sets

# Random ragged batches: up to 5 sets of 0 to 6 elements (empty sets and singletons included).
set_sizes = st.lists(st.integers(min_value=0, max_value=6), min_size=1, max_size=5)
seeds = st.integers(min_value=0, max_value=2**31 - 1)


def ragged_batch(sizes, channels, seed, dtype):
    gen = torch.Generator().manual_seed(seed)
    ptr = torch.zeros(len(sizes) + 1, dtype=torch.long)
    ptr[1:] = torch.tensor(sizes).cumsum(0)
    x = torch.randn(int(ptr[-1]), channels, generator=gen, dtype=dtype)
    return x, ptr, gen


def padded_from_ragged(x, ptr, width=None):
    """Padded (B, N, D) copy with a mask whose valid slots are scattered, not left-aligned."""
    sizes = (ptr[1:] - ptr[:-1]).tolist()
    width = max([*sizes, 1]) + 2 if width is None else width
    gen = torch.Generator().manual_seed(len(sizes))
    padded = torch.full((len(sizes), width, x.shape[1]), 7.5, dtype=x.dtype)
    mask = torch.zeros(len(sizes), width, dtype=torch.bool)
    for b, n in enumerate(sizes):
        slots = torch.randperm(width, generator=gen)[:n].sort().values
        mask[b, slots] = True
        padded[b, slots] = x[ptr[b] : ptr[b + 1]]
    return padded, mask


def shuffle_rows(gen, inputs):
    return permutation_within_sets(inputs[1], gen)


def apply_row_perm(perm, inputs):
    return (inputs[0][perm], *inputs[1:])


def permute_rows_out(perm, out):
    return out[perm]
