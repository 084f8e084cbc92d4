import pytest
import torch

from geolayers.slots import CNNEncoder, position_grid


def test_shapes_and_grid_of_a_full_resolution_encoder(dtype):
    torch.manual_seed(0)
    enc = CNNEncoder(channels=(4, 4), kernel_size=3, out_dim=8).to(dtype)
    tokens, grid = enc(torch.rand(2, 3, 7, 9, dtype=dtype))
    assert tokens.shape == (2, 63, 8) and tokens.dtype == dtype
    assert torch.equal(grid, position_grid(7, 9, dtype=dtype))


def test_strided_grid_is_at_the_receptive_field_centres():
    enc = CNNEncoder(channels=(4, 4, 4), kernel_size=5, strides=(1, 2, 2), out_dim=8)
    tokens, grid = enc(torch.rand(1, 3, 35, 35))
    assert tokens.shape == (1, 81, 8)  # 35 -> 18 -> 9
    full = position_grid(35, 35).view(35, 35, 2)
    # Token (i, j) is centred on input pixel (4 i, 4 j).
    torch.testing.assert_close(grid.view(9, 9, 2), full[::4, ::4])


def test_without_position_embedding_features_follow_a_shifted_image(dtype, tol):
    """Convolutions and per-token layers commute with whole-pixel shifts away from the border;
    the position embedding of slot attention breaks exactly that."""
    torch.manual_seed(0)
    image = torch.zeros(1, 3, 16, 16, dtype=dtype)
    image[:, :, 5:8, 4:9] = torch.rand(3, 1, 1, dtype=dtype)
    shifted = torch.roll(image, shifts=(2, 3), dims=(2, 3))
    plain = CNNEncoder(channels=(4, 4), kernel_size=3, out_dim=6, position_embedding=False)
    a, _ = plain.to(dtype)(image)
    b, _ = plain(shifted)
    a, b = a.view(16, 16, 6), b.view(16, 16, 6)
    torch.testing.assert_close(b[5:13, 6:14], a[3:11, 3:11], atol=tol, rtol=tol)
    torch.manual_seed(0)
    embedded = CNNEncoder(channels=(4, 4), kernel_size=3, out_dim=6, position_embedding=True)
    a, _ = embedded.to(dtype)(image)
    b, _ = embedded(shifted)
    a, b = a.view(16, 16, 6), b.view(16, 16, 6)
    assert (b[5:13, 6:14] - a[3:11, 3:11]).abs().max() > 1e-3


def test_repr():
    assert str(CNNEncoder(position_embedding=False)) == (
        "CNNEncoder(3 -> [32, 32, 32, 32] -> 64, kernel_size=5, strides=[1, 1, 1, 1], "
        "position_embedding=False)"
    )


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        CNNEncoder(kernel_size=4)
    with pytest.raises(ValueError, match="strides must have one entry per convolution"):
        CNNEncoder(channels=(4, 4), strides=(1,))
    with pytest.raises(ValueError, match="channels must list at least one"):
        CNNEncoder(channels=())
    enc = CNNEncoder(channels=(4,), out_dim=4)
    with pytest.raises(ValueError, match=r"images must have shape \(B, 3, H, W\)"):
        enc(torch.rand(1, 1, 8, 8))
    with pytest.raises(TypeError, match="images must be a floating-point tensor"):
        enc(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
