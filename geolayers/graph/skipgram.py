r"""Skip-gram training of token embeddings on walk corpora: :func:`train_skipgram`.

word2vec's skip-gram with negative sampling, as gensim's ``Word2Vec(sg=1)`` runs it for
node2vec and DeepWalk, with gensim's defaults (window 10, 5 negatives, noise counts ** 0.75,
subsampling 1e-3, learning rate 0.025 decayed linearly to 1e-4 over all epochs, input rows
initialised uniformly in :math:`\pm 0.5 / D`, output rows at zero), on the fused
:func:`geolayers.ops.sgns_train` kernel. With a context CSR the outputs of a context token are
its features instead (MUSAE and AE, :mod:`geolayers.graph.musae`).
"""

from __future__ import annotations

import time
from typing import NamedTuple

import torch
from torch import Tensor
from tqdm.auto import tqdm

from geolayers._checks import check_positive_int
from geolayers.ops.sgns import alias_table, sgns_train, subsample_keep_prob


class SkipGram(NamedTuple):
    """Result of :func:`train_skipgram`.

    Attributes:
        input: ``(V, D)`` the token embeddings (word2vec's ``syn0``, gensim's ``wv``).
        output: ``(V_out, D)`` the context table (``syn1neg``).
        losses: mean pair loss per epoch (empty unless ``compute_loss``).
        pairs: positive pairs trained, all epochs.
        seconds: wall time of the training.
    """

    input: Tensor
    output: Tensor
    losses: list[float]
    pairs: int
    seconds: float


def train_skipgram(
    walks: Tensor,
    num_tokens: int,
    dim: int = 128,
    *,
    window: int = 10,
    negatives: int = 5,
    epochs: int = 1,
    lr: float = 0.025,
    min_lr: float = 1e-4,
    sample: float = 1e-3,
    ns_exponent: float = 0.75,
    contexts: tuple[Tensor, Tensor, int] | None = None,
    shrink_window: bool = True,
    exact_distance: bool = False,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    threads: int | None = None,
    chunks_per_epoch: int = 50,
    compute_loss: bool = False,
    progress: bool = True,
) -> SkipGram:
    """Train skip-gram embeddings of ``num_tokens`` tokens on ``walks``.

    Args:
        walks: ``(W, L)`` int64 token ids in ``[0, num_tokens)``, ``-1`` ending a walk.
        num_tokens: ``V``.
        dim: embedding size ``D``. (default: ``128``)
        window: largest center-context distance. (default: ``10``)
        negatives: negatives per positive pair. (default: ``5``)
        epochs: passes over ``walks``. (default: ``1``)
        lr, min_lr: learning rate, decayed linearly from ``lr`` to ``min_lr`` over all
            epochs. (default: ``0.025``, ``1e-4``)
        sample: subsampling threshold of frequent tokens, ``0`` to keep all. (default: ``1e-3``)
        ns_exponent: negatives are drawn with probability proportional to
            ``count ** ns_exponent``. (default: ``0.75``)
        contexts: ``(ptr (V + 1,), idx (C,), V_out)``: the outputs of each context token
            (its features), or ``None``: the token itself.
        shrink_window: word2vec's reduced window. (default: ``True``)
        exact_distance: only contexts at distance exactly ``window``. (default: ``False``)
        seed: seed of the initialisation and of every draw. (default: ``0``)
        dtype: float32 or float64 tables. (default: float32)
        threads: torch threads during training (restored after). (default: current setting)
        chunks_per_epoch: kernel calls per epoch (the learning-rate schedule's steps and the
            progress bar's unit). (default: ``50``)
        compute_loss: record the mean pair loss per epoch. (default: ``False``)
        progress: show a tqdm bar. (default: ``True``)

    Returns:
        :class:`SkipGram`.

    Example:
        >>> walks = torch.tensor([[0, 1, 2, 1, 0], [2, 1, 0, 1, 2]])
        >>> train_skipgram(walks, 3, 8, window=2, progress=False).input.shape
        torch.Size([3, 8])
    """
    check_positive_int("num_tokens", num_tokens)
    check_positive_int("dim", dim)
    check_positive_int("epochs", epochs)
    check_positive_int("chunks_per_epoch", chunks_per_epoch)
    if threads is not None:
        check_positive_int("threads", threads)
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    if not isinstance(walks, Tensor) or walks.dtype != torch.int64 or walks.dim() != 2:
        raise TypeError("walks must be an int64 tensor (W, L)")
    walks = walks.contiguous()
    valid = walks[walks >= 0]
    if valid.numel() and int(valid.max()) >= num_tokens:
        raise IndexError(f"walks values must lie in [-1, {num_tokens}), got {int(valid.max())}")
    counts = torch.bincount(valid, minlength=num_tokens).double()
    if contexts is None:
        ptr = idx = None
        out_counts, num_outputs = counts, num_tokens
    else:
        ptr, idx, num_outputs = contexts
        # An output is seen once per occurrence of a token that lists it.
        owner_counts = torch.repeat_interleave(counts, ptr[1:] - ptr[:-1])
        out_counts = torch.zeros(num_outputs, dtype=torch.float64).index_add_(0, idx, owner_counts)
    if float(out_counts.sum()) == 0:
        raise ValueError("walks contain no token (or no token with contexts) to train on")
    alias = alias_table(out_counts.pow(ns_exponent))
    keep = subsample_keep_prob(counts, sample) if sample > 0 else None

    gen = torch.Generator().manual_seed(seed)
    inp = ((torch.rand(num_tokens, dim, generator=gen, dtype=torch.float64) - 0.5) / dim).to(dtype)
    out = torch.zeros(num_outputs, dim, dtype=dtype)

    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    w = walks.shape[0]
    bounds = [round(w * k / chunks_per_epoch) for k in range(chunks_per_epoch + 1)]
    total = epochs * w
    losses, pairs = [], 0
    bar = tqdm(total=total, desc="skip-gram", unit="walk", disable=not progress)
    start = time.perf_counter()
    try:
        for epoch in range(epochs):
            epoch_loss, epoch_pairs = 0.0, 0
            for a, b in zip(bounds[:-1], bounds[1:], strict=True):
                if a == b:
                    continue
                done_a, done_b = epoch * w + a, epoch * w + b
                res = sgns_train(
                    inp,
                    out,
                    walks[a:b],
                    alias,
                    window=window,
                    negatives=negatives,
                    lr_start=lr + (min_lr - lr) * done_a / total,
                    lr_end=lr + (min_lr - lr) * done_b / total,
                    keep_prob=keep,
                    context_ptr=ptr,
                    context_idx=idx,
                    shrink_window=shrink_window,
                    exact_distance=exact_distance,
                    # One stream per walk and epoch: epochs draw other windows and negatives.
                    seed=(seed * 1_000_003 + epoch) % 2**63,
                    offset=a,
                    compute_loss=compute_loss,
                )
                epoch_loss += float(res[0])
                epoch_pairs += int(res[1])
                bar.update(b - a)
                if compute_loss and epoch_pairs:
                    bar.set_postfix(loss=f"{epoch_loss / epoch_pairs:.4f}")
            pairs += epoch_pairs
            if compute_loss:
                losses.append(epoch_loss / max(epoch_pairs, 1))
    finally:
        bar.close()
        torch.set_num_threads(old_threads)
    return SkipGram(inp, out, losses, pairs, time.perf_counter() - start)
