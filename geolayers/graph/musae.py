r"""Attributed node embeddings from walks: MUSAE and AE.

"Multi-scale Attributed Node Embedding" (Rozemberczki, Allen and Sarkar, Journal of Complex
Networks 2021): walk the graph, and for each node :math:`v` on a walk and each feature
:math:`f` of the node :math:`r` steps away, count the co-occurrence :math:`(v, f)`. Skip-gram
with negative sampling then learns node vectors that predict the features seen around them
(the paper's eq. 3-5):

* **MUSAE** learns one embedding per distance :math:`r = 1..R` (only the features at distance
  exactly :math:`r`) and concatenates them, :math:`(N, R \cdot D)`;
* **AE** pools the co-occurrences of all distances :math:`1..R` into one embedding,
  :math:`(N, D)`.

Both run on the fused :func:`geolayers.ops.sgns_train` kernel with the node's features as the
outputs of a context (its context CSR), over walks from :func:`geolayers.graph.random_walks`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from geolayers._checks import check_positive_int, describe
from geolayers.graph.csr import CSRGraph
from geolayers.graph.skipgram import train_skipgram
from geolayers.graph.walks import random_walks


def features_to_csr(features: Tensor, num_nodes: int) -> tuple[Tensor, Tensor, int]:
    """Node -> feature lists of a multi-hot matrix, as ``(ptr (N + 1,), idx (C,), F)``.

    ``features``: ``(N, F)`` dense or sparse COO; an entry is a feature of the node when it is
    non-zero.

    Example:
        >>> features_to_csr(torch.tensor([[0.0, 1.0], [1.0, 1.0]]), 2)[1].tolist()
        [1, 0, 1]
    """
    if not isinstance(features, Tensor) or features.dim() != 2:
        raise ValueError(f"features must be an (N, F) tensor, got {describe(features)}")
    if features.shape[0] != num_nodes:
        raise ValueError(
            f"features must have num_nodes = {num_nodes} rows, got {features.shape[0]}"
        )
    if features.is_sparse:
        f = features.coalesce()
        nz = f.values() != 0
        row, col = f.indices()[0][nz], f.indices()[1][nz]
    else:
        row, col = features.nonzero(as_tuple=True)
    order = torch.argsort(row * features.shape[1] + col)
    row, col = row[order], col[order]
    ptr = torch.zeros(num_nodes + 1, dtype=torch.long)
    ptr[1:] = torch.cumsum(torch.bincount(row, minlength=num_nodes), 0)
    return ptr, col.long().contiguous(), features.shape[1]


class MUSAE(nn.Module):
    r"""MUSAE (``pooled=False``) or AE (``pooled=True``) node embeddings, trained by :meth:`fit`.

    Args:
        edge_index: ``(2, E)`` int64 edges (undirected graphs: both directions, or pass
            ``undirected=True``).
        features: ``(N, F)`` multi-hot node features, dense or sparse COO.
        dim: size ``D`` of each scale's embedding. (default: ``32``, the paper's)
        order: largest distance ``R``. (default: ``3``)
        walks_per_node: walks from every node. (default: ``5``)
        walk_length: nodes per walk. (default: ``80``)
        pooled: ``True`` for AE (one embedding over all distances), ``False`` for MUSAE.
        num_nodes: ``N``. (default: ``features.shape[0]``)
        undirected: add missing reverse edges. (default: ``False``)
        seed: seed of walks, initialisation and sampling. (default: ``0``)

    Attributes:
        embedding: ``(N, R * D)`` for MUSAE, ``(N, D)`` for AE, float32 (zeros until
            :meth:`fit`).

    Example:
        >>> ei = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
        >>> model = MUSAE(ei, torch.eye(3), dim=4, order=2, walk_length=6)
        >>> model.fit(progress=False)(torch.tensor([0])).shape
        torch.Size([1, 8])
    """

    def __init__(
        self,
        edge_index: Tensor,
        features: Tensor,
        *,
        dim: int = 32,
        order: int = 3,
        walks_per_node: int = 5,
        walk_length: int = 80,
        pooled: bool = False,
        num_nodes: int | None = None,
        undirected: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__()
        for name, value in (
            ("dim", dim),
            ("order", order),
            ("walks_per_node", walks_per_node),
            ("walk_length", walk_length),
        ):
            check_positive_int(name, value)
        if walk_length <= order:
            raise ValueError(f"walk_length must exceed order = {order}, got {walk_length}")
        if num_nodes is None and isinstance(features, Tensor):
            num_nodes = features.shape[0]
        self.graph = CSRGraph.from_edge_index(edge_index, num_nodes, undirected=undirected)
        self.features = features_to_csr(features, self.graph.num_nodes)
        self.dim, self.order, self.pooled, self.seed = dim, order, pooled, seed
        self.walks_per_node, self.walk_length = walks_per_node, walk_length
        width = dim if pooled else order * dim
        self.register_buffer("embedding", torch.zeros(self.graph.num_nodes, width))

    def forward(self, batch: Tensor | None = None) -> Tensor:
        """Embeddings ``(N, width)``, or ``(B, width)`` of the nodes in ``batch: (B,)``."""
        return self.embedding if batch is None else self.embedding[batch]

    def fit(
        self,
        epochs: int = 1,
        *,
        negatives: int = 5,
        lr: float = 0.05,
        min_lr: float = 1e-4,
        sample: float = 1e-3,
        threads: int | None = None,
        progress: bool = True,
    ) -> MUSAE:
        """Draw the walks and train the embedding(s); returns ``self``.

        ``lr = 0.05`` and ``sample = 1e-3`` (frequent nodes are subsampled as centers) follow
        the MUSAE reference settings; ``epochs`` passes over the walks per scale.
        """
        check_positive_int("epochs", epochs)
        old_threads = torch.get_num_threads()
        if threads is not None:
            check_positive_int("threads", threads)
            torch.set_num_threads(threads)
        try:
            walks = random_walks(
                self.graph, self.walk_length - 1, self.walks_per_node, seed=self.seed,
                progress=progress,
            )  # fmt: skip
        finally:
            torch.set_num_threads(old_threads)
        scales = (
            [(self.order, False)] if self.pooled else [(r, True) for r in range(1, 1 + self.order)]
        )
        parts = []
        for k, (window, exact) in enumerate(scales):
            result = train_skipgram(
                walks,
                self.graph.num_nodes,
                self.dim,
                window=window,
                negatives=negatives,
                epochs=epochs,
                lr=lr,
                min_lr=min_lr,
                sample=sample,
                contexts=self.features,
                shrink_window=False,
                exact_distance=exact,
                seed=self.seed + 7919 * (k + 1),
                threads=threads,
                progress=progress,
            )
            parts.append(result.input.float())
        self.embedding = torch.cat(parts, dim=1)
        return self
