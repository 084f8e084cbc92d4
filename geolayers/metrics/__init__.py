"""Evaluation protocols of the papers geolayers reproduces.

* Hierarchy embeddings (:mod:`geolayers.metrics.reconstruction`): mean rank and MAP of Nickel
  and Kiela 2017 over every node and relation, under any distance, and the link-prediction
  split.
* Node embeddings (:mod:`geolayers.metrics.node_embedding`): the node2vec paper's multi-label
  Macro-/Micro-F1, PecanPy's per-class cross-validated auROC, and link prediction with edge
  operators on a connectivity-preserving edge split.
* Object discovery (:mod:`geolayers.metrics.segmentation`): :func:`fg_ari`, the adjusted Rand
  index on foreground pixels, :func:`adjusted_rand_index` with any pixel mask, and
  :func:`mean_best_overlap`; all batched over images in torch.
"""

from geolayers.metrics.node_embedding import (
    EDGE_OPERATORS,
    ClassAUROC,
    EdgeSplit,
    MultilabelF1,
    class_auroc,
    link_prediction_auc,
    multilabel_f1,
    split_edges_connected,
)
from geolayers.metrics.reconstruction import (
    LinkPredictionSplit,
    RankingScores,
    link_prediction_split,
    ranking_scores,
    reconstruction,
)
from geolayers.metrics.segmentation import adjusted_rand_index, fg_ari, mean_best_overlap

__all__ = [
    "EDGE_OPERATORS",
    "ClassAUROC",
    "EdgeSplit",
    "LinkPredictionSplit",
    "MultilabelF1",
    "class_auroc",
    "link_prediction_auc",
    "multilabel_f1",
    "split_edges_connected",
    "RankingScores",
    "adjusted_rand_index",
    "fg_ari",
    "link_prediction_split",
    "mean_best_overlap",
    "ranking_scores",
    "reconstruction",
]
