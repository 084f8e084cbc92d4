import numpy as np
import pytest
import torch
from scipy.stats import chisquare

import geolayers.ops as ops
from geolayers.graph import CSRGraph
from geolayers.ops.walk import random_walk, random_walk_reference

requires_kernel = pytest.mark.skipif(
    ops.backend("cpu")["random_walk"] != "compiled", reason="compiled CPU kernel not built"
)

# A small graph with every kind of second step from t = 0: back to t, to a common neighbour of
# t, and away from t; node 5 is reachable only in two steps.
EDGES = torch.tensor([[0, 0, 1, 1, 1, 2, 3], [1, 2, 2, 3, 4, 5, 4]])
WEIGHTS = torch.tensor([1.0, 2.0, 0.5, 3.0, 1.5, 1.0, 2.0], dtype=torch.float64)
CASES = [(1.0, 1.0), (1.0, 0.5), (4.0, 0.25), (0.25, 4.0)]


def graph(weighted: bool, undirected: bool = True) -> CSRGraph:
    return CSRGraph.from_edge_index(EDGES, 6, WEIGHTS if weighted else None, undirected=undirected)


def exact_two_steps(g: CSRGraph, t: int, p: float, q: float) -> np.ndarray:
    """P(x1, x2 | start t) written down from node2vec's definition, (N, N)."""
    n = g.num_nodes
    w = np.zeros((n, n))
    src = g.row().numpy()
    w[src, g.col.numpy()] = 1.0 if g.weight is None else g.weight.numpy()
    joint = np.zeros((n, n))
    first = w[t] / w[t].sum()
    for x1 in range(n):
        if first[x1] == 0:
            continue
        alpha = np.where(w[t] > 0, 1.0, 1.0 / q)
        alpha[t] = 1.0 / p
        second = alpha * w[x1]
        joint[x1] = first[x1] * second / second.sum()
    return joint


def frequencies(walks: torch.Tensor, n: int) -> np.ndarray:
    pair = (walks[:, 1] * n + walks[:, 2]).numpy()
    return np.bincount(pair, minlength=n * n).reshape(n, n) / walks.shape[0]


def assert_matches(freq: np.ndarray, exact: np.ndarray, samples: int, max_err: float):
    support = exact.reshape(-1) > 0
    assert freq.reshape(-1)[~support].sum() == 0, "a step outside the support was drawn"
    observed = freq.reshape(-1)[support] * samples
    expected = exact.reshape(-1)[support] * samples
    assert chisquare(observed, expected).pvalue > 1e-3
    assert np.abs(freq - exact).max() < max_err


@requires_kernel
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize(("p", "q"), CASES)
def test_kernel_second_steps_match_node2vec(p, q, weighted):
    g = graph(weighted)
    samples = 10**6
    start = torch.zeros(samples, dtype=torch.long)
    walks = random_walk(g.rowptr, g.col, start, 2, weight=g.weight, p=p, q=q, seed=7)
    assert_matches(frequencies(walks, 6), exact_two_steps(g, 0, p, q), samples, 0.005)


@requires_kernel
def test_kernel_directed_common_neighbour_is_an_out_edge_of_t():
    # Directed: 0 -> 1, 0 -> 2, 1 -> {0, 2, 3}; from (t=0, v=1), 2 is "common" (0 -> 2 exists).
    g = CSRGraph.from_edge_index(torch.tensor([[0, 0, 1, 1, 1, 2, 3], [1, 2, 0, 2, 3, 0, 0]]))
    samples = 10**6
    walks = random_walk(g.rowptr, g.col, torch.zeros(samples, dtype=torch.long), 2, p=2.0, q=0.5)
    assert_matches(frequencies(walks, 4), exact_two_steps(g, 0, 2.0, 0.5), samples, 0.005)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize(("p", "q"), [(1.0, 1.0), (0.25, 4.0)])
def test_reference_second_steps_match_node2vec(p, q, weighted):
    g = graph(weighted)
    samples = 200_000
    start = torch.zeros(samples, dtype=torch.long)
    walks = random_walk_reference(g.rowptr, g.col, start, 2, weight=g.weight, p=p, q=q, seed=3)
    assert_matches(frequencies(walks, 6), exact_two_steps(g, 0, p, q), samples, 0.01)


@requires_kernel
def test_kernel_and_reference_agree_in_distribution_on_long_walks():
    # Visit frequencies along 20-step biased walks on a random graph: two samplers with other
    # random numbers, one distribution.
    gen = torch.Generator().manual_seed(0)
    ei = torch.randint(0, 30, (2, 120), generator=gen)
    g = CSRGraph.from_edge_index(ei, 30, undirected=True)
    start = torch.arange(30).repeat(1000)
    a = random_walk(g.rowptr, g.col, start, 20, p=0.5, q=2.0, seed=1)
    b = random_walk_reference(g.rowptr, g.col, start, 20, p=0.5, q=2.0, seed=1)
    fa = torch.bincount(a[:, -1][a[:, -1] >= 0], minlength=30).double()
    fb = torch.bincount(b[:, -1][b[:, -1] >= 0], minlength=30).double()
    assert fa.sum() == fb.sum()
    assert ((fa - fb).abs() / fa.sum()).max() < 0.01


@requires_kernel
@pytest.mark.parametrize(("p", "q"), [(1.0, 1.0), (0.25, 4.0)])
def test_same_walks_for_any_thread_count_and_chunking(p, q):
    gen = torch.Generator().manual_seed(1)
    ei = torch.randint(0, 500, (2, 4000), generator=gen)
    g = CSRGraph.from_edge_index(ei, 500, undirected=True)
    start = torch.arange(500).repeat(20)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = random_walk(g.rowptr, g.col, start, 30, p=p, q=q, seed=5)
        torch.set_num_threads(2)
        two = random_walk(g.rowptr, g.col, start, 30, p=p, q=q, seed=5)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two)
    tail = random_walk(g.rowptr, g.col, start[3000:], 30, p=p, q=q, seed=5, offset=3000)
    assert torch.equal(tail, one[3000:])
    other = random_walk(g.rowptr, g.col, start, 30, p=p, q=q, seed=6)
    assert not torch.equal(one, other)


@pytest.mark.parametrize("use_reference", [False, True])
def test_dead_ends_pad_with_minus_one(use_reference):
    if not use_reference and ops.backend("cpu")["random_walk"] != "compiled":
        pytest.skip("compiled CPU kernel not built")
    # 0 -> 1 -> 2, 2 has no out-edge; 3 -> 4 with weight 0 is a dead end too.
    g = CSRGraph.from_edge_index(
        torch.tensor([[0, 1, 3], [1, 2, 4]]), 5, torch.tensor([1.0, 2.0, 0.0])
    )
    fn = random_walk_reference if use_reference else random_walk
    walks = fn(g.rowptr, g.col, torch.tensor([0, 2, 3]), 4, weight=g.weight, p=0.5, q=2.0)
    assert walks.tolist() == [[0, 1, 2, -1, -1], [2, -1, -1, -1, -1], [3, -1, -1, -1, -1]]


@requires_kernel
def test_walks_follow_edges_and_start_at_start():
    gen = torch.Generator().manual_seed(2)
    ei = torch.randint(0, 200, (2, 1000), generator=gen)
    g = CSRGraph.from_edge_index(ei, 200)
    start = torch.randint(0, 200, (300,), generator=gen)
    walks = random_walk(g.rowptr, g.col, start, 15, p=2.0, q=0.5)
    assert torch.equal(walks[:, 0], start)
    a, b = walks[:, :-1].reshape(-1), walks[:, 1:].reshape(-1)
    moved = b >= 0
    keys = set((g.row() * 200 + g.col).tolist())
    assert all(k in keys for k in (a[moved] * 200 + b[moved]).tolist())
    # Once -1, always -1.
    assert bool((walks[:, 1:][walks[:, :-1] < 0] == -1).all())


def test_bad_inputs_raise_named_errors():
    g = graph(False)
    start = torch.tensor([0])
    with pytest.raises(TypeError, match="start must be an int64"):
        random_walk(g.rowptr, g.col, start.int(), 3)
    with pytest.raises(IndexError, match=r"start values must lie in \[0, 6\)"):
        random_walk(g.rowptr, g.col, torch.tensor([6]), 3)
    with pytest.raises(IndexError, match="col values"):
        random_walk(g.rowptr, g.col.clone().fill_(9), start, 3)
    with pytest.raises(ValueError, match="p must be positive"):
        random_walk(g.rowptr, g.col, start, 3, p=-1.0)
    with pytest.raises(ValueError, match="q must be positive"):
        random_walk(g.rowptr, g.col, start, 3, q=float("inf"))
    with pytest.raises(ValueError, match="walk_length must be >= 1"):
        random_walk(g.rowptr, g.col, start, 0)
    with pytest.raises(ValueError, match="must be contiguous"):
        random_walk(g.rowptr, torch.stack([g.col, g.col], 1)[:, 0], start, 3)
    with pytest.raises(ValueError, match="rowptr must start at 0"):
        random_walk(g.rowptr + 1, g.col, start, 3)
    with pytest.raises(ValueError, match="weight must be finite and non-negative"):
        random_walk(g.rowptr, g.col, start, 3, weight=-torch.ones(g.num_edges))
    with pytest.raises(ValueError, match="weight must have the shape of col"):
        random_walk(g.rowptr, g.col, start, 3, weight=torch.ones(2))


@requires_kernel
def test_kernel_rejects_bad_input_without_crashing():
    # Direct calls of the op skip the Python checks: the kernel's own checks must hold.
    g = graph(False)
    op = torch.ops.geolayers.random_walk.default
    with pytest.raises((IndexError, RuntimeError), match="start values"):
        op(g.rowptr, g.col, None, torch.tensor([99]), 3, 1.0, 1.0, 0, 0)
    with pytest.raises(RuntimeError, match="walk_length"):
        op(g.rowptr, g.col, None, torch.tensor([0]), 0, 1.0, 1.0, 0, 0)
    with pytest.raises(RuntimeError, match="int64"):
        op(g.rowptr.int(), g.col, None, torch.tensor([0]), 2, 1.0, 1.0, 0, 0)


@requires_kernel
def test_opcheck_and_compile():
    g = graph(True)
    args = (g.rowptr, g.col, g.weight, torch.tensor([0, 3]), 5, 0.5, 2.0, 3, 0)
    torch.library.opcheck(torch.ops.geolayers.random_walk.default, args)

    op = torch.ops.geolayers.random_walk.default

    @torch.compile(fullgraph=True, backend="aot_eager")
    def walk(start):
        return op(g.rowptr, g.col, g.weight, start, 5, 0.5, 2.0, 3, 0)

    start = torch.tensor([0, 3])
    expect = random_walk(g.rowptr, g.col, start, 5, weight=g.weight, p=0.5, q=2.0, seed=3)
    assert torch.equal(walk(start), expect)
