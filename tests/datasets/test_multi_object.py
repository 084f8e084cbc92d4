import math

import pytest
import torch

from geolayers.datasets.multi_object import (
    POSE_SPLITS,
    SHAPES,
    SPRITES,
    TETROMINOES,
    make_multi_object_scenes,
    render_scenes,
)


def test_shapes_dtypes_and_labels():
    scenes = make_multi_object_scenes(6, seed=0, size=(20, 24), num_objects=3)
    assert scenes.images.shape == (6, 3, 20, 24) and scenes.images.dtype == torch.float32
    assert scenes.masks.shape == (6, 20, 24) and scenes.masks.dtype == torch.long
    assert scenes.shapes.shape == (6, 3) and scenes.positions.shape == (6, 3, 2)
    assert scenes.scales.shape == (6, 3) and scenes.angles.shape == (6, 3)
    assert scenes.colors.shape == (6, 3, 3) and len(scenes) == 6
    assert 0 <= float(scenes.images.min()) and float(scenes.images.max()) <= 1
    assert set(scenes.masks.unique().tolist()) <= {0, 1, 2, 3}
    assert make_multi_object_scenes(2, seed=0, dtype=torch.float64).images.dtype == torch.float64


def test_masks_and_images_agree():
    scenes = make_multi_object_scenes(8, seed=1)
    for n in range(8):
        background = scenes.masks[n] == 0
        assert bool((scenes.images[n][:, background] == 0).all())  # black background
        for i in range(3):
            pixels = scenes.images[n][:, scenes.masks[n] == i + 1]
            assert pixels.shape[1] > 0
            torch.testing.assert_close(pixels, scenes.colors[n, i][:, None].expand_as(pixels))


def test_deterministic_by_seed():
    a = make_multi_object_scenes(5, seed=7)
    b = make_multi_object_scenes(5, seed=7)
    c = make_multi_object_scenes(5, seed=8)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a.images, c.images)


def test_pose_ranges_are_respected():
    scenes = make_multi_object_scenes(
        64,
        seed=2,
        num_objects=2,
        shapes=("square", "ellipse"),
        position_range=((0.1, 0.6), (-0.5, -0.2)),
        scale_range=(0.25, 0.3),
        rotation_range=(10.0, 20.0),
        min_visible=0.0,
    )
    x, y = scenes.positions[..., 0], scenes.positions[..., 1]
    assert 0.1 <= x.min() and x.max() <= 0.6 and -0.5 <= y.min() and y.max() <= -0.2
    assert 0.25 <= scenes.scales.min() and scenes.scales.max() <= 0.3
    degrees = scenes.angles * 180 / math.pi
    assert 10 <= degrees.min() + 1e-4 and degrees.max() <= 20 + 1e-4
    assert set(scenes.shapes.unique().tolist()) == {SHAPES.index("square"), SHAPES.index("ellipse")}
    # Objects drawn in the right half cover only pixels right of the centre line (x > 0) but
    # for their extent; all of them here are centred at x >= 0.1 with radius < 0.3.
    fg_columns = (scenes.masks > 0).any(dim=1).float().argmax(dim=-1)
    assert int(fg_columns.min()) >= 35 // 2 - 4


def test_quarter_turns_give_the_fixed_tetrominoes():
    scenes = make_multi_object_scenes(
        64, seed=3, shapes=TETROMINOES, rotation_range=(0.0, 0.0), quarter_turns=True
    )
    quarter = scenes.angles / (math.pi / 2)
    torch.testing.assert_close(quarter, quarter.round(), atol=1e-6, rtol=0)
    assert len(quarter.round().unique()) == 4


def test_min_visible_is_respected():
    scenes = make_multi_object_scenes(32, seed=4, num_objects=4, min_visible=0.8)
    alone = [
        render_scenes(
            scenes.shapes[:, i : i + 1],
            scenes.positions[:, i : i + 1].double(),
            scenes.scales[:, i : i + 1].double(),
            scenes.angles[:, i : i + 1].double(),
            scenes.colors[:, i : i + 1],
        )[1]
        for i in range(4)
    ]
    for i in range(4):
        full = (alone[i] == 1).flatten(1).sum(1)
        visible = (scenes.masks == i + 1).flatten(1).sum(1)
        assert bool((visible >= 0.8 * full).all()) and bool((full > 0).all())


def test_variable_number_of_objects():
    scenes = make_multi_object_scenes(40, seed=5, num_objects=(1, 3))
    counts = (scenes.shapes >= 0).sum(1)
    assert set(counts.tolist()) == {1, 2, 3}
    assert torch.equal(scenes.masks.flatten(1).max(1).values, counts)


@pytest.mark.parametrize("name", SPRITES + ("I", "O"))
def test_every_shape_has_area_scale_squared(name):
    # At scale s a shape covers about s^2 (W / 2)^2 pixels; drawn large to limit aliasing.
    k = torch.tensor([[SHAPES.index(name)]])
    _, masks = render_scenes(
        k,
        torch.zeros(1, 1, 2, dtype=torch.float64),
        torch.tensor([[0.5]], dtype=torch.float64),
        torch.tensor([[0.3]], dtype=torch.float64),
        torch.ones(1, 1, 3),
        size=120,
    )
    assert int((masks == 1).sum()) == pytest.approx(0.25 * 60**2, rel=0.02)


def test_pose_splits_generate_and_differ_where_they_should():
    for name, kwargs in POSE_SPLITS.items():
        scenes = make_multi_object_scenes(8, seed=0, **kwargs)
        assert scenes.images.shape == (8, 3, 35, 35), name
    train = make_multi_object_scenes(64, seed=0, **POSE_SPLITS["train"])
    ood = make_multi_object_scenes(64, seed=0, **POSE_SPLITS["ood"])
    assert train.positions[..., 0].max() <= 0 <= ood.positions[..., 0].min()
    assert train.scales.max() < ood.scales.min()


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="shapes must be a non-empty list"):
        make_multi_object_scenes(2, shapes=("square", "star"))
    with pytest.raises(ValueError, match="scale_range must satisfy"):
        make_multi_object_scenes(2, scale_range=(0.5, 0.2))
    with pytest.raises(ValueError, match="position_range"):
        make_multi_object_scenes(2, position_range=((0.0, 1.0),))
    with pytest.raises(ValueError, match="min_visible must be in"):
        make_multi_object_scenes(2, min_visible=1.5)
    with pytest.raises(TypeError, match="num_images must be an int"):
        make_multi_object_scenes(2.0)
    with pytest.raises(TypeError, match="seed must be an int"):
        make_multi_object_scenes(2, seed="0")
    with pytest.raises(RuntimeError, match="min_visible=1.0"):
        make_multi_object_scenes(
            4, num_objects=5, scale_range=(1.0, 1.0), min_visible=1.0, max_tries=2
        )
