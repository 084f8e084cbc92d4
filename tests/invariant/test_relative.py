import pytest
import torch
from torch.nn import functional as F

from geolayers.invariant import (
    ProductOfInvariances,
    RelativeProjection,
    relative_projection,
    select_anchors,
)
from geolayers.testing import assert_invariant

D, N, K = 6, 20, 7
TOL = dict(atol=1e-10, rtol=1e-10)


def latents(gen):
    """Inputs for assert_invariant: latents ``x`` and anchor latents, float64."""
    return (
        torch.randn(N, D, generator=gen, dtype=torch.float64),
        torch.randn(K, D, generator=gen, dtype=torch.float64),
    )


def orthogonal(gen, d=D):
    q, r = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
    # Sign fix makes q Haar-distributed; it includes reflections half of the time.
    return q * torch.sign(torch.diagonal(r))


def signed_permutation(gen, d=D):
    perm = torch.randperm(d, generator=gen)
    signs = torch.randint(0, 2, (d,), generator=gen).to(torch.float64) * 2 - 1
    return torch.eye(d, dtype=torch.float64)[perm] * signs


# Transformation classes: sample(gen) -> (matrix M, scale s, shift t), acting as x -> s x M^T + t.
def sample_orthogonal_rescaling(gen, _inputs):
    return orthogonal(gen), float(torch.rand(1, generator=gen)) * 5 + 0.1, 0.0


def sample_isometry(gen, _inputs):
    return orthogonal(gen), 1.0, torch.randn(D, generator=gen, dtype=torch.float64) * 3


def sample_signed_permutation_translation(gen, _inputs):
    return signed_permutation(gen), 1.0, torch.randn(D, generator=gen, dtype=torch.float64) * 3


def sample_generic_linear(gen, _inputs):
    return torch.randn(D, D, generator=gen, dtype=torch.float64), 1.0, 0.0


def act(g, inputs):
    m, s, t = g
    return tuple(s * v @ m.T + t for v in inputs)


OWN_CLASS = {
    "cosine": sample_orthogonal_rescaling,
    "euclidean": sample_isometry,
    "l1": sample_signed_permutation_translation,
    "linf": sample_signed_permutation_translation,
}


def reference(x, anchors, similarity):
    """Textbook similarities from explicit (N, K, D) differences."""
    if similarity == "cosine":
        return F.cosine_similarity(x[:, None], anchors[None], dim=-1)
    diff = x[:, None] - anchors[None]
    p = {"euclidean": 2, "l1": 1, "linf": float("inf")}[similarity]
    return -torch.linalg.vector_norm(diff, ord=p, dim=-1)


@pytest.mark.parametrize("similarity", ["cosine", "euclidean", "l1", "linf"])
def test_matches_textbook_formula(similarity, dtype, tol):
    gen = torch.Generator().manual_seed(0)
    x, a = (v.to(dtype) for v in latents(gen))
    out = relative_projection(x, a, similarity)
    assert out.shape == (N, K) and out.dtype == dtype
    torch.testing.assert_close(out, reference(x, a, similarity), atol=tol, rtol=tol)
    # "standard" rows have mean 0 and variance 1 across anchors; "l2" rows have norm 1.
    std = relative_projection(x, a, similarity, normalize="standard")
    torch.testing.assert_close(std.mean(-1), torch.zeros(N, dtype=dtype), atol=tol, rtol=0)
    torch.testing.assert_close(
        std.var(-1, unbiased=False), torch.ones(N, dtype=dtype), atol=tol, rtol=tol
    )
    l2 = relative_projection(x, a, similarity, normalize="l2")
    torch.testing.assert_close(l2.norm(dim=-1), torch.ones(N, dtype=dtype), atol=tol, rtol=tol)


@pytest.mark.parametrize("normalize", ["none", "l2", "standard"])
def test_cosine_invariant_to_orthogonal_maps_and_rescaling(normalize):
    proj = RelativeProjection(similarity="cosine", normalize=normalize)
    assert_invariant(proj, latents, sample_orthogonal_rescaling, act, **TOL)


def test_cosine_not_invariant_to_generic_linear_map():
    gen = torch.Generator().manual_seed(1)
    x, a = latents(gen)
    g = sample_generic_linear(gen, None)
    change = (relative_projection(*act(g, (x, a))) - relative_projection(x, a)).abs().max()
    assert change > 0.1
    # And the invariance check used above does catch it.
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_invariant(RelativeProjection(), latents, sample_generic_linear, act, **TOL)


def test_euclidean_invariant_to_isometries_not_to_rescaling():
    proj = RelativeProjection(similarity="euclidean")
    assert_invariant(proj, latents, sample_isometry, act, **TOL)
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_invariant(proj, latents, sample_orthogonal_rescaling, act, **TOL)


@pytest.mark.parametrize("similarity", ["l1", "linf"])
def test_l1_linf_invariant_to_translation_and_signed_permutations(similarity):
    proj = RelativeProjection(similarity=similarity)
    assert_invariant(proj, latents, sample_signed_permutation_translation, act, **TOL)
    # A generic rotation is an isometry of L2 only: it changes L1/Linf distances.
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_invariant(proj, latents, sample_isometry, act, **TOL)


@pytest.mark.parametrize("similarity", ["euclidean", "l1", "linf"])
def test_standardised_distances_also_ignore_rescaling(similarity):
    proj = RelativeProjection(similarity=similarity, normalize="standard")

    def own_class_then_rescale(gen, inputs):
        m, _, t = OWN_CLASS[similarity](gen, inputs)
        return m, float(torch.rand(1, generator=gen)) * 5 + 0.1, t

    assert_invariant(proj, latents, own_class_then_rescale, act, **TOL)


@pytest.mark.parametrize("aggregation", ["concat", "sum", "attention"])
def test_product_components_each_invariant_to_own_class(aggregation):
    poi = ProductOfInvariances(aggregation=aggregation, num_anchors=K).double()
    for s, proj in enumerate(poi.projections):

        def component(x, a, s=s):
            return poi.components(x, a)[s]

        assert_invariant(component, latents, OWN_CLASS[proj.similarity], act, **TOL)
    # The aggregate keeps what all components share: translations and signed permutations
    # are isometries of every norm, but moving the origin changes the cosine, so use a
    # signed permutation and a rescaling (removed by the standardisation).
    assert_invariant(poi, latents, lambda g, i: (signed_permutation(g), 2.5, 0.0), act, **TOL)


def test_product_aggregation_shapes_and_attention_weights():
    gen = torch.Generator().manual_seed(2)
    x, a = latents(gen)
    concat = ProductOfInvariances(aggregation="concat").double()
    assert concat(x, a).shape == (N, 4 * K)
    parts = concat.components(x, a)
    assert len(parts) == concat.num_subspaces == 4
    torch.testing.assert_close(concat(x, a), torch.cat(parts, -1))
    summed = ProductOfInvariances(("cosine", "l1"), aggregation="sum").double()
    torch.testing.assert_close(summed(x, a), sum(summed.components(x, a)))
    att = ProductOfInvariances(aggregation="attention", num_anchors=K).double()
    assert att(x, a).shape == (N, K)
    w = att.attention_weights(att.components(x, a))
    assert w.shape == (N, 4) and bool((w > 0).all())
    torch.testing.assert_close(w.sum(1), torch.ones(N, dtype=torch.float64))


def test_product_accepts_projection_modules_and_fixed_anchors():
    gen = torch.Generator().manual_seed(3)
    x, a = latents(gen)
    poi = ProductOfInvariances(
        [RelativeProjection(similarity="linf"), "cosine"], aggregation="sum", anchors=a
    )
    assert poi.num_anchors == K
    assert [p.similarity for p in poi.projections] == ["linf", "cosine"]
    # The module's own projection has no stored anchors; the named one does.
    assert poi.projections[1].anchors is not None and poi.projections[0].anchors is None
    expected = relative_projection(x, a, "linf") + relative_projection(x, a, "cosine", "standard")
    torch.testing.assert_close(poi(x, a), expected)


@pytest.mark.parametrize("similarity", ["cosine", "euclidean", "l1", "linf"])
def test_gradients_flow_and_stay_finite(similarity):
    gen = torch.Generator().manual_seed(4)
    x, a = latents(gen)
    x[0] = a[0]  # a sample that coincides with an anchor: zero distance
    x.requires_grad_(True)
    a.requires_grad_(True)
    out = relative_projection(x, a, similarity, normalize="standard")
    (out * torch.randn(out.shape, generator=gen, dtype=out.dtype)).sum().backward()
    for grad in (x.grad, a.grad):
        assert grad is not None and bool(torch.isfinite(grad).all()) and grad.abs().sum() > 0
    if similarity != "linf":  # linf's gradient is a subgradient, no smooth check
        x0, a0 = (v.detach()[1:4].clone().requires_grad_(True) for v in (x, a))
        assert torch.autograd.gradcheck(
            lambda u, v: relative_projection(u, v, similarity), (x0, a0)
        )


def test_attention_parameters_get_gradients():
    gen = torch.Generator().manual_seed(5)
    x, a = latents(gen)
    poi = ProductOfInvariances(aggregation="attention", num_anchors=K).double()
    x.requires_grad_(True)
    (poi(x, a) * torch.randn(N, K, generator=gen, dtype=torch.float64)).sum().backward()
    assert x.grad is not None and bool(torch.isfinite(x.grad).all())
    for name, p in poi.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_float32_matches_float64():
    gen = torch.Generator().manual_seed(6)
    x, a = latents(gen)
    poi = ProductOfInvariances(aggregation="attention", num_anchors=K)
    out32 = poi(x.float(), a.float())
    assert out32.dtype == torch.float32
    out64 = poi.double()(x, a)
    torch.testing.assert_close(out32.double(), out64, atol=1e-4, rtol=1e-4)


def test_fixed_anchors_are_a_buffer():
    gen = torch.Generator().manual_seed(7)
    x, a = latents(gen)
    proj = RelativeProjection(a.float(), similarity="euclidean")
    assert "anchors" in proj.state_dict() and proj.num_anchors == K
    proj = proj.double()
    assert proj.anchors.dtype == torch.float64
    torch.testing.assert_close(proj(x), relative_projection(x, a, "euclidean"), atol=1e-6, rtol=0)
    # An explicit argument overrides the stored anchors.
    torch.testing.assert_close(proj(x, a[:3]), relative_projection(x, a[:3], "euclidean"))


def test_repr():
    assert str(RelativeProjection()) == "RelativeProjection(similarity='cosine', normalize='none')"
    proj = RelativeProjection(torch.randn(4, 3), similarity="l1", normalize="standard")
    assert str(proj) == "RelativeProjection(anchors=(4, 3), similarity='l1', normalize='standard')"
    poi = ProductOfInvariances(("cosine", "linf"), aggregation="attention", num_anchors=5)
    assert str(poi) == (
        "ProductOfInvariances(['cosine', 'linf'], aggregation='attention', num_anchors=5)"
    )


def test_bad_inputs():
    x, a = torch.randn(5, 4), torch.randn(3, 4)
    with pytest.raises(ValueError, match="similarity must be one of"):
        RelativeProjection(similarity="dot")
    with pytest.raises(ValueError, match="normalize must be one of"):
        relative_projection(x, a, normalize="batch")
    with pytest.raises(ValueError, match=r"x must have shape \(N, D\), got \(5,\)"):
        relative_projection(torch.randn(5), a)
    with pytest.raises(TypeError, match="x must be a float32 or float64 tensor"):
        relative_projection(torch.ones(5, 4, dtype=torch.long), a)
    with pytest.raises(TypeError, match="anchors must be a float32 or float64 tensor"):
        relative_projection(x, [[1.0] * 4])
    with pytest.raises(ValueError, match=r"same latent size D, got 4 \(x\) and 5 \(anchors\)"):
        relative_projection(x, torch.randn(3, 5))
    with pytest.raises(TypeError, match="x and anchors must share a dtype"):
        relative_projection(x, a.double())
    with pytest.raises(ValueError, match="anchors must hold at least one row"):
        relative_projection(x, torch.randn(0, 4))
    with pytest.raises(ValueError, match="anchors must be passed to forward"):
        RelativeProjection()(x)
    with pytest.raises(ValueError, match="aggregation must be one of"):
        ProductOfInvariances(aggregation="max")
    with pytest.raises(ValueError, match="aggregation='attention' needs num_anchors"):
        ProductOfInvariances(aggregation="attention")
    with pytest.raises(ValueError, match=r"similarities\[1\] must be one of"):
        ProductOfInvariances(("cosine", "l3"))
    with pytest.raises(TypeError, match="similarities must be a sequence"):
        ProductOfInvariances("cosine")
    with pytest.raises(ValueError, match="num_anchors must be an int >= 1"):
        ProductOfInvariances(num_anchors=0)
    with pytest.raises(ValueError, match=r"num_anchors \(2\) must equal the number of rows"):
        ProductOfInvariances(anchors=a, num_anchors=2)
    with pytest.raises(ValueError, match="anchors must have num_anchors = 3 rows"):
        ProductOfInvariances(aggregation="attention", num_anchors=3)(x, torch.randn(6, 4))


# ---------------------------------------------------------------- anchors


def test_random_anchors_reproducible_and_distinct():
    x = torch.randn(50, 3)
    first = select_anchors(x, 10, generator=torch.Generator().manual_seed(0))
    again = select_anchors(x, 10, generator=torch.Generator().manual_seed(0))
    other = select_anchors(x, 10, generator=torch.Generator().manual_seed(1))
    assert first.dtype == torch.long and torch.equal(first, again) and not torch.equal(first, other)
    assert first.unique().numel() == 10 and int(first.min()) >= 0 and int(first.max()) < 50


def test_farthest_point_anchors_are_distinct_and_maximin():
    gen = torch.Generator().manual_seed(8)
    x = torch.randn(200, 4, generator=gen, dtype=torch.float64)
    idx = select_anchors(x, 12, "farthest", generator=gen)
    assert idx.unique().numel() == 12
    dist = torch.cdist(x, x)
    # Greedy maximin: each new anchor is the point farthest from the earlier anchors...
    for i in range(1, 12):
        to_prev = dist[:, idx[:i]].min(dim=1).values
        assert to_prev[idx[i]] == to_prev.max()
    # ...which makes the anchors at least as far apart as any point is from its nearest anchor.
    sep = dist[idx][:, idx].masked_fill(torch.eye(12, dtype=torch.bool), float("inf")).min()
    cover = dist[:, idx].min(dim=1).values.max()
    assert sep >= cover
    # Duplicated data still gives distinct indices.
    dup = torch.zeros(5, 2)
    assert select_anchors(dup, 5, "farthest").unique().numel() == 5


def test_kmeans_anchors_are_real_points_one_per_cluster():
    gen = torch.Generator().manual_seed(9)
    centres = torch.tensor([[0.0, 0.0], [20.0, 0.0], [0.0, 20.0], [20.0, 20.0]])
    labels = torch.arange(80) % 4
    x = centres[labels] + torch.randn(80, 2, generator=gen)
    idx = select_anchors(x, 4, "kmeans", generator=gen)
    assert idx.dtype == torch.long and idx.unique().numel() == 4
    assert int(idx.min()) >= 0 and int(idx.max()) < 80
    assert sorted(labels[idx].tolist()) == [0, 1, 2, 3]
    assert select_anchors(x, 80, "kmeans", generator=gen).unique().numel() == 80


def test_select_anchors_bad_inputs():
    x = torch.randn(10, 3)
    with pytest.raises(ValueError, match=r"num_anchors must lie in \[1, N\] = \[1, 10\], got 11"):
        select_anchors(x, 11)
    with pytest.raises(TypeError, match="num_anchors must be an int"):
        select_anchors(x, 2.0)
    with pytest.raises(ValueError, match="method must be 'random', 'farthest' or 'kmeans'"):
        select_anchors(x, 2, "grid")
    with pytest.raises(ValueError, match=r"x must have shape \(N, D\)"):
        select_anchors(torch.randn(10), 2)
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        select_anchors(torch.ones(10, 3, dtype=torch.long), 2)
