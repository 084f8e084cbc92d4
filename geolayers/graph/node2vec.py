r"""node2vec embeddings with PyTorch Geometric's interface: :class:`Node2Vec`.

A drop-in replacement for :class:`torch_geometric.nn.Node2Vec` ("node2vec: Scalable Feature
Learning for Networks", Grover and Leskovec, KDD 2016) that needs neither pyg-lib nor
torch-cluster: the walks come from :func:`geolayers.ops.random_walk`, exact second-order
node2vec walks for any ``p`` and ``q`` (pyg-lib rejects ``p, q != 1``; torch-cluster's biased
walks are off, see DESIGN.md), optionally weighted.

Layout of the samples, as in PyG: a walk of ``walk_length`` nodes (``walk_length - 1`` steps)
is cut into its ``W = walk_length - context_size + 1`` sliding windows of ``context_size``
nodes; window ``j`` of walk ``s`` is row ``j * S + s``. The loss asks the first node of a
positive window to score high with each of the others (skip-gram), and low with the nodes of a
negative window (uniformly random nodes).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, get_worker_info

from geolayers._checks import check_positive_int, describe
from geolayers.graph.csr import CSRGraph
from geolayers.graph.skipgram import SkipGram, train_skipgram
from geolayers.graph.walks import random_walks
from geolayers.ops.walk import random_walk

_MASK64 = (1 << 64) - 1
# Streams of the derived seeds: positive walks and negative samples draw independent numbers.
_POS, _NEG = 1, 2


def _splitmix64(x: int) -> int:
    """One round of SplitMix64 (Steele et al. 2014): a bijective 64-bit integer mixer."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def _check_rate(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float, got {type(value).__name__}")
    if not (0 < value < math.inf):
        raise ValueError(f"{name} must be positive and finite, got {value}")
    return float(value)


class Node2Vec(nn.Module):
    r"""node2vec node embeddings trained by skip-gram with negative sampling (PyG's interface).

    Same constructor, methods and sample layout as :class:`torch_geometric.nn.Node2Vec`, with
    exact biased walks from :func:`geolayers.ops.random_walk` and a few keyword-only extras.

    Walks that reach a node without out-edges (an isolated node, a sink of a directed graph, a
    node whose out-edges all weigh 0) stay on it for the remaining steps, as pyg-lib's and
    torch-cluster's walks do: the ``-1`` padding of :func:`~geolayers.ops.random_walk` is
    replaced by the walk's last node. Every window is therefore kept, the shapes are PyG's
    whatever the graph, and the loss is always defined (an isolated node contributes positive
    pairs ``(v, v)``, as in PyG).

    Args:
        edge_index: ``(2, E)`` int64 edges ``source -> target``, taken as given (directed)
            unless ``undirected=True``. Duplicate edges are merged (weights summed).
        embedding_dim: size ``D`` of each embedding, ``>= 1``.
        walk_length: nodes per walk (``walk_length - 1`` steps), ``>= context_size``.
        context_size: nodes per window, ``>= 2``.
        walks_per_node: walks from each node of a batch. (default: ``1``)
        p: return parameter, ``> 0``. (default: ``1.0``)
        q: in-out parameter, ``> 0``. (default: ``1.0``)
        num_negative_samples: negative windows per positive window. (default: ``1``)
        num_nodes: number of nodes ``N``. (default: ``edge_index.max() + 1``)
        sparse: sparse gradients for the embedding (use ``torch.optim.SparseAdam``).
            (default: ``False``)
        edge_weight: ``(E,)`` non-negative edge weights for weighted walks. (default: uniform)
        undirected: add the missing reverse edges (see :meth:`CSRGraph.from_edge_index`).
            (default: ``False``, as PyG)
        seed: ``None``: every call of :meth:`pos_sample` / :meth:`neg_sample` draws from
            torch's global generator (seed it with ``torch.manual_seed``); an int in
            ``[0, 2**63)``: the ``k``-th call of each sampler uses a seed derived from
            ``(seed, k)`` (and the DataLoader worker id), a deterministic sequence independent
            of the global generator. (default: ``None``)

    Attributes:
        graph: the :class:`CSRGraph` the walks run on. It is kept on the CPU (as PyG keeps its
            CSR), so that DataLoader workers need no GPU; samples are returned on its device,
            so ``model.graph = model.graph.to("cuda")`` walks on the GPU.
        embedding: ``nn.Embedding(N, D)``.
        walk_length, context_size, walks_per_node, p, q, num_negative_samples, seed: the
            arguments as given (note: PyG's ``walk_length`` attribute holds the number of
            steps, ``walk_length - 1``; here it is the argument).
        num_nodes, embedding_dim, EPS: as PyG (``EPS = 1e-15`` in the loss's logarithms).

    Example:
        >>> model = Node2Vec(torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]]), 8, 4, 2, seed=0)
        >>> model.pos_sample(torch.tensor([0, 1])).shape
        torch.Size([6, 2])
    """

    def __init__(
        self,
        edge_index: Tensor,
        embedding_dim: int,
        walk_length: int,
        context_size: int,
        walks_per_node: int = 1,
        p: float = 1.0,
        q: float = 1.0,
        num_negative_samples: int = 1,
        num_nodes: int | None = None,
        sparse: bool = False,
        *,
        edge_weight: Tensor | None = None,
        undirected: bool = False,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        check_positive_int("embedding_dim", embedding_dim)
        check_positive_int("walk_length", walk_length)
        check_positive_int("context_size", context_size)
        if context_size < 2:
            raise ValueError(f"context_size must be >= 2, got {context_size}")
        if walk_length < context_size:
            raise ValueError(
                f"walk_length must be >= context_size = {context_size}, got {walk_length}"
            )
        check_positive_int("walks_per_node", walks_per_node)
        check_positive_int("num_negative_samples", num_negative_samples)
        p, q = _check_rate("p", p), _check_rate("q", q)
        if not isinstance(sparse, bool):
            raise TypeError(f"sparse must be a bool, got {type(sparse).__name__}")
        if not isinstance(undirected, bool):
            raise TypeError(f"undirected must be a bool, got {type(undirected).__name__}")
        if seed is not None:
            if isinstance(seed, bool) or not isinstance(seed, int):
                raise TypeError(f"seed must be None or an int, got {type(seed).__name__}")
            if not (0 <= seed < 2**63):
                raise ValueError(f"seed must lie in [0, 2**63), got {seed}")
        if isinstance(edge_index, Tensor) and edge_index.dtype == torch.int32:
            edge_index = edge_index.long()
        graph = CSRGraph.from_edge_index(edge_index, num_nodes, edge_weight, undirected=undirected)

        self.graph: CSRGraph = graph.to("cpu")
        self.num_nodes = graph.num_nodes
        self.embedding_dim = embedding_dim
        self.walk_length = walk_length
        self.context_size = context_size
        self.walks_per_node = walks_per_node
        self.p = p
        self.q = q
        self.num_negative_samples = num_negative_samples
        self.seed = seed
        self.EPS = 1e-15
        # Calls of each sampler so far (the counter of the seeded sequence).
        self._calls = {_POS: 0, _NEG: 0}
        self.embedding = nn.Embedding(self.num_nodes, embedding_dim, sparse=sparse)
        self.reset_parameters()

    @property
    def rowptr(self) -> Tensor:
        """``(N + 1,)`` CSR offsets of :attr:`graph` (PyG's attribute)."""
        return self.graph.rowptr

    @property
    def col(self) -> Tensor:
        """``(E,)`` CSR neighbours of :attr:`graph` (PyG's attribute)."""
        return self.graph.col

    @property
    def num_windows(self) -> int:
        """Windows per walk, ``walk_length - context_size + 1``."""
        return self.walk_length - self.context_size + 1

    def reset_parameters(self) -> None:
        """Re-draw the embedding (``N(0, 1)``, as ``nn.Embedding`` and PyG)."""
        self.embedding.reset_parameters()

    def forward(self, batch: Tensor | None = None) -> Tensor:
        """Embeddings ``(N, D)``, or ``(B, D)`` of the nodes in ``batch: (B,)`` int64.

        Example:
            >>> Node2Vec(torch.tensor([[0], [1]]), 4, 3, 2)(torch.tensor([1])).shape
            torch.Size([1, 4])
        """
        weight = self.embedding.weight
        return weight if batch is None else weight[batch]

    def loader(self, **kwargs: Any) -> DataLoader:
        """A DataLoader over the node ids ``0..N-1`` that yields :meth:`sample` ``(pos, neg)``.

        ``kwargs`` go to :class:`torch.utils.data.DataLoader` (``batch_size``, ``shuffle``,
        ``num_workers``, ...).

        Example:
            >>> m = Node2Vec(torch.tensor([[0, 1], [1, 0]]), 4, 3, 2)
            >>> [pos.shape for pos, neg in m.loader(batch_size=2)]
            [torch.Size([4, 2])]
        """
        return DataLoader(range(self.num_nodes), collate_fn=self.sample, **kwargs)

    def next_seed(self, stream: int = _POS) -> int:
        """The seed, in ``[0, 2**63)``, of the next call of a sampler; advances its counter.

        With ``seed=None``, a draw from torch's global generator; with an int, a hash of
        ``(seed, stream, DataLoader worker id, call count)``. ``stream`` is ``1`` for positive
        walks and ``2`` for negative samples.
        """
        if self.seed is None:
            return int(torch.randint(2**62, ()))
        count = self._calls.get(stream, 0)
        self._calls[stream] = count + 1
        info = get_worker_info()
        worker = 0 if info is None else info.id + 1
        h = _splitmix64(self.seed)
        for part in (stream, worker, count):
            h = _splitmix64(h ^ part)
        return h >> 1

    def fit(
        self,
        epochs: int = 1,
        *,
        window: int | None = None,
        negatives: int = 5,
        lr: float = 0.025,
        min_lr: float = 1e-4,
        sample: float = 1e-3,
        threads: int | None = None,
        compute_loss: bool = False,
        progress: bool = True,
    ) -> SkipGram:
        """Train the embedding the way node2vec's reference code does, in place, fast.

        Draws ``walks_per_node`` walks of ``walk_length`` nodes from every node once (a walk
        stops at a dead end), then runs word2vec's skip-gram with negative sampling over them
        for ``epochs`` passes on the fused :func:`geolayers.ops.sgns_train` kernel (all
        threads, Hogwild), with gensim's defaults (see :func:`geolayers.graph.train_skipgram`).
        The trained input vectors replace :attr:`embedding`'s weight. This path does not use
        :meth:`loss`, the loader or an optimizer.

        Args:
            epochs: passes over the walks. (default: ``1``)
            window: largest center-context distance. (default: ``context_size - 1``, the
                farthest pair within one of :meth:`pos_sample`'s windows)
            negatives: negatives per positive pair. (default: ``5``, word2vec's)
            lr, min_lr: linearly decayed learning rate. (default: ``0.025``, ``1e-4``)
            sample: subsampling threshold of frequent nodes, ``0`` to keep all.
                (default: ``1e-3``)
            threads: torch threads for walks and training. (default: current setting)
            compute_loss: record the mean pair loss per epoch. (default: ``False``)
            progress: tqdm bars. (default: ``True``)

        Returns:
            The :class:`~geolayers.graph.SkipGram` result (tables, losses, pairs, seconds).

        Example:
            >>> m = Node2Vec(torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]]), 8, 5, 3, seed=0)
            >>> m.fit(sample=0.0, progress=False).pairs > 0  # tiny graph: no subsampling
            True
        """
        check_positive_int("epochs", epochs)
        if window is None:
            window = self.context_size - 1
        seed = self.next_seed(_POS)
        old_threads = torch.get_num_threads()
        if threads is not None:
            check_positive_int("threads", threads)
            torch.set_num_threads(threads)
        try:
            corpus = random_walks(
                self.graph,
                self.walk_length - 1,
                self.walks_per_node,
                p=self.p,
                q=self.q,
                seed=seed,
                progress=progress,
            )
        finally:
            torch.set_num_threads(old_threads)
        weight = self.embedding.weight
        result = train_skipgram(
            corpus,
            self.num_nodes,
            self.embedding_dim,
            window=window,
            negatives=negatives,
            epochs=epochs,
            lr=lr,
            min_lr=min_lr,
            sample=sample,
            seed=seed,
            dtype=torch.float64 if weight.dtype == torch.float64 else torch.float32,
            threads=threads,
            compute_loss=compute_loss,
            progress=progress,
        )
        with torch.no_grad():
            weight.copy_(result.input.to(device=weight.device, dtype=weight.dtype))
        return result

    def walks(self, batch: Tensor) -> Tensor:
        """``walks_per_node`` walks from every node of ``batch``, dead ends filled.

        Args:
            batch: ``(B,)`` int64 start nodes.

        Returns:
            ``(walks_per_node * B, walk_length)`` int64 on :attr:`graph`'s device; walk ``k``
            of ``batch[b]`` is row ``k * B + b``; a walk stuck at a node without out-edges
            repeats that node.
        """
        g = self.graph
        start = batch.to(device=g.col.device, dtype=torch.long).repeat(self.walks_per_node)
        rw = random_walk(
            g.rowptr,
            g.col,
            start,
            self.walk_length - 1,
            weight=g.weight,
            p=self.p,
            q=self.q,
            seed=self.next_seed(_POS),
        )
        # Padding only follows a dead end, so the number of valid entries locates the last node.
        valid = rw >= 0
        last = rw.gather(1, valid.sum(1, keepdim=True) - 1)
        return torch.where(valid, rw, last)

    def windows(self, rw: Tensor) -> Tensor:
        """The sliding windows of ``rw: (S, walk_length)``, ``(W * S, context_size)``.

        Window ``j`` of row ``s`` is row ``j * S + s``, as PyG concatenates them.
        """
        c = self.context_size
        return rw.unfold(1, c, 1).transpose(0, 1).reshape(-1, c)

    def pos_sample(self, batch: Tensor) -> Tensor:
        """Positive windows: the windows of ``walks_per_node`` node2vec walks per node.

        Args:
            batch: ``(B,)`` int64 start nodes.

        Returns:
            ``(walks_per_node * B * W, context_size)`` int64, ``W = walk_length -
            context_size + 1``, on :attr:`graph`'s device (layout of :meth:`windows`).

        Example:
            >>> m = Node2Vec(torch.tensor([[0, 1], [1, 2]]), 4, 5, 3, walks_per_node=2)
            >>> m.pos_sample(torch.tensor([0])).shape
            torch.Size([6, 3])
        """
        return self.windows(self.walks(batch))

    def neg_sample(self, batch: Tensor) -> Tensor:
        """Negative windows: each node of ``batch`` followed by uniformly random nodes.

        Args:
            batch: ``(B,)`` int64 nodes.

        Returns:
            ``(walks_per_node * num_negative_samples * B * W, context_size)`` int64 on
            :attr:`graph`'s device, laid out as :meth:`pos_sample`.

        Example:
            >>> m = Node2Vec(torch.tensor([[0, 1], [1, 2]]), 4, 5, 3, num_negative_samples=2)
            >>> m.neg_sample(torch.tensor([0, 1])).shape
            torch.Size([12, 3])
        """
        device = self.graph.col.device
        start = batch.to(device=device, dtype=torch.long)
        start = start.repeat(self.walks_per_node * self.num_negative_samples)
        size = (start.numel(), self.walk_length - 1)
        if self.seed is None:
            rest = torch.randint(self.num_nodes, size, device=device)
        else:
            gen = torch.Generator(device=device).manual_seed(self.next_seed(_NEG))
            rest = torch.randint(self.num_nodes, size, device=device, generator=gen)
        return self.windows(torch.cat([start.unsqueeze(1), rest], dim=1))

    def sample(self, batch: list[int] | Tensor) -> tuple[Tensor, Tensor]:
        """``(pos_sample(batch), neg_sample(batch))`` for ``batch``: ``(B,)`` node ids or a list."""
        if not isinstance(batch, Tensor):
            batch = torch.tensor(batch, dtype=torch.long)
        return self.pos_sample(batch), self.neg_sample(batch)

    def loss(self, pos_rw: Tensor, neg_rw: Tensor) -> Tensor:
        r"""Skip-gram loss with negative sampling, a scalar.

        .. math::
            -\operatorname{mean}_{r, i} \log(\sigma(z_{r_0} \cdot z_{r_i}) + \epsilon)
            -\operatorname{mean}_{n, i} \log(1 - \sigma(z_{n_0} \cdot z_{n_i}) + \epsilon)

        over positive windows ``r`` and negative windows ``n``, ``i >= 1``,
        :math:`\epsilon` = :attr:`EPS` (PyG's loss). The windows are moved to the embedding's
        device.

        Args:
            pos_rw: ``(R, context_size)`` int64 positive windows (:meth:`pos_sample`).
            neg_rw: ``(R', context_size)`` int64 negative windows (:meth:`neg_sample`).
        """
        pos = self._scores(pos_rw)
        neg = self._scores(neg_rw)
        pos_loss = -torch.log(torch.sigmoid(pos) + self.EPS).mean()
        neg_loss = -torch.log(1 - torch.sigmoid(neg) + self.EPS).mean()
        return pos_loss + neg_loss

    def _scores(self, rw: Tensor) -> Tensor:
        """Dot products of each window's first embedding with the others', ``(R, C - 1)``."""
        z = self.embedding(rw.to(self.embedding.weight.device))
        return (z[:, :1] * z[:, 1:]).sum(-1)

    def test(
        self,
        train_z: Tensor,
        train_y: Tensor,
        test_z: Tensor,
        test_y: Tensor,
        solver: str = "lbfgs",
        *args: Any,
        **kwargs: Any,
    ) -> float:
        """Accuracy on ``(test_z, test_y)`` of a logistic regression fit on the training set.

        Args:
            train_z: ``(N_train, D)`` embeddings; train_y: ``(N_train,)`` labels.
            test_z: ``(N_test, D)`` embeddings; test_y: ``(N_test,)`` labels.
            solver, args, kwargs: passed to :class:`sklearn.linear_model.LogisticRegression`.

        Returns:
            The accuracy, in ``[0, 1]``.
        """
        from sklearn.linear_model import LogisticRegression

        for name, value in (("train_z", train_z), ("test_z", test_z)):
            if not isinstance(value, Tensor) or value.dim() != 2:
                raise ValueError(f"{name} must be a 2-D tensor (N, D), got {describe(value)}")
        clf = LogisticRegression(*args, solver=solver, **kwargs)
        clf.fit(train_z.detach().cpu().numpy(), train_y.detach().cpu().numpy())
        return float(clf.score(test_z.detach().cpu().numpy(), test_y.detach().cpu().numpy()))

    def __repr__(self) -> str:
        n, d = self.embedding.weight.shape
        return f"{self.__class__.__name__}({n}, {d})"
