import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from geolayers.metrics import adjusted_rand_index, fg_ari, mean_best_overlap

sklearn_metrics = pytest.importorskip("sklearn.metrics")

seeds = st.integers(min_value=0, max_value=2**31 - 1)


def sklearn_fg_ari(pred_labels, true_labels):
    scores = []
    for p, t in zip(pred_labels, true_labels, strict=True):
        fg = t.reshape(-1) > 0
        if not bool(fg.any()):
            scores.append(math.nan)
            continue
        scores.append(
            sklearn_metrics.adjusted_rand_score(
                t.reshape(-1)[fg].numpy(), p.reshape(-1)[fg].numpy()
            )
        )
    return torch.tensor(scores, dtype=torch.float64)


@settings(max_examples=40, deadline=None)
@given(
    seed=seeds,
    size=st.integers(min_value=1, max_value=9),
    objects=st.integers(min_value=1, max_value=5),
    slots=st.integers(min_value=1, max_value=6),
)
def test_fg_ari_agrees_with_sklearn_on_random_masks(seed, size, objects, slots):
    gen = torch.Generator().manual_seed(seed)
    true = torch.randint(0, objects + 1, (4, size, size), generator=gen)
    masks = torch.rand(4, slots, size, size, generator=gen)
    expected = sklearn_fg_ari(masks.argmax(1), true)
    got = fg_ari(masks, true)
    torch.testing.assert_close(got, expected, atol=1e-12, rtol=0, equal_nan=True)


@settings(max_examples=40, deadline=None)
@given(
    seed=seeds, n=st.integers(min_value=1, max_value=60), k=st.integers(1, 7), j=st.integers(1, 7)
)
def test_adjusted_rand_index_agrees_with_sklearn_on_random_labels(seed, n, k, j):
    gen = torch.Generator().manual_seed(seed)
    true = torch.randint(0, k, (3, n), generator=gen)
    pred = torch.randint(0, j, (3, n), generator=gen) * 3  # label values need not be contiguous
    expected = [
        sklearn_metrics.adjusted_rand_score(t.numpy(), p.numpy())
        for t, p in zip(true, pred, strict=True)
    ]
    torch.testing.assert_close(
        adjusted_rand_index(true, pred),
        torch.tensor(expected, dtype=torch.float64),
        atol=1e-12,
        rtol=0,
    )


def test_ari_conventions_of_sklearn():
    # Perfect up to relabelling, all in one segment on both sides, all singletons: 1.
    assert (
        adjusted_rand_index(torch.tensor([[0, 0, 1, 1]]), torch.tensor([[3, 3, 0, 0]])).item()
        == 1.0
    )
    assert adjusted_rand_index(torch.tensor([[2, 2, 2]]), torch.tensor([[0, 0, 0]])).item() == 1.0
    assert adjusted_rand_index(torch.tensor([[0, 1, 2]]), torch.tensor([[2, 0, 1]])).item() == 1.0
    assert adjusted_rand_index(torch.tensor([[5]]), torch.tensor([[1]])).item() == 1.0
    # One segment for two objects scores 0 (chance level).
    assert (
        adjusted_rand_index(torch.tensor([[0, 0, 1, 1]]), torch.tensor([[0, 0, 0, 0]])).item()
        == 0.0
    )


def test_fg_ari_ignores_the_background_and_is_nan_without_foreground():
    true = torch.tensor([[[0, 0, 1], [2, 2, 0]], [[0, 0, 0], [0, 0, 0]]])
    pred = torch.tensor([[[1, 2, 0], [1, 1, 2]], [[0, 1, 0], [1, 0, 1]]])
    score = fg_ari(pred, true)
    assert score[0].item() == 1.0  # background pixels may go to any segment
    assert math.isnan(score[1].item())
    assert fg_ari(pred, true, background=None)[0].item() < 1.0
    # Masks of any float dtype: argmax over the slot dim.
    masks = torch.nn.functional.one_hot(pred, 3).permute(0, 3, 1, 2).to(torch.float32)
    torch.testing.assert_close(fg_ari(masks, true), score, equal_nan=True)


def test_mean_best_overlap_values():
    true = torch.tensor([[0, 1, 1, 2, 2, 2]])
    assert mean_best_overlap(torch.tensor([[0, 1, 1, 2, 2, 2]]), true).item() == 1.0
    # Object 1: best IoU 2/3 (segment 1 = pixels 1, 2, 3); object 2: 2/3 (segment 2 = 4, 5).
    got = mean_best_overlap(torch.tensor([[0, 1, 1, 1, 2, 2]]), true).item()
    assert got == pytest.approx(2 / 3)
    # The background counts as an object when asked.
    assert mean_best_overlap(
        torch.tensor([[1, 1, 1, 1, 1, 1]]), true, background=None
    ).item() == pytest.approx((1 / 6 + 2 / 6 + 3 / 6) / 3)
    assert math.isnan(mean_best_overlap(torch.tensor([[0, 1]]), torch.tensor([[0, 0]])).item())


def test_batched_scores_match_one_image_at_a_time():
    gen = torch.Generator().manual_seed(0)
    true = torch.randint(0, 4, (6, 10, 10), generator=gen)
    masks = torch.rand(6, 5, 10, 10, generator=gen)
    batched_ari, batched_mbo = fg_ari(masks, true), mean_best_overlap(masks, true)
    for i in range(6):
        assert fg_ari(masks[i : i + 1], true[i : i + 1]).item() == pytest.approx(
            batched_ari[i].item(), abs=1e-12
        )
        assert mean_best_overlap(masks[i : i + 1], true[i : i + 1]).item() == pytest.approx(
            batched_mbo[i].item(), abs=1e-12
        )


def test_bad_inputs_are_named():
    true = torch.zeros(2, 4, 4, dtype=torch.long)
    with pytest.raises(TypeError, match="true must be an integer tensor"):
        fg_ari(torch.rand(2, 3, 4, 4), true.float())
    with pytest.raises(ValueError, match=r"pred masks must have shape \(B, K, \*\(4, 4\)\)"):
        fg_ari(torch.rand(2, 3, 4, 5), true)
    with pytest.raises(ValueError, match="pred labels must have the shape of true"):
        fg_ari(torch.zeros(2, 4, 5, dtype=torch.long), true)
    with pytest.raises(ValueError, match="true must hold labels >= 0"):
        fg_ari(torch.zeros(2, 4, 4, dtype=torch.long), true - 1)
    with pytest.raises(ValueError, match="mask must be a bool tensor"):
        adjusted_rand_index(true, true, mask=torch.ones(2, 4, 4))
