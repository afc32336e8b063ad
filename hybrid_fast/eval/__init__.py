"""Evaluation: pure metrics (:mod:`.metrics`), ranking helpers (:mod:`.ranking`), the XQuAD-R /
LAReQA evaluator (:mod:`.xquad_r`), BEIR evaluation (:mod:`.beir`), reports (:mod:`.report`) and
the ``hybrid-fast eval`` CLI (:mod:`.cli`); the evaluators take any :class:`TextEncoder`
(:mod:`.protocol`). Importing this package loads only the metrics
(numpy); torch, transformers and matplotlib load when the evaluators or reports are used.
"""

from .metrics import (
    average_precision_from_ranks,
    beir_metrics,
    beir_metrics_per_query,
    rank_distance_from_ranks,
    recall_at_k_from_ranks,
    trec_ranking,
)
from .protocol import TextEncoder

__all__ = [
    "TextEncoder",
    "beir_metrics", "beir_metrics_per_query", "trec_ranking",
    "average_precision_from_ranks", "recall_at_k_from_ranks", "rank_distance_from_ranks",
]
