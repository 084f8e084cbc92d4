"""Where the mean rank of a Poincare embedding comes from: relations of nodes with one chain of
ancestors against relations of nodes with several parents.

Trains the WordNet noun closure with :func:`geolayers.hyperbolic.fit_hierarchy` (d = 10, 50
negatives, the settings of ``benchmarks.poincare``'s noun run unless given) and splits the full
reconstruction evaluation (:func:`geolayers.metrics.ranking_scores`, every node, every relation)
by query node: nodes whose ancestors form a single chain to the root, and nodes with several
parents (ancestors on more than one path, WordNet's multiple inheritance). All relations of a
node fall in one part and keep their complete neighbour set, so each part's mean rank is exactly
the mean of its relations' ranks in the full evaluation, and the parts add up to it.

A node with parents in distant branches cannot be near all its ancestors at once once it sits
near the boundary in one branch; its ancestors in the other branch then rank behind thousands
of nodes. The table shows how much of the gap to the paper's mean rank (4.02 at d = 10) that
accounts for.

Run: ``python -m benchmarks.poincare_ranks [--smoke] [--epochs 200] [--lr 1]
[--burn-in-lr-factor 0.1] [--threads 2] [--checkpoint PATH] [--json PATH]``. Needs WordNet
(``apt-get install wordnet-base``); ``--smoke`` uses a generated hierarchy.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from benchmarks._harness import machine_line, markdown_table
from benchmarks.poincare import tree_closure
from geolayers.hyperbolic import fit_hierarchy
from geolayers.hyperbolic.embedding import relation_csr
from geolayers.metrics import ranking_scores
from geolayers.ops import poincare_pairwise_dist


def single_chain_nodes(edges: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """``(N,)`` bool: the node's ancestors in the closure ``edges`` ((child, ancestor) pairs)
    form one chain. They do exactly when their own ancestor counts are 0, 1, ..., k - 1: each
    ancestor's ancestors are ancestors of the node with fewer ancestors, so the one with j of
    them has all those below it."""
    ptr, ancestors = relation_csr(
        edges[edges[:, 0] != edges[:, 1]], num_nodes, both_directions=False
    )
    count = ptr.diff()
    child = torch.repeat_interleave(torch.arange(num_nodes), count)
    depth = count[ancestors]  # ancestor count of each ancestor
    # Sorted within each node's row (the rows stay grouped by node).
    depth = depth[torch.argsort(child * num_nodes + depth)]
    position = torch.arange(child.numel()) - ptr[child]  # 0, 1, ... within each row
    broken = torch.zeros(num_nodes, dtype=torch.bool)
    broken[child[depth != position]] = True
    return ~broken


def split_scores(weight: torch.Tensor, edges: torch.Tensor, num_nodes: int, progress: bool):
    """Full reconstruction scores of all relations and of each part."""
    chain = single_chain_nodes(edges, num_nodes)

    def dist_rows(rows: torch.Tensor) -> torch.Tensor:
        return poincare_pairwise_dist(weight[rows], weight)

    parts = {
        "all nodes": edges,
        "one chain of ancestors": edges[chain[edges[:, 0]]],
        "several parents": edges[~chain[edges[:, 0]]],
    }
    return {
        name: ranking_scores(dist_rows, part, num_nodes, progress=progress)
        for name, part in parts.items()
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="generated hierarchy, seconds")
    p.add_argument("--wordnet", metavar="DIR", default=None, help="WordNet dict directory")
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--lr", type=float, default=1.0)
    p.add_argument("--batch", type=int, default=10)
    p.add_argument("--burn-in", type=int, default=20)
    p.add_argument("--burn-in-lr-factor", type=float, default=0.1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", metavar="PATH", default=None, help="resume / save training")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.smoke:
        # A 4-ary tree in which every other node of the last level (all under node 2) gains
        # node 1, the root of another branch, as a second parent.
        edges = torch.cat([tree_closure(200), torch.tensor([[n, 1] for n in range(150, 200, 2)])])
        num_nodes, name = 200, "generated tree with second parents"
        args.epochs, args.burn_in = 20, 2
    else:
        from geolayers.datasets.wordnet import load_wordnet_nouns

        nouns = load_wordnet_nouns(wordnet_dir=args.wordnet)
        edges, num_nodes, name = nouns.edges, nouns.num_nodes, "WordNet nouns"
    start = time.perf_counter()
    fit = fit_hierarchy(
        edges,
        num_nodes,
        10,
        lr=args.lr,
        epochs=args.epochs,
        batch_size=args.batch,
        burn_in=args.burn_in,
        burn_in_lr_factor=args.burn_in_lr_factor,
        threads=args.threads,
        seed=args.seed,
        checkpoint=args.checkpoint,
        resume=args.checkpoint is not None,
        checkpoint_every=50,
        progress=args.progress,
    )
    train_s = time.perf_counter() - start
    torch.set_num_threads(args.threads)
    scores = split_scores(fit.model.weight.detach(), edges, num_nodes, args.progress)
    total = scores["all nodes"]
    excess = (total.mean_rank - 1) * total.num_relations
    rows = []
    for part, s in scores.items():
        share = (s.mean_rank - 1) * s.num_relations / excess if excess > 0 else float("nan")
        rows.append(
            [
                part,
                f"{s.num_queries:,}",
                f"{s.num_relations:,}",
                f"{s.mean_rank:.2f}",
                f"{s.map:.3f}",
                f"{100 * share:.0f}",
            ]
        )
    print(
        f"{name}: {num_nodes:,} nodes, {total.num_relations:,} relations; d = 10, 50 negatives, "
        f"lr {args.lr}, batch {args.batch}, burn-in {args.burn_in} epochs at "
        f"x{args.burn_in_lr_factor}, {args.epochs} epochs on {args.threads} threads "
        f"({train_s:.0f} s with checkpoints); {machine_line()}"
    )
    print()
    header = [
        "query nodes",
        "nodes",
        "relations",
        "mean rank",
        "MAP",
        "share of rank above 1 (%)",
    ]
    print(markdown_table(header, rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"header": header, "rows": rows, "train_seconds": train_s}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
