"""Training and inference loops of slot autoencoders on a tensor of images.

The recipe of the ISA paper's configs (Biza et al. 2023, appendix): reconstruction MSE, Adam,
linear warm-up then cosine decay of the learning rate, global gradient-norm clipping. Used
by ``examples/object_discovery.py`` and ``benchmarks/object_discovery.py`` so that both train
every model the same way.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from geolayers._checks import check_positive_int, describe


@dataclass
class TrainingLog:
    """Per-step record of :func:`train_slot_autoencoder`.

    Attributes:
        losses: reconstruction MSE of every step.
        step_seconds: wall time of every step (forward, backward, optimiser).
    """

    losses: list[float] = field(default_factory=list)
    step_seconds: list[float] = field(default_factory=list)


def _check_images(images: object) -> Tensor:
    if not isinstance(images, Tensor) or not images.is_floating_point() or images.dim() != 4:
        raise ValueError(
            f"images must be a floating-point tensor (N, C, H, W), got {describe(images)}"
        )
    if images.shape[0] < 1:
        raise ValueError("images must hold at least one image, got 0")
    return images


def warmup_cosine(step: int, total: int, warmup: int) -> float:
    """Learning-rate factor at ``step``: linear from ``1 / warmup`` to 1 over ``warmup`` steps,
    then a cosine to 0 at ``total``.

    Example:
        >>> [round(warmup_cosine(s, 10, 2), 3) for s in (0, 1, 2, 6, 10)]
        [0.5, 1.0, 1.0, 0.5, 0.0]
    """
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def flip_rows_and_permute_channels(
    images: Tensor, generator: torch.Generator | None = None
) -> Tensor:
    """Each image flipped top to bottom with probability 1/2 and its colour channels put in
    one of their 6 orders, uniformly: an augmentation for :func:`train_slot_autoencoder`.

    Both maps keep the scenes of :data:`geolayers.datasets.multi_object.POSE_SPLITS` in their
    own split: the vertical position ranges are symmetric about 0, a mirrored tetromino is a
    tetromino, the hues are uniform and the background is black. Neither moves an object
    horizontally nor changes its size, so the horizontal positions and scales of the
    out-of-distribution splits stay unseen.

    Args:
        images: ``(B, C, H, W)`` with ``C = 3``.
        generator: random source. (default: torch's global one)

    Returns:
        ``(B, C, H, W)``, a new tensor.

    Example:
        >>> x = torch.rand(4, 3, 5, 5)
        >>> y = flip_rows_and_permute_channels(x, torch.Generator().manual_seed(0))
        >>> torch.allclose(y.sum(dim=(1, 2, 3)), x.sum(dim=(1, 2, 3)))
        True
    """
    images = _check_images(images)
    if images.shape[1] != 3:
        raise ValueError(f"images must have 3 colour channels, got shape {tuple(images.shape)}")
    batch = images.shape[0]
    flip = torch.rand(batch, generator=generator) < 0.5
    order = torch.rand(batch, 3, generator=generator).argsort(dim=1)
    flip, order = flip.to(images.device), order.to(images.device)
    out = torch.where(flip[:, None, None, None], images.flip(-2), images)
    return torch.gather(out, 1, order[:, :, None, None].expand_as(out))


def train_slot_autoencoder(
    model: nn.Module,
    images: Tensor,
    *,
    steps: int,
    batch_size: int = 32,
    lr: float = 4e-4,
    warmup_steps: int | None = None,
    clip_norm: float | None = 0.05,
    augment: Callable[[Tensor, torch.Generator], Tensor] | None = None,
    generator: torch.Generator | None = None,
    progress: bool = True,
    desc: str = "train",
) -> TrainingLog:
    """Train ``model`` to reconstruct ``images`` (mean squared error) with Adam, warm-up and
    cosine decay, and gradient clipping; batches are drawn with replacement from ``images``.

    Args:
        model: a :class:`~geolayers.slots.SlotAutoencoder` (anything returning ``.recon``).
        images: ``(N, C, H, W)`` training images, on the model's device.
        steps: optimiser steps, ``>= 1``.
        batch_size: images per step. (default: ``32``)
        lr: peak learning rate. (default: ``4e-4``)
        warmup_steps: steps of linear warm-up. (default: 5% of ``steps``, at least 1)
        clip_norm: largest global gradient norm, ``None`` for no clipping. (default: ``0.05``)
        augment: map applied to every batch with the generator, e.g.
            :func:`flip_rows_and_permute_channels`; ``None`` trains on the images as they are.
            (default: ``None``)
        generator: random source of the batches and the slot initialisation. (default: seeded
            with 0)
        progress: show a progress bar. (default: ``True``)
        desc: label of the progress bar. (default: ``"train"``)

    Returns:
        :class:`TrainingLog` of the losses and step times.

    Example:
        >>> from geolayers.slots import SlotAutoencoder
        >>> model = SlotAutoencoder.build("sa", (8, 8), num_slots=2, slot_dim=8, encoder_channels=(4,))
        >>> len(train_slot_autoencoder(model, torch.rand(4, 3, 8, 8), steps=2, progress=False).losses)
        2
    """
    images = _check_images(images)
    steps = check_positive_int("steps", steps)
    batch_size = check_positive_int("batch_size", batch_size)
    warmup = max(1, round(0.05 * steps)) if warmup_steps is None else warmup_steps
    warmup = check_positive_int("warmup_steps", warmup)
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, steps, warmup))
    log = TrainingLog()
    model.train()
    bar = tqdm(range(steps), desc=desc, disable=not progress, leave=False)
    for _ in bar:
        start = time.perf_counter()
        index = torch.randint(0, images.shape[0], (batch_size,), generator=gen)
        batch = images[index.to(images.device)]
        if augment is not None:
            batch = augment(batch, gen)
        loss = nn.functional.mse_loss(model(batch, generator=gen).recon, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip_norm is not None:
            nn.utils.clip_grad_norm_(params, clip_norm)
        opt.step()
        sched.step()
        log.losses.append(loss.item())
        log.step_seconds.append(time.perf_counter() - start)
        bar.set_postfix(loss=f"{log.losses[-1]:.4f}", refresh=False)
    return log


@torch.no_grad()
def predict(
    model: nn.Module,
    images: Tensor,
    *,
    batch_size: int = 64,
    generator: torch.Generator | None = None,
    progress: bool = False,
    iters: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Masks and reconstructions of ``images`` in evaluation mode, batch by batch.

    Args:
        model: a :class:`~geolayers.slots.SlotAutoencoder`.
        images: ``(N, C, H, W)``.
        batch_size: images per forward pass. (default: ``64``)
        generator: random source of the slot initialisation. (default: seeded with 0)
        progress: show a progress bar. (default: ``False``)
        iters: attention rounds. (default: the model's own)

    Returns:
        ``masks: (N, K, H, W)`` and ``recon: (N, C, H, W)``.

    Example:
        >>> from geolayers.slots import SlotAutoencoder
        >>> model = SlotAutoencoder.build("isa-t", (8, 8), num_slots=2, slot_dim=8, encoder_channels=(4,))
        >>> predict(model, torch.rand(3, 3, 8, 8))[0].shape
        torch.Size([3, 2, 8, 8])
    """
    images = _check_images(images)
    batch_size = check_positive_int("batch_size", batch_size)
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    was_training = model.training
    model.eval()
    masks, recons = [], []
    for start in tqdm(range(0, images.shape[0], batch_size), disable=not progress, leave=False):
        out = model(images[start : start + batch_size], generator=gen, iters=iters)
        masks.append(out.masks)
        recons.append(out.recon)
    model.train(was_training)
    return torch.cat(masks), torch.cat(recons)


__all__ = [
    "TrainingLog",
    "flip_rows_and_permute_channels",
    "predict",
    "train_slot_autoencoder",
    "warmup_cosine",
]
