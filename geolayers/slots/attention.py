r"""Slot attention (Locatello et al. 2020) and the pieces invariant slot attention shares with it."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from geolayers._checks import check_positive_int, describe
from geolayers.slots.frames import SlotPose

INITS = ("learned", "sampled")


class SlotAttentionOutput(NamedTuple):
    """What a slot-attention module returns.

    Attributes:
        slots: ``(B, K, D)`` slot features after the last update.
        attn: ``(B, K, N)`` attention of the last round, normalised over the tokens (each row
            sums to 1); softmax over slots before that normalisation.
        pose: ``SlotPose`` of every slot (invariant slot attention), ``None`` for plain slot
            attention.
    """

    slots: Tensor
    attn: Tensor
    pose: SlotPose | None


class SlotInit(nn.Module):
    """Initial slot features ``(B, K, D)``: ``"learned"``, one learned vector per slot (the
    slots are then told apart from the start, and their order is fixed), or ``"sampled"``,
    i.i.d. Gaussian draws with a learned mean and standard deviation shared by all slots
    (Locatello et al. 2020, section 2.1; the slots are exchangeable)."""

    def __init__(self, num_slots: int, dim: int, init: str) -> None:
        super().__init__()
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        self.num_slots, self.dim, self.init = num_slots, dim, init
        rows = num_slots if init == "learned" else 1
        self.mu = nn.Parameter(torch.empty(1, rows, dim))
        self.log_sigma = nn.Parameter(torch.empty(1, 1, dim)) if init == "sampled" else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.mu)
        if self.log_sigma is not None:
            nn.init.xavier_uniform_(self.log_sigma)

    def forward(self, batch: int, generator: torch.Generator | None = None) -> Tensor:
        mu = self.mu.expand(batch, self.num_slots, self.dim)
        if self.log_sigma is None:
            return mu
        # Drawn on the CPU so that a seeded CPU generator gives the same slots on every device.
        noise = torch.randn(mu.shape, generator=generator, dtype=mu.dtype).to(mu.device)
        return mu + self.log_sigma.exp() * noise


class SlotUpdate(nn.Module):
    r"""The slot update of Locatello et al. 2020 (Algorithm 1): a GRU that reads the attention-
    weighted mean of the values, then a residual MLP,
    :math:`s \leftarrow s + \mathrm{MLP}(\mathrm{LN}(s))`."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.gru = nn.GRUCell(dim, dim)
        self.norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, dim))

    def reset_parameters(self) -> None:
        self.gru.reset_parameters()
        self.norm.reset_parameters()
        for layer in self.mlp:
            if isinstance(layer, nn.Linear):
                layer.reset_parameters()

    def forward(self, slots: Tensor, updates: Tensor) -> Tensor:
        shape = slots.shape
        slots = self.gru(updates.reshape(-1, shape[-1]), slots.reshape(-1, shape[-1])).view(shape)
        return slots + self.mlp(self.norm(slots))


def normalise_over_tokens(attn: Tensor, eps: float) -> Tensor:
    """``(attn + eps)`` rescaled to sum to 1 over the last dim: the weighted mean of
    Locatello et al. (eq. 2). The ``eps`` gives a slot that wins no token a uniform average
    instead of 0 / 0."""
    attn = attn + eps
    return attn / attn.sum(dim=-1, keepdim=True)


def check_inputs(
    inputs: object, in_dim: int, slots: object, num_slots: int, dim: int
) -> tuple[int, int]:
    """Validate ``inputs (B, N, in_dim)`` and optional ``slots (B, K, dim)``; returns (B, N)."""
    if not isinstance(inputs, Tensor) or not inputs.is_floating_point():
        raise TypeError(f"inputs must be a floating-point tensor (B, N, D), got {describe(inputs)}")
    if inputs.dim() != 3 or inputs.shape[-1] != in_dim or inputs.shape[1] < 1:
        raise ValueError(
            f"inputs must have shape (B, N, {in_dim}) with N >= 1, got {tuple(inputs.shape)}"
        )
    batch, num_tokens = inputs.shape[:2]
    if slots is not None:
        if not isinstance(slots, Tensor):
            raise TypeError(f"slots must be a tensor (B, K, D), got {describe(slots)}")
        if tuple(slots.shape) != (batch, num_slots, dim):
            raise ValueError(
                f"slots must have shape (B, K, D) = ({batch}, {num_slots}, {dim}), got "
                f"{tuple(slots.shape)}"
            )
        if slots.dtype != inputs.dtype or slots.device != inputs.device:
            raise ValueError(
                f"slots must have dtype {inputs.dtype} on {inputs.device}, got {slots.dtype} "
                f"on {slots.device}"
            )
    return batch, num_tokens


def straight_through(value: Tensor, init: Tensor) -> Tensor:
    """``value`` in the forward pass, identity gradient to ``init`` in the backward pass: the
    first-order (Neumann) approximation of the implicit gradient at a fixed point of the slot
    update (Chang et al. 2022, section 3), which still trains the initialisation."""
    return value.detach() + (init - init.detach())


class SlotAttention(nn.Module):
    r"""Slot attention from `"Object-Centric Learning with Slot Attention"
    <https://arxiv.org/abs/2006.15055>`_ (Locatello et al. 2020, Algorithm 1).

    ``K`` slots compete for ``N`` input tokens for ``iters`` rounds:

    .. math::
        A = \operatorname{softmax}_{K}\Big(\frac{k(\mathrm{LN}(x))\, q(\mathrm{LN}(s))^\top}
        {\sqrt{D}}\Big), \quad
        W_{kn} = \frac{A_{kn} + \epsilon}{\sum_m (A_{km} + \epsilon)}, \quad
        s \leftarrow \mathrm{GRU}(s, W v(\mathrm{LN}(x))), \quad
        s \leftarrow s + \mathrm{MLP}(\mathrm{LN}(s))

    The softmax runs over slots, so slots compete for each token; the weighted mean over
    tokens then gives every slot an update of the same scale whatever its share.

    With ``implicit_grad=True`` the first ``iters - 1`` rounds run without autograd and the
    gradient flows through the last round only, with an identity Jacobian to the
    initialisation: the implicit differentiation of `"Object Representations as Fixed Points"
    <https://arxiv.org/abs/2207.00787>`_ (Chang et al. 2022), which keeps training stable and
    costs one round of backward.

    Args:
        num_slots: ``K``.
        dim: slot and attention width ``D``.
        iters: rounds of attention, ``>= 1``. (default: ``3``)
        in_dim: width of the input tokens. (default: ``dim``)
        hidden_dim: width of the residual MLP. (default: ``2 * dim``)
        init: ``"sampled"`` (Gaussian, learned mean and spread) or ``"learned"`` (one learned
            vector per slot). (default: ``"sampled"``)
        implicit_grad: backpropagate through the last round only. (default: ``False``)
        eps: :math:`\epsilon` of the weighted mean. (default: ``1e-8``)

    Shapes:
        ``inputs: (B, N, in_dim)`` -> :class:`SlotAttentionOutput` with ``slots: (B, K, D)``,
        ``attn: (B, K, N)``, ``pose: None``. Initial ``slots: (B, K, D)`` may be passed in.

    Example:
        >>> SlotAttention(4, 16)(torch.randn(2, 30, 16)).slots.shape
        torch.Size([2, 4, 16])
    """

    def __init__(
        self,
        num_slots: int,
        dim: int,
        iters: int = 3,
        *,
        in_dim: int | None = None,
        hidden_dim: int | None = None,
        init: str = "sampled",
        implicit_grad: bool = False,
        eps: float = 1e-8,
    ) -> None:
        super().__init__()
        self.num_slots = check_positive_int("num_slots", num_slots)
        self.dim = check_positive_int("dim", dim)
        self.iters = check_positive_int("iters", iters)
        self.in_dim = check_positive_int("in_dim", dim if in_dim is None else in_dim)
        hidden_dim = check_positive_int("hidden_dim", 2 * dim if hidden_dim is None else hidden_dim)
        self.implicit_grad = bool(implicit_grad)
        self.eps = float(eps)
        self.slot_init = SlotInit(num_slots, dim, init)
        self.norm_inputs = nn.LayerNorm(self.in_dim)
        self.norm_slots = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(self.in_dim, dim, bias=False)
        self.to_v = nn.Linear(self.in_dim, dim, bias=False)
        self.update = SlotUpdate(dim, hidden_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for module in (self.slot_init, self.norm_inputs, self.norm_slots, self.update):
            module.reset_parameters()
        for lin in (self.to_q, self.to_k, self.to_v):
            lin.reset_parameters()

    def _attend(self, slots: Tensor, k: Tensor) -> Tensor:
        q = self.to_q(self.norm_slots(slots))
        logits = torch.einsum("bkd,bnd->bkn", q, k) * self.dim**-0.5
        return normalise_over_tokens(logits.softmax(dim=1), self.eps)

    def _round(self, slots: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        attn = self._attend(slots, k)
        return self.update(slots, torch.einsum("bkn,bnd->bkd", attn, v)), attn

    def forward(
        self,
        inputs: Tensor,
        slots: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        iters: int | None = None,
    ) -> SlotAttentionOutput:
        """Run the rounds of attention.

        Args:
            inputs: ``(B, N, in_dim)`` tokens (positions already embedded, e.g. by
                :class:`~geolayers.slots.CNNEncoder`).
            slots: ``(B, K, D)`` initial slots. (default: from the initialisation)
            generator: random source of sampled initial slots. (default: torch's global one)
            iters: rounds for this call, e.g. more at test time than in training (slot
                attention trained with 3 rounds keeps refining its slots with more; Locatello
                et al. 2020). (default: ``self.iters``)
        """
        rounds = self.iters if iters is None else check_positive_int("iters", iters)
        batch, _ = check_inputs(inputs, self.in_dim, slots, self.num_slots, self.dim)
        init = self.slot_init(batch, generator) if slots is None else slots
        x = self.norm_inputs(inputs)
        k, v = self.to_k(x), self.to_v(x)
        slots = init
        attn = inputs.new_empty(0)
        if self.implicit_grad:
            with torch.no_grad():
                for _ in range(rounds - 1):
                    slots, _ = self._round(slots, k, v)
            slots = straight_through(slots, init)
            slots, attn = self._round(slots, k, v)
        else:
            for _ in range(rounds):
                slots, attn = self._round(slots, k, v)
        return SlotAttentionOutput(slots, attn, None)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.in_dim} -> {self.num_slots} slots x {self.dim}, "
            f"iters={self.iters}, init={self.slot_init.init!r}, "
            f"implicit_grad={self.implicit_grad})"
        )


__all__ = ["SlotAttention", "SlotAttentionOutput"]
