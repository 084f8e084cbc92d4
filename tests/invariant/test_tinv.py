import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from geolayers.invariant.tinv import TinvInitialRepresentation, classical_mds, tinv_coordinates
from geolayers.testing import assert_equivariant, assert_invariant

seeds = st.integers(min_value=0, max_value=2**31 - 1)


def is_generic(cloud: torch.Tensor, min_gap: float = 0.05, min_skew: float = 0.05) -> bool:
    """Distinct, non-zero principal variances (up to the rank N - 1 when N <= D) and clearly
    non-zero third moments along every principal axis: the clouds for which the output is
    claimed to be exactly invariant (see tinv_coordinates)."""
    centred = cloud - cloud.mean(0)
    u, s, _ = torch.linalg.svd(centred, full_matrices=False)
    rank = min(cloud.shape[0] - 1, cloud.shape[1])
    var = s[:rank].square() / s[0].square()
    if bool((var[:-1] - var[1:] < min_gap).any()) or float(var[-1]) < min_gap:
        return False
    proj = u[:, :rank] * s[:rank]
    skew = proj.pow(3).sum(0).abs() / proj.abs().pow(3).sum(0)
    return bool((skew > min_skew).all())


def generic_clouds(gen: torch.Generator, batch: int, n: int, d: int) -> torch.Tensor:
    """``(batch, n, d)`` float64 clouds, anisotropic and skewed, redrawn until generic."""
    clouds = []
    while len(clouds) < batch:
        z = torch.randn(n, d, generator=gen, dtype=torch.float64)
        z = (z + 0.6 * z.square()) * torch.linspace(3.0, 1.0, d, dtype=torch.float64)
        if is_generic(z):
            clouds.append(z)
    return torch.stack(clouds)


def random_isometry(gen: torch.Generator, inputs):
    """A random orthogonal matrix (rotation or reflection, from QR) and a translation."""
    d = inputs[0].shape[-1]
    q, r = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))  # Haar-distributed over O(d), both determinants
    shift = 5 * torch.randn(inputs[0].shape[0], 1, d, generator=gen, dtype=torch.float64)
    return q, shift


def apply_isometry(g, inputs):
    q, shift = g
    x = inputs[0]
    return (x @ q.T.to(x.dtype) + shift.to(x.dtype), *inputs[1:])


@settings(max_examples=20, deadline=None)
@given(
    seed=seeds,
    n=st.integers(min_value=4, max_value=12),
    d=st.integers(min_value=1, max_value=4),
    extra=st.integers(0, 2),
)
def test_invariant_to_rotations_reflections_translations(seed, n, d, extra):
    layer = TinvInitialRepresentation(d + extra)
    gen = torch.Generator().manual_seed(seed)
    worst = assert_invariant(
        layer,
        lambda g: (generic_clouds(g, 2, n, d),),
        random_isometry,
        apply_isometry,
        trials=3,
        generator=gen,
    )
    assert worst <= 1e-9


def test_invariant_when_points_fewer_than_dimensions():
    # N < D takes the N x N Gram path.
    assert_invariant(
        TinvInitialRepresentation(5),
        lambda g: (generic_clouds(g, 3, 4, 6),),
        random_isometry,
        apply_isometry,
        trials=4,
    )


def test_invariant_to_a_pure_reflection(dtype, tol):
    x = generic_clouds(torch.Generator().manual_seed(3), 2, 9, 3).to(dtype)
    flip = torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=dtype))
    torch.testing.assert_close(
        tinv_coordinates(x @ flip, 3), tinv_coordinates(x, 3), atol=tol, rtol=tol
    )


def test_float32_invariance():
    assert_invariant(
        TinvInitialRepresentation(3),
        lambda g: (generic_clouds(g, 2, 16, 3),),
        random_isometry,
        apply_isometry,
        dtype=torch.float32,
        trials=6,
    )


@settings(max_examples=15, deadline=None)
@given(seed=seeds, n=st.integers(2, 10), d=st.integers(1, 4))
def test_permutation_equivariant(seed, n, d):
    gen = torch.Generator().manual_seed(seed)
    for dtype in (torch.float64, torch.float32):
        assert_equivariant(
            TinvInitialRepresentation(d),
            lambda g: (generic_clouds(g, 2, max(n, d + 2), d),),
            lambda g, inp: torch.randperm(inp[0].shape[1], generator=g),
            lambda p, inp: (inp[0][:, p],),
            lambda p, out: out[:, p],
            dtype=dtype,
            trials=2,
            generator=gen,
        )


@settings(max_examples=20, deadline=None)
@given(seed=seeds, n=st.integers(1, 12), d=st.integers(1, 6), extra=st.integers(0, 3))
def test_distances_preserved_when_out_dim_covers_the_rank(seed, n, d, extra):
    # Any cloud, generic or not: distances never depend on the sign or eigenbasis choices.
    x = torch.randn(3, n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    out = tinv_coordinates(x, d + extra)
    assert out.shape == (3, n, d + extra)
    torch.testing.assert_close(torch.cdist(out, out), torch.cdist(x, x), atol=1e-8, rtol=0)


def test_distances_preserved_float32():
    x = torch.randn(4, 20, 3, generator=torch.Generator().manual_seed(1))
    out = tinv_coordinates(x, 3)
    assert out.dtype == torch.float32
    torch.testing.assert_close(torch.cdist(out, out), torch.cdist(x, x), atol=1e-4, rtol=1e-4)


def test_low_out_dim_is_the_best_rank_k_approximation():
    gen = torch.Generator().manual_seed(2)
    x = generic_clouds(gen, 1, 15, 3)[0]
    out = tinv_coordinates(x, 2)
    centred = x - x.mean(0)
    _, s, vh = torch.linalg.svd(centred, full_matrices=False)
    # Same as projecting onto the two leading principal axes, up to the column signs.
    expected = centred @ vh[:2].T
    torch.testing.assert_close(out.abs(), expected.abs(), atol=1e-10, rtol=0)
    torch.testing.assert_close(out.square().sum(0), s[:2].square(), atol=1e-10, rtol=1e-10)


def test_sign_convention_positive_third_moment(dtype):
    x = generic_clouds(torch.Generator().manual_seed(4), 3, 10, 3).to(dtype)
    out = tinv_coordinates(x, 3)
    assert bool((out.pow(3).sum(1) > 0).all())


def test_batched_and_unbatched_agree(dtype, tol):
    x = generic_clouds(torch.Generator().manual_seed(5), 3, 8, 3).to(dtype)
    batched = tinv_coordinates(x, 4)
    for b in range(3):
        torch.testing.assert_close(tinv_coordinates(x[b], 4), batched[b], atol=tol, rtol=tol)


def test_masked_points_do_not_affect_real_ones(dtype, tol):
    gen = torch.Generator().manual_seed(6)
    sizes = [7, 4, 9]
    clouds = [generic_clouds(gen, 1, n, 3)[0].to(dtype) for n in sizes]
    width = 12
    padded = torch.full((3, width, 3), 1e3, dtype=dtype)  # far-away garbage at padding
    mask = torch.zeros(3, width, dtype=torch.bool)
    for b, (n, cloud) in enumerate(zip(sizes, clouds, strict=True)):
        slots = torch.randperm(width, generator=gen)[:n].sort().values
        mask[b, slots] = True
        padded[b, slots] = cloud
    layer = TinvInitialRepresentation(4)
    out = layer(padded, mask=mask)
    assert out.shape == (3, width, 4)
    assert torch.equal(out[~mask], torch.zeros_like(out[~mask]))
    for b, cloud in enumerate(clouds):
        torch.testing.assert_close(out[b][mask[b]], layer(cloud), atol=tol, rtol=tol)


def test_classical_mds_matches_point_path(dtype, tol):
    gen = torch.Generator().manual_seed(7)
    x = generic_clouds(gen, 2, 10, 3).to(dtype)
    torch.testing.assert_close(
        classical_mds(torch.cdist(x, x), 5), tinv_coordinates(x, 5), atol=tol, rtol=tol
    )
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[0, [1, 4]] = False
    got = classical_mds(torch.cdist(x, x), 3, mask=mask)
    torch.testing.assert_close(got, tinv_coordinates(x, 3, mask=mask), atol=tol, rtol=tol)


def test_degenerate_inputs_give_zero_columns_and_padding():
    gen = torch.Generator().manual_seed(8)
    # Collinear points in 3-D: rank 1, so columns 2.. are exact zeros.
    t = torch.randn(10, 1, generator=gen, dtype=torch.float64)
    line = t * torch.tensor([[1.0, 2.0, -0.5]], dtype=torch.float64) + 3.0
    out = tinv_coordinates(line, 5)
    assert torch.equal(out[:, 1:], torch.zeros(10, 4, dtype=torch.float64))
    torch.testing.assert_close(torch.cdist(out, out), torch.cdist(line, line), atol=1e-10, rtol=0)
    # out_dim > N: zero padding past the N - 1 non-zero directions.
    few = torch.randn(3, 4, generator=gen, dtype=torch.float64)
    out = tinv_coordinates(few, 6)
    assert out.shape == (3, 6) and torch.equal(out[:, 2:], torch.zeros(3, 4, dtype=torch.float64))
    # Singletons and empty sets.
    assert torch.equal(tinv_coordinates(torch.randn(1, 3), 2), torch.zeros(1, 2))
    empty = tinv_coordinates(torch.randn(2, 4, 3), 3, mask=torch.zeros(2, 4, dtype=torch.bool))
    assert torch.equal(empty, torch.zeros(2, 4, 3))


def test_tied_eigenvalues_still_preserve_distances():
    # A square: a repeated eigenvalue, so invariance holds only up to a rotation inside the
    # tied plane (documented), but distances are exact whatever basis eigh picks.
    square = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]], dtype=torch.float64)
    for angle in (0.0, 0.3, 1.1):
        c, s = math.cos(angle), math.sin(angle)
        rot = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
        out = tinv_coordinates(square @ rot.T, 2)
        torch.testing.assert_close(
            torch.cdist(out, out), torch.cdist(square, square), atol=1e-12, rtol=0
        )


def test_gradients_on_a_generic_cloud():
    x = generic_clouds(torch.Generator().manual_seed(9), 1, 6, 3)[0].requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: tinv_coordinates(x, 3), (x,))


def test_repr_and_dtypes():
    layer = TinvInitialRepresentation(4)
    assert str(layer) == "TinvInitialRepresentation(out_dim=4)"
    assert list(layer.parameters()) == []
    for dtype in (torch.float32, torch.float64):
        out = layer(torch.randn(2, 5, 3, dtype=dtype))
        assert out.shape == (2, 5, 4) and out.dtype == dtype


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: TinvInitialRepresentation(0), ValueError, "out_dim must be >= 1, got 0"),
        (lambda: TinvInitialRepresentation(2.0), TypeError, "out_dim must be an int, got float"),
        (
            lambda: tinv_coordinates(torch.randn(3), 2),
            ValueError,
            r"x must have shape \(B, N, D\) or \(N, D\), got \(3,\)",
        ),
        (
            lambda: tinv_coordinates(torch.ones(3, 2, dtype=torch.long), 2),
            TypeError,
            "x must be floating point",
        ),
        (
            lambda: tinv_coordinates(
                torch.randn(2, 3, 2), 2, mask=torch.ones(2, 4, dtype=torch.bool)
            ),
            ValueError,
            r"mask must have shape \(B, N\) = \(2, 3\), got \(2, 4\)",
        ),
        (
            lambda: tinv_coordinates(torch.randn(2, 3, 2), 2, mask=torch.ones(2, 3)),
            TypeError,
            "mask must be a bool tensor",
        ),
        (
            lambda: tinv_coordinates(torch.randn(3, 2), 2, mask=torch.ones(1, 3, dtype=torch.bool)),
            ValueError,
            "mask is only accepted with batched input",
        ),
        (
            lambda: classical_mds(torch.rand(3, 4), 2),
            ValueError,
            r"distances must have shape \(B, N, N\) or \(N, N\), got \(3, 4\)",
        ),
    ],
)
def test_bad_inputs(call, error, message):
    with pytest.raises(error, match=message):
        call()
