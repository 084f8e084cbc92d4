import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn import functional as F

from geolayers.invariant.nadaraya_watson import NadarayaWatsonHead, compress_support
from geolayers.testing import assert_equivariant

KERNELS = [("cosine", dict(temperature=0.5)), ("rbf", dict(bandwidth=1.5))]


def naive_probs(head: NadarayaWatsonHead, query, support, labels, allowed=None):
    """Textbook Nadaraya-Watson: kernel matrix, one-hot vote, normalise."""
    if head.kernel == "cosine":
        cos = F.cosine_similarity(query[:, None], support[None], dim=-1)
        k = torch.exp(cos / head.temperature)
    else:
        d2 = (query[:, None] - support[None]).square().sum(-1)
        k = torch.exp(-d2 / (2 * head.bandwidth**2))
    if allowed is not None:
        k = k * allowed
    votes = k @ F.one_hot(labels, head.num_classes).to(k.dtype)
    return votes / k.sum(1, keepdim=True)


@pytest.mark.parametrize("kernel, kwargs", KERNELS)
@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 6), m=st.integers(1, 12))
def test_matches_naive_formula_and_sums_to_one(kernel, kwargs, seed, n, m):
    gen = torch.Generator().manual_seed(seed)
    head = NadarayaWatsonHead(4, kernel=kernel, **kwargs)
    for dtype, tol in ((torch.float64, 1e-9), (torch.float32, 1e-4)):
        q = torch.randn(n, 5, generator=gen, dtype=dtype)
        s = torch.randn(m, 5, generator=gen, dtype=dtype)
        y = torch.randint(0, 4, (m,), generator=gen)
        logp = head(q, s, y)
        assert logp.shape == (n, 4) and logp.dtype == dtype
        probs = logp.exp()
        torch.testing.assert_close(probs.sum(1), torch.ones(n, dtype=dtype), atol=tol, rtol=tol)
        torch.testing.assert_close(probs, naive_probs(head, q, s, y), atol=tol, rtol=tol)


def test_equivariant_to_query_order_and_invariant_to_support_order():
    head = NadarayaWatsonHead(3, kernel="rbf")
    y = torch.arange(10) % 3

    def inputs(g):
        return torch.randn(6, 4, generator=g), torch.randn(10, 4, generator=g)

    assert_equivariant(
        lambda q, s: head(q, s, y),
        inputs,
        lambda g, inp: torch.randperm(6, generator=g),
        lambda p, inp: (inp[0][p], inp[1]),
        lambda p, out: out[p],
    )
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(1))
    q, s = inputs(torch.Generator().manual_seed(2))
    torch.testing.assert_close(head(q, s[perm], y[perm]), head(q, s, y))


def test_far_queries_stay_finite_with_a_narrow_kernel():
    # Scores near -5000: a shared-maximum softmax over classes would underflow one class.
    head = NadarayaWatsonHead(2, kernel="rbf", bandwidth=1.0)
    q = torch.zeros(1, 1, dtype=torch.float64)
    s = torch.tensor([[100.0], [101.0]], dtype=torch.float64)
    logp = head(q, s, torch.tensor([0, 1]))
    expected_margin = (101.0**2 - 100.0**2) / 2  # log k_0 - log k_1
    assert torch.isfinite(logp).all()
    torch.testing.assert_close(logp[0, 0] - logp[0, 1], torch.tensor(expected_margin).double())


def test_class_without_support_gets_minus_infinity():
    head = NadarayaWatsonHead(3)
    logp = head(torch.randn(4, 3), torch.randn(5, 3), torch.tensor([0, 0, 2, 2, 0]))
    assert bool((logp[:, 1] == -math.inf).all())
    torch.testing.assert_close(logp.exp().sum(1), torch.ones(4))


@pytest.mark.parametrize("kernel, kwargs", KERNELS)
def test_gradients_reach_encoder_through_query_and_support(kernel, kwargs):
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 8))
    head = NadarayaWatsonHead(3, kernel=kernel, **kwargs)
    xq, xs = torch.randn(5, 6), torch.randn(12, 6)
    yq, ys = torch.randint(0, 3, (5,)), torch.arange(12) % 3
    for detach_query, detach_support in ((False, True), (True, False)):
        encoder.zero_grad()
        zq, zs = encoder(xq), encoder(xs)
        zq = zq.detach() if detach_query else zq
        zs = zs.detach() if detach_support else zs
        F.nll_loss(head(zq, zs, ys), yq).backward()
        for p in encoder.parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all()
            assert float(p.grad.abs().max()) > 0


def test_self_exclusion_gradients_stay_finite():
    # Masked entries are -inf; neither they nor the class maximum may leak NaN into grads.
    z = torch.randn(16, 4, requires_grad=True)
    y = torch.arange(16) // 4
    env = torch.arange(16) % 2
    head = NadarayaWatsonHead(4, kernel="rbf")
    kwargs = dict(support_env=env, query_env=env, restrict_to_env=True)
    # Every class keeps one same-env point besides the query itself.
    logp = head(z, z, y, exclude_self=True, **kwargs)
    assert torch.isfinite(logp).all()
    F.nll_loss(logp, y).backward()
    assert torch.isfinite(z.grad).all() and float(z.grad.abs().max()) > 0
    # One point per (class, env): a query's own class has no support left, so -inf entries.
    z.grad = None
    few, few_y, few_env = z[:8], torch.arange(8) // 2, torch.arange(8) % 2
    logp = head(
        few,
        few,
        few_y,
        support_env=few_env,
        query_env=few_env,
        restrict_to_env=True,
        exclude_self=True,
    )
    assert bool((logp.gather(1, few_y[:, None]) == -math.inf).all())
    logp.masked_fill(torch.isinf(logp), 0.0).sum().backward()
    assert torch.isfinite(z.grad).all()


def test_restrict_to_env_uses_only_same_env_support():
    head = NadarayaWatsonHead(2, kernel="cosine", temperature=0.1)
    support = torch.tensor([[1.0, 0.0], [1.0, 0.6], [0.0, 1.0], [-1.0, 0.2]])
    labels = torch.tensor([0, 1, 0, 1])
    s_env = torch.tensor([0, 1, 1, 0])
    query = torch.tensor([[1.0, 0.05]])
    q_env = torch.tensor([1])
    # Unrestricted: the nearest support point (env 0, label 0) dominates.
    assert int(head(query, support, labels).argmax()) == 0
    restricted = head(
        query, support, labels, support_env=s_env, query_env=q_env, restrict_to_env=True
    )
    assert int(restricted.argmax()) == 1
    same_env = s_env == 1
    torch.testing.assert_close(restricted, head(query, support[same_env], labels[same_env]))
    # Without restrict_to_env the environments are ignored.
    torch.testing.assert_close(
        head(query, support, labels, support_env=s_env, query_env=q_env),
        head(query, support, labels),
    )


def test_restricted_rows_match_per_environment_heads():
    gen = torch.Generator().manual_seed(3)
    head = NadarayaWatsonHead(3, kernel="rbf")
    z = torch.randn(12, 4, generator=gen, dtype=torch.float64)
    y = torch.arange(12) % 3
    env = torch.tensor([0, 1, 2] * 4)
    got = head(z, z, y, support_env=env, query_env=env, restrict_to_env=True, exclude_self=True)
    for i in range(12):
        keep = (env == env[i]) & (torch.arange(12) != i)
        expected = head(z[i : i + 1], z[keep], y[keep])
        torch.testing.assert_close(got[i : i + 1], expected)


def test_exclude_self_and_query_index():
    gen = torch.Generator().manual_seed(4)
    head = NadarayaWatsonHead(2)
    z = torch.randn(6, 3, generator=gen, dtype=torch.float64)
    y = torch.tensor([0, 1, 0, 1, 0, 1])
    with_self = head(z, z, y)
    without = head(z, z, y, exclude_self=True)
    assert not torch.allclose(with_self, without)
    for i in range(6):
        keep = torch.arange(6) != i
        torch.testing.assert_close(without[i : i + 1], head(z[i : i + 1], z[keep], y[keep]))
    # query_index: queries 0 and 3 are support rows 2 and 5; query 1 is not in the support.
    q = z[[2, 5, 0]] + torch.tensor([[0.0], [0.0], [0.5]], dtype=torch.float64)
    got = head(q, z, y, query_index=torch.tensor([2, 5, -1]))
    torch.testing.assert_close(
        got[0:1], head(q[0:1], z[torch.arange(6) != 2], y[torch.arange(6) != 2])
    )
    torch.testing.assert_close(got[2:3], head(q[2:3], z, y))


def test_compress_support_recovers_cluster_means_and_passes_gradients():
    gen = torch.Generator().manual_seed(5)
    centres = torch.tensor([[5.0, 0.0], [-5.0, 0.0], [0.0, 5.0], [0.0, -5.0]], dtype=torch.float64)
    # Class 0 lives around centres 0 and 1, class 1 around centres 2 and 3.
    which = torch.arange(200) % 4
    points = centres[which] + 0.1 * torch.randn(200, 2, generator=gen, dtype=torch.float64)
    labels = which // 2
    points.requires_grad_(True)
    cents, cent_labels = compress_support(points, labels, per_class=2, generator=gen)
    assert cents.shape == (4, 2) and cent_labels.tolist() == [0, 0, 1, 1]
    for c in range(4):
        expected = points[which == c].mean(0)
        err = (cents - expected).norm(dim=1).min()
        assert float(err.detach()) < 1e-12
    cents.sum().backward()
    torch.testing.assert_close(points.grad, torch.ones_like(points) / 50)


def test_compress_support_small_classes_and_head_inference():
    z = torch.randn(13, 3, generator=torch.Generator().manual_seed(6))
    y = torch.tensor([0] * 10 + [2] * 3)
    cents, labels = compress_support(z, y, per_class=4, num_classes=3)
    assert cents.shape == (7, 3)
    assert labels.tolist() == [0] * 4 + [2] * 3
    torch.testing.assert_close(cents[4:], z[10:])  # a class with <= per_class points is kept
    logp = NadarayaWatsonHead(3)(torch.randn(5, 3), cents, labels)
    assert logp.shape == (5, 3) and bool((logp[:, 1] == -math.inf).all())


def test_repr():
    assert str(NadarayaWatsonHead(10)) == "NadarayaWatsonHead(10, kernel='cosine', temperature=0.1)"
    assert (
        str(NadarayaWatsonHead(2, kernel="gaussian", bandwidth=0.5))
        == "NadarayaWatsonHead(2, kernel='rbf', bandwidth=0.5)"
    )


def _call(**overrides):
    args = dict(
        query=torch.randn(3, 4),
        support=torch.randn(5, 4),
        support_labels=torch.tensor([0, 1, 2, 0, 1]),
    )
    args.update(overrides)
    return NadarayaWatsonHead(3)(**args)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (
            lambda: _call(query=torch.randn(3, 6)),
            ValueError,
            r"query and support must have the same feature size H, got 6 \(query\) and 4",
        ),
        (
            lambda: _call(support_labels=torch.tensor([0, 1, 3, 0, 1])),
            ValueError,
            r"support_labels must lie in \[0, num_classes\) = \[0, 3\), got 3",
        ),
        (
            lambda: _call(support_labels=torch.tensor([0, -1, 2, 0, 1])),
            ValueError,
            r"support_labels must lie in \[0, num_classes\) = \[0, 3\), got -1",
        ),
        (
            lambda: _call(support_labels=torch.tensor([0, 1, 2])),
            ValueError,
            r"support_labels must have shape \(5,\), got \(3,\)",
        ),
        (
            lambda: _call(support_labels=torch.zeros(5)),
            TypeError,
            "support_labels must be an int64 tensor",
        ),
        (
            lambda: _call(
                support=torch.randn(0, 4), support_labels=torch.zeros(0, dtype=torch.long)
            ),
            ValueError,
            "support must hold at least one point",
        ),
        (lambda: _call(query=torch.randn(4)), ValueError, r"query must have shape \(rows, H\)"),
        (lambda: _call(restrict_to_env=True), ValueError, "needs both support_env and query_env"),
        (
            lambda: _call(
                support_env=torch.tensor([0, 0, 0, 1, 1]),
                query_env=torch.tensor([0, 2, 1]),
                restrict_to_env=True,
            ),
            ValueError,
            r"query 1 \(environment 2\) has an empty support",
        ),
        (
            lambda: _call(
                support_env=torch.tensor([0, 0, 0, 1, 1]),
                query_env=torch.tensor([0, 1]),
                restrict_to_env=True,
            ),
            ValueError,
            r"query_env must have shape \(3,\), got \(2,\)",
        ),
        (
            lambda: _call(exclude_self=True),
            ValueError,
            "exclude_self=True needs the queries to be the support",
        ),
        (
            lambda: _call(query_index=torch.tensor([0, 5, -1])),
            ValueError,
            r"query_index must lie in \[-1, M\) = \[-1, 5\)",
        ),
        (lambda: NadarayaWatsonHead(3, kernel="dot"), ValueError, "kernel must be 'cosine', 'rbf'"),
        (
            lambda: NadarayaWatsonHead(3, temperature=0.0),
            ValueError,
            "temperature must be a positive",
        ),
        (lambda: NadarayaWatsonHead(0), ValueError, "num_classes must be >= 1, got 0"),
        (
            lambda: compress_support(torch.randn(4, 2), torch.tensor([0, 1, 0, 1]), per_class=0),
            ValueError,
            "per_class must be an int >= 1, got 0",
        ),
        (
            lambda: compress_support(
                torch.randn(4, 2), torch.tensor([0, 1, 0, 5]), per_class=1, num_classes=3
            ),
            ValueError,
            r"labels must lie in \[0, num_classes\) = \[0, 3\), got 5",
        ),
    ],
)
def test_bad_inputs(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_single_support_point_excluded_leaves_empty_support():
    z = torch.randn(1, 3)
    with pytest.raises(ValueError, match="query 0 has an empty support"):
        NadarayaWatsonHead(2)(z, z, torch.tensor([1]), exclude_self=True)
