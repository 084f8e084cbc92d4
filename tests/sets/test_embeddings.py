import pytest
import torch
from torch import nn

from geolayers.sets import LEEmbedding, LPEmbedding, check_sum_injectivity, le_width, lp_width


def test_widths_follow_the_paper_bounds():
    assert lp_width(10, 3) == 10 * 4
    assert lp_width(10, 3, "upper") == 10**5 * 9
    assert le_width(10, 3, "upper") == 10**4 * 9
    lp = LPEmbedding(3, set_size=10)
    assert lp.out_channels >= lp_width(10, 3) and lp.out_channels % 10 == 0
    assert LPEmbedding(3, set_size=4, width=10).out_channels == 12
    assert LEEmbedding(3, set_size=10).out_channels == 40
    assert str(LPEmbedding(3, set_size=4)) == "LPEmbedding(3, 16, set_size=4)"


def test_lp_computes_powers_of_projections(dtype, tol):
    layer = LPEmbedding(2, set_size=3, width=3).to(dtype)
    x = torch.randn(5, 2, dtype=dtype)
    z = x @ layer.weight[0]
    out = layer(x)
    torch.testing.assert_close(out[:, :3], torch.stack([z, z**2, z**3], 1), atol=tol, rtol=tol)


@pytest.mark.parametrize("cls", [LPEmbedding, LEEmbedding])
@pytest.mark.parametrize("set_size, channels", [(4, 3), (6, 8)])
def test_sum_pooling_is_injective_at_the_lower_bound(cls, set_size, channels):
    torch.manual_seed(0)
    report = check_sum_injectivity(
        cls(channels, set_size=set_size), channels, set_size, num_pairs=128
    )
    assert report.injective, report
    assert report.max_permutation_gap < 1e-12


def test_check_detects_non_injective_coordinatewise_embedding():
    class CoordinatePowers(nn.Module):
        """Power sums of each coordinate separately: blind to swapping one coordinate between elements."""

        def forward(self, x):
            return torch.cat([x**p for p in range(1, 5)], dim=-1)

    report = check_sum_injectivity(CoordinatePowers(), 3, 4, num_pairs=64)
    assert not report.injective
    assert report.min_separation < 1e-12


def test_check_detects_too_narrow_embedding():
    torch.manual_seed(0)
    # Two linear features of a 3-D element cannot separate multisets.
    narrow = nn.Linear(3, 2, bias=False).double()
    assert not check_sum_injectivity(narrow, 3, 4, num_pairs=64).injective


def test_bad_arguments():
    with pytest.raises(ValueError, match="set_size must be a positive int"):
        LPEmbedding(3, set_size=0)
    with pytest.raises(ValueError, match="width must be a positive int or 'lower'/'upper'"):
        LEEmbedding(3, set_size=2, width=-1)
    with pytest.raises(ValueError, match="bound must be 'lower' or 'upper'"):
        lp_width(3, 2, "middle")
    with pytest.raises(ValueError, match="x must have 3 channels"):
        LPEmbedding(3, set_size=2)(torch.randn(4, 2))
