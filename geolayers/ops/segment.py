"""Segment reductions over CSR offsets: ``segment_reduce_csr`` and its pure-PyTorch reference.

A batch of ragged sets stored row-wise as ``src: (N, *)`` with offsets ``ptr: (S + 1,)``
(PyTorch Geometric's ``ptr``) is reduced set by set to ``(S, *)``. Segment ``s`` holds rows
``ptr[s] : ptr[s + 1]``; an empty segment reduces to 0 and passes no gradient.
"""

from __future__ import annotations

import torch
from torch import Tensor

from geolayers.ops._extension import EXTENSION_LOADED, use_kernel

REDUCTIONS = ("sum", "mean", "max", "min")


def _check_inputs(src: Tensor, ptr: Tensor, reduce: str) -> None:
    if not isinstance(src, Tensor):
        raise TypeError(f"src must be a torch.Tensor, got {type(src).__name__}")
    if not isinstance(ptr, Tensor):
        raise TypeError(f"ptr must be a torch.Tensor, got {type(ptr).__name__}")
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}")
    if not src.is_floating_point():
        raise TypeError(f"src must be a floating-point tensor, got dtype {src.dtype}")
    if ptr.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"ptr must be an int64 (or int32) tensor of offsets, got dtype {ptr.dtype}")
    if src.dim() < 1:
        raise ValueError(f"src must have at least one dimension (N, *), got a {src.dim()}-d tensor")
    if ptr.dim() != 1 or ptr.numel() < 1:
        raise ValueError(
            f"ptr must be 1-D of shape (S + 1,) with S >= 0, got shape {tuple(ptr.shape)}"
        )
    if ptr.device != src.device:
        raise ValueError(f"ptr must be on the device of src ({src.device}), got {ptr.device}")
    if torch.compiler.is_compiling():
        return  # the content checks below read values, which would break the graph
    first, last = int(ptr[0]), int(ptr[-1])
    if first != 0:
        raise ValueError(f"ptr[0] must be 0, got {first}")
    if last != src.shape[0]:
        raise ValueError(
            f"ptr[-1] must equal the number of rows of src ({src.shape[0]}), got {last}"
        )
    if ptr.numel() > 1:
        drops = (ptr[1:] < ptr[:-1]).nonzero()
        if drops.numel() > 0:
            s = int(drops[0, 0])
            raise ValueError(
                f"ptr must be non-decreasing, but ptr[{s}] = {int(ptr[s])} > "
                f"ptr[{s + 1}] = {int(ptr[s + 1])}"
            )


def segment_reduce_csr_reference(src: Tensor, ptr: Tensor, reduce: str = "sum") -> Tensor:
    """Pure-PyTorch reference of :func:`segment_reduce_csr` (differentiable by autograd).

    Shapes: ``src: (N, *)``, ``ptr: (S + 1,)`` -> ``(S, *)``. Ties in ``max``/``min`` share the
    gradient equally here (``scatter_reduce`` semantics), while the kernel gives it to the first
    row; the two agree wherever the extremum is unique.

    Example:
        >>> segment_reduce_csr_reference(torch.ones(3, 2), torch.tensor([0, 1, 3]))
        tensor([[1., 1.],
                [2., 2.]])
    """
    ptr = ptr.long()
    num_segments = ptr.numel() - 1
    counts = ptr[1:] - ptr[:-1]
    index = torch.repeat_interleave(torch.arange(num_segments, device=src.device), counts)
    out_shape = (num_segments, *src.shape[1:])
    if reduce in ("sum", "mean"):
        out = src.new_zeros(out_shape).index_add(0, index, src)
        if reduce == "mean":
            shape = (num_segments,) + (1,) * (src.dim() - 1)
            out = out / counts.clamp_min(1).to(src.dtype).view(shape)
        return out
    expanded = index.view((-1,) + (1,) * (src.dim() - 1)).expand_as(src)
    out = src.new_zeros(out_shape).scatter_reduce(
        0, expanded, src, reduce="amax" if reduce == "max" else "amin", include_self=False
    )
    return out


def segment_reduce_csr(src: Tensor, ptr: Tensor, reduce: str = "sum") -> Tensor:
    r"""Reduce consecutive row segments of ``src`` given by CSR offsets ``ptr``.

    .. math::
        \mathrm{out}_s = \bigoplus_{i = \mathrm{ptr}_s}^{\mathrm{ptr}_{s+1} - 1} \mathrm{src}_i,
        \qquad \oplus \in \{\textstyle\sum, \mathrm{mean}, \max, \min\}

    Runs the compiled kernel (one pass over the rows, forward and backward) when the extension
    has one for ``src.device``, else the pure-PyTorch reference (see
    :func:`geolayers.ops.backend`). ``max``/``min`` send the gradient to the first row that
    attains the extremum; NaN propagates.

    Args:
        src: values, ``(N, *)``, floating point.
        ptr: offsets, ``(S + 1,)`` int64, ``ptr[0] == 0``, non-decreasing, ``ptr[-1] == N``.
        reduce: ``"sum"``, ``"mean"``, ``"max"`` or ``"min"``. (default: ``"sum"``)

    Returns:
        ``(S, *)``; empty segments give 0.

    Example:
        >>> segment_reduce_csr(torch.arange(6.0).view(3, 2), torch.tensor([0, 2, 2, 3]), "max")
        tensor([[2., 3.],
                [0., 0.],
                [4., 5.]])
    """
    _check_inputs(src, ptr, reduce)
    ptr = ptr.long()
    if not use_kernel("segment_reduce_csr", src.device):
        return segment_reduce_csr_reference(src, ptr, reduce)
    trailing = src.shape[1:]
    flat = src.reshape(src.shape[0], trailing.numel())
    out, _ = torch.ops.geolayers.segment_reduce_csr.default(flat, ptr, reduce)
    return out.view(ptr.numel() - 1, *trailing)


# --- torch.library registrations: autograd and fake kernels for the compiled ops ------------

if EXTENSION_LOADED:

    @torch.library.register_fake("geolayers::segment_reduce_csr")
    def _segment_reduce_csr_fake(src: Tensor, ptr: Tensor, reduce: str):
        torch._check(src.dim() == 2, lambda: "src must be 2-D")
        torch._check(ptr.dim() == 1, lambda: "ptr must be 1-D")
        num_segments = ptr.shape[0] - 1
        out = src.new_empty((num_segments, src.shape[1]))
        if reduce in ("max", "min"):
            arg = ptr.new_empty((num_segments, src.shape[1]))
        else:
            arg = ptr.new_empty((0,))
        return out, arg

    @torch.library.register_fake("geolayers::segment_reduce_csr_backward")
    def _segment_reduce_csr_backward_fake(grad_out, ptr, arg, num_rows, reduce):
        return grad_out.new_empty((num_rows, grad_out.shape[1]))

    def _setup_context(ctx, inputs, output):
        src, ptr, reduce = inputs
        _, arg = output
        ctx.save_for_backward(ptr, arg)
        ctx.num_rows = src.shape[0]
        ctx.reduce = reduce
        ctx.mark_non_differentiable(arg)

    def _backward(ctx, grad_out, _grad_arg):
        ptr, arg = ctx.saved_tensors
        grad_src = None
        if ctx.needs_input_grad[0]:
            grad_src = torch.ops.geolayers.segment_reduce_csr_backward.default(
                grad_out, ptr, arg, ctx.num_rows, ctx.reduce
            )
        return grad_src, None, None

    torch.library.register_autograd(
        "geolayers::segment_reduce_csr", _backward, setup_context=_setup_context
    )

    # The backward is linear in grad_out, so its own derivative is the adjoint map: a segment
    # sum/mean for sum/mean, and a gather at arg for max/min. This makes double backward work.
    def _setup_backward_context(ctx, inputs, output):
        _, ptr, arg, _, reduce = inputs
        ctx.save_for_backward(ptr, arg)
        ctx.reduce = reduce

    def _backward_of_backward(ctx, grad_grad_src):
        ptr, arg = ctx.saved_tensors
        if ctx.reduce in ("sum", "mean"):
            grad_grad_out = torch.ops.geolayers.segment_reduce_csr.default(
                grad_grad_src.contiguous(), ptr, ctx.reduce
            )[0]
        elif grad_grad_src.shape[0] == 0:
            grad_grad_out = grad_grad_src.new_zeros(arg.shape)
        else:
            picked = grad_grad_src.gather(0, arg.clamp_min(0))
            grad_grad_out = torch.where(arg >= 0, picked, torch.zeros_like(picked))
        return grad_grad_out, None, None, None, None

    torch.library.register_autograd(
        "geolayers::segment_reduce_csr_backward",
        _backward_of_backward,
        setup_context=_setup_backward_context,
    )
