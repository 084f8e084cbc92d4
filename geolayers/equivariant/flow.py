r"""Flow equivariance for recurrent networks: a convolutional RNN whose hidden state moves with
inputs that move at constant velocity.

From `"Flow Equivariant Recurrent Neural Networks" <https://arxiv.org/abs/2507.14793>`_
(T. Anderson Keller, 2025), for the flows of one-parameter translation groups on 1-D or 2-D
grids with periodic boundaries. A flow of velocity :math:`\hat\nu` acts on a sequence by
translating frame :math:`t` by :math:`\hat\nu t`,

.. math::
    (\psi(\hat\nu) \cdot f)_t = S_{\hat\nu t} f_t, \qquad (S_u f)(x) = f(x - u),

and a sequence model is flow equivariant when transforming the input sequence that way
transforms its hidden states by a matching, time-dependent action. A plain convolutional RNN
is not (its recurrence sees a moving pattern differently at every step). The FERNN lifts the
hidden state to a set of velocities :math:`\nu \in V`; channel :math:`\nu` is carried along
the flow :math:`\nu` between steps, so it sees an input moving at :math:`\nu` as stationary
(the FERNN recurrence of the paper, with a translation-equivariant convolution for both the
hidden-to-hidden map :math:`W` and the input map :math:`U`):

.. math::
    h_t[\nu] = \sigma\big( S_{\nu} (W \star h_{t-1}[\nu]) + U \star f_t \big),
    \qquad h_{-1} = 0.

Equivariance (by induction on ``t``, since :math:`S` commutes with convolutions and pointwise
:math:`\sigma`): if :math:`f'_t = S_{\hat\nu t} f_t` then

.. math::
    h'_t[\nu] = S_{\hat\nu t}\, h_t[\nu - \hat\nu]
    \quad \text{for every } \nu \in V \text{ with } \nu - \hat\nu \in V,

a translation of the grid and a shift along the velocity axis. It is exact (up to rounding)
with circular padding; channels whose :math:`\nu - \hat\nu` falls outside the finite set
:math:`V` are not determined by the unflowed run (the truncation the paper discusses). With
:math:`V = \{0\}` the module is an ordinary convolutional RNN, the non-equivariant baseline.

Velocities are integers (grid cells per step), so :math:`S` is an exact ``torch.roll``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from geolayers._checks import check_positive_int, describe

__all__ = ["FlowEquivariantRNN", "translation_flow"]

_ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu}


def _as_velocity(name: str, value: object, dims: int | None) -> tuple[int, ...]:
    """An int (1-D) or a tuple of ints (one per spatial axis) as a tuple."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int or a tuple of ints, got bool")
    if isinstance(value, int):
        vel: tuple[int, ...] = (value,)
    elif (
        isinstance(value, Sequence)
        and value
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        vel = tuple(value)
    else:
        raise TypeError(f"{name} must be an int or a tuple of ints, got {value!r}")
    if dims is not None and len(vel) != dims:
        raise ValueError(f"{name} must have {dims} component(s), got {value!r}")
    return vel


def _shift(x: Tensor, shift: Sequence[int]) -> Tensor:
    """:math:`S_u x`: translate the last ``len(shift)`` axes periodically, ``out[i] = x[i - u]``."""
    if not any(shift):
        return x
    return torch.roll(x, shifts=tuple(shift), dims=tuple(range(-len(shift), 0)))


def translation_flow(x: Tensor, velocity: int | Sequence[int]) -> Tensor:
    r"""Apply the flow of a constant velocity to a sequence: frame ``t`` translated by
    ``velocity * t`` (periodic), :math:`(\psi(\hat\nu) \cdot f)_t = S_{\hat\nu t} f_t`.

    Args:
        x: ``(B, T, C, L)`` (1-D) or ``(B, T, C, H, W)`` (2-D).
        velocity: grid cells per step: an int (1-D) or ``(v_H, v_W)`` (2-D).

    Returns:
        The moving sequence, same shape.

    Example:
        >>> x = torch.zeros(1, 3, 1, 5)
        >>> x[..., 0] = 1.0
        >>> translation_flow(x, 2)[0, :, 0]
        tensor([[1., 0., 0., 0., 0.],
                [0., 0., 1., 0., 0.],
                [0., 0., 0., 0., 1.]])
    """
    if not isinstance(x, Tensor) or x.dim() not in (4, 5):
        raise ValueError(f"x must be a (B, T, C, L) or (B, T, C, H, W) tensor, got {describe(x)}")
    vel = _as_velocity("velocity", velocity, x.dim() - 3)
    return torch.stack([_shift(x[:, t], [v * t for v in vel]) for t in range(x.shape[1])], dim=1)


class FlowEquivariantRNN(nn.Module):
    r"""Flow equivariant convolutional RNN (FERNN) for translation flows
    (`Keller, 2025 <https://arxiv.org/abs/2507.14793>`_).

    .. math::
        h_t[\nu] = \sigma\big( S_{\nu} (W \star h_{t-1}[\nu]) + U \star f_t \big),
        \qquad \nu \in V,\ h_{-1} = 0,

    with circular convolutions :math:`W` (hidden to hidden, no bias) and :math:`U` (input to
    hidden, with the bias), shared by all velocity channels. If the input moves with a velocity
    :math:`\hat\nu` (:func:`translation_flow`), the hidden states move too:
    :math:`h'_t[\nu] = S_{\hat\nu t} h_t[\nu - \hat\nu]` (see :meth:`flow_hidden`). With
    ``velocities=[0]`` it is a plain convolutional RNN, which has no such property.

    Args:
        in_channels: input channels ``C_in``.
        hidden_channels: hidden channels ``C`` per velocity.
        velocities: the velocity set ``V``: ints (1-D grids) or ``(v_H, v_W)`` pairs (2-D),
            in grid cells per step, distinct. (default: ``(-1, 0, 1)``)
        kernel_size: odd size of the hidden-to-hidden kernel. (default: ``3``)
        input_kernel_size: odd size of the input kernel. (default: ``kernel_size``)
        nonlinearity: ``"tanh"`` or ``"relu"``. (default: ``"tanh"``)
        bias: bias of the input convolution. (default: ``True``)

    Shapes:
        - **input** ``x``: ``(B, T, C_in, L)`` or ``(B, T, C_in, H, W)``.
        - **output**: hidden states ``(B, T, |V|, C, L)`` (or ``..., H, W``), and the last one
          ``(B, |V|, C, L)``, which ``h0`` also takes.

    Example:
        >>> rnn = FlowEquivariantRNN(1, 4, velocities=[-1, 0, 1])
        >>> hs, last = rnn(torch.randn(2, 6, 1, 16))
        >>> hs.shape
        torch.Size([2, 6, 3, 4, 16])
    """

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int,
        velocities: Sequence[int] | Sequence[Sequence[int]] = (-1, 0, 1),
        *,
        kernel_size: int = 3,
        input_kernel_size: int | None = None,
        nonlinearity: str = "tanh",
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.in_channels = check_positive_int("in_channels", in_channels)
        self.hidden_channels = check_positive_int("hidden_channels", hidden_channels)
        if isinstance(velocities, (str, bytes)) or not isinstance(velocities, Sequence):
            raise TypeError(
                f"velocities must be a sequence of ints or of int pairs, got {describe(velocities)}"
            )
        if not velocities:
            raise ValueError("velocities must hold at least one velocity, got none")
        first = _as_velocity("velocities[0]", velocities[0], None)
        self.spatial_dims = len(first)
        if self.spatial_dims not in (1, 2):
            raise ValueError(f"velocities must be ints (1-D) or pairs (2-D), got {velocities[0]!r}")
        vels = [
            _as_velocity(f"velocities[{i}]", v, self.spatial_dims) for i, v in enumerate(velocities)
        ]
        if len(set(vels)) != len(vels):
            raise ValueError(f"velocities must be distinct, got {list(velocities)}")
        self.velocities = vels
        self._index = {v: i for i, v in enumerate(vels)}
        input_kernel_size = kernel_size if input_kernel_size is None else input_kernel_size
        for name, k in (("kernel_size", kernel_size), ("input_kernel_size", input_kernel_size)):
            check_positive_int(name, k)
            if k % 2 == 0:
                # An even kernel with symmetric padding changes the grid size or its origin.
                raise ValueError(f"{name} must be odd, got {k}")
        if nonlinearity not in _ACTIVATIONS:
            raise ValueError(
                f"nonlinearity must be one of {sorted(_ACTIVATIONS)}, got {nonlinearity!r}"
            )
        self.kernel_size, self.input_kernel_size = kernel_size, input_kernel_size
        self.nonlinearity = nonlinearity
        self._act = _ACTIVATIONS[nonlinearity]
        conv = nn.Conv1d if self.spatial_dims == 1 else nn.Conv2d
        # Circular padding: the grid is a torus, so a translation is a symmetry of every
        # convolution exactly (zero padding would break it at the edges).
        self.input_conv = conv(
            in_channels,
            hidden_channels,
            input_kernel_size,
            padding=input_kernel_size // 2,
            padding_mode="circular",
            bias=bias,
        )
        # No bias here: with h_{-1} = 0 the first step then sees only the input, identically
        # in every velocity channel, which is what the induction for equivariance starts from.
        self.hidden_conv = conv(
            hidden_channels,
            hidden_channels,
            kernel_size,
            padding=kernel_size // 2,
            padding_mode="circular",
            bias=False,
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.input_conv.reset_parameters()
        self.hidden_conv.reset_parameters()

    @property
    def num_velocities(self) -> int:
        return len(self.velocities)

    def _check_input(self, x: object) -> Tensor:
        d = self.spatial_dims
        grid = "L" if d == 1 else "H, W"
        if not isinstance(x, Tensor) or not x.is_floating_point() or x.dim() != 3 + d:
            raise ValueError(f"x must be a floating (B, T, C_in, {grid}) tensor, got {describe(x)}")
        if x.shape[2] != self.in_channels:
            raise ValueError(
                f"x must have in_channels={self.in_channels} channels in axis 2, got shape "
                f"{tuple(x.shape)}"
            )
        return x

    def step(self, x_t: Tensor, h: Tensor | None) -> Tensor:
        r"""One step :math:`h_t = \sigma(S_\nu(W \star h_{t-1}[\nu]) + U \star f_t)`.

        Args:
            x_t: ``(B, C_in, *grid)``.
            h: ``(B, |V|, C, *grid)``, or ``None`` for :math:`h_{-1} = 0`.

        Returns:
            ``(B, |V|, C, *grid)``.
        """
        u = self.input_conv(x_t)[:, None]  # (B, 1, C, *grid): the same for every velocity
        if h is None:
            return self._act(u.expand(-1, self.num_velocities, *u.shape[2:]))
        b, nv = h.shape[:2]
        w = self.hidden_conv(h.reshape(b * nv, *h.shape[2:])).reshape(h.shape)
        # Carry channel nu along its own flow for one step: S_nu.
        w = torch.stack([_shift(w[:, i], v) for i, v in enumerate(self.velocities)], dim=1)
        return self._act(w + u)

    def forward(self, x: Tensor, h0: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Run over a sequence.

        Args:
            x: ``(B, T, C_in, *grid)``.
            h0: ``(B, |V|, C, *grid)`` state before the first frame. (default: zeros;
                equivariance holds from a zero, or a correspondingly flowed, start)

        Returns:
            ``hs: (B, T, |V|, C, *grid)`` and the last state ``(B, |V|, C, *grid)``.
        """
        x = self._check_input(x)
        if h0 is not None:
            expected = (x.shape[0], self.num_velocities, self.hidden_channels, *x.shape[3:])
            if not isinstance(h0, Tensor) or tuple(h0.shape) != expected:
                raise ValueError(f"h0 must have shape {expected}, got {describe(h0)}")
        h, out = h0, []
        for t in range(x.shape[1]):
            h = self.step(x[:, t], h)
            out.append(h)
        if not out:
            raise ValueError(f"x must have at least one time step, got shape {tuple(x.shape)}")
        return torch.stack(out, dim=1), h

    def flow_hidden(self, hs: Tensor, velocity: int | Sequence[int]) -> tuple[Tensor, Tensor]:
        r"""The hidden states of the flowed input predicted from those of the original:
        :math:`h'_t[\nu] = S_{\hat\nu t} h_t[\nu - \hat\nu]`.

        Args:
            hs: ``(B, T, |V|, C, *grid)`` from :meth:`forward`.
            velocity: the flow's velocity :math:`\hat\nu`.

        Returns:
            ``(hs', valid)``: ``hs'`` of the same shape (zeros where undetermined) and
            ``valid: (|V|,) bool``, the channels :math:`\nu` with :math:`\nu - \hat\nu \in V`.

        Example:
            >>> rnn = FlowEquivariantRNN(1, 2, velocities=[-1, 0, 1])
            >>> x = torch.randn(1, 4, 1, 8)
            >>> predicted, valid = rnn.flow_hidden(rnn(x)[0], 1)
            >>> valid.tolist()
            [False, True, True]
            >>> moved = rnn(translation_flow(x, 1))[0]
            >>> torch.allclose(moved[:, :, valid], predicted[:, :, valid], atol=1e-6)
            True
        """
        vel = _as_velocity("velocity", velocity, self.spatial_dims)
        nv = self.num_velocities
        if not isinstance(hs, Tensor) or hs.dim() != 4 + self.spatial_dims or hs.shape[2] != nv:
            raise ValueError(
                f"hs must be (B, T, {nv}, C, *grid) hidden states from forward, got {describe(hs)}"
            )
        out = torch.zeros_like(hs)
        valid = torch.zeros(nv, dtype=torch.bool)
        for i, nu in enumerate(self.velocities):
            j = self._index.get(tuple(a - b for a, b in zip(nu, vel, strict=True)))
            if j is None:
                continue
            valid[i] = True
            for t in range(hs.shape[1]):
                out[:, t, i] = _shift(hs[:, t, j], [v * t for v in vel])
        return out, valid

    def __repr__(self) -> str:
        vels = [v[0] for v in self.velocities] if self.spatial_dims == 1 else self.velocities
        return (
            f"{type(self).__name__}({self.in_channels}, {self.hidden_channels}, "
            f"velocities={vels}, kernel_size={self.kernel_size}, "
            f"nonlinearity={self.nonlinearity!r})"
        )
