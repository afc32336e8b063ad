"""Scale-out on ``torch.distributed``: cross-rank negatives for the fused InfoNCE loss
(:mod:`.gather`, used through ``infonce_loss(..., gather_across_devices=True)``), sharded
exact search (:func:`sharded_topk_search`), and the runtime of data-parallel runs under torchrun
(:mod:`.runtime`: process-group init from the torchrun environment with a finite timeout,
:class:`DistContext`, dead or hung ranks raised as :class:`DistributedError`). Importing this
package starts no process group.
"""
from __future__ import annotations

from .gather import AllGatherRows, all_gather_blocks, cross_rank_candidates, reduce_scatter_blocks
from .runtime import (
    DEFAULT_TIMEOUT_S,
    DistContext,
    DistributedError,
    context_of_current_group,
    init_distributed,
    shutdown_distributed,
)
from .search import sharded_search, sharded_topk_search

__all__ = ["AllGatherRows", "all_gather_blocks", "reduce_scatter_blocks", "cross_rank_candidates",
           "sharded_search", "sharded_topk_search", "DEFAULT_TIMEOUT_S", "DistContext", "DistributedError",
           "context_of_current_group", "init_distributed", "shutdown_distributed"]
