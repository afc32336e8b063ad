"""Data-parallel runs on ``torch.distributed`` (torchrun; NCCL on GPUs, gloo on CPUs).

* :mod:`.runtime`: process-group init from the torchrun environment with a finite timeout,
  :class:`DistContext` (rank, world size, device, bookkeeping collectives), failures of dead or
  hung ranks raised as :class:`DistributedError`.

Imports torch only.
"""
from .runtime import (
    DEFAULT_TIMEOUT_S,
    DistContext,
    DistributedError,
    context_of_current_group,
    init_distributed,
    shutdown_distributed,
)

__all__ = ["DEFAULT_TIMEOUT_S", "DistContext", "DistributedError", "context_of_current_group", "init_distributed",
           "shutdown_distributed"]
