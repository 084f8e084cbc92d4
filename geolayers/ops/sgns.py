r"""Skip-gram with negative sampling over walk corpora: ``sgns_train``, trained in place.

The model of word2vec's skip-gram ("Distributed Representations of Words and Phrases and their
Compositionality", Mikolov et al., NeurIPS 2013, eq. 4), as node2vec (Grover and Leskovec,
KDD 2016) and DeepWalk use it on random walks: for a center token :math:`u` and a context
:math:`o` with :math:`K` negatives :math:`n_k` drawn from a noise distribution,

.. math::
    L(u, o) = -\log\sigma(\langle x_u, y_o\rangle) - \sum_k \log\sigma(-\langle x_u, y_{n_k}\rangle),

with :math:`x` the input and :math:`y` the output table. Each pair takes word2vec's SGD step:
the output rows one after the other (:math:`y \mathrel{+}= g\, x_u`, :math:`g = \eta(\ell -
\sigma(f))`), then :math:`x_u \mathrel{+}= \sum g\, y` with the output rows as they were read.
Windows, word2vec's reduced window and frequent-token subsampling ([1], sec. 2.3) follow
``csrc/cpu/sgns.cpp``; with a context CSR the outputs of a context token are its features
(MUSAE and AE, Rozemberczki et al., "Multi-scale Attributed Node Embedding", 2021), and
``exact_distance`` keeps only the contexts at distance ``window`` (MUSAE's scale ``r``).

Every draw comes from a per-walk stream (SplitMix64 seeded by Philox from ``seed`` and the
global walk index), so one thread gives the same result on every run and the reference
:func:`sgns_train_reference` reproduces it step by step; with several threads the kernel runs
walks concurrently without locks (Hogwild, as word2vec and gensim do).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from geolayers._checks import describe
from geolayers.ops._extension import EXTENSION_LOADED, use_kernel

_OP = "sgns_train"
_MASK64 = (1 << 64) - 1


def alias_table(weights: Tensor) -> tuple[Tensor, Tensor]:
    """Walker's alias table of a discrete distribution, built by Vose's method.

    ``weights: (V,)`` non-negative, not all zero -> ``(prob (V,) float64, alias (V,) int64)``:
    draw a column ``i`` uniformly, keep it with probability ``prob[i]``, else take
    ``alias[i]`` ("A Linear Algorithm for Generating Random Numbers with a Given Distribution",
    Vose, IEEE TSE 1991).

    Example:
        >>> prob, alias = alias_table(torch.tensor([1.0, 3.0]))
        >>> prob.tolist(), alias.tolist()
        ([0.5, 1.0], [1, 1])
    """
    if not isinstance(weights, Tensor) or weights.dim() != 1 or weights.numel() == 0:
        raise ValueError(f"weights must be a non-empty 1-D tensor (V,), got {describe(weights)}")
    w = weights.detach().double().cpu()
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()) or float(w.sum()) <= 0:
        raise ValueError("weights must be finite, non-negative and not all zero")
    v = w.numel()
    scaled = (w * (v / w.sum())).tolist()
    alias = list(range(v))
    small = [i for i, s in enumerate(scaled) if s < 1.0]
    large = [i for i, s in enumerate(scaled) if s >= 1.0]
    while small and large:
        s, big = small.pop(), large[-1]
        alias[s] = big
        scaled[big] -= 1.0 - scaled[s]
        if scaled[big] < 1.0:
            small.append(large.pop())
    for i in small + large:  # leftovers are 1 up to rounding
        scaled[i] = 1.0
    return (
        torch.tensor(scaled, dtype=torch.float64, device=weights.device),
        torch.tensor(alias, dtype=torch.long, device=weights.device),
    )


def subsample_keep_prob(counts: Tensor, sample: float = 1e-3) -> Tensor:
    r"""word2vec's probability of keeping each occurrence of a token, ``(V,)`` float64.

    :math:`\min(1, (\sqrt{c / (s T)} + 1)\, s T / c)` for a token seen :math:`c` times among
    :math:`T`, with ``sample`` :math:`= s` (word2vec's and gensim's formula; the paper's
    eq. 5 is its simpler form). ``sample = 0`` keeps everything.

    Example:
        >>> subsample_keep_prob(torch.tensor([1.0, 999.0]), 1e-2).tolist()[0]
        1.0
    """
    if not (0 <= sample < math.inf):
        raise ValueError(f"sample must be non-negative and finite, got {sample}")
    c = counts.double()
    if sample == 0:
        return torch.ones_like(c)
    threshold = sample * float(c.sum())
    keep = ((c / threshold).sqrt() + 1) * threshold / c.clamp_min(1e-300)
    return keep.clamp(max=1.0)


def _check(
    input: object,
    output: object,
    walks: object,
    alias: object,
    keep_prob: object,
    context_ptr: object,
    context_idx: object,
    window: object,
    negatives: object,
    lr_start: object,
    lr_end: object,
    seed: object,
    offset: object,
) -> None:
    for name, t in (("input", input), ("output", output)):
        if not isinstance(t, Tensor) or t.dtype not in (torch.float32, torch.float64):
            raise TypeError(f"{_OP}: {name} must be a float32 or float64 tensor, got {describe(t)}")
        if t.dim() != 2 or not t.is_contiguous():
            raise ValueError(f"{_OP}: {name} must be a contiguous 2-D tensor, got {describe(t)}")
    if input.dtype != output.dtype or input.shape[1] != output.shape[1]:
        raise ValueError(
            f"{_OP}: input (V_in, D) and output (V_out, D) need one dtype and one D, got "
            f"{describe(input)} and {describe(output)}"
        )
    if not isinstance(walks, Tensor) or walks.dtype != torch.int64 or walks.dim() != 2:
        raise TypeError(f"{_OP}: walks must be an int64 tensor (W, L), got {describe(walks)}")
    if not walks.is_contiguous():
        raise ValueError(f"{_OP}: walks must be contiguous")
    v_in, v_out = input.shape[0], output.shape[0]
    if walks.numel() and not torch.compiler.is_compiling():
        lo, hi = int(walks.min()), int(walks.max())
        if lo < -1 or hi >= v_in:
            raise IndexError(
                f"{_OP}: walks values must lie in [-1, {v_in}) (-1 ends a walk), got [{lo}, {hi}]"
            )
    if not (isinstance(alias, tuple) and len(alias) == 2):
        raise TypeError(f"{_OP}: alias must be the pair (prob, alias) of alias_table")
    prob, idx = alias
    if not (isinstance(prob, Tensor) and prob.dtype == torch.float64 and prob.shape == (v_out,)):
        raise ValueError(f"{_OP}: alias prob must be float64 ({v_out},), got {describe(prob)}")
    if not (isinstance(idx, Tensor) and idx.dtype == torch.int64 and idx.shape == (v_out,)):
        raise ValueError(f"{_OP}: alias index must be int64 ({v_out},), got {describe(idx)}")
    if keep_prob is not None and not (
        isinstance(keep_prob, Tensor)
        and keep_prob.dtype == torch.float64
        and keep_prob.shape == (v_in,)
    ):
        raise ValueError(
            f"{_OP}: keep_prob must be None or float64 ({v_in},), got {describe(keep_prob)}"
        )
    if (context_ptr is None) != (context_idx is None):
        raise ValueError(f"{_OP}: give both context_ptr and context_idx, or neither")
    if context_ptr is None:
        if v_out != v_in:
            raise ValueError(
                f"{_OP}: without contexts, input and output need one vocabulary size, got "
                f"{v_in} and {v_out}"
            )
    else:
        for name, t, shape in (
            ("context_ptr", context_ptr, (v_in + 1,)),
            ("context_idx", context_idx, None),
        ):
            if not isinstance(t, Tensor) or t.dtype != torch.int64 or t.dim() != 1:
                raise TypeError(f"{_OP}: {name} must be a 1-D int64 tensor, got {describe(t)}")
            if shape is not None and t.shape != shape:
                raise ValueError(f"{_OP}: {name} must have shape {shape}, got {tuple(t.shape)}")
        if int(context_ptr[0]) != 0 or int(context_ptr[-1]) != context_idx.numel():
            raise ValueError(f"{_OP}: context_ptr must start at 0 and end at {context_idx.numel()}")
        if context_idx.numel() and (int(context_idx.min()) < 0 or int(context_idx.max()) >= v_out):
            raise IndexError(f"{_OP}: context_idx values must lie in [0, {v_out})")
    for name, value, low in (("window", window, 1), ("negatives", negatives, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{_OP}: {name} must be an int >= {low}, got {value!r}")
    for name, value in (("lr_start", lr_start), ("lr_end", lr_end)):
        if not (isinstance(value, (int, float)) and 0 <= value < math.inf):
            raise ValueError(f"{_OP}: {name} must be non-negative and finite, got {value!r}")
    for name, value in (("seed", seed), ("offset", offset)):
        if isinstance(value, bool) or not isinstance(value, int) or not (0 <= value < 2**63):
            raise ValueError(f"{_OP}: {name} must be an int in [0, 2**63), got {value!r}")


def sgns_train(
    input: Tensor,
    output: Tensor,
    walks: Tensor,
    alias: tuple[Tensor, Tensor],
    *,
    window: int = 10,
    negatives: int = 5,
    lr_start: float = 0.025,
    lr_end: float = 0.0001,
    keep_prob: Tensor | None = None,
    context_ptr: Tensor | None = None,
    context_idx: Tensor | None = None,
    shrink_window: bool = True,
    exact_distance: bool = False,
    seed: int = 0,
    offset: int = 0,
    compute_loss: bool = False,
) -> Tensor:
    """Train ``input`` and ``output`` in place on the skip-gram pairs of ``walks``.

    Args:
        input: ``(V_in, D)`` center-token table, float32 or float64, contiguous.
        output: ``(V_out, D)`` context table (word2vec's ``syn1neg``).
        walks: ``(W, L)`` int64 tokens; ``-1`` ends a walk (dead ends of random walks).
        alias: ``(prob, alias)`` of :func:`alias_table` over the ``V_out`` outputs: the
            noise distribution of negatives (word2vec: counts ** 0.75).
        window: largest distance between center and context. (default: ``10``)
        negatives: negatives per pair. (default: ``5``)
        lr_start, lr_end: learning rate, decayed linearly over the walks of this call.
            (default: ``0.025``, ``0.0001``)
        keep_prob: ``(V_in,)`` float64 subsampling probabilities
            (:func:`subsample_keep_prob`), or ``None`` to keep every token.
        context_ptr, context_idx: CSR ``(V_in + 1,)``, ``(C,)`` of the outputs of each
            context token (its features), or ``None``: the output is the token itself.
        shrink_window: word2vec's reduced window (uniform in ``1..window``). (default: ``True``)
        exact_distance: only contexts at distance exactly ``window``. (default: ``False``)
        seed: stream seed. (default: ``0``)
        offset: global index of the first walk (for corpora trained in chunks). (default: ``0``)
        compute_loss: also sum the pair losses (costs two more logs per target).

    Returns:
        ``(2,)`` float64: the loss summed over pairs (``0`` without ``compute_loss``), and the
        number of positive pairs trained.

    Example:
        >>> x, y = torch.rand(3, 4) / 4, torch.zeros(3, 4)
        >>> sgns_train(x, y, torch.tensor([[0, 1, 2]]), alias_table(torch.ones(3)), window=1)[1]
        tensor(4., dtype=torch.float64)
    """
    _check(
        input, output, walks, alias, keep_prob, context_ptr, context_idx, window, negatives,
        lr_start, lr_end, seed, offset,
    )  # fmt: skip
    if not use_kernel(_OP, input.device):
        return sgns_train_reference(
            input, output, walks, alias, window=window, negatives=negatives, lr_start=lr_start,
            lr_end=lr_end, keep_prob=keep_prob, context_ptr=context_ptr,
            context_idx=context_idx, shrink_window=shrink_window,
            exact_distance=exact_distance, seed=seed, offset=offset, compute_loss=compute_loss,
        )  # fmt: skip
    empty = walks.new_empty(0)
    return torch.ops.geolayers.sgns_train.default(
        input, output, walks,
        empty if context_ptr is None else context_ptr,
        empty if context_idx is None else context_idx,
        alias[0], alias[1],
        walks.new_empty(0, dtype=torch.float64) if keep_prob is None else keep_prob,
        window, shrink_window, exact_distance, negatives, float(lr_start), float(lr_end),
        seed, offset, compute_loss,
    )  # fmt: skip


# --------------------------------------------------------------------- the reference


def _philox_u64(key: int, c0: int, c1: int) -> int:
    """Philox4x32-10 of ``csrc/include/philox.h``: the first two output words as 64 bits."""
    m32 = 0xFFFFFFFF
    k0, k1 = key & m32, (key >> 32) & m32
    x0, x1, x2, x3 = c0 & m32, (c0 >> 32) & m32, c1 & m32, (c1 >> 32) & m32
    for _ in range(10):
        p0, p1 = 0xD2511F53 * x0, 0xCD9E8D57 * x2
        y0 = ((p1 >> 32) ^ x1 ^ k0) & m32
        y2 = ((p0 >> 32) ^ x3 ^ k1) & m32
        x1, x3, x0, x2 = p1 & m32, p0 & m32, y0, y2
        k0, k1 = (k0 + 0x9E3779B9) & m32, (k1 + 0xBB67AE85) & m32
    return (x0 << 32) | x1


class _Stream:
    """SplitMix64 of ``csrc/include/sgns.h``, seeded the same way."""

    def __init__(self, seed: int, walk: int) -> None:
        self.state = _philox_u64(seed, walk, 0x53474E53)

    def next(self) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & _MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        return z ^ (z >> 31)


def sgns_train_reference(
    input: Tensor,
    output: Tensor,
    walks: Tensor,
    alias: tuple[Tensor, Tensor],
    *,
    window: int = 10,
    negatives: int = 5,
    lr_start: float = 0.025,
    lr_end: float = 0.0001,
    keep_prob: Tensor | None = None,
    context_ptr: Tensor | None = None,
    context_idx: Tensor | None = None,
    shrink_window: bool = True,
    exact_distance: bool = False,
    seed: int = 0,
    offset: int = 0,
    compute_loss: bool = False,
) -> Tensor:
    """Pure-Python reference of :func:`sgns_train`: the kernel's one-thread schedule, step by step.

    Draws the same random numbers as the kernels (Philox and SplitMix64 in Python integers)
    and applies the same updates in the same order, so it equals the one-thread kernel up to
    floating-point rounding. Slow: for tests and tiny corpora. Arguments as :func:`sgns_train`.

    Example:
        >>> x, y = torch.rand(3, 4) / 4, torch.zeros(3, 4)
        >>> sgns_train_reference(x, y, torch.tensor([[0, 1]]), alias_table(torch.ones(3)),
        ...                      window=1)[1]
        tensor(2., dtype=torch.float64)
    """
    prob, alias_idx = (a.tolist() for a in alias)
    keep = None if keep_prob is None else keep_prob.tolist()
    ptr = None if context_ptr is None else context_ptr.tolist()
    idx = None if context_idx is None else context_idx.tolist()
    v_out = output.shape[0]
    num_walks = walks.shape[0]
    loss, pairs = 0.0, 0

    def log_sigmoid(f: float) -> float:
        return -math.log1p(math.exp(-f)) if f >= 0 else f - math.log1p(math.exp(f))

    def train_pair(center: int, o: int, lr: float, rng: _Stream) -> None:
        nonlocal loss, pairs
        targets = [o]
        for _ in range(negatives):
            bits = rng.next()
            col = ((bits >> 32) * v_out) >> 32
            coin = (bits & 0xFFFFFFFF) * 2.0**-32
            target = col if coin < prob[col] else alias_idx[col]
            if target != o:
                targets.append(target)
        x = input[center]
        h = torch.zeros_like(x)
        for k, target in enumerate(targets):
            y = output[target]
            f = float((x * y).sum())
            label = 1.0 if k == 0 else 0.0
            g = lr * (label - 1.0 / (1.0 + math.exp(-f)))
            if compute_loss:
                loss -= log_sigmoid(f) if k == 0 else log_sigmoid(-f)
            h += g * y
            y += g * x
        x += h
        pairs += 1

    def train_context(center: int, token: int, lr: float, rng: _Stream) -> None:
        if ptr is None:
            train_pair(center, token, lr, rng)
        else:
            for e in range(ptr[token], ptr[token + 1]):
                train_pair(center, idx[e], lr, rng)

    with torch.no_grad():
        for w in range(num_walks):
            lr = lr_start + (lr_end - lr_start) * (w / num_walks)
            if input.dtype == torch.float32:  # the kernel's lr is a float in float32
                lr = float(torch.tensor(lr, dtype=torch.float32))
            rng = _Stream(seed, offset + w)
            kept = []
            for token in walks[w].tolist():
                if token < 0:
                    break
                if keep is not None and not ((rng.next() >> 11) * 2.0**-53 < keep[token]):
                    continue
                kept.append(token)
            n = len(kept)
            for i in range(n):
                if exact_distance:
                    for j in (i - window, i + window):
                        if 0 <= j < n:
                            train_context(kept[i], kept[j], lr, rng)
                    continue
                reach = window - (((rng.next() * window) >> 64) if shrink_window else 0)
                for j in range(max(0, i - reach), min(n - 1, i + reach) + 1):
                    if j != i:
                        train_context(kept[i], kept[j], lr, rng)
    return torch.tensor([loss, float(pairs)], dtype=torch.float64)


def sgns_pair_loss(input: Tensor, output: Tensor, center: Tensor, targets: Tensor) -> Tensor:
    """The pair loss of the module docstring, differentiable by autograd, summed over pairs.

    Shapes: ``input (V_in, D)``, ``output (V_out, D)``, ``center (P,)`` int64, ``targets
    (P, 1 + K)`` int64 (the context first, then the negatives) -> 0-dim. One kernel pair
    update with distinct targets is one SGD step of this loss.

    Example:
        >>> x, y = torch.zeros(2, 3), torch.zeros(2, 3)
        >>> round(float(sgns_pair_loss(x, y, torch.tensor([0]), torch.tensor([[1, 0]]))), 4)
        1.3863
    """
    f = (input[center].unsqueeze(1) * output[targets]).sum(-1)  # (P, 1 + K)
    sign = torch.ones_like(f)
    sign[:, 1:] = -1
    return -torch.nn.functional.logsigmoid(sign * f).sum()


if EXTENSION_LOADED:

    @torch.library.register_fake("geolayers::sgns_train")
    def _sgns_train_fake(
        input, output, walks, context_ptr, context_idx, alias_prob, alias_idx, keep_prob,
        window, shrink_window, exact_distance, negatives, lr_start, lr_end, seed, offset,
        compute_loss,
    ):  # fmt: skip
        return input.new_empty((2,), dtype=torch.float64)
