"""Batch sampling for parallel multilingual retrieval data (docs/method.md section 2).

* Samplers (:mod:`.samplers`): :class:`HybridBatchSampler` (alpha), :class:`MonoBatchSampler`
  (X-X-mono), :class:`CrossBatchSampler` (X-Y), :class:`EnglishBatchSampler` (En-En),
  :class:`MixedMonoBatchSampler` (X-X), :class:`SimCSEBatchSampler`; :func:`make_sampler` by name.
* Data (:mod:`.dataset`): :class:`ParallelQADataset` keyed by :class:`PairKey`,
  :func:`split_articles`, :class:`PairCollator` -> :class:`PairBatch`.

Imports torch and numpy only (``datasets`` loads in ``to_hf_dataset``).
"""
from .dataset import PairBatch, PairCollator, ParallelQADataset, split_articles
from .samplers import (
    SAMPLERS,
    CrossBatchSampler,
    EnglishBatchSampler,
    HybridBatchSampler,
    IndexBatchSampler,
    MixedMonoBatchSampler,
    MonoBatchSampler,
    PairKey,
    ParallelBatchSampler,
    SimCSEBatchSampler,
    make_sampler,
)

__all__ = [
    "PairKey", "ParallelBatchSampler", "HybridBatchSampler", "MonoBatchSampler", "CrossBatchSampler",
    "EnglishBatchSampler", "MixedMonoBatchSampler", "SimCSEBatchSampler", "IndexBatchSampler",
    "SAMPLERS", "make_sampler", "ParallelQADataset", "split_articles", "PairCollator", "PairBatch",
]
