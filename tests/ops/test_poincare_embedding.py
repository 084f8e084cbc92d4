import pytest
import torch

import geolayers.ops as ops
from geolayers.hyperbolic.embedding import relation_csr
from geolayers.ops import (
    poincare_embedding_epoch,
    poincare_embedding_epoch_reference,
    poincare_embedding_negatives,
    poincare_embedding_step,
    poincare_embedding_step_reference,
)

requires_kernel = pytest.mark.skipif(
    ops.backend("cpu")["poincare_embedding_step"] != "compiled",
    reason="compiled CPU kernel not built",
)


def random_weight(n, d, dtype, seed, scale=0.6):
    g = torch.Generator().manual_seed(seed)
    return ((torch.rand(n, d, generator=g, dtype=torch.float64) - 0.5) * scale).to(dtype)


def small_tree():
    """A tree of 40 nodes (node i's parent is (i - 1) // 3) and its transitive closure."""
    edges = []
    for i in range(1, 40):
        a = (i - 1) // 3
        edges.append((i, a))
        while a > 0:
            a = (a - 1) // 3
            edges.append((i, a))
    return torch.tensor(edges)


@requires_kernel
@pytest.mark.parametrize("c", [1.0, 0.5])
def test_step_equals_autograd_and_geoopt(dtype, c):
    # Disjoint rows, rows shared by several items (summed gradients), an empty negative slot
    # and a negative equal to the anchor (zero chord).
    w = random_weight(40, 5, dtype, 0)
    perm = torch.randperm(40, generator=torch.Generator().manual_seed(1))
    cases = [
        (perm[:5], perm[5:10], perm[10:30].view(5, 4).clone()),
        (torch.tensor([0, 0, 1]), torch.tensor([1, 2, 2]), torch.tensor([[3, 4], [3, -1], [1, 3]])),
    ]
    cases[0][2][1, 2] = -1
    # geoopt keeps the curvature of PoincareBall(c) in float32; c = 0.5 is exact there, but its
    # float32 arithmetic on it leaves differences of 1e-10 in float64.
    tol = {torch.float64: 1e-10 if c == 1.0 else 1e-8, torch.float32: 1e-6}[dtype]
    for u, v, neg in cases:
        w1, w2 = w.clone(), w.clone()
        loss1 = poincare_embedding_step(w1, u, v, neg, lr=0.3, c=c)
        loss2 = poincare_embedding_step_reference(w2, u, v, neg, lr=0.3, c=c)
        torch.testing.assert_close(loss1, loss2, rtol=tol, atol=tol)
        torch.testing.assert_close(w1, w2, rtol=0, atol=tol)
        assert (w1 - w).abs().max() > 1e-3  # the step moved the rows


@requires_kernel
def test_step_projects_back_into_the_ball():
    w = torch.tensor([[0.999, 0.0], [-0.999, 0.0], [0.0, 0.5]], dtype=torch.float64)
    w1, w2 = w.clone(), w.clone()
    poincare_embedding_step(w1, torch.tensor([0]), torch.tensor([2]), torch.tensor([[1]]), 50.0)
    poincare_embedding_step_reference(
        w2, torch.tensor([0]), torch.tensor([2]), torch.tensor([[1]]), 50.0
    )
    torch.testing.assert_close(w1, w2, rtol=0, atol=1e-12)
    assert (w1.norm(dim=1) <= 1 - 1e-5 + 1e-15).all()


@requires_kernel
def test_negatives_avoid_the_anchor_and_its_relatives_and_do_not_depend_on_threads():
    edges = small_tree()
    ptr, idx = relation_csr(edges, 40)
    draws = []
    for threads in (1, 2):
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            draws.append(poincare_embedding_negatives(edges, ptr, idx, 40, 30, seed=5, epoch=2))
        finally:
            torch.set_num_threads(before)
    assert torch.equal(draws[0], draws[1])
    neg = draws[0]
    for i, (u, _) in enumerate(edges.tolist()):
        related = set(idx[ptr[u] : ptr[u + 1]].tolist()) | {u}
        got = set(neg[i][neg[i] >= 0].tolist())
        assert not got & related
    # Root 0 is related to every node: no valid negative exists for it as an anchor.
    root = poincare_embedding_negatives(torch.tensor([[0, 1]]), ptr, idx, 40, 4, 0, 0)
    assert (root == -1).all()
    # Another seed or epoch draws other numbers; the uniform draw covers the valid nodes.
    assert not torch.equal(neg, poincare_embedding_negatives(edges, ptr, idx, 40, 30, 6, 2))
    assert not torch.equal(neg, poincare_embedding_negatives(edges, ptr, idx, 40, 30, 5, 3))
    leaf = poincare_embedding_negatives(torch.tensor([[39, 12]] * 200), ptr, idx, 40, 30, 0, 0)
    assert set(leaf.flatten().tolist()) == set(range(40)) - {0, 3, 12, 39}


@requires_kernel
def test_weighted_negatives_follow_the_cdf():
    edges = torch.tensor([[1, 0]])
    ptr, idx = relation_csr(edges, 6)
    weights = torch.tensor([0.0, 0.0, 1.0, 3.0, 0.0, 4.0], dtype=torch.float64)
    neg = poincare_embedding_negatives(
        edges.repeat(4000, 1), ptr, idx, 6, 4, 1, 0, weights.cumsum(0)
    )
    freq = torch.bincount(neg.flatten(), minlength=6).double() / neg.numel()
    torch.testing.assert_close(freq, weights / 8, atol=0.01, rtol=0)


@requires_kernel
def test_epoch_on_one_thread_equals_the_reference_steps():
    edges = small_tree()
    ptr, idx = relation_csr(edges, 40)
    w = random_weight(40, 3, torch.float64, 2, scale=0.2)
    order = edges[torch.randperm(edges.shape[0], generator=torch.Generator().manual_seed(3))]
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        w1, w2 = w.clone(), w.clone()
        cdf = torch.arange(1, 41, dtype=torch.float64).cumsum(0)
        a = poincare_embedding_epoch(w1, order, ptr, idx, 6, 7, 0.5, seed=4, epoch=1, neg_cdf=cdf)
        b = poincare_embedding_epoch_reference(w2, order, ptr, idx, 6, 7, 0.5, 1.0, 4, 1, cdf)
    finally:
        torch.set_num_threads(before)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(w1, w2, rtol=0, atol=1e-10)


@requires_kernel
def test_epoch_keeps_points_inside_and_reduces_the_loss(dtype):
    edges = small_tree()
    ptr, idx = relation_csr(edges, 40)
    w = random_weight(40, 2, dtype, 5, scale=2e-3)
    losses = [
        float(poincare_embedding_epoch(w, edges, ptr, idx, 10, 5, 1.0, epoch=e)) for e in range(30)
    ]
    assert losses[-1] < 0.6 * losses[0]
    limit = 1 - {torch.float32: 4e-3, torch.float64: 1e-5}[dtype]
    assert torch.isfinite(w).all() and (w.double().norm(dim=1) <= limit + 1e-6).all()


def test_fake_kernels_and_schemas():
    w = random_weight(10, 3, torch.float64, 0)
    edges = torch.tensor([[1, 0], [2, 0]])
    ptr, idx = relation_csr(edges, 10)
    torch.library.opcheck(
        torch.ops.geolayers.poincare_embedding_negatives.default,
        (edges, ptr, idx, torch.empty(0, dtype=torch.float64), 10, 3, 0, 0),
    )
    torch.library.opcheck(
        torch.ops.geolayers.poincare_embedding_step.default,
        (w, torch.tensor([1]), torch.tensor([0]), torch.tensor([[5, 6]]), 0.1, 1.0),
        test_utils=("test_schema", "test_faketensor"),
    )


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"u": torch.tensor([0.0])}, TypeError, "u must be an int64 tensor"),
        ({"u": torch.tensor([12])}, IndexError, r"u values must lie in \[0, 10\)"),
        ({"negatives": torch.tensor([[-2]])}, IndexError, r"negatives values must lie in \[-1"),
        ({"negatives": torch.tensor([1, 2])}, ValueError, r"negatives must have shape \(B, K\)"),
        ({"v": torch.tensor([1, 2])}, ValueError, "u and v must be 1-D of one length"),
        ({"lr": -1.0}, ValueError, "lr must be non-negative"),
        ({"c": 0.0}, ValueError, "c must be positive"),
        ({"weight": torch.zeros(10, 3).t()}, ValueError, "weight must be contiguous|shape"),
        ({"weight": torch.zeros(10, dtype=torch.long)}, TypeError, "weight must be a float32"),
    ],
)
def test_bad_step_input_messages(kwargs, error, message):
    args = {
        "weight": torch.zeros(10, 3),
        "u": torch.tensor([0]),
        "v": torch.tensor([1]),
        "negatives": torch.tensor([[2]]),
        "lr": 0.1,
        "c": 1.0,
    }
    args.update(kwargs)
    with pytest.raises(error, match=message):
        poincare_embedding_step(**args)


@requires_kernel
def test_direct_epoch_call_with_bad_graph_raises_instead_of_crashing():
    w = torch.zeros(4, 2)
    pairs = torch.tensor([[1, 0]])
    with pytest.raises(IndexError, match="adj_idx values must lie"):
        torch.ops.geolayers.poincare_embedding_epoch(
            w,
            pairs,
            torch.tensor([0, 1, 1, 1, 1]),
            torch.tensor([9]),
            torch.empty(0, dtype=torch.float64),
            2,
            1,
            0.1,
            1.0,
            0,
            0,
        )
    with pytest.raises(ValueError, match="adj_ptr must be"):
        torch.ops.geolayers.poincare_embedding_epoch(
            w,
            pairs,
            torch.tensor([0, 1]),
            torch.tensor([0]),
            torch.empty(0, dtype=torch.float64),
            2,
            1,
            0.1,
            1.0,
            0,
            0,
        )
