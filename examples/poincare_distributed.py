"""Poincare embeddings of WordNet (Nickel and Kiela 2017) trained on several processes.

The training of ``poincare_wordnet.py`` (softmax loss over one positive and ``--negatives``
negatives, Riemannian SGD, ``--burn-in`` epochs at a tenth of the learning rate with
negatives drawn by frequency^0.75), in synchronous steps over processes
(:func:`geolayers.distributed.fit_hierarchy_distributed`): each step, every process takes its
``--batch-size`` items of the global batch, fetches the rows they touch from their owners,
computes their gradients, and sends them back to be summed; the owners take the Riemannian
step. The result equals :func:`geolayers.hyperbolic.fit_hierarchy` with ``batch_size =
processes x --batch-size`` on one thread. ``--mode sharded`` splits the table by rows over
the processes, ``--mode replicated`` keeps a copy in each and all-gathers the sparse
gradients. ``--checkpoint PREFIX`` writes one file per process.

Evaluation (rank 0, on the gathered table): reconstruction, every node and every relation of
the closure (:func:`geolayers.metrics.reconstruction`), mean rank and MAP; the paper reports
MAP 0.927 and mean rank 1.26 for mammals at d = 5.

Run (``--smoke``: a generated tree, seconds)::

    torchrun --nproc-per-node 2 examples/poincare_distributed.py --smoke
    torchrun --nproc-per-node 2 examples/poincare_distributed.py --subset mammals --dim 5
    python examples/poincare_distributed.py --smoke        # one process, no torchrun
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist

from geolayers.distributed import fit_hierarchy_distributed, init_distributed, shutdown_distributed

from _common import example_parser, finish, timed_run

# The data and the paper's figures of the single-process example, so both train on the same.
from poincare_wordnet import PAPER, load


@dataclass
class Config:
    subset: str = "mammals"
    dim: int = 5
    epochs: int = 200
    lr: float = 1.0
    negatives: int = 50
    batch_size: int = 10
    burn_in: int = 20
    eval_every: int = 50
    mode: str = "sharded"
    seed: int = 0
    threads: int = 1
    processes: int = 1
    wordnet: str | None = None


def run(cfg: Config, smoke: bool, progress: bool, checkpoint: str | None, plot: str | None):
    from geolayers.metrics import reconstruction

    rank = dist.get_rank()
    start = time.perf_counter()
    h = load(cfg, smoke)
    if rank == 0:
        print(
            f"{cfg.subset if not smoke else 'generated tree'}: {h.num_nodes:,} nodes, "
            f"{h.edges.shape[0]:,} relations (read in {time.perf_counter() - start:.1f} s); "
            f"{cfg.processes} process(es), {cfg.mode} table, global batch "
            f"{cfg.processes * cfg.batch_size}"
        )
    curve = []

    def callback(table, epoch):
        points = table.full()  # collective: every process takes part
        if rank != 0:
            return {}
        scores = reconstruction(points, h.edges, progress=False)
        curve.append({"epoch": epoch + 1, "map": scores.map, "mean_rank": scores.mean_rank})
        return {"map": scores.map, "mean_rank": scores.mean_rank}

    fit = fit_hierarchy_distributed(
        h.edges, h.num_nodes, cfg.dim, negatives=cfg.negatives, batch_size=cfg.batch_size,
        epochs=cfg.epochs, lr=cfg.lr, burn_in=cfg.burn_in, seed=cfg.seed, mode=cfg.mode,
        checkpoint=checkpoint, callback=callback, eval_every=cfg.eval_every, progress=progress,
    )  # fmt: skip
    points = fit.table.full()
    stats = fit.table.stats
    sent = torch.tensor([float(stats.total_bytes)], dtype=torch.float64)
    dist.all_reduce(sent)
    if rank != 0:
        return {}
    steps = sum(r["steps"] for r in fit.history)
    train_seconds = fit.history[-1]["seconds"]
    last = fit.history[-1]
    print("\n| epoch | train+eval time (s) | loss | MAP | mean rank |")
    print("|---:|---:|---:|---:|---:|")
    for r in fit.history:
        if "map" in r:
            print(
                f"| {r['epoch'] + 1} | {r['seconds_with_eval']:.1f} | {r['loss']:.4f} | "
                f"{r['map']:.3f} | {r['mean_rank']:.2f} |"
            )
    relations_per_s = h.edges.shape[0] * cfg.epochs / max(train_seconds, 1e-9)
    print(
        f"\n{cfg.processes} process(es), {cfg.mode}: {relations_per_s:,.0f} relations/s, "
        f"{float(sent) / max(steps, 1) / 1e3:.2f} kB sent per step (all processes)"
    )
    paper = PAPER.get((cfg.subset, cfg.dim))
    if paper and not smoke:
        print(f"paper (reconstruction, d = {cfg.dim}): MAP {paper[0]}, mean rank {paper[1]}")
    if checkpoint:
        print(f"checkpoint written to {checkpoint}.shard-*-of-{cfg.processes:05d}.pt")
    if plot:
        if cfg.dim != 2:
            print("--plot draws 2-D embeddings only (use --dim 2); no picture written")
        else:
            from geolayers.viz import plot_poincare_disk

            depth = torch.bincount(h.edges[:, 0], minlength=h.num_nodes)
            ax = plot_poincare_disk(points, labels=depth.clamp_max(8).tolist())
            ax.set_title(f"{cfg.subset}: Poincare embedding, {cfg.processes} processes")
            ax.figure.savefig(plot, dpi=120, bbox_inches="tight")
            print(f"picture written to {plot}")
    return {
        "nodes": h.num_nodes,
        "relations": int(h.edges.shape[0]),
        "processes": cfg.processes,
        "mode": cfg.mode,
        "map": last["map"],
        "mean_rank": last["mean_rank"],
        "curve": curve,
        "paper": paper,
        "train_seconds": train_seconds,
        "relations_per_second": relations_per_s,
        "bytes_per_step": float(sent) / max(steps, 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = example_parser(
        __doc__.splitlines()[0], seed=0, threads=1,
        seed_help="seed of the initial points, the orders and the negatives",
    )  # fmt: skip
    p.add_argument("--subset", choices=("mammals", "nouns"), default="mammals")
    p.add_argument("--dim", type=int, default=5)
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--lr", type=float, default=1.0)
    p.add_argument("--negatives", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=10, help="items per process per step")
    p.add_argument("--burn-in", type=int, default=20)
    p.add_argument("--eval-every", type=int, default=50, help="epochs between evaluations")
    p.add_argument("--wordnet", metavar="DIR", default=None, help="WordNet dict directory")
    p.add_argument("--plot", metavar="PNG", default=None, help="Poincare disk picture (dim 2)")
    p.add_argument("--mode", choices=("sharded", "replicated"), default="sharded")
    p.add_argument("--checkpoint", metavar="PREFIX", default=None, help="write per-shard files")
    p.add_argument("--timeout", type=float, default=300.0, help="collective timeout (s)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    rank, world = init_distributed(timeout_s=args.timeout)
    cfg = Config(
        subset=args.subset, dim=args.dim, epochs=args.epochs, lr=args.lr,
        negatives=args.negatives, batch_size=args.batch_size, burn_in=args.burn_in,
        eval_every=args.eval_every, mode=args.mode, seed=args.seed, threads=args.threads,
        processes=world, wordnet=args.wordnet,
    )  # fmt: skip
    if args.smoke:
        cfg.epochs, cfg.burn_in, cfg.eval_every, cfg.negatives = 30, 5, 15, 10
    progress = args.progress and rank == 0

    def go():
        return run(cfg, args.smoke, progress, args.checkpoint, args.plot)

    try:
        if rank == 0:
            try:
                results, _ = timed_run(go, cfg, argv)
            except FileNotFoundError as err:
                p.error(str(err))
            return finish(results, args.json)
        go()
        return 0
    finally:
        shutdown_distributed()


if __name__ == "__main__":
    sys.exit(main())
