"""geolayers.distributed on 2 and 3 processes (gloo on loopback, spawned by
:func:`geolayers.distributed.spawn`): every multi-process result is compared with the
single-process computation in this (parent) process.

One spawn per world size runs every scenario (starting a process costs seconds; the
scenarios take milliseconds); each test then checks one scenario's results. The failure tests
spawn their own runs, with short timeouts. Every run has a deadline and stops by itself.
"""

import os
import time

import pytest
import torch

import geolayers.distributed as D
from geolayers.ops import backend

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
    reason="torch.distributed with gloo is needed",
)
requires_kernels = pytest.mark.skipif(
    backend("cpu")["random_walk"] != "compiled"
    or backend("cpu")["poincare_embedding_step"] != "compiled",
    reason="compiled walk and Poincare kernels not built",
)

NUM_NODES, DIM = 23, 6


# --------------------------------------------------------------------- shared inputs


def ring_graph(n=NUM_NODES):
    """A ring with chords, as a CSR graph (neighbours sorted): ``(rowptr, col, None, n)``.

    Built without geolayers.graph, so that spawned workers need not import torch_geometric.
    """
    from types import SimpleNamespace

    rows = [sorted({(v + d) % n for d in (-5, -1, 1, 5)}) for v in range(n)]
    rowptr = torch.tensor([0] + [len(r) for r in rows]).cumsum(0)
    col = torch.tensor([c for r in rows for c in r])
    return SimpleNamespace(rowptr=rowptr, col=col, weight=None, num_nodes=n)


def sgns_tables():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(NUM_NODES, DIM, generator=g, dtype=torch.float64) - 0.5
    y = torch.rand(NUM_NODES, DIM, generator=g, dtype=torch.float64) - 0.5
    return x, y


def sgns_batch(shard):
    """One rank's batch: the skip-gram pairs of its walks."""
    return D.skipgram_pairs(
        shard.walks, shard.walk_ids(), window=2, negatives=3,
        noise=D.noise_table(torch.arange(1.0, NUM_NODES + 1)),
        keep_prob=torch.full((NUM_NODES,), 0.8, dtype=torch.float64), seed=3,
    )  # fmt: skip


def poincare_batch(world):
    """A global batch of 11 items, the weights, and the item bounds of each rank (uneven,
    with an empty rank for 3 ranks)."""
    g = torch.Generator().manual_seed(1)
    n = 17
    w = (torch.rand(n, 3, generator=g, dtype=torch.float64) - 0.5) * 0.8
    u, v = torch.randint(0, n, (11,), generator=g), torch.randint(0, n, (11,), generator=g)
    neg = torch.randint(-1, n, (11, 4), generator=g)
    bounds = {1: [0, 11], 2: [0, 4, 11], 3: [0, 5, 11, 11]}[world]
    return w, u, v, neg, bounds


def tree_closure(n=40, arity=3):
    pairs = []
    for i in range(1, n):
        a = i
        while a:
            a = (a - 1) // arity
            pairs.append((i, a))
    return torch.tensor(pairs)


FIT = dict(dim=3, negatives=5, batch_size=4, epochs=3, burn_in=1, lr=0.5, seed=2)
TRAIN = dict(window=2, negatives=3, epochs=2, walks_per_step=3, dtype=torch.float64, seed=4)


# --------------------------------------------------------------------- what every rank runs


def battery(tmpdir):
    rank, world = D.get_rank(), D.get_world_size()
    out = {"rank": rank, "world": world}
    # Walks: this rank's share of the corpus.
    shard = D.distributed_random_walks(ring_graph(), 6, 3, p=0.5, q=2.0, seed=7)
    out["walks"] = shard
    # One SGNS step, both modes, from the same initial tables.
    x, y = sgns_tables()
    batch = sgns_batch(shard)
    out["sgns_batch"] = batch
    for mode in ("sharded", "replicated"):
        inp = D.embedding_table(mode, NUM_NODES, DIM, dtype=torch.float64, init=x)
        outp = D.embedding_table(mode, NUM_NODES, DIM, dtype=torch.float64, init=y)
        loss = D.sgns_step_distributed(inp, outp, batch.center, batch.targets, 0.2)
        out[f"sgns_{mode}"] = {
            "loss": loss, "input": inp.full(), "output": outp.full(),
            "local_rows": inp.local_rows.clone(), "range": (inp.row_start, inp.row_end),
            "owner": inp.owner(torch.arange(NUM_NODES)),
            "stats": (inp.stats + outp.stats).as_dict(),
        }  # fmt: skip
        inp.save_sharded(os.path.join(tmpdir, f"sgns_{mode}"))
        if mode == "sharded":
            again = D.ShardedEmbedding(NUM_NODES, DIM, dtype=torch.float64)
            again.load_sharded(os.path.join(tmpdir, "sgns_sharded"))
            out["reloaded"] = torch.equal(again.local_rows, inp.local_rows)
    # A table with fewer rows than ranks (3 ranks: one owns nothing): every rank adds 1 to
    # every row.
    tiny = D.ShardedEmbedding(2, 2, init=torch.ones(2, 2))
    f = tiny.fetch(torch.tensor([1, 0, 1]))
    tiny.push(f, torch.ones(2, 2))
    out["tiny"] = {"full": tiny.full(), "local": tiny.local_rows.clone()}
    # One Poincare step, both modes (with and without the global batch size).
    w, u, v, neg, bounds = poincare_batch(world)
    lo, hi = bounds[rank], bounds[rank + 1]
    for mode, size in (("sharded", None), ("replicated", 11)):
        table = D.embedding_table(mode, w.shape[0], 3, dtype=torch.float64, init=w)
        loss = D.poincare_step_distributed(
            table, u[lo:hi], v[lo:hi], neg[lo:hi], 0.7, 1.3, global_batch_size=size
        )
        out[f"poincare_{mode}"] = {"loss": loss, "weight": table.full()}
    # A whole Poincare fit (both modes agree with fit_hierarchy; one per world size).
    mode = "sharded" if world == 2 else "replicated"
    fit = D.fit_hierarchy_distributed(tree_closure(), mode=mode, progress=False, **FIT)
    out["fit"] = {"weight": fit.table.full(), "losses": [h["loss"] for h in fit.history]}
    # A short skip-gram training in both modes: same steps, same result.
    for mode in ("sharded", "replicated"):
        res = D.train_skipgram_distributed(
            shard, NUM_NODES, 4, mode=mode, compute_loss=True, progress=False, **TRAIN
        )
        out[f"train_{mode}"] = {
            "input": res.input.full(), "losses": res.losses, "pairs": res.pairs,
            "steps": res.steps, "stats": res.stats.as_dict(),
        }  # fmt: skip
    return out


def die_or_hang(how, timeout_s):
    """Rank 1 exits (``how="exit"``) or stops answering (``"hang"``) before a collective; the
    others try a fetch and report what they saw."""
    import datetime

    # A group of its own with a short timeout: the rendezvous keeps the spawn's long one, so
    # that a slow start on a busy machine is not mistaken for a dead peer.
    group = torch.distributed.new_group(timeout=datetime.timedelta(seconds=timeout_s))
    table = D.ShardedEmbedding(10, 2, group)
    if D.get_rank() == 1:
        if how == "exit":
            os._exit(1)
        time.sleep(timeout_s + 6)  # silent past the others' timeout, then leaves
    start = time.perf_counter()
    try:
        table.fetch(torch.tensor([0, 9]))
    except RuntimeError as err:
        return {"error": str(err), "seconds": time.perf_counter() - start}
    return {"error": None, "seconds": time.perf_counter() - start}


# --------------------------------------------------------------------- the runs


@pytest.fixture(scope="module", params=[2, 3], ids=["2 processes", "3 processes"])
def run(request, tmp_path_factory):
    world = request.param
    tmpdir = str(tmp_path_factory.mktemp(f"world{world}"))
    start = time.perf_counter()
    outcomes = D.spawn(battery, world, (tmpdir,), timeout_s=80, collective_timeout_s=20)
    return {
        "world": world,
        "tmpdir": tmpdir,
        "ranks": [o.value for o in outcomes],
        "seconds": time.perf_counter() - start,
    }


@requires_kernels
def test_walk_shards_concatenate_to_the_single_process_corpus(run):
    from geolayers.graph import random_walks

    ref = random_walks(ring_graph(), 6, 3, p=0.5, q=2.0, seed=7, progress=False)
    shards = [r["walks"] for r in run["ranks"]]
    assert [s.offset for s in shards] == D.even_bounds(ref.shape[0], run["world"])[:-1]
    assert all(s.total == ref.shape[0] for s in shards)
    assert torch.equal(torch.cat([s.walks for s in shards]), ref)


@requires_kernels
@pytest.mark.parametrize("mode", ["sharded", "replicated"])
def test_one_sgns_step_equals_the_single_process_step_on_the_global_batch(run, mode):
    x, y = sgns_tables()
    batches = [r["sgns_batch"] for r in run["ranks"]]
    loss = D.sgns_step(
        x, y, torch.cat([b.center for b in batches]), torch.cat([b.targets for b in batches]), 0.2
    )
    results = [r[f"sgns_{mode}"] for r in run["ranks"]]
    for res in results:  # every rank sees the same tables
        torch.testing.assert_close(res["input"], x, atol=1e-10, rtol=0)
        torch.testing.assert_close(res["output"], y, atol=1e-10, rtol=0)
    total = sum(float(r["loss"]) for r in results)
    assert total == pytest.approx(float(loss), abs=1e-10)
    assert sum(r["stats"]["total_bytes"] for r in results) > 0


@requires_kernels
def test_sharded_rows_owners_and_counted_bytes(run):
    world = run["world"]
    bounds = D.even_bounds(NUM_NODES, world)
    batches = [r["sgns_batch"] for r in run["ranks"]]
    for rank, r in enumerate(run["ranks"]):
        res = r["sgns_sharded"]
        assert res["range"] == (bounds[rank], bounds[rank + 1])
        assert torch.equal(res["local_rows"], res["input"][bounds[rank] : bounds[rank + 1]])
        assert torch.equal(res["owner"], D.owner_of(torch.arange(NUM_NODES), torch.tensor(bounds)))
        # What this rank sent, recomputed from the batches: the ids of the rows it needed from
        # other owners, the rows it served to other ranks, the updates of the rows it needed.
        owner = res["owner"]
        need = [(torch.unique(b.center), torch.unique(b.targets[b.targets >= 0])) for b in batches]
        remote = sum(int((owner[rows] != rank).sum()) for rows in need[rank])
        served = sum(
            int((owner[rows] == rank).sum()) for q in range(world) if q != rank for rows in need[q]
        )
        stats = res["stats"]
        assert stats["ids_bytes"] == 8 * remote
        assert stats["updates_bytes"] == 8 * DIM * remote
        assert stats["rows_bytes"] == 8 * DIM * served
        assert stats["meta_bytes"] == 2 * 8 * (world - 1)  # two fetches, one count per peer
        assert stats["collectives"] == 8  # two tables x (3 fetch + 1 push)


def test_tables_with_fewer_rows_than_ranks(run):
    world = run["world"]
    bounds = D.even_bounds(2, world)
    for rank, r in enumerate(run["ranks"]):
        assert torch.equal(r["tiny"]["full"], torch.full((2, 2), 1.0 + world))
        assert r["tiny"]["local"].shape == (bounds[rank + 1] - bounds[rank], 2)


@requires_kernels
@pytest.mark.parametrize("mode", ["sharded", "replicated"])
def test_one_poincare_step_equals_poincare_embedding_step_on_the_global_batch(run, mode):
    from geolayers.ops import poincare_embedding_step

    w, u, v, neg, _ = poincare_batch(run["world"])
    loss = poincare_embedding_step(w, u, v, neg, 0.7, 1.3)
    for r in run["ranks"]:
        torch.testing.assert_close(r[f"poincare_{mode}"]["weight"], w, atol=1e-10, rtol=0)
    total = sum(float(r[f"poincare_{mode}"]["loss"]) for r in run["ranks"])
    assert total / 11 == pytest.approx(float(loss), abs=1e-10)


@requires_kernels
def test_distributed_fit_equals_fit_hierarchy_with_the_global_batch(run):
    from geolayers.hyperbolic import fit_hierarchy

    world = run["world"]
    kwargs = {**FIT, "batch_size": FIT["batch_size"] * world}
    ref = fit_hierarchy(tree_closure(), threads=1, progress=False, **kwargs)
    for r in run["ranks"]:
        torch.testing.assert_close(
            r["fit"]["weight"], ref.model.weight.detach(), atol=1e-10, rtol=0
        )
        assert r["fit"]["losses"] == pytest.approx([h["loss"] for h in ref.history], abs=1e-10)


@requires_kernels
def test_checkpoint_shards_load_into_one_process(run):
    for mode in ("sharded", "replicated"):
        prefix = os.path.join(run["tmpdir"], f"sgns_{mode}")
        single = D.load_sharded_into_single(prefix)
        assert torch.equal(single, run["ranks"][0][f"sgns_{mode}"]["input"])
        files = sorted(os.listdir(run["tmpdir"]))
        assert D.shard_path(f"sgns_{mode}", run["world"] - 1, run["world"]) in files
    assert all(r["reloaded"] for r in run["ranks"])
    # A single-process model takes the table as it is (node2vec: its embedding weight).
    model = torch.nn.Embedding(NUM_NODES, DIM).double()
    with torch.no_grad():
        model.weight.copy_(D.load_sharded_into_single(os.path.join(run["tmpdir"], "sgns_sharded")))
    assert torch.equal(model.weight.detach(), run["ranks"][1]["sgns_sharded"]["input"])


@requires_kernels
def test_sharded_and_replicated_training_agree_and_count_the_pairs(run):
    from geolayers.ops.sgns import subsample_keep_prob

    first = run["ranks"][0]
    sharded, replicated = first["train_sharded"], first["train_replicated"]
    torch.testing.assert_close(sharded["input"], replicated["input"], atol=1e-10, rtol=0)
    assert sharded["losses"] == pytest.approx(replicated["losses"], abs=1e-10)
    for r in run["ranks"]:
        torch.testing.assert_close(r["train_sharded"]["input"], sharded["input"], atol=0, rtol=0)
    # The pairs trained are the pairs of the whole corpus, whatever the number of ranks.
    walks = torch.cat([r["walks"].walks for r in run["ranks"]])
    counts = torch.bincount(walks[walks >= 0], minlength=NUM_NODES).double()
    pairs = 0
    for epoch in range(TRAIN["epochs"]):
        batch = D.skipgram_pairs(
            walks, torch.arange(walks.shape[0]), window=TRAIN["window"],
            negatives=TRAIN["negatives"], noise=D.noise_table(counts),
            keep_prob=subsample_keep_prob(counts, 1e-3), seed=TRAIN["seed"], epoch=epoch,
        )  # fmt: skip
        pairs += batch.center.numel()
    assert sharded["pairs"] == replicated["pairs"] == pairs
    per_rank = -(-walks.shape[0] // run["world"])
    assert sharded["steps"] == TRAIN["epochs"] * -(-per_rank // TRAIN["walks_per_step"])
    assert sharded["stats"]["total_bytes"] > 0 and replicated["stats"]["total_bytes"] > 0


def test_the_run_stays_within_its_time_budget(run):
    assert run["seconds"] < 60


# --------------------------------------------------------------------- failures


def test_a_dead_peer_makes_the_others_raise_a_clear_error_not_hang():
    start = time.perf_counter()
    outcomes = D.spawn(die_or_hang, 2, ("exit", 10), timeout_s=40, check=False)
    assert time.perf_counter() - start < 40
    assert outcomes[1].exitcode == 1 and not outcomes[1].ok
    seen = outcomes[0].value
    assert outcomes[0].ok and seen["error"] is not None
    assert "rank 0 of 2 failed in fetch" in seen["error"]
    assert seen["seconds"] < 10  # within the collective timeout (gloo sees the closed socket)


def test_a_silent_peer_makes_the_others_raise_after_the_timeout():
    outcomes = D.spawn(die_or_hang, 2, ("hang", 3), timeout_s=60, check=False)
    seen = outcomes[0].value
    assert outcomes[0].ok and "rank 0 of 2 failed in fetch" in seen["error"]
    assert 2.5 < seen["seconds"] < 8


def sleep_forever():
    time.sleep(600)


def test_spawn_kills_what_outlives_its_deadline_and_says_so():
    # fork: no interpreter start-up, so the 3 s deadline is all spent sleeping.
    start = time.perf_counter()
    outcomes = D.spawn(sleep_forever, 1, timeout_s=3, start_method="fork", check=False)
    assert time.perf_counter() - start < 10
    assert outcomes[0].exitcode is None and "still running at the 3 s deadline" in outcomes[0].error
    with pytest.raises(RuntimeError, match="spawned ranks failed:\nrank 0 .*deadline"):
        D.spawn(sleep_forever, 1, timeout_s=1, start_method="fork")
