"""Training on several processes and machines with ``torch.distributed``.

* :mod:`~geolayers.distributed.launch`: join a process group under ``torchrun`` or alone
  (:func:`init_distributed`), start processes on one machine (:func:`spawn`), and errors that
  name the rank and the operation when a peer dies (:func:`collective`).
* :mod:`~geolayers.distributed.walks`: each rank draws its contiguous share of a walk corpus;
  the shards concatenate to the single-process corpus (:func:`distributed_random_walks`).
* :mod:`~geolayers.distributed.sharded`: embedding tables split by rows over ranks
  (:class:`ShardedEmbedding`) or replicated (:class:`ReplicatedEmbedding`), exchanging only
  the rows a batch touches; per-shard checkpoints (:func:`load_sharded_into_single`).
* :mod:`~geolayers.distributed.skipgram`: synchronous mini-batch skip-gram (node2vec) steps
  and training (:func:`sgns_step`, :func:`sgns_step_distributed`,
  :func:`train_skipgram_distributed`).
* :mod:`~geolayers.distributed.poincare`: Poincare-embedding steps and training
  (:func:`poincare_step_distributed`, :func:`fit_hierarchy_distributed`).

A synchronous step on ``R`` ranks equals the single-process step on the concatenation of
their batches; without a process group everything runs as one process.
"""

from geolayers.distributed.launch import (
    RankOutcome,
    collective,
    free_port,
    get_rank,
    get_world_size,
    init_distributed,
    is_main_process,
    shutdown_distributed,
    spawn,
)
from geolayers.distributed.partition import even_bounds, owner_of, rank_range
from geolayers.distributed.poincare import (
    DistributedFitResult,
    fit_hierarchy_distributed,
    poincare_step_distributed,
    riemannian_sgd_rows,
)
from geolayers.distributed.sharded import (
    CommStats,
    EmbeddingTable,
    ReplicatedEmbedding,
    RowFetch,
    ShardedEmbedding,
    embedding_table,
    load_sharded_into_single,
    shard_path,
    uniform_init,
)
from geolayers.distributed.skipgram import (
    DistributedSkipGram,
    SkipGramBatch,
    noise_table,
    sgns_deltas,
    sgns_step,
    sgns_step_distributed,
    skipgram_pairs,
    train_skipgram_distributed,
)
from geolayers.distributed.walks import WalkShard, distributed_random_walks

__all__ = [
    "CommStats",
    "DistributedFitResult",
    "DistributedSkipGram",
    "EmbeddingTable",
    "RankOutcome",
    "ReplicatedEmbedding",
    "RowFetch",
    "ShardedEmbedding",
    "SkipGramBatch",
    "WalkShard",
    "collective",
    "distributed_random_walks",
    "embedding_table",
    "even_bounds",
    "fit_hierarchy_distributed",
    "free_port",
    "get_rank",
    "get_world_size",
    "init_distributed",
    "is_main_process",
    "load_sharded_into_single",
    "noise_table",
    "owner_of",
    "poincare_step_distributed",
    "rank_range",
    "riemannian_sgd_rows",
    "sgns_deltas",
    "sgns_step",
    "sgns_step_distributed",
    "shard_path",
    "shutdown_distributed",
    "skipgram_pairs",
    "spawn",
    "train_skipgram_distributed",
    "uniform_init",
]
