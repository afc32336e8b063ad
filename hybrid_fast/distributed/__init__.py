"""Scale-out on ``torch.distributed``: cross-rank negatives for the fused InfoNCE loss
(:mod:`.gather`, used through ``infonce_loss(..., gather_across_devices=True)``) and sharded
exact search (:func:`sharded_topk_search`). Importing this package starts no process group.
"""
from __future__ import annotations

from .gather import AllGatherRows, all_gather_blocks, cross_rank_candidates, reduce_scatter_blocks
from .search import sharded_search, sharded_topk_search

__all__ = ["AllGatherRows", "all_gather_blocks", "reduce_scatter_blocks", "cross_rank_candidates",
           "sharded_search", "sharded_topk_search"]
