import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from geolayers.equivariant.flow import FlowEquivariantRNN, translation_flow

# Exactness of the flow equivariance with circular padding (rolls are exact; the convolutions
# see the same numbers at shifted positions).
FLOW_TOL = {torch.float32: 1e-6, torch.float64: 1e-12}
V1 = [-2, -1, 0, 1, 2]
V2 = [(a, b) for a in (-1, 0, 1) for b in (-1, 0, 1)]


@torch.no_grad()
def _flow_error(rnn, x, velocity):
    """Largest |h'_t[nu] - S_{velocity t} h_t[nu - velocity]| over the determined channels."""
    hs, _ = rnn(x)
    predicted, valid = rnn.flow_hidden(hs, velocity)
    moved, _ = rnn(translation_flow(x, velocity))
    return float((moved[:, :, valid] - predicted[:, :, valid]).abs().max()), valid, moved


@pytest.mark.parametrize("velocity", V1)
@torch.no_grad()
def test_hidden_state_moves_with_the_input_1d(dtype, velocity):
    torch.manual_seed(0)
    rnn = FlowEquivariantRNN(2, 6, V1).to(dtype)
    x = torch.randn(3, 8, 2, 24, dtype=dtype)
    err, valid, moved = _flow_error(rnn, x, velocity)
    assert err <= FLOW_TOL[dtype]
    assert int(valid.sum()) == len(V1) - abs(velocity)
    # The channel moving with the input sees it as if it stood still: channel 0 of the
    # stationary run, carried along.
    hs, _ = rnn(x)
    for t in range(x.shape[1]):
        still = torch.roll(hs[:, t, V1.index(0)], velocity * t, dims=-1)
        assert float((moved[:, t, V1.index(velocity)] - still).abs().max()) <= FLOW_TOL[dtype]


def test_hidden_state_moves_with_the_input_2d(dtype):
    torch.manual_seed(1)
    rnn = FlowEquivariantRNN(1, 4, V2, kernel_size=3, nonlinearity="relu").to(dtype)
    x = torch.randn(2, 6, 1, 10, 12, dtype=dtype)
    for velocity in ((1, -1), (0, 1), (-1, 0)):
        err, valid, _ = _flow_error(rnn, x, velocity)
        assert err <= FLOW_TOL[dtype]
        assert int(valid.sum()) == 4 if 0 not in velocity else 6


@torch.no_grad()
def test_plain_conv_rnn_is_not_flow_equivariant(dtype):
    # velocities=[0] is an ordinary convolutional RNN with the same weights: a moving input
    # does not give a correspondingly moving hidden state.
    torch.manual_seed(2)
    fernn = FlowEquivariantRNN(2, 6, V1).to(dtype)
    plain = FlowEquivariantRNN(2, 6, [0]).to(dtype)
    plain.load_state_dict(fernn.state_dict())
    x = torch.randn(3, 8, 2, 24, dtype=dtype)
    hs, _ = plain(x)
    moved, _ = plain(translation_flow(x, 1))
    expected = torch.stack([torch.roll(hs[:, t], t, dims=-1) for t in range(8)], dim=1)
    rel = float((moved - expected).norm() / expected.norm())
    assert rel > 0.2
    # A static shift is still fine for both (plain translation equivariance).
    shifted, _ = plain(torch.roll(x, 5, dims=-1))
    torch.testing.assert_close(shifted, torch.roll(hs, 5, dims=-1), rtol=0, atol=FLOW_TOL[dtype])
    # The FERNN on the same input is exact (its velocity-0 channel equals the plain RNN's).
    assert _flow_error(fernn, x, 1)[0] <= FLOW_TOL[dtype]
    torch.testing.assert_close(fernn(x)[0][:, :, V1.index(0)], hs[:, :, 0])


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    length=st.integers(5, 20),
    steps=st.integers(1, 7),
    velocity=st.integers(-2, 2),
    kernel=st.sampled_from([1, 3, 5]),
)
def test_flow_equivariance_property(seed, length, steps, velocity, kernel):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    rnn = FlowEquivariantRNN(1, 3, V1, kernel_size=kernel, input_kernel_size=3).double()
    x = torch.randn(2, steps, 1, length, generator=gen, dtype=torch.float64)
    assert _flow_error(rnn, x, velocity)[0] <= 1e-12


def test_shapes_h0_and_gradients(dtype):
    rnn = FlowEquivariantRNN(3, 5, [-1, 0, 1]).to(dtype)
    x = torch.randn(2, 4, 3, 11, dtype=dtype, requires_grad=True)
    hs, last = rnn(x)
    assert hs.shape == (2, 4, 3, 5, 11) and hs.dtype == dtype
    torch.testing.assert_close(last, hs[:, -1])
    # Running in two halves with the state carried over is the same as one run.
    first, mid = rnn(x[:, :2])
    second, _ = rnn(x[:, 2:], h0=mid)
    torch.testing.assert_close(torch.cat([first, second], dim=1), hs)
    hs.square().sum().backward()
    assert x.grad is not None and rnn.hidden_conv.weight.grad is not None
    assert bool(torch.isfinite(rnn.input_conv.weight.grad).all())


def test_translation_flow_moves_frames():
    x = torch.zeros(1, 4, 1, 6, 7)
    x[..., 0, 0] = 1.0
    moved = translation_flow(x, (1, 2))
    for t in range(4):
        assert moved[0, t, 0, t % 6, (2 * t) % 7] == 1.0 and moved[0, t].sum() == 1.0


def test_repr():
    assert str(FlowEquivariantRNN(1, 8, [-1, 0, 1])) == (
        "FlowEquivariantRNN(1, 8, velocities=[-1, 0, 1], kernel_size=3, nonlinearity='tanh')"
    )


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="velocities must be distinct"):
        FlowEquivariantRNN(1, 2, [0, 0])
    with pytest.raises(ValueError, match="velocities must hold at least one"):
        FlowEquivariantRNN(1, 2, [])
    with pytest.raises(ValueError, match=r"velocities\[1\] must have 2 component"):
        FlowEquivariantRNN(1, 2, [(0, 0), (1,)])
    with pytest.raises(TypeError, match=r"velocities\[1\] must be an int"):
        FlowEquivariantRNN(1, 2, [0, 0.5])
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        FlowEquivariantRNN(1, 2, kernel_size=4)
    with pytest.raises(ValueError, match="nonlinearity must be one of"):
        FlowEquivariantRNN(1, 2, nonlinearity="gelu")
    with pytest.raises(ValueError, match="in_channels must be >= 1"):
        FlowEquivariantRNN(0, 2)
    rnn = FlowEquivariantRNN(2, 3)
    with pytest.raises(ValueError, match=r"x must be a floating \(B, T, C_in, L\)"):
        rnn(torch.randn(2, 4, 2, 5, 5))
    with pytest.raises(ValueError, match="in_channels=2"):
        rnn(torch.randn(2, 4, 3, 5))
    with pytest.raises(ValueError, match="at least one time step"):
        rnn(torch.randn(2, 0, 2, 5))
    with pytest.raises(ValueError, match=r"h0 must have shape \(2, 3, 3, 5\)"):
        rnn(torch.randn(2, 4, 2, 5), h0=torch.zeros(2, 3, 5))
    with pytest.raises(ValueError, match="velocity must have 1 component"):
        rnn.flow_hidden(rnn(torch.randn(1, 2, 2, 5))[0], (1, 1))
    with pytest.raises(ValueError, match="hs must be"):
        rnn.flow_hidden(torch.zeros(1, 2, 5, 3, 5), 1)
    with pytest.raises(ValueError, match=r"x must be a \(B, T, C, L\)"):
        translation_flow(torch.zeros(3, 5), 1)
