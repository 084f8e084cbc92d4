"""PermutationCanonicalizer: invariance and equivariance on padded, masked and ragged sets, ties,
gradients, the Plackett-Luce prior, errors."""

import pytest
import torch
from torch import nn

from geolayers.canonical import CanonicalizedModel
from geolayers.canonical.permutation import (
    MATRIX_MAX,
    PermutationCanonicalizer,
    PermutationFrame,
    restore_order,
)
from geolayers.testing import assert_equivariant, assert_invariant, permutation_within_sets

TOL = {torch.float32: 1e-5, torch.float64: 1e-9}
DTYPES = [torch.float32, torch.float64]
B, N, D = 4, 6, 3


def _mlp(d_in: int, d_out: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d_in, 32), nn.Tanh(), nn.Linear(32, d_out))


class FlatBackbone(nn.Module):
    """Not symmetric at all: an MLP of the flattened set, ``(B, N, D) -> (B, C)`` (or, with
    ``per_element``, ``(B, N, C)``): every output depends on the slot order."""

    def __init__(self, n: int, d: int, c: int, per_element: bool = False, seed: int = 2):
        super().__init__()
        self.n, self.c, self.per_element = n, c, per_element
        self.mlp = _mlp(n * d, n * c if per_element else c, seed)

    def forward(self, x):
        y = self.mlp(x.flatten(1))
        return y.reshape(x.shape[0], self.n, self.c) if self.per_element else y


class SlotBackbone(nn.Module):
    """Per-row outputs of ragged rows ``(M, D)`` that depend on each row's position in its set."""

    def __init__(self, d: int, c: int):
        super().__init__()
        self.mlp = _mlp(d + 1, c, seed=3)

    def forward(self, rows, ptr):
        sizes = ptr[1:] - ptr[:-1]
        set_id = torch.repeat_interleave(torch.arange(sizes.numel()), sizes)
        slot = (torch.arange(rows.shape[0]) - ptr[set_id]).to(rows.dtype)
        return self.mlp(torch.cat([rows, slot[:, None]], dim=1))


class MaskedModel(nn.Module):
    """Canonicalize a padded, masked batch, then run a backbone on the canonical slots."""

    def __init__(self, canon, backbone, equivariant: bool = False):
        super().__init__()
        self.canon, self.backbone, self.equivariant = canon, backbone, equivariant

    def forward(self, x, mask):
        xc, frame = self.canon(x, mask=mask)
        y = self.backbone(xc)
        return restore_order(frame, y) if self.equivariant else y


class RaggedModel(nn.Module):
    """Canonicalize a ragged batch; per-set outputs from the padded canonical slots, or per-row
    outputs mapped back to the input's rows."""

    def __init__(self, canon, width, equivariant: bool = False):
        super().__init__()
        self.canon, self.width, self.equivariant = canon, width, equivariant
        self.flat = FlatBackbone(width, D, 2)
        self.rows = SlotBackbone(D, 2)

    def forward(self, x, ptr):
        xc, frame = self.canon(x, ptr=ptr)
        if self.equivariant:
            return restore_order(frame, self.rows(xc, ptr))
        padded = x.new_zeros(ptr.numel() - 1, self.width, D)
        padded[:, : frame.permutation.shape[1]][frame.canonical_mask()] = xc
        return self.flat(padded)


def _slot_perms(gen, inputs):
    x = inputs[0]
    return torch.argsort(torch.rand(x.shape[0], x.shape[1], generator=gen), dim=1)


def _permute_slots(perm, inputs):
    x, *rest = inputs
    out = x.gather(1, perm.reshape(*perm.shape, *([1] * (x.dim() - 2))).expand_as(x))
    return (out, *[r.gather(1, perm) for r in rest])


def _permute_out(perm, y):
    return _permute_slots(perm, (y,))[0]


def _random_sets(gen, dtype=torch.float64, b=B, n=N):
    return (torch.randn(b, n, D, generator=gen, dtype=dtype),)


@pytest.mark.parametrize("dtype", DTYPES)
def test_flat_backbone_becomes_permutation_invariant(dtype):
    model = CanonicalizedModel(PermutationCanonicalizer(D), FlatBackbone(N, D, 3)).train()
    err = assert_invariant(
        model, _random_sets, _slot_perms, _permute_slots, dtype=dtype, atol=TOL[dtype]
    )
    assert err <= TOL[dtype]
    # Without the canonicalizer the backbone is far from invariant: the test can fail.
    with pytest.raises(AssertionError):
        assert_invariant(
            model.backbone, _random_sets, _slot_perms, _permute_slots, dtype=dtype, trials=2
        )


@pytest.mark.parametrize("dtype", DTYPES)
def test_per_element_outputs_are_equivariant_through_restore_order(dtype):
    backbone = FlatBackbone(N, D, 2, per_element=True)
    model = CanonicalizedModel(PermutationCanonicalizer(D), backbone, out_rep=restore_order)
    assert_equivariant(
        model, _random_sets, _slot_perms, _permute_slots, _permute_out, dtype=dtype, atol=TOL[dtype]
    )
    # invert() defaults to the same map.
    x = torch.randn(2, N, D)
    xc, frame = model.canonicalizer(x)
    y = backbone(xc)
    assert torch.equal(model.canonicalizer.invert(y, frame), restore_order(frame, y))


def _masked_sets(gen, dtype=torch.float64):
    x = torch.randn(B, N, D, generator=gen, dtype=dtype)
    mask = torch.rand(B, N, generator=gen) < 0.7
    mask[0] = False  # an empty set
    mask[1] = True  # a full one
    # Padding holds garbage, which must not reach the canonical set.
    return torch.where(mask[..., None], x, 7.5), mask


@pytest.mark.parametrize("dtype", DTYPES)
def test_masked_sets_invariant_and_equivariant(dtype):
    canon = PermutationCanonicalizer(D, hidden_features=16)
    invariant = MaskedModel(canon, FlatBackbone(N, D, 3))
    assert_invariant(
        invariant, _masked_sets, _slot_perms, _permute_slots, dtype=dtype, atol=TOL[dtype]
    )
    equivariant = MaskedModel(canon, FlatBackbone(N, D, 2, per_element=True), equivariant=True)
    assert_equivariant(
        equivariant,
        _masked_sets,
        _slot_perms,
        _permute_slots,
        _permute_out,
        dtype=dtype,
        atol=TOL[dtype],
    )


def test_masked_layout_puts_elements_first_and_zeroes_padding():
    x, mask = _masked_sets(torch.Generator().manual_seed(1))
    xc, frame = PermutationCanonicalizer(D).double()(x, mask=mask)
    sizes = mask.sum(1)
    assert torch.equal(frame.sizes, sizes)
    canon_mask = frame.canonical_mask()
    assert torch.equal(canon_mask, torch.arange(N) < sizes[:, None])
    assert torch.equal(frame.input_mask(), mask)
    # Each row is a permutation of the slots; elements first, then padding slots in order.
    assert torch.equal(frame.permutation.sort(dim=1).values, torch.arange(N).expand(B, N))
    gathered = x.gather(1, frame.permutation[..., None].expand(-1, -1, D))
    assert torch.equal(xc[canon_mask], gathered[canon_mask])
    assert (xc[~canon_mask] == 0).all()
    assert mask.gather(1, frame.permutation)[canon_mask].all()
    for b in range(B):
        pad = frame.permutation[b, int(sizes[b]) :]
        assert torch.equal(pad, pad.sort().values)
    # Small sets get the permutation matrices: x = P x_canonical on the elements.
    torch.testing.assert_close(
        (frame.matrix @ xc)[mask], x[mask], atol=1e-12, rtol=0, check_dtype=False
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_ragged_sets_invariant_and_equivariant(dtype):
    sizes = [3, 0, 5, 1, 4]
    ptr = torch.tensor([0, *torch.tensor(sizes).cumsum(0).tolist()])

    def inputs(gen):
        return torch.randn(int(ptr[-1]), D, generator=gen, dtype=torch.float64), ptr

    def shuffle(gen, inp):
        return permutation_within_sets(inp[1], gen)

    def apply(perm, inp):
        return (inp[0][perm], inp[1])

    canon = PermutationCanonicalizer(D, hidden_features=16)
    assert_invariant(
        RaggedModel(canon, 5), inputs, shuffle, apply, dtype=dtype, atol=TOL[dtype], rtol=TOL[dtype]
    )
    assert_equivariant(
        RaggedModel(canon, 5, equivariant=True),
        inputs,
        shuffle,
        apply,
        lambda perm, y: y[perm],
        dtype=dtype,
        atol=TOL[dtype],
    )


def test_ragged_layout_with_batch_vector():
    canon = PermutationCanonicalizer(D).double()
    x = torch.randn(6, D, dtype=torch.float64)
    batch = torch.tensor([0, 0, 0, 2, 2, 2])
    xc, frame = canon(x, batch=batch, num_sets=4)
    assert xc.shape == (6, D) and frame.ragged
    assert torch.equal(frame.sizes, torch.tensor([3, 0, 3, 0]))
    assert frame.permutation.shape == (4, 3)
    # Rows only move within their set, and padding slots map to themselves.
    assert torch.equal(frame.permutation[1], torch.arange(3))
    assert torch.equal(xc[:3].sort(dim=0).values, x[:3].sort(dim=0).values)
    assert torch.equal(xc[3:].sort(dim=0).values, x[3:].sort(dim=0).values)
    # restore_order inverts the canonical order of the rows.
    assert torch.equal(restore_order(frame, xc, average_ties=False), x)


class ConstantScorer(nn.Module):
    """Every element scores the same: the order is decided by the tie-break alone."""

    def forward(self, rows):
        return rows[:, 0] * 0


@pytest.mark.parametrize("dtype", DTYPES)
def test_tied_scores_are_broken_by_the_features(dtype):
    canon = PermutationCanonicalizer(D, scorer=ConstantScorer())
    model = CanonicalizedModel(canon, FlatBackbone(N, D, 3))
    assert_invariant(model, _random_sets, _slot_perms, _permute_slots, dtype=dtype, atol=0.0)
    x = torch.randn(2, N, D, dtype=dtype)
    xc, _ = canon.to(dtype)(x)
    # Lexicographic order of the feature vectors.
    for b in range(2):
        rows = [tuple(r.tolist()) for r in xc[b]]
        assert rows == sorted(rows)


def _sets_with_duplicates(gen, dtype=torch.float64):
    x = torch.randn(B, N, D, generator=gen, dtype=dtype)
    x[:, 3] = x[:, 0]
    x[:, 5] = x[:, 0]
    x[:, 4] = x[:, 1]
    x[2] = x[2, :1]  # one set of six equal elements
    return (x,)


@pytest.mark.parametrize("dtype", DTYPES)
def test_repeated_elements_give_a_valid_permutation_and_exact_equivariance(dtype):
    backbone = FlatBackbone(N, D, 2, per_element=True)
    model = CanonicalizedModel(PermutationCanonicalizer(D), backbone, out_rep=restore_order)
    assert_invariant(
        CanonicalizedModel(model.canonicalizer, FlatBackbone(N, D, 3)),
        _sets_with_duplicates,
        _slot_perms,
        _permute_slots,
        dtype=dtype,
        atol=TOL[dtype],
    )
    # Equal elements get the mean of their outputs: equivariance holds exactly anyway.
    assert_equivariant(
        model,
        _sets_with_duplicates,
        _slot_perms,
        _permute_slots,
        _permute_out,
        dtype=dtype,
        atol=TOL[dtype],
    )
    (x,) = _sets_with_duplicates(torch.Generator().manual_seed(0), dtype)
    y, frame = model.to(dtype).forward_with_frame(x)
    assert torch.isfinite(y).all()
    assert torch.equal(frame.permutation.sort(dim=1).values, torch.arange(N).expand(B, N))
    assert torch.equal(frame.ties[2], torch.zeros(N, dtype=torch.long))
    assert (y[2] == y[2, :1]).all()
    torch.testing.assert_close(y[:, 3], y[:, 0], atol=0, rtol=0)
    # Without averaging, equal elements keep the outputs of their own slots.
    raw = restore_order(frame, backbone(model.canonicalizer(x)[0]), average_ties=False)
    assert not torch.equal(raw[2], raw[2, :1].expand(N, 2))


def test_all_equal_elements_with_gradients():
    canon = PermutationCanonicalizer(D)
    model = CanonicalizedModel(canon, FlatBackbone(N, D, 3)).train()
    x = torch.ones(2, N, D, requires_grad=True)
    y, frame = model.forward_with_frame(x)
    loss = y.square().sum() + canon.prior_loss(frame)
    loss.backward()
    assert torch.isfinite(y).all() and torch.isfinite(x.grad).all()
    assert torch.equal(frame.permutation, torch.arange(N).expand(2, N))
    for p in model.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()


def test_gradients_reach_scorer_and_backbone_and_values_match_no_grad():
    torch.manual_seed(0)
    canon = PermutationCanonicalizer(D, temperature=0.5)
    model = CanonicalizedModel(canon, FlatBackbone(N, D, 3)).train()
    x, mask = _masked_sets(torch.Generator().manual_seed(3), torch.float32)
    xc, frame = canon(x, mask=mask)
    loss = model.backbone(xc).square().sum() + canon.prior_loss(frame)
    loss.backward()
    for module in (canon.scorer, model.backbone):
        grads = [p.grad for p in module.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        assert any(g.abs().sum() > 0 for g in grads)
    # The straight-through term is exactly zero: the same canonical set without gradients.
    with torch.no_grad():
        assert torch.equal(canon(x, mask=mask)[0], xc.detach())
    # estimator="none": the scorer is left out of the graph.
    frozen = PermutationCanonicalizer(D, estimator="none", scorer=canon.scorer)
    xc2, _ = frozen(x, mask=mask)
    assert not xc2.requires_grad and torch.equal(xc2, xc.detach())


def test_prior_loss_is_plackett_luce_nll_of_the_input_order():
    canon = PermutationCanonicalizer(1, scorer=nn.Identity())
    x = torch.tensor([[[3.0], [1.0], [2.0]]], requires_grad=True)
    _, frame = canon(x)
    s = torch.tensor([3.0, 1.0, 2.0])
    expected = (
        torch.logsumexp(s, 0) - s[0] + torch.logsumexp(s[1:], 0) - s[1] + 0.0  # last term: 0
    )
    torch.testing.assert_close(canon.prior_loss(frame), expected)
    # Masked input: only the elements count, in the input's order; an empty set adds 0.
    mask = torch.tensor([[True, False, True], [False, False, False]])
    _, frame = canon(torch.cat([x, x]).detach(), mask=mask)
    pair = torch.tensor([3.0, 2.0])
    torch.testing.assert_close(canon.prior_loss(frame), (torch.logsumexp(pair, 0) - 3.0) / 2)
    # Upright data sorted by its scores has the lowest prior.
    scaled = PermutationCanonicalizer(1, scorer=nn.Identity())
    low = scaled.prior_loss(scaled(10 * torch.tensor([[[3.0], [2.0], [1.0]]]))[1])
    high = scaled.prior_loss(scaled(10 * torch.tensor([[[1.0], [2.0], [3.0]]]))[1])
    assert low < 1e-3 < high


def test_identity_fraction_and_large_sets_have_no_matrix():
    canon = PermutationCanonicalizer(1, scorer=nn.Identity())
    x = torch.tensor([[[3.0], [2.0], [1.0]], [[1.0], [2.0], [3.0]]])
    _, frame = canon(x)
    assert float(canon.identity_fraction(frame)) == 0.5
    big = torch.randn(2, MATRIX_MAX + 1, 1)
    _, frame = canon(big)
    assert frame.matrix is None and frame.permutation.shape == (2, MATRIX_MAX + 1)
    assert float(canon.identity_fraction(frame)) == 0.0
    assert isinstance(frame[:1], PermutationFrame) and frame[:1].sizes.shape == (1,)


def test_bad_inputs():
    canon = PermutationCanonicalizer(D)
    with pytest.raises(ValueError, match="in_features"):
        PermutationCanonicalizer(0)
    with pytest.raises(TypeError, match="in_features"):
        PermutationCanonicalizer(2.0)
    with pytest.raises(TypeError, match="scorer"):
        PermutationCanonicalizer(D, scorer=lambda r: r)
    with pytest.raises(ValueError, match="estimator"):
        PermutationCanonicalizer(D, estimator="gumbel")
    with pytest.raises(ValueError, match="temperature"):
        PermutationCanonicalizer(D, temperature=0.0)
    with pytest.raises(ValueError, match="features"):
        canon(torch.randn(2, 4, D + 1))
    with pytest.raises(TypeError, match="floating"):
        canon(torch.ones(2, 4, D, dtype=torch.long))
    with pytest.raises(ValueError, match="mask"):
        canon(torch.randn(2, 4, D), mask=torch.ones(2, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="ptr"):
        canon(torch.randn(5, D), ptr=torch.tensor([0, 2, 4]))
    with pytest.raises(ValueError, match="x must"):
        canon(torch.randn(D))
    with pytest.raises(ValueError, match="one score per element"):
        PermutationCanonicalizer(D, scorer=nn.Linear(D, 2))(torch.randn(2, 4, D))
    _, frame = canon(torch.randn(2, 4, D))
    with pytest.raises(ValueError, match="y must have shape"):
        restore_order(frame, torch.randn(2, 5, 1))
    _, ragged = canon(torch.randn(5, D), ptr=torch.tensor([0, 2, 5]))
    with pytest.raises(ValueError, match="y must have shape"):
        restore_order(ragged, torch.randn(4, 1))
    with pytest.raises(ValueError, match="frame"):
        restore_order(None, torch.randn(2, 4, 1))


def test_empty_sets():
    canon = PermutationCanonicalizer(D)
    xc, frame = canon(torch.randn(0, D), ptr=torch.tensor([0, 0, 0]))
    assert xc.shape == (0, D) and frame.permutation.shape == (2, 0)
    assert restore_order(frame, torch.randn(0, 2)).shape == (0, 2)
    assert float(canon.prior_loss(frame).detach()) == 0.0
    x = torch.randn(2, 4, D, requires_grad=True)
    xc, frame = canon(x, mask=torch.zeros(2, 4, dtype=torch.bool))
    (xc.sum() + canon.prior_loss(frame)).backward()
    assert (xc == 0).all() and torch.isfinite(x.grad).all()
    assert torch.equal(frame.permutation, torch.arange(4).expand(2, 4))
