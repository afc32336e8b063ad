"""Data parallelism for the trainer: what the trainer asks of a (possibly single-rank) run.

:class:`DataParallelPlan` is the one object :class:`hybrid_fast.train.Trainer` consults about
distribution; with one process every method is the identity, so the single-process trainer is
unchanged. Under torchrun (W ranks, :class:`hybrid_fast.distributed.DistContext`):

* Batches: ``config.batch_size`` is the *global* batch size; each rank draws the sampler's
  global plan and keeps its slice of ``batch_size / W`` examples (same batch type and language
  on every rank, disjoint slices, equal ``len()``).
* Model: wrapped in :class:`torch.nn.parallel.DistributedDataParallel` around a module whose
  one forward embeds every side of the batch (queries and passages), so DDP sees one forward per
  backward. ``find_unused_parameters=True``: Hugging Face encoders carry a pooler the bi-encoder
  does not use; such parameters keep ``grad = None`` as in one process, so AdamW skips them alike.
* Loss: with ``config.cross_rank_negatives`` (default) each rank's queries are scored against the
  passages of all ranks (:func:`hybrid_fast.infonce_loss` with ``gather_across_devices``); each
  rank's loss is the mean over its rows and DDP averages gradients, which equals the gradient of
  the single-process loss on the global batch. Off: each rank's in-batch negatives are its own.
* Gradient caching: the loss on cached embeddings does one gather and one reduce-scatter; the
  chunks are then re-embedded with DDP's gradient all-reduce only on the last one
  (:meth:`sync_context`; ``no_sync`` on the others).
* Bookkeeping: the logged loss is the mean over ranks (the global-batch loss), examples/s count
  the global batch; rank 0 alone writes files; checkpoints hold every rank's RNG state.
"""
from __future__ import annotations

import contextlib

import numpy as np
from torch import nn

from ..distributed.runtime import DistContext
from .checkpoint import rng_state


class MultiForward(nn.Module):
    """``forward(*features) -> tuple`` of ``encoder(f)`` per feature dict: one module call (one
    DDP forward) for queries and passages together."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, *features):
        return tuple(self.encoder(f) for f in features)


def _no_forward_buffer_sync() -> dict:
    """DDP argument that skips the per-forward buffer broadcast (the encoder's buffers are
    constants: position ids): ``forward_sync_buffers`` where torch has it, else the older name."""
    import inspect

    from torch.nn.parallel import DistributedDataParallel

    params = inspect.signature(DistributedDataParallel.__init__).parameters
    return {"forward_sync_buffers": False} if "forward_sync_buffers" in params else {"broadcast_buffers": False}


class DataParallelPlan:
    """How one training run spreads over the ranks of ``context``.

    Args:
        context: the run's :class:`DistContext` (single-process: ``DistContext()``).
        batch_size: the global batch size.
        cross_rank_negatives: score against every rank's passages when ``world_size > 1``.

    Raises:
        ValueError: ``batch_size`` not a multiple of the world size.
    """

    def __init__(self, context: DistContext, batch_size: int, *, cross_rank_negatives: bool = True):
        if batch_size % context.world_size:
            raise ValueError(f"batch_size: the global batch size must be a multiple of the world size "
                             f"({context.world_size}), got {batch_size}")
        self.context = context
        self.global_batch_size = batch_size
        self.per_rank_batch_size = batch_size // context.world_size
        self.cross_rank_negatives = bool(cross_rank_negatives) and context.enabled

    @property
    def rank(self) -> int:
        return self.context.rank

    @property
    def world_size(self) -> int:
        return self.context.world_size

    def sampler_kwargs(self) -> dict:
        """``rank``/``world_size`` for :func:`hybrid_fast.sampling.make_sampler`."""
        return {"rank": self.rank, "world_size": self.world_size}

    def rank_seed(self, seed: int) -> int | None:
        """The seed of this rank's RNG streams (dropout), or None for rank 0 (which keeps the
        single-process stream of ``seed``): ranks must not share dropout masks."""
        if self.rank == 0:
            return None
        return int(np.random.SeedSequence([seed, self.rank]).generate_state(1)[0])

    def wrap(self, module: nn.Module) -> nn.Module:
        """The module the trainer calls with grad: ``module`` (a :class:`MultiForward`), inside
        DDP when there are several ranks (parameters are broadcast from rank 0 here)."""
        if not self.context.enabled:
            return module
        from torch.nn.parallel import DistributedDataParallel

        device = self.context.device
        with self.context.guard("DistributedDataParallel setup"):
            return DistributedDataParallel(module, device_ids=[device] if device.type == "cuda" else None,
                                           process_group=self.context.group, find_unused_parameters=True,
                                           **_no_forward_buffer_sync())

    @staticmethod
    def sync_context(module: nn.Module, last: bool):
        """DDP's gradient all-reduce only when ``last`` (``no_sync`` otherwise); a no-op without DDP."""
        if last or not hasattr(module, "no_sync"):
            return contextlib.nullcontext()
        return module.no_sync()

    def loss_kwargs(self) -> dict:
        """The cross-rank arguments of :func:`hybrid_fast.infonce_loss` (empty on one rank or
        with cross-rank negatives off)."""
        if not self.cross_rank_negatives:
            return {}
        return {"gather_across_devices": True, "process_group": self.context.group}

    def rng_states(self) -> list[dict]:
        """Every rank's RNG state (rank order), for the checkpoint rank 0 writes."""
        return self.context.all_gather_object(rng_state())

    def run_record(self) -> dict:
        """What ``config.json`` records about the parallel layout."""
        return {"world_size": self.world_size, "global_batch_size": self.global_batch_size,
                "per_rank_batch_size": self.per_rank_batch_size}
