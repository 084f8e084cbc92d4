"""geolayers.distributed in one process (no process group): the step functions against their
single-process definitions, the tables' semantics and checks, checkpoints, error wrapping.
The multi-process runs are in test_multi_process.py."""

import os

import pytest
import torch

import geolayers.distributed as D
from geolayers.ops import backend
from geolayers.ops.sgns import sgns_pair_loss

requires_walk_kernel = pytest.mark.skipif(
    backend("cpu")["random_walk"] != "compiled", reason="compiled random_walk kernel not built"
)
requires_embedding_kernel = pytest.mark.skipif(
    backend("cpu")["poincare_embedding_step"] != "compiled",
    reason="compiled Poincare embedding kernels not built",
)


def test_partition_is_contiguous_balanced_and_owner_consistent():
    bounds = D.even_bounds(11, 3)
    assert bounds == [0, 3, 7, 11]
    owners = D.owner_of(torch.arange(11), torch.tensor(bounds))
    assert owners.tolist() == [0] * 3 + [1] * 4 + [2] * 4
    # More ranks than items: empty parts own nothing.
    bounds = D.even_bounds(2, 4)
    assert D.owner_of(torch.arange(2), torch.tensor(bounds)).tolist() == [1, 3]
    assert [D.rank_range(2, r, 4) for r in range(4)] == [(0, 0), (0, 1), (1, 1), (1, 2)]
    with pytest.raises(ValueError, match="rank must lie in"):
        D.rank_range(5, 3, 3)
    with pytest.raises(ValueError, match="parts must be >= 1"):
        D.even_bounds(5, 0)


def _pairs_reference(walks, window):
    """All (center, context) pairs within ``window`` over each walk's valid prefix."""
    out = []
    for row in walks.tolist():
        toks = []
        for t in row:
            if t < 0:
                break
            toks.append(t)
        for i, c in enumerate(toks):
            for j in range(max(0, i - window), min(len(toks), i + window + 1)):
                if j != i:
                    out.append((c, toks[j]))
    return sorted(out)


def _rows(batch):
    return sorted(map(tuple, torch.cat([batch.center.unsqueeze(1), batch.targets], 1).tolist()))


def test_skipgram_pairs_follow_the_window_and_stop_at_dead_ends():
    g = torch.Generator().manual_seed(0)
    walks = torch.randint(0, 9, (5, 8), generator=g)
    walks[1, 5:] = -1
    walks[3, 1:] = -1  # one token: no pair
    noise = D.noise_table(torch.arange(1.0, 10.0))
    batch = D.skipgram_pairs(
        walks, torch.arange(5), window=3, negatives=4, noise=noise, shrink_window=False
    )
    got = sorted(zip(batch.center.tolist(), batch.targets[:, 0].tolist(), strict=True))
    assert got == _pairs_reference(walks, 3)
    neg = batch.targets[:, 1:]
    # A negative equal to its context is dropped (-1), as word2vec skips it.
    assert bool((neg != batch.targets[:, :1]).all())
    assert int(neg.min()) >= -1 and int(neg.max()) < 9
    # The reduced window keeps a subset of the full window's pairs.
    shrunk = D.skipgram_pairs(walks, torch.arange(5), window=3, negatives=0, noise=noise)
    full = _pairs_reference(walks, 3)
    assert 0 < shrunk.center.numel() < len(full)
    assert set(zip(shrunk.center.tolist(), shrunk.targets[:, 0].tolist(), strict=True)) <= set(full)


def test_negatives_follow_the_noise_distribution_and_subsampling_its_probabilities():
    counts = torch.tensor([0.0, 1.0, 5.0, 20.0, 80.0], dtype=torch.float64)
    walks = torch.full((4000, 2), 0)
    walks[:, 1] = 1
    batch = D.skipgram_pairs(
        walks, torch.arange(4000), window=1, negatives=10, noise=D.noise_table(counts),
        keep_prob=torch.tensor([1.0, 0.5, 1.0, 1.0, 1.0], dtype=torch.float64),
        shrink_window=False, seed=1,
    )  # fmt: skip
    # Token 1 is kept in half of the walks: one pair each way there.
    assert batch.center.numel() == pytest.approx(4000, rel=0.06)
    neg = batch.targets[:, 1:]
    neg = neg[neg >= 0]
    freq = torch.bincount(neg, minlength=5).double() / neg.numel()
    expected = counts.pow(0.75) / counts.pow(0.75).sum()
    # The context's own draws are dropped, so compare tokens 2..4 among themselves.
    torch.testing.assert_close(freq[2:] / freq[2:].sum(), expected[2:] / expected[2:].sum(),
                               atol=0.01, rtol=0)  # fmt: skip
    assert int(torch.bincount(neg, minlength=5)[0]) == 0  # unseen tokens are never drawn


def test_skipgram_pairs_depend_on_the_walk_ids_not_on_the_batching():
    g = torch.Generator().manual_seed(1)
    walks = torch.randint(0, 20, (9, 12), generator=g)
    ids = torch.arange(100, 109)
    counts = torch.bincount(walks.flatten(), minlength=20).double()
    kwargs = dict(
        window=4,
        negatives=3,
        noise=D.noise_table(counts),
        keep_prob=torch.full((20,), 0.7, dtype=torch.float64),
        seed=5,
        epoch=2,
    )
    whole = D.skipgram_pairs(walks, ids, **kwargs)
    parts = [D.skipgram_pairs(walks[a:b], ids[a:b], **kwargs) for a, b in ((0, 4), (4, 9))]
    assert _rows(whole) == sorted(_rows(parts[0]) + _rows(parts[1]))
    # Another epoch draws other windows, subsamples and negatives.
    assert _rows(D.skipgram_pairs(walks, ids, **{**kwargs, "epoch": 3})) != _rows(whole)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_sgns_step_is_one_sgd_step_of_the_summed_pair_loss(dtype):
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    g = torch.Generator().manual_seed(2)
    x = (torch.rand(7, 5, generator=g, dtype=torch.float64) - 0.5).to(dtype)
    y = (torch.rand(6, 5, generator=g, dtype=torch.float64) - 0.5).to(dtype)
    center = torch.randint(0, 7, (30,), generator=g)
    targets = torch.randint(0, 6, (30, 4), generator=g)  # repeated rows on purpose
    xa, ya = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
    loss = sgns_pair_loss(xa, ya, center, targets)
    loss.backward()
    lr = 0.3
    got = D.sgns_step(x, y, center, targets, lr)
    torch.testing.assert_close(got, loss.detach().double(), atol=tol, rtol=tol)
    torch.testing.assert_close(x, xa.detach() - lr * xa.grad, atol=tol, rtol=tol)
    torch.testing.assert_close(y, ya.detach() - lr * ya.grad, atol=tol, rtol=tol)
    # An empty batch changes nothing.
    assert float(D.sgns_step(x, y, center[:0], targets[:0], lr)) == 0.0


def test_sgns_step_leaves_dropped_negatives_out():
    g = torch.Generator().manual_seed(3)
    x = torch.rand(4, 3, generator=g, dtype=torch.float64)
    y = torch.rand(4, 3, generator=g, dtype=torch.float64)
    center, targets = torch.tensor([0, 1]), torch.tensor([[1, -1, 2], [0, 3, -1]])
    x1, y1 = x.clone(), y.clone()
    D.sgns_step(x1, y1, center, targets, 0.5)
    x2, y2 = x.clone(), y.clone()
    for c, t in ((0, [1, 2]), (1, [0, 3])):
        D.sgns_step(x2, y2, torch.tensor([c]), torch.tensor([t]), 0.0)  # loss only
    xa, ya = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
    loss = sgns_pair_loss(xa, ya, torch.tensor([0]), torch.tensor([[1, 2]])) + sgns_pair_loss(
        xa, ya, torch.tensor([1]), torch.tensor([[0, 3]])
    )
    loss.backward()
    torch.testing.assert_close(x1, x - 0.5 * xa.grad, atol=1e-12, rtol=0)
    torch.testing.assert_close(y1, y - 0.5 * ya.grad, atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match=r"targets\[:, 0\]"):
        D.sgns_step(x, y, center, torch.tensor([[-1, 1], [0, 1]]), 0.1)
    with pytest.raises(ValueError, match="targets must have shape"):
        D.sgns_step(x, y, center, torch.tensor([[1, 2]]), 0.1)


@requires_embedding_kernel
@pytest.mark.parametrize("mode", ["sharded", "replicated"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_poincare_step_on_one_process_equals_the_kernel_step(mode, dtype):
    from geolayers.ops import poincare_embedding_step

    tol = 1e-10 if dtype == torch.float64 else 1e-5
    g = torch.Generator().manual_seed(4)
    c = 1.4
    w = ((torch.rand(15, 3, generator=g, dtype=torch.float64) - 0.5) * 0.9).to(dtype)
    # Near the boundary of the ball of radius 1 / sqrt(c): the step is projected back.
    w[0] = torch.tensor([(1 - 1e-4) / c**0.5, 0.0, 0.0], dtype=dtype)
    u, v = torch.randint(0, 15, (9,), generator=g), torch.randint(0, 15, (9,), generator=g)
    u[0] = 0
    neg = torch.randint(-1, 15, (9, 4), generator=g)
    ref = w.clone()
    loss_ref = poincare_embedding_step(ref, u, v, neg, 0.8, c)
    table = D.embedding_table(mode, 15, 3, dtype=dtype, init=w)
    loss = D.poincare_step_distributed(table, u, v, neg, 0.8, c)
    torch.testing.assert_close(table.full(), ref, atol=tol, rtol=0)
    torch.testing.assert_close(loss / 9, loss_ref, atol=tol, rtol=0)


@requires_embedding_kernel
def test_fit_on_one_process_equals_fit_hierarchy_on_one_thread():
    from geolayers.hyperbolic import fit_hierarchy

    edges = _tree_closure(30, 3)
    kwargs = dict(dim=3, negatives=4, batch_size=5, epochs=3, burn_in=1, lr=0.5, seed=3)
    ref = fit_hierarchy(edges, threads=1, progress=False, **kwargs)
    fit = D.fit_hierarchy_distributed(edges, progress=False, **kwargs)
    torch.testing.assert_close(fit.table.full(), ref.model.weight.detach(), atol=1e-10, rtol=0)
    for a, b in zip(fit.history, ref.history, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-10)


def _tree_closure(n, arity):
    """(child, ancestor) pairs of the complete ``arity``-ary tree on ``n`` nodes."""
    pairs = []
    for i in range(1, n):
        a = i
        while a:
            a = (a - 1) // arity
            pairs.append((i, a))
    return torch.tensor(pairs)


@requires_walk_kernel
def test_walks_on_one_process_are_the_random_walks_corpus():
    from geolayers.graph import CSRGraph, random_walks

    g = CSRGraph.from_edge_index(torch.tensor([[0, 1, 2, 3, 1], [1, 2, 3, 0, 3]]), undirected=True)
    shard = D.distributed_random_walks(g, 7, 3, p=0.5, q=2.0, seed=9, chunk_size=5)
    assert (shard.offset, shard.total) == (0, 12)
    ref = random_walks(g, 7, 3, p=0.5, q=2.0, seed=9, progress=False)
    assert torch.equal(shard.walks, ref)


def test_training_on_one_process_separates_two_communities():
    from geolayers.graph import CSRGraph

    # Two 12-node cliques joined by one edge.
    src, dst = [], []
    for base in (0, 12):
        for i in range(12):
            for j in range(i + 1, 12):
                src.append(base + i)
                dst.append(base + j)
    src.append(0)
    dst.append(12)
    g = CSRGraph.from_edge_index(torch.tensor([src, dst]), undirected=True)
    shard = D.distributed_random_walks(g, 20, 10, seed=1)
    # 24 tokens: a step sums many updates of each row, so steps of one walk keep it stable.
    res = D.train_skipgram_distributed(
        shard, 24, 16, window=4, epochs=3, sample=0, walks_per_step=1, compute_loss=True,
        progress=False,
    )  # fmt: skip
    z = torch.nn.functional.normalize(res.input.full(), dim=1)
    sim = z @ z.T
    same = torch.zeros(24, 24, dtype=torch.bool)
    same[:12, :12] = same[12:, 12:] = True
    same.fill_diagonal_(False)
    across = ~same
    across.fill_diagonal_(False)
    assert float(sim[same].mean()) > float(sim[across].mean()) + 0.3
    assert res.losses[-1] < res.losses[0]
    assert res.stats.total_bytes == 0  # one process sends nothing
    assert res.steps == 3 * 240


def test_tables_fetch_push_and_rules_on_one_process():
    init = torch.arange(12.0).view(6, 2)
    for mode in ("sharded", "replicated"):
        t = D.embedding_table(mode, 6, 2, init=init)
        f = t.fetch(torch.tensor([4, 1, 4]))
        assert f.rows.tolist() == [1, 4] and f.inverse.tolist() == [1, 0, 1]
        assert torch.equal(f.values[f.inverse], init[[4, 1, 4]])
        t.push(f, torch.ones(2, 2))
        f = t.fetch(torch.tensor([1]))
        t.push(f, torch.ones(1, 2), rule=lambda old, upd: old * 0 + upd * 10)
        expected = init.clone()
        expected[4] += 1
        expected[1] = 10
        assert torch.equal(t.full(), expected), mode
        assert t.owner(torch.tensor([0, 5])).tolist() == [0, 0]
        assert (t.row_start, t.row_end) == (0, 6)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda t: t.fetch(torch.tensor([6])), IndexError, r"fetch: rows must lie in \[0, num_rows = 6\)"),
        (lambda t: t.fetch(torch.tensor([1.0])), TypeError, "fetch: rows must be an int64 tensor"),
        (lambda t: t.push(t.fetch(torch.tensor([1])), torch.ones(2, 2)), ValueError,
         r"push: updates must have shape \(M, D\) = \(1, 2\)"),
        (lambda t: t.push(D.ShardedEmbedding(6, 2).fetch(torch.tensor([1])), torch.ones(1, 2)),
         TypeError, "push: fetch must be the RowFetch this table's fetch"),
    ],
)  # fmt: skip
def test_table_errors_name_the_argument(call, error, message):
    t = D.ShardedEmbedding(6, 2)
    with pytest.raises(error, match=message):
        call(t)


def test_table_constructor_errors():
    with pytest.raises(
        ValueError, match=r"init must be a tensor of shape \(num_rows, dim\) = \(4, 2\)"
    ):
        D.ShardedEmbedding(4, 2, init=torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"init\(start, end, dim\) must return"):
        D.ShardedEmbedding(4, 2, init=lambda a, b, d: torch.zeros(1, 1))
    with pytest.raises(TypeError, match="dtype must be torch.float32 or torch.float64"):
        D.ReplicatedEmbedding(4, 2, dtype=torch.int64)
    with pytest.raises(ValueError, match="mode must be one of"):
        D.embedding_table("mirrored", 4, 2)
    with pytest.raises(ValueError, match="num_rows must be >= 1"):
        D.ShardedEmbedding(0, 2)


def test_uniform_init_does_not_depend_on_the_partition():
    init = D.uniform_init(3, -0.5, 0.5, block=4)
    whole = init(0, 11, 3)
    assert torch.equal(torch.cat([init(0, 5, 3), init(5, 6, 3), init(6, 11, 3)]), whole)
    assert float(whole.min()) >= -0.5 and float(whole.max()) < 0.5


def test_checkpoint_round_trip_reshard_and_errors(tmp_path, monkeypatch):
    # The shards of a 3-rank run, written as its ranks would, in one process: no barrier.
    monkeypatch.setattr(D.sharded.dist, "barrier", lambda group=None: None)
    w = torch.randn(7, 3, dtype=torch.float64)
    prefix = tmp_path / "ckpt" / "emb"
    t = D.ShardedEmbedding(7, 3, dtype=torch.float64, init=w)
    for rank, (a, b) in enumerate(
        zip(D.even_bounds(7, 3)[:-1], D.even_bounds(7, 3)[1:], strict=True)
    ):
        t.rank, t.world_size, t.row_start, t.row_end = rank, 3, a, b
        t.local_rows = w[a:b].clone()
        assert t.save_sharded(prefix).endswith(f"emb.shard-{rank:05d}-of-00003.pt")
    assert torch.equal(D.load_sharded_into_single(prefix), w)
    # Resharded into one process.
    single = D.ShardedEmbedding(7, 3, dtype=torch.float64)
    single.load_sharded(prefix)
    assert torch.equal(single.local_rows, w)
    rep = D.ReplicatedEmbedding(7, 3, dtype=torch.float64)
    rep.load_sharded(prefix)
    assert torch.equal(rep.weight, w)
    with pytest.raises(ValueError, match=r"holds a \(7, 3\) table, this one is \(7, 2\)"):
        D.ShardedEmbedding(7, 2).load_sharded(prefix)
    os.remove(D.shard_path(prefix, 1, 3))
    with pytest.raises(FileNotFoundError, match=r"lacks the shards of ranks \[1\]"):
        D.load_sharded_into_single(prefix)
    with pytest.raises(FileNotFoundError, match="no checkpoint shards"):
        D.load_sharded_into_single(tmp_path / "nothing")


def test_collective_errors_name_rank_and_operation():
    with pytest.raises(RuntimeError, match=r"rank 0 of 1 failed in all_to_all of row ids.*boom"):
        with D.collective("all_to_all of row ids"):
            raise RuntimeError("boom")


def test_init_distributed_without_a_launcher_makes_a_one_process_group(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    try:
        assert D.init_distributed(timeout_s=5) == (0, 1)
        assert D.init_distributed() == (0, 1)  # already there: joined once
        t = D.ShardedEmbedding(3, 2)
        assert t.world_size == 1 and D.is_main_process()
    finally:
        D.shutdown_distributed()
    assert D.get_world_size() == 1
    with pytest.raises(ValueError, match="timeout_s must be positive"):
        D.init_distributed(timeout_s=0)
