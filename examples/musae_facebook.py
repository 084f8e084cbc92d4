r"""Attributed node embeddings on the Facebook page-page graph: MUSAE and AE vs node2vec.

The node-classification experiment of "Multi-scale Attributed Node Embedding" (Rozemberczki,
Allen and Sarkar, Journal of Complex Networks 2021) on its Facebook page-page graph
(:func:`geolayers.datasets.load_musae_facebook`: 22,470 pages, 170,823 undirected edges,
4,714 binary page features, 4 page types).

* Embeddings, all unsupervised and of the same width (``--order`` x ``--dim`` = 96):

  - ``node2vec``: :meth:`geolayers.graph.Node2Vec.fit` (p = q = 1, walks as below, window
    ``--window``, the structure only);
  - ``MUSAE``: :class:`geolayers.graph.musae.MUSAE`, one ``--dim`` embedding per distance
    r = 1..``--order`` of the features seen r steps away, concatenated;
  - ``AE``: the same co-occurrences pooled over all distances into one embedding.

  ``--walks`` walks of ``--walk-length`` nodes from every node (5 and 80, the MUSAE reference
  settings), ``--epochs`` skip-gram passes, 5 negatives, learning rate 0.05 -> 1e-4.
* Protocol: the paper's: logistic regression (scikit-learn, L2, lbfgs) on the standardised
  embedding, a random 80/20 split of the nodes, micro-F1 on the test part (equal to accuracy
  for single-label classes) and macro-F1; mean and standard deviation over ``--splits``
  splits drawn from ``--seed``.

Run (about 6 minutes on 2 threads; ``--smoke`` takes seconds)::

    python examples/musae_facebook.py
    python examples/musae_facebook.py --smoke --no-progress
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, replace

import numpy as np
import torch

from geolayers.datasets import load_musae_facebook
from geolayers.graph import Node2Vec
from geolayers.graph.musae import MUSAE

from _common import example_parser, finish, timed_run

ROOT = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "musae"
)
METHODS = ("node2vec", "MUSAE", "AE")


@dataclass
class Config:
    walks: int = 5
    walk_length: int = 80
    order: int = 3
    dim: int = 32
    window: int = 5
    epochs: int = 1
    splits: int = 10
    seed: int = 0
    threads: int = 2


SMOKE = Config(walks=2, walk_length=10, order=2, dim=4, window=2, splits=2, threads=1)


def parse(argv: list[str] | None) -> tuple[argparse.Namespace, Config]:
    p = example_parser(
        __doc__.splitlines()[0], seed=0, threads=2, seed_help="seed of walks and splits"
    )
    p.add_argument("--root", default=ROOT, help="folder of the MUSAE Facebook files")
    for name, default in (("walks", 5), ("walk-length", 80), ("order", 3), ("dim", 32),
                          ("window", 5), ("epochs", 1), ("splits", 10)):  # fmt: skip
        p.add_argument(f"--{name}", type=int, default=default)
    args = p.parse_args(argv)
    if args.smoke:
        return args, replace(SMOKE, seed=args.seed)
    cfg = Config(args.walks, args.walk_length, args.order, args.dim, args.window, args.epochs,
                 args.splits, args.seed, args.threads)  # fmt: skip
    for name in ("walks", "walk_length", "order", "dim", "window", "epochs", "splits", "threads"):
        if getattr(cfg, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    return args, cfg


def evaluate(z: torch.Tensor, y: torch.Tensor, cfg: Config) -> dict[str, float]:
    """Logistic regression on 80/20 splits: mean and std of micro- and macro-F1."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.preprocessing import StandardScaler

    x = StandardScaler().fit_transform(z.double().numpy())
    labels = y.numpy()
    rng = np.random.default_rng(cfg.seed)
    micro, macro = [], []
    for _ in range(cfg.splits):
        perm = rng.permutation(len(labels))
        cut = int(0.8 * len(labels))
        train, test = perm[:cut], perm[cut:]
        clf = LogisticRegression(max_iter=1000).fit(x[train], labels[train])
        pred = clf.predict(x[test])
        micro.append(f1_score(labels[test], pred, average="micro"))
        macro.append(f1_score(labels[test], pred, average="macro"))
    return {"micro_f1": float(np.mean(micro)), "micro_std": float(np.std(micro)),
            "macro_f1": float(np.mean(macro)), "macro_std": float(np.std(macro))}  # fmt: skip


def run(root: str, cfg: Config, progress: bool) -> dict:
    torch.set_num_threads(cfg.threads)
    data = load_musae_facebook(root)
    print(f"Facebook page-page: {data.num_nodes:,} nodes, {data.edge_index.shape[1] // 2:,} "
          f"edges, {data.x.shape[1]:,} features; torch threads {cfg.threads}")  # fmt: skip
    width = cfg.order * cfg.dim
    results = {}
    for method in METHODS:
        start = time.perf_counter()
        if method == "node2vec":
            model = Node2Vec(data.edge_index, width, cfg.walk_length, cfg.window + 1,
                             walks_per_node=cfg.walks, num_nodes=data.num_nodes, seed=cfg.seed)  # fmt: skip
            model.fit(cfg.epochs, lr=0.05, progress=progress)
            z = model.embedding.weight.detach()
        else:
            pooled = method == "AE"
            model = MUSAE(data.edge_index, data.x, dim=width if pooled else cfg.dim,
                          order=cfg.order, walks_per_node=cfg.walks, walk_length=cfg.walk_length,
                          pooled=pooled, seed=cfg.seed)  # fmt: skip
            z = model.fit(cfg.epochs, progress=progress).embedding
        seconds = time.perf_counter() - start
        results[method] = {
            **evaluate(z, data.y, cfg),
            "embed_seconds": seconds,
            "width": z.shape[1],
        }
    return {"methods": results, "nodes": data.num_nodes}


def main(argv: list[str] | None = None) -> int:
    args, cfg = parse(argv)
    results, _ = timed_run(lambda: run(args.root, cfg, args.progress), cfg, argv)
    print()
    print("| embedding | width | micro-F1 (%) | macro-F1 (%) | embedding time (s) |")
    print("|---|---|---|---|---|")
    for method, r in results["methods"].items():
        print(f"| {method} | {r['width']} | {100 * r['micro_f1']:.2f} ± {100 * r['micro_std']:.2f} "
              f"| {100 * r['macro_f1']:.2f} ± {100 * r['macro_std']:.2f} | {r['embed_seconds']:.1f} |")  # fmt: skip
    print(f"logistic regression, 80/20 splits x {cfg.splits} (seed {cfg.seed}); "
          f"walks {cfg.walks} x {cfg.walk_length} nodes, {cfg.epochs} epoch(s)")  # fmt: skip
    return finish(results, args.json)


if __name__ == "__main__":
    sys.exit(main())
