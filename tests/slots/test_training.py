import math

import pytest
import torch

from geolayers.datasets.multi_object import POSE_SPLITS, make_multi_object_scenes
from geolayers.slots import (
    SlotAutoencoder,
    flip_rows_and_permute_channels,
    predict,
    train_slot_autoencoder,
    warmup_cosine,
)

SMALL = {"num_slots": 2, "slot_dim": 8, "encoder_channels": (4,), "encoder_kernel_size": 3}


def test_warmup_cosine_schedule():
    assert [warmup_cosine(s, 100, 10) for s in (0, 9)] == [0.1, 1.0]
    assert warmup_cosine(10, 100, 10) == 1.0
    assert warmup_cosine(55, 100, 10) == pytest.approx(0.5)
    assert warmup_cosine(100, 100, 10) == pytest.approx(0.0)
    assert warmup_cosine(150, 100, 10) == pytest.approx(0.0)


@pytest.mark.parametrize("kind", ["sa", "isa-ts"])
def test_training_reduces_the_loss_and_is_reproducible(kind):
    images = torch.rand(8, 3, 6, 6)

    def train():
        torch.manual_seed(0)
        model = SlotAutoencoder.build(kind, (6, 6), decoder_hidden_dim=8, **SMALL)
        log = train_slot_autoencoder(
            model,
            images,
            steps=40,
            batch_size=4,
            lr=1e-2,
            warmup_steps=2,
            progress=False,
            generator=torch.Generator().manual_seed(0),
        )
        return model, log

    model, log = train()
    assert len(log.losses) == len(log.step_seconds) == 40
    assert all(math.isfinite(v) for v in log.losses)
    assert sum(log.losses[-5:]) < sum(log.losses[:5])
    assert all(t > 0 for t in log.step_seconds)
    _, again = train()
    assert again.losses == log.losses
    masks, recon = predict(model, images, batch_size=3)
    assert masks.shape == (8, 2, 6, 6) and recon.shape == (8, 3, 6, 6)
    assert model.training  # predict restores the mode it found
    more, _ = predict(model, images, batch_size=8, iters=5)
    model.eval()
    with torch.no_grad():
        direct = model(images, generator=torch.Generator().manual_seed(0), iters=5).masks
    torch.testing.assert_close(more, direct)
    assert not torch.allclose(more, masks)


def test_bad_arguments_are_named():
    model = SlotAutoencoder.build("sa", (6, 6), **SMALL)
    with pytest.raises(ValueError, match=r"images must be a floating-point tensor \(N, C, H, W\)"):
        train_slot_autoencoder(model, torch.rand(3, 6, 6), steps=1)
    with pytest.raises(ValueError, match="steps must be >= 1"):
        train_slot_autoencoder(model, torch.rand(2, 3, 6, 6), steps=0)
    with pytest.raises(TypeError, match="batch_size must be an int"):
        train_slot_autoencoder(model, torch.rand(2, 3, 6, 6), steps=1, batch_size=2.0)
    with pytest.raises(ValueError, match="images must hold at least one image"):
        predict(model, torch.rand(0, 3, 6, 6))


def test_flip_and_permutation_cover_all_twelve_maps_and_nothing_else():
    x = torch.rand(1, 3, 4, 5, dtype=torch.float64).expand(600, -1, -1, -1)
    y = flip_rows_and_permute_channels(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.dtype == torch.float64
    seen = set()
    for image in y:
        matches = [
            (flipped, order)
            for flipped in (False, True)
            for order in ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))
            if torch.equal(image, (x[0].flip(-2) if flipped else x[0])[list(order)])
        ]
        assert len(matches) == 1  # every output is exactly one of the twelve maps
        seen.update(matches)
    assert len(seen) == 12  # and every map occurs
    again = flip_rows_and_permute_channels(x, torch.Generator().manual_seed(0))
    assert torch.equal(again, y)


def test_flip_and_permutation_keep_the_training_split_in_distribution():
    # Flipped top to bottom, the objects keep their horizontal position and their size: the
    # foreground of every column and the foreground area do not change.
    scenes = make_multi_object_scenes(16, seed=3, **POSE_SPLITS["train"])
    y = flip_rows_and_permute_channels(scenes.images, torch.Generator().manual_seed(1))
    brightest_x, brightest_y = scenes.images.amax(dim=1), y.amax(dim=1)
    assert torch.equal((brightest_x > 0).sum(dim=1), (brightest_y > 0).sum(dim=1))
    # Permuting channels keeps every pixel's largest channel (the colours' HSV value).
    assert torch.equal(brightest_x.flatten(1).sort().values, brightest_y.flatten(1).sort().values)


def test_training_applies_the_augmentation_to_every_batch():
    calls = []

    def augment(batch, gen):
        calls.append(batch.shape)
        return flip_rows_and_permute_channels(batch, gen)

    model = SlotAutoencoder.build("sa", (6, 6), decoder_hidden_dim=8, **SMALL)
    train_slot_autoencoder(
        model, torch.rand(8, 3, 6, 6), steps=3, batch_size=4, augment=augment, progress=False
    )
    assert calls == [torch.Size([4, 3, 6, 6])] * 3
    with pytest.raises(ValueError, match="3 colour channels"):
        flip_rows_and_permute_channels(torch.rand(2, 1, 6, 6))
