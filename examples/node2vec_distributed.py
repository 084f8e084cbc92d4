"""node2vec on several processes: distributed walks, synchronous skip-gram on sharded tables.

Every process loads the graph and draws its contiguous share of the walks
(:func:`geolayers.distributed.distributed_random_walks`: together, exactly the single-process
corpus). Skip-gram then runs in synchronous steps: each process makes the pairs of its next
``--walks-per-step`` walks (word2vec's reduced window, subsampling 1e-3, ``--negatives``
negatives from counts ** 0.75), fetches the embedding rows they touch from their owners,
computes the SGD updates at the old values and sends them back to be summed
(:func:`geolayers.distributed.train_skipgram_distributed`). ``--mode sharded`` splits both
tables by rows over the processes (only touched rows travel); ``--mode replicated`` keeps a
full copy in every process and all-gathers the sparse updates.

Evaluation (rank 0): PecanPy's protocol, mean per-class auROC of L2 logistic regression under
5-fold stratified cross-validation (:func:`geolayers.metrics.class_auroc`), on the gathered
embedding. ``--checkpoint PREFIX`` writes one file per process
(``PREFIX.shard-RRRRR-of-WWWWW.pt``), which
:func:`geolayers.distributed.load_sharded_into_single` reads back into one ``(N, D)`` tensor.

Data: BlogCatalog, PPI or Wikipedia from ``--data`` (``../shared/data/node2vec``);
``--smoke`` uses a generated 4-community graph instead (no data needed).

Run::

    torchrun --nproc-per-node 2 examples/node2vec_distributed.py --smoke
    torchrun --nproc-per-node 2 examples/node2vec_distributed.py --graph BlogCatalog
    python examples/node2vec_distributed.py --smoke        # one process, no torchrun
    # two machines, two processes each (run on both, --node-rank 0 and 1):
    torchrun --nnodes 2 --node-rank 0 --nproc-per-node 2 --master-addr HOST --master-port 29500 \\
        examples/node2vec_distributed.py --graph BlogCatalog --mode sharded
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist

from geolayers.distributed import (
    distributed_random_walks,
    init_distributed,
    shutdown_distributed,
    train_skipgram_distributed,
)
from geolayers.graph import CSRGraph

from _common import example_parser, finish, timed_run

DATA = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "node2vec"
)


@dataclass
class Config:
    graph: str = "BlogCatalog"
    dim: int = 128
    walks: int = 10
    walk_length: int = 80
    window: int = 10
    p: float = 1.0
    q: float = 1.0
    epochs: int = 1
    negatives: int = 5
    lr: float = 0.025
    walks_per_step: int = 16
    mode: str = "sharded"
    seed: int = 0
    threads: int = 1
    processes: int = 1


def communities(blocks: int = 4, size: int = 40, p_in: float = 0.3, p_out: float = 0.01):
    """A planted-partition graph and its one-hot block labels, for --smoke."""
    n = blocks * size
    gen = torch.Generator().manual_seed(0)
    block = torch.arange(n) // size
    prob = torch.where(block[:, None] == block[None, :], p_in, p_out)
    upper = torch.triu(torch.rand(n, n, generator=gen) < prob, diagonal=1)
    edge_index = upper.nonzero().T.contiguous()
    labels = torch.nn.functional.one_hot(block, blocks).bool()
    return CSRGraph.from_edge_index(edge_index, n, undirected=True), labels


def load(cfg: Config, root: str, smoke: bool):
    if smoke:
        return communities()
    from geolayers.datasets import load_node2vec_graph

    data = load_node2vec_graph(cfg.graph, root)
    graph = CSRGraph.from_edge_index(data.edge_index, data.num_nodes, data.edge_weight)
    return graph, data.labels


def run(cfg: Config, root: str, smoke: bool, progress: bool, checkpoint: str | None) -> dict:
    rank = dist.get_rank()
    start = time.perf_counter()
    graph, labels = load(cfg, root, smoke)
    t_load = time.perf_counter() - start
    if rank == 0:
        name = "generated 4-community graph" if smoke else cfg.graph
        print(
            f"{name}: {graph.num_nodes:,} nodes, {graph.num_edges:,} directed edges; "
            f"{cfg.processes} process(es), {cfg.mode} tables"
        )
    start = time.perf_counter()
    shard = distributed_random_walks(
        graph, cfg.walk_length, cfg.walks, p=cfg.p, q=cfg.q, seed=cfg.seed,
        progress=progress and rank == 0,
    )  # fmt: skip
    t_walks = time.perf_counter() - start
    res = train_skipgram_distributed(
        shard, graph.num_nodes, cfg.dim, window=cfg.window, negatives=cfg.negatives,
        epochs=cfg.epochs, lr=cfg.lr, walks_per_step=cfg.walks_per_step, seed=cfg.seed,
        mode=cfg.mode, compute_loss=True, progress=progress,
    )  # fmt: skip
    # Bytes and times over all processes: the slowest process sets the pace.
    sent = torch.tensor([float(res.stats.total_bytes)], dtype=torch.float64)
    dist.all_reduce(sent)
    slowest = torch.tensor([t_walks, res.seconds], dtype=torch.float64)
    dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
    embedding = res.input.full()  # collective: every process takes part
    if checkpoint:
        res.input.save_sharded(checkpoint)
    if rank != 0:
        return {}
    from geolayers.metrics import class_auroc

    if smoke:
        auroc = class_auroc(embedding, labels, seed=0, progress=False).mean_auroc
    else:
        auroc = class_auroc(embedding, labels, seed=0, progress=progress).mean_auroc
    walks_s, train_s = slowest.tolist()
    out = {
        "nodes": graph.num_nodes,
        "processes": cfg.processes,
        "mode": cfg.mode,
        "walks": shard.total,
        "pairs": res.pairs,
        "steps": res.steps,
        "losses": res.losses,
        "load_seconds": t_load,
        "walk_seconds": walks_s,
        "train_seconds": train_s,
        "pairs_per_second": res.pairs / max(train_s, 1e-9),
        "bytes_per_step": float(sent) / max(res.steps, 1),
        "auroc": auroc,
    }
    print(
        "\n| processes | mode | walks (s) | train (s) | pairs/s | MB sent / step (all) | loss | auROC |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {cfg.processes} | {cfg.mode} | {walks_s:.1f} | {train_s:.1f} | "
        f"{out['pairs_per_second']:,.0f} | {out['bytes_per_step'] / 1e6:.3f} | "
        f"{res.losses[-1]:.4f} | {auroc:.4f} |"
    )
    if checkpoint:
        print(f"checkpoint written to {checkpoint}.shard-*-of-{cfg.processes:05d}.pt")
    return out


def main(argv: list[str] | None = None) -> int:
    p = example_parser(
        __doc__.splitlines()[0], seed=0, threads=1, seed_help="seed of the walks, the initial "
        "rows, the windows and the negatives",
    )  # fmt: skip
    p.add_argument("--graph", choices=("BlogCatalog", "PPI", "Wikipedia"), default="BlogCatalog")
    p.add_argument("--data", default=DATA, help="folder with NAME.edg and NAME.labels.tsv")
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--walks", type=int, default=10, help="walks per node")
    p.add_argument("--walk-length", type=int, default=80, help="steps per walk")
    p.add_argument("--window", type=int, default=10)
    p.add_argument("--p", type=float, default=1.0, help="return parameter")
    p.add_argument("--q", type=float, default=1.0, help="in-out parameter")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--negatives", type=int, default=5)
    p.add_argument("--lr", type=float, default=0.025)
    p.add_argument(
        "--walks-per-step", type=int, default=16, help="walks per process in one synchronous step"
    )
    p.add_argument("--mode", choices=("sharded", "replicated"), default="sharded")
    p.add_argument("--checkpoint", metavar="PREFIX", default=None, help="write per-shard files")
    p.add_argument("--timeout", type=float, default=300.0, help="collective timeout (s)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    rank, world = init_distributed(timeout_s=args.timeout)
    cfg = Config(
        graph=args.graph, dim=args.dim, walks=args.walks, walk_length=args.walk_length,
        window=args.window, p=args.p, q=args.q, epochs=args.epochs, negatives=args.negatives,
        lr=args.lr, walks_per_step=args.walks_per_step, mode=args.mode, seed=args.seed,
        threads=args.threads, processes=world,
    )  # fmt: skip
    if args.smoke:
        cfg.dim, cfg.walks, cfg.walk_length, cfg.window = 16, 10, 20, 5
        cfg.epochs, cfg.walks_per_step = 2, 8
    progress = args.progress and rank == 0
    try:
        if rank == 0:
            try:
                results, _ = timed_run(
                    lambda: run(cfg, args.data, args.smoke, progress, args.checkpoint), cfg, argv
                )
            except FileNotFoundError as err:
                p.error(str(err))
            return finish(results, args.json)
        run(cfg, args.data, args.smoke, progress, args.checkpoint)
        return 0
    finally:
        shutdown_distributed()


if __name__ == "__main__":
    sys.exit(main())
