import math

import pytest
import torch

from geolayers.slots import SlotAutoencoder, predict, train_slot_autoencoder, warmup_cosine

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
