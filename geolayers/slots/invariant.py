r"""Invariant slot attention (Biza et al. 2023): slot attention with slot-centric frames."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

from geolayers._checks import check_positive_int
from geolayers.slots.attention import (
    SlotAttentionOutput,
    SlotInit,
    SlotUpdate,
    check_inputs,
    normalise_over_tokens,
    straight_through,
)
from geolayers.slots.frames import (
    SlotPose,
    check_grid,
    check_mode,
    check_pose,
    pose_from_attention,
    relative_grid,
    sample_pose,
)

#: :math:`\delta` of each mode when none is given: 5 for the modes with a scale (the paper's
#: configs), so that a slot of scale 0.1 sees its neighbourhood in coordinates of order 1;
#: 1 for "T", whose offsets are already of order 1.
DEFAULT_SCALES_FACTOR = {"T": 1.0, "TS": 5.0, "TSR": 5.0}


class _TokenTerms(NamedTuple):
    """Per-token terms of the factored key/value MLP (see ``InvariantSlotAttention._hidden``)
    for ``T`` token sets at once (keys and values: ``T = 2``): ``first = A e: (B, N, T, H)``,
    ``cross = W_p~^T e: (B, N, T, 2)``, ``square = |e|^2: (B, N, T)``."""

    first: Tensor
    cross: Tensor
    square: Tensor


class _MlpConstants(NamedTuple):
    """Parameter products of the factored key/value MLP: centred position weight ``proj: (D,
    2)``, ``a = W_1 diag(gamma): (H, D)``, ``code = a @ proj: (H, 2)``, ``gram = proj^T proj``
    and ``shift = W_1 beta + b_1: (H,)``."""

    proj: Tensor
    a: Tensor
    code: Tensor
    gram: Tensor
    shift: Tensor


def _per_slot_matrix(code: Tensor, shift: Tensor, count: int) -> Tensor:
    """``(2 + T, T H)``: ``[r, sigma_1, ..., sigma_T]`` times it is ``code r + shift sigma_t``
    for every token set ``t`` (see ``InvariantSlotAttention._hidden``)."""
    return torch.cat([code.T.repeat(1, count), torch.block_diag(*[shift[None]] * count)])


class _FrameTerms(NamedTuple):
    """Per-(slot, token) terms of one round, shared by keys and values: relative grid
    ``rel: (B, K, N, 2)`` and its quadratic form ``quad = rel^T gram rel: (B, K, N)``."""

    rel: Tensor
    quad: Tensor


def default_scales_factor(mode: str, scales_factor: float | None) -> float:
    """``scales_factor`` checked to be positive, or the mode's default."""
    if scales_factor is None:
        return DEFAULT_SCALES_FACTOR[check_mode(mode)]
    if isinstance(scales_factor, bool) or not isinstance(scales_factor, (int, float)):
        raise TypeError(f"scales_factor must be a float, got {type(scales_factor).__name__}")
    if not (0 < scales_factor < math.inf):
        raise ValueError(f"scales_factor must be positive and finite, got {scales_factor}")
    return float(scales_factor)


class InvariantSlotAttention(nn.Module):
    r"""Invariant slot attention from `"Invariant Slot Attention: Object Discovery with
    Slot-Centric Reference Frames" <https://arxiv.org/abs/2302.04973>`_ (Biza et al. 2023).

    Every slot carries features and a :class:`~geolayers.slots.SlotPose`. Each round expresses
    the token coordinates ``grid`` in every slot's frame (:func:`~geolayers.slots.relative_grid`)
    and adds their projection to the keys and values, which then pass a small MLP (the
    per-slot counterpart of slot attention's position embedding):

    .. math::
        k_{kn} = f\big(W_k \mathrm{LN}(x_n) + h(g^{rel}_{kn})\big), \quad
        v_{kn} = f\big(W_v \mathrm{LN}(x_n) + h(g^{rel}_{kn})\big), \quad
        A_{kn} = \operatorname{softmax}_K \frac{q(\mathrm{LN}(s_k)) \cdot k_{kn}}{\sqrt D}

    then, as in slot attention, the attention is normalised over tokens, the slots are updated
    with a GRU and a residual MLP, and the pose is re-estimated from the attention
    (:func:`~geolayers.slots.pose_from_attention`). After the last update one more round of
    attention updates the pose only. Since the keys and values see coordinates only relative
    to the slot, translating (``"T"``), also scaling (``"TS"``), or also rotating (``"TSR"``)
    the token coordinates together with the initial poses leaves the slot features unchanged
    and transforms the returned poses the same way (rotations: while the slot angles stay
    inside :math:`(-45^\circ, 45^\circ]`).

    The modes are the official code's ``SlotAttentionTranslEquiv`` (``"T"``),
    ``SlotAttentionTranslScaleEquiv`` (``"TS"``) and ``SlotAttentionTranslRotScaleEquiv``
    (``"TSR"``). Initial features are learned per slot by default; initial poses are sampled
    with :func:`~geolayers.slots.sample_pose` (position uniform in :math:`[-1, 1]^2`, scale
    ``init_scale``, angle uniform in :math:`\pm 45^\circ`) unless passed in.

    :math:`h` is a linear map and :math:`f` is LayerNorm, Linear, ReLU, Linear, shared by keys
    and values. Evaluated literally, :math:`f` costs ``2 D H`` multiply-adds for every slot and
    token in every round, ``K`` times what slot attention spends on its tokens. Since every
    per-slot input of :math:`f` is a 2-vector (the relative coordinate), the module evaluates
    the same function in a factored form: the per-token products once per forward pass, and
    per slot and token a few operations per hidden unit (see ``_hidden``; a test checks it
    against the literal form).

    Args:
        num_slots: ``K``.
        dim: slot and attention width ``D``.
        iters: rounds that update the features, ``>= 1``; one more updates the pose.
            (default: ``3``)
        mode: ``"T"``, ``"TS"`` or ``"TSR"``. (default: ``"TS"``)
        in_dim: width of the input tokens. (default: ``dim``)
        hidden_dim: width of the residual MLP of the slot update. (default: ``2 * dim``)
        grid_hidden_dim: width of the MLP :math:`f` after the position encoding.
            (default: ``dim``)
        scales_factor: :math:`\delta` of :func:`~geolayers.slots.relative_grid`. (default:
            ``5.0`` for ``"TS"`` and ``"TSR"``, ``1.0`` for ``"T"``)
        init: initial features, ``"learned"`` or ``"sampled"`` (see
            :class:`~geolayers.slots.SlotAttention`). (default: ``"learned"``)
        init_scale: scale of the sampled initial poses. (default: ``0.1``)
        min_scale: lower clamp of the estimated scales. (default: ``1e-3``)
        implicit_grad: backpropagate through the last feature round only (Chang et al.
            2022). (default: ``False``)
        eps: :math:`\epsilon` of the weighted mean over tokens. (default: ``1e-8``)

    Shapes:
        ``inputs: (B, N, in_dim)``, ``grid: (N, 2)`` or ``(B, N, 2)`` ->
        :class:`~geolayers.slots.SlotAttentionOutput` with ``slots: (B, K, D)``,
        ``attn: (B, K, N)`` (the pose round's) and ``pose`` (``(B, K, 2)`` positions and
        scales, ``(B, K, 2, 2)`` rotations).

    Example:
        >>> isa = InvariantSlotAttention(4, 16, mode="TSR")
        >>> isa(torch.randn(2, 25, 16), geolayers.slots.position_grid(5, 5)).pose.position.shape
        torch.Size([2, 4, 2])
    """

    def __init__(
        self,
        num_slots: int,
        dim: int,
        iters: int = 3,
        *,
        mode: str = "TS",
        in_dim: int | None = None,
        hidden_dim: int | None = None,
        grid_hidden_dim: int | None = None,
        scales_factor: float | None = None,
        init: str = "learned",
        init_scale: float = 0.1,
        min_scale: float = 1e-3,
        implicit_grad: bool = False,
        eps: float = 1e-8,
    ) -> None:
        super().__init__()
        self.num_slots = check_positive_int("num_slots", num_slots)
        self.dim = check_positive_int("dim", dim)
        self.iters = check_positive_int("iters", iters)
        self.mode = check_mode(mode)
        self.in_dim = check_positive_int("in_dim", dim if in_dim is None else in_dim)
        hidden_dim = check_positive_int("hidden_dim", 2 * dim if hidden_dim is None else hidden_dim)
        grid_hidden_dim = check_positive_int(
            "grid_hidden_dim", dim if grid_hidden_dim is None else grid_hidden_dim
        )
        self.scales_factor = default_scales_factor(mode, scales_factor)
        for name, value in (("init_scale", init_scale), ("min_scale", min_scale)):
            if not (isinstance(value, (int, float)) and 0 < value < math.inf):
                raise ValueError(f"{name} must be a positive float, got {value!r}")
        self.init_scale, self.min_scale = float(init_scale), float(min_scale)
        self.implicit_grad = bool(implicit_grad)
        self.eps = float(eps)
        self.slot_init = SlotInit(num_slots, dim, init)
        self.norm_inputs = nn.LayerNorm(self.in_dim)
        self.norm_slots = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(self.in_dim, dim, bias=False)
        self.to_v = nn.Linear(self.in_dim, dim, bias=False)
        self.grid_proj = nn.Linear(2, dim)
        self.grid_mlp = nn.Sequential(
            nn.LayerNorm(dim),
            nn.Linear(dim, grid_hidden_dim),
            nn.ReLU(),
            nn.Linear(grid_hidden_dim, dim),
        )
        self.update = SlotUpdate(dim, hidden_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for module in (self.slot_init, self.norm_inputs, self.norm_slots, self.update):
            module.reset_parameters()
        for lin in (self.to_q, self.to_k, self.to_v, self.grid_proj):
            lin.reset_parameters()
        for layer in self.grid_mlp:
            if isinstance(layer, (nn.Linear, nn.LayerNorm)):
                layer.reset_parameters()

    def sample_pose(
        self, batch: int, like: Tensor, generator: torch.Generator | None = None
    ) -> SlotPose:
        """Initial poses for ``batch`` scenes on the dtype and device of ``like``."""
        return sample_pose(
            batch,
            self.num_slots,
            scale=self.init_scale,
            generator=generator,
            dtype=like.dtype,
            device=like.device,
        )

    def _mlp_constants(self) -> _MlpConstants:
        """Parameter products of the factored key/value MLP, once per forward pass."""
        norm, lin1 = self.grid_mlp[0], self.grid_mlp[1]
        # Centred over features: LayerNorm subtracts the mean of z = tokens + W_p r + b_p.
        proj = self.grid_proj.weight - self.grid_proj.weight.mean(dim=0, keepdim=True)
        a = lin1.weight * norm.weight  # W_1 diag(gamma): (H, D)
        return _MlpConstants(
            proj=proj,
            a=a,
            code=a @ proj,
            gram=proj.T @ proj,
            shift=lin1.weight @ norm.bias + lin1.bias,
        )

    def _token_terms(self, tokens: Tensor, consts: _MlpConstants) -> _TokenTerms:
        """The per-token parts of ``grid_mlp(tokens + grid_proj(r))`` for ``tokens: (B, N, T,
        D)`` (``T`` token sets, e.g. keys and values), computed once per forward pass (the
        tokens do not change between rounds); see :meth:`_hidden`."""
        bias_p = self.grid_proj.bias
        centred = tokens - tokens.mean(dim=-1, keepdim=True) + (bias_p - bias_p.mean())
        return _TokenTerms(
            first=centred @ consts.a.T,  # (B, N, T, H)
            cross=centred @ consts.proj,  # (B, N, T, 2)
            square=centred.square().sum(dim=-1),  # (B, N, T)
        )

    def _frame_terms(self, grid: Tensor, pose: SlotPose, consts: _MlpConstants) -> _FrameTerms:
        """The per-(slot, token) parts of the MLP input, shared by keys and values."""
        rel = relative_grid(grid, pose, self.mode, self.scales_factor)
        return _FrameTerms(rel=rel, quad=((rel @ consts.gram) * rel).sum(dim=-1))

    def _hidden(
        self, terms: _TokenTerms, frame: _FrameTerms, consts: _MlpConstants
    ) -> tuple[Tensor, Tensor]:
        r"""``(h, inv)``, ``h: (B, K, N, T, H)`` and ``inv: (B, K, N, T)``, with ``inv * h``
        the hidden layer of ``grid_mlp(t + grid_proj(r))`` for every token set ``t`` of
        ``terms``, ``r`` the relative grid.

        With :math:`z = t + W_p r + b_p`, centred :math:`\tilde z = e + \tilde W_p r` (``e`` the
        centred token plus centred bias), LayerNorm gives :math:`\gamma \odot \tilde z /
        \sigma + \beta` with :math:`\sigma^2 = (|e|^2 + 2 (\tilde W_p^\top e) \cdot r +
        r^\top \tilde W_p^\top \tilde W_p r) / D + \epsilon`, so the hidden layer is
        :math:`\mathrm{ReLU}(A e + A \tilde W_p r + c\,\sigma) / \sigma` with
        :math:`A = W_1 \operatorname{diag}\gamma`, :math:`c = W_1 \beta + b_1`. Every
        per-(slot, token) term is a 2-vector, so no ``(B, K, N, D)`` tensor is formed and the
        cost per slot and token is a few operations per hidden unit instead of ``2 D``
        multiply-adds; the result is the same function (:meth:`_reference_mlp` is the
        literal one, for tests). The per-slot part :math:`A \tilde W_p r + c\,\sigma` of all
        ``T`` sets is one product of ``[r, \sigma_1, ..., \sigma_T]`` with a shared
        ``(2 + T, T H)`` matrix, so each hidden unit costs one pass for that product, one for
        adding :math:`A e` and one for the ReLU.
        """
        count = terms.square.shape[-1]
        rel = frame.rel
        # (B, K, N, T): |e|^2 + 2 (W_p~^T e) . r + r^T W_p~^T W_p~ r.
        cross = (terms.cross[:, None] * rel[..., None, :]).sum(dim=-1)
        var = (2 * cross + terms.square[:, None] + frame.quad[..., None]) / self.dim
        sigma = (var.clamp_min(0) + self.grid_mlp[0].eps).sqrt()
        rhs = _per_slot_matrix(consts.code, consts.shift, count)
        lhs = torch.cat([rel, sigma], dim=-1)  # (B, K, N, 2 + T)
        pre = (lhs @ rhs).unflatten(-1, (count, -1)) + terms.first[:, None]
        return torch.relu_(pre), sigma.reciprocal()

    def _reference_mlp(self, tokens: Tensor, rel: Tensor) -> Tensor:
        """The literal ``grid_mlp(tokens + grid_proj(rel))``: ``(B, K, N, D)``."""
        return self.grid_mlp(tokens[:, None] + self.grid_proj(rel))

    def _attention(self, slots: Tensor, hidden: Tensor, inv: Tensor) -> Tensor:
        """Attention ``(B, K, N)`` normalised over tokens, from the keys' ``(h, inv)`` of
        :meth:`_hidden` (``(B, K, N, H)`` and ``(B, K, N)``)."""
        lin2 = self.grid_mlp[3]
        q = self.to_q(self.norm_slots(slots))
        # q . (W_2 h + b_2) = (W_2^T q) . h + q . b_2: the second layer acts on q, once per slot.
        logits = (hidden @ (q @ lin2.weight)[..., None]).squeeze(-1) * inv
        logits = (logits + (q @ lin2.bias)[..., None]) * self.dim**-0.5
        return normalise_over_tokens(logits.softmax(dim=1), self.eps)

    def _round(
        self,
        slots: Tensor,
        pose: SlotPose,
        terms: _TokenTerms,
        grid: Tensor,
        consts: _MlpConstants,
    ) -> tuple[Tensor, SlotPose]:
        frame = self._frame_terms(grid, pose, consts)
        hidden, inv = self._hidden(terms, frame, consts)  # keys and values
        (hidden_k, hidden_v), (inv_k, inv_v) = hidden.unbind(-2), inv.unbind(-1)
        attn = self._attention(slots, hidden_k, inv_k)
        lin2 = self.grid_mlp[3]
        # sum_n a_n (W_2 h_n + b_2) = W_2 (sum_n a_n h_n) + (sum_n a_n) b_2.
        pooled = ((attn * inv_v)[..., None, :] @ hidden_v).squeeze(-2)
        updates = pooled @ lin2.weight.T + attn.sum(dim=-1, keepdim=True) * lin2.bias
        slots = self.update(slots, updates)
        # The values were read in the frames the attention was computed with; the next round
        # uses the frames this attention implies.
        return slots, pose_from_attention(attn, grid, pose, self.mode, min_scale=self.min_scale)

    def forward(
        self,
        inputs: Tensor,
        grid: Tensor,
        slots: Tensor | None = None,
        pose: SlotPose | None = None,
        *,
        generator: torch.Generator | None = None,
        iters: int | None = None,
    ) -> SlotAttentionOutput:
        """Run the rounds of attention.

        Args:
            inputs: ``(B, N, in_dim)`` tokens without absolute position embedding.
            grid: ``(N, 2)`` or ``(B, N, 2)`` token coordinates (e.g.
                :func:`~geolayers.slots.position_grid`).
            slots: ``(B, K, D)`` initial features. (default: from the initialisation)
            pose: initial :class:`~geolayers.slots.SlotPose`. (default: sampled)
            generator: random source of sampled initial poses and features. (default:
                torch's global one)
            iters: feature rounds for this call (see :class:`~geolayers.slots.SlotAttention`).
                (default: ``self.iters``)
        """
        rounds = self.iters if iters is None else check_positive_int("iters", iters)
        batch, num_tokens = check_inputs(inputs, self.in_dim, slots, self.num_slots, self.dim)
        check_grid(grid, batch, num_tokens, inputs)
        if pose is None:
            pose = self.sample_pose(batch, inputs, generator)
        else:
            check_pose(pose, batch, self.num_slots, inputs)
        init = self.slot_init(batch, generator) if slots is None else slots
        x = self.norm_inputs(inputs)
        consts = self._mlp_constants()
        # Keys and values in one product, as T = 2 token sets: (B, N, 2, D).
        kv = nn.functional.linear(x, torch.cat([self.to_k.weight, self.to_v.weight]))
        terms = self._token_terms(kv.unflatten(-1, (2, self.dim)), consts)
        slots = init
        if self.implicit_grad:
            with torch.no_grad():
                for _ in range(rounds - 1):
                    slots, pose = self._round(slots, pose, terms, grid, consts)
            slots, pose = straight_through(slots, init), pose.detach()
            slots, pose = self._round(slots, pose, terms, grid, consts)
        else:
            for _ in range(rounds):
                slots, pose = self._round(slots, pose, terms, grid, consts)
        # The pose round reads the keys only.
        keys = _TokenTerms(*(t[:, :, :1] for t in terms))
        hidden, inv = self._hidden(keys, self._frame_terms(grid, pose, consts), consts)
        attn = self._attention(slots, hidden[..., 0, :], inv[..., 0])
        pose = pose_from_attention(attn, grid, pose, self.mode, min_scale=self.min_scale)
        return SlotAttentionOutput(slots, attn, pose)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.in_dim} -> {self.num_slots} slots x {self.dim}, "
            f"mode={self.mode!r}, iters={self.iters}, scales_factor={self.scales_factor:g}, "
            f"init={self.slot_init.init!r}, implicit_grad={self.implicit_grad})"
        )


__all__ = ["DEFAULT_SCALES_FACTOR", "InvariantSlotAttention"]
