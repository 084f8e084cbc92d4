"""Evaluation protocols of the papers geolayers reproduces.

* Hierarchy embeddings (:mod:`geolayers.metrics.reconstruction`): mean rank and MAP of Nickel
  and Kiela 2017 over every node and relation, under any distance, and the link-prediction
  split.
* Object discovery (:mod:`geolayers.metrics.segmentation`): :func:`fg_ari`, the adjusted Rand
  index on foreground pixels, :func:`adjusted_rand_index` with any pixel mask, and
  :func:`mean_best_overlap`; all batched over images in torch.
"""

from geolayers.metrics.reconstruction import (
    LinkPredictionSplit,
    RankingScores,
    link_prediction_split,
    ranking_scores,
    reconstruction,
)
from geolayers.metrics.segmentation import adjusted_rand_index, fg_ari, mean_best_overlap

__all__ = [
    "LinkPredictionSplit",
    "RankingScores",
    "adjusted_rand_index",
    "fg_ari",
    "link_prediction_split",
    "mean_best_overlap",
    "ranking_scores",
    "reconstruction",
]
