"""Poincare embeddings of WordNet (Nickel and Kiela 2017), trained and evaluated as the paper.

Data: the WordNet 3.0 noun hierarchy from Debian's ``wordnet-base`` (``/usr/share/wordnet`` or
``--wordnet DIR``; ``scripts/setup.sh`` installs it where it can), read by
:func:`geolayers.datasets.load_wordnet_nouns`: the transitive closure of hypernyms and instance
hypernyms, all nouns (82,115 nodes, 743,241 relations) or the mammal subtree (1,180 nodes, 6,540
relations, as the paper's ``mammal_closure``).

Training: :func:`geolayers.hyperbolic.fit_hierarchy` on the fused kernel: softmax loss over one
positive and ``--negatives`` negatives, Riemannian SGD with projection, ``--burn-in`` epochs at
a tenth of the learning rate with negatives drawn by frequency^0.75, points initialised uniform
in (-1e-3, 1e-3), float64.

Evaluation: reconstruction with :func:`geolayers.metrics.reconstruction`, every node and every
relation of the closure (not a sample): the rank of each true ancestor among it and the nodes
that are not related, mean rank and MAP. The paper reports, in reconstruction, MAP 0.927 and
mean rank 1.26 for mammals at d = 5 (figure caption) and MAP 0.851, mean rank 4.02 for nouns at
d = 10 (Table 1). With ``--dim 2`` the embedding is drawn in the Poincare disk (``--plot``).

Run (mammals: seconds; nouns: tens of minutes; ``--smoke``: seconds on a generated tree)::

    python examples/poincare_wordnet.py --subset mammals --dim 5
    python examples/poincare_wordnet.py --subset mammals --dim 2 --plot mammals.png
    python examples/poincare_wordnet.py --subset nouns --dim 10 --epochs 300 --threads 2
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import torch

from geolayers.hyperbolic import fit_hierarchy
from geolayers.metrics import reconstruction

from _common import example_parser, finish, timed_run

PAPER = {("mammals", 5): (0.927, 1.26), ("nouns", 10): (0.851, 4.02)}


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
    seed: int = 0
    threads: int = 1
    wordnet: str | None = None


def tree_hierarchy(num_nodes: int = 121, arity: int = 3):
    """A complete tree's closure with names, for --smoke (no WordNet needed)."""
    from geolayers.datasets import hierarchy_from_edges

    pairs = [(f"n{i}", f"n{(i - 1) // arity}") for i in range(1, num_nodes)]
    return hierarchy_from_edges(pairs)


def load(cfg: Config, smoke: bool):
    if smoke:
        return tree_hierarchy()
    from geolayers.datasets import load_wordnet_mammals, load_wordnet_nouns

    if cfg.subset == "mammals":
        return load_wordnet_mammals(wordnet_dir=cfg.wordnet)
    return load_wordnet_nouns(wordnet_dir=cfg.wordnet)


def run(cfg: Config, smoke: bool, progress: bool, plot: str | None) -> dict:
    start = time.perf_counter()
    h = load(cfg, smoke)
    print(
        f"{cfg.subset if not smoke else 'generated tree'}: {h.num_nodes:,} nodes, "
        f"{h.edges.shape[0]:,} relations (read in {time.perf_counter() - start:.1f} s)"
    )
    curve = []

    def callback(model, epoch):
        scores = reconstruction(model.poincare(), h.edges, progress=False)
        curve.append({"epoch": epoch + 1, "map": scores.map, "mean_rank": scores.mean_rank})
        return {"map": scores.map, "mean_rank": scores.mean_rank}

    fit = fit_hierarchy(
        h.edges,
        h.num_nodes,
        cfg.dim,
        negatives=cfg.negatives,
        batch_size=cfg.batch_size,
        epochs=cfg.epochs,
        lr=cfg.lr,
        burn_in=cfg.burn_in,
        threads=cfg.threads,
        seed=cfg.seed,
        callback=callback,
        eval_every=cfg.eval_every,
        progress=progress,
    )
    last = fit.history[-1]
    paper = PAPER.get((cfg.subset, cfg.dim))
    print("\n| epoch | train+eval time (s) | loss | MAP | mean rank |")
    print("|---:|---:|---:|---:|---:|")
    for r in fit.history:
        if "map" in r:
            print(
                f"| {r['epoch'] + 1} | {r['seconds_with_eval']:.1f} | {r['loss']:.4f} | "
                f"{r['map']:.3f} | {r['mean_rank']:.2f} |"
            )
    if paper and not smoke:
        print(f"\npaper (reconstruction, d = {cfg.dim}): MAP {paper[0]}, mean rank {paper[1]}")
    if plot:
        if cfg.dim != 2:
            print("--plot draws 2-D embeddings only (use --dim 2); no picture written")
        else:
            from geolayers.viz import plot_poincare_disk

            points = fit.model.poincare()
            depth = torch.bincount(h.edges[:, 0], minlength=h.num_nodes)  # number of ancestors
            ax = plot_poincare_disk(points, labels=depth.clamp_max(8).tolist())
            ax.set_title(f"{cfg.subset}: Poincare embedding, colour = depth")
            ax.figure.savefig(plot, dpi=120, bbox_inches="tight")
            print(f"picture written to {plot}")
    return {
        "nodes": h.num_nodes,
        "relations": int(h.edges.shape[0]),
        "map": last["map"],
        "mean_rank": last["mean_rank"],
        "curve": curve,
        "paper": paper,
        "train_seconds": last["seconds"],
    }


def main(argv: list[str] | None = None) -> int:
    p = example_parser(
        __doc__.splitlines()[0],
        seed=0,
        threads=1,
        seed_help="seed of the initial points, the orders and the negatives",
    )
    p.add_argument("--subset", choices=("mammals", "nouns"), default="mammals")
    p.add_argument("--dim", type=int, default=5)
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument(
        "--lr", type=float, default=None, help="learning rate (default: 1.0 mammals, 2.5 nouns)"
    )
    p.add_argument("--negatives", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=10)
    p.add_argument("--burn-in", type=int, default=20)
    p.add_argument("--eval-every", type=int, default=50, help="epochs between evaluations")
    p.add_argument("--wordnet", metavar="DIR", default=None, help="WordNet dict directory")
    p.add_argument("--plot", metavar="PNG", default=None, help="Poincare disk picture (dim 2)")
    args = p.parse_args(argv)
    cfg = Config(
        subset=args.subset,
        dim=args.dim,
        epochs=args.epochs,
        lr=args.lr if args.lr is not None else (2.5 if args.subset == "nouns" else 1.0),
        negatives=args.negatives,
        batch_size=args.batch_size,
        burn_in=args.burn_in,
        eval_every=args.eval_every,
        seed=args.seed,
        threads=args.threads,
        wordnet=args.wordnet,
    )
    if args.smoke:
        cfg.epochs, cfg.burn_in, cfg.eval_every, cfg.negatives = 30, 5, 15, 10
    try:
        results, _ = timed_run(lambda: run(cfg, args.smoke, args.progress, args.plot), cfg, argv)
    except FileNotFoundError as err:
        p.error(str(err))
    return finish(results, args.json)


if __name__ == "__main__":
    sys.exit(main())
