"""Hybrid batches in sentence-transformers' ``SentenceTransformerTrainer`` (v6.x).

::

    from hybrid_fast.integrations.sentence_transformers import parallel_st_dataset, parallel_batch_sampler
    train_dataset = parallel_st_dataset(train)                        # anchor, positive, label (= group)
    args = SentenceTransformerTrainingArguments(
        output_dir="out", per_device_train_batch_size=32,
        batch_sampler=parallel_batch_sampler(train, "hybrid", alpha=0.5))
    loss = hybrid_fast.MultipleNegativesRankingLoss(model)             # masks by the label column
    SentenceTransformerTrainer(model=model, args=args, train_dataset=train_dataset, loss=loss).train()

* :func:`parallel_st_dataset`: a :class:`hybrid_fast.sampling.ParallelQADataset` as a
  ``datasets.Dataset`` with one row per (group, query language, passage language, field), texts
  prefixed as :class:`hybrid_fast.sampling.PairCollator` prefixes them, and the paragraph mask
  group in the ``label`` column (the column sentence-transformers' collator hands to the loss).
* :func:`parallel_batch_sampler`: the value of ``SentenceTransformerTrainingArguments(batch_sampler=)``
  (sentence-transformers' documented extension point: a callable taking ``dataset, batch_size,
  drop_last, valid_label_columns, generator, seed``) that draws the batches of a
  :mod:`hybrid_fast.sampling` sampler (``hybrid``, ``x-x-mono``, ``x-y``, ``en-en``, ``x-x``,
  ``simcse``) as rows of that dataset.

Data parallelism (accelerate / DDP). sentence-transformers hands the batch sampler to
``accelerator.prepare``; with W processes accelerate wraps it in ``BatchSamplerShard``, which
(default ``split_batches=False``) gives process r the batches r, r + W, r + 2W, ... of the
sampler's stream: whole *different* batches per rank, which would give the ranks of one step
different batch types and languages. :class:`ParallelSTBatchSampler` therefore draws the sampler's
*global* plan (``world_size = W``: one batch type and language per step, ``W * batch_size``
distinct groups) and yields, per step, the W rank slices in rank order, so rank r receives exactly
slice r of every global batch: the same batch type and mono language on every rank, disjoint
examples, equal length. With ``accelerator_config={"split_batches": True}`` accelerate splits each
yielded batch instead: pass ``world_size=1`` there (the global batch is then one yielded batch).
"""
from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from sentence_transformers.base.sampler import DefaultBatchSampler

from ..sampling.samplers import SAMPLERS, IndexBatchSampler, make_sampler

if TYPE_CHECKING:
    from ..sampling.dataset import ParallelQADataset

GROUP_COLUMN = "label"


def parallel_st_dataset(data: "ParallelQADataset", *, query_prefix: str = "Query: ", passage_prefix: str = "Passage: ",
                        groups: bool = True):
    """The training table for :class:`ParallelSTBatchSampler`: a ``datasets.Dataset`` with columns
    ``anchor``, ``positive`` (prefixed texts) and, when ``groups``, ``label`` (int64 paragraph group
    ids, read by :class:`hybrid_fast.MultipleNegativesRankingLoss` for false-negative masking;
    without it the loss is exactly sentence-transformers' MNRL).

    Rows: ``num_groups * L * L * 3`` for L languages (one per sampler key; row order of
    :class:`hybrid_fast.sampling.IndexBatchSampler`).
    """
    return data.to_hf_dataset(query_prefix=query_prefix, passage_prefix=passage_prefix,
                              group_column=GROUP_COLUMN if groups else None)


class ParallelSTBatchSampler(DefaultBatchSampler):
    """A :mod:`hybrid_fast.sampling` sampler as a sentence-transformers batch sampler.

    Args (the first six are what ``SentenceTransformerTrainer.get_batch_sampler`` passes):
        dataset: the table of :func:`parallel_st_dataset` for ``data``.
        batch_size: examples per batch per process (``per_device_train_batch_size``).
        drop_last: ignored: incomplete global batches are always dropped (in-batch negatives
            want full batches, and every rank must see the same number of steps).
        valid_label_columns, generator: unused (the sampler has its own seeded generator).
        seed: the sampler's seed unless ``sampler_seed`` is given (the trainer passes ``args.seed``).
        data: the :class:`ParallelQADataset` the table was built from.
        sampler: a name of ``hybrid_fast.sampling.SAMPLERS``; ``alpha`` for ``"hybrid"``.
        world_size: processes accelerate shards over; default the torch.distributed world size
            (1 when not distributed). See the module docstring.

    Iteration yields, for each global step of the current epoch, ``world_size`` lists of
    ``batch_size`` row indices (rank 0's slice first); ``len`` counts those lists.
    ``set_epoch(e)`` (called by the trainer, also through accelerate's wrappers) selects the
    epoch; the batches of epoch e step s are those of ``hybrid_fast.train.Trainer``'s sampler with
    the same seed (its ``next_batch`` stream).

    Raises:
        ValueError: ``len(dataset)`` does not match ``data`` (the table belongs to other data), or
            as :func:`hybrid_fast.sampling.make_sampler` (unknown sampler, bad alpha, global batch
            larger than the data).
    """

    def __init__(self, dataset, batch_size: int, drop_last: bool = True, valid_label_columns=None, generator=None,
                 seed: int = 0, *, data: "ParallelQADataset", sampler: str = "hybrid", alpha: float = 0.5,
                 sampler_seed: int | None = None, world_size: int | None = None):
        super().__init__(dataset, batch_size=batch_size, drop_last=True, valid_label_columns=valid_label_columns,
                         generator=generator, seed=seed)
        if world_size is None:  # the default group accelerate shards over; 1 without torch.distributed
            from ..distributed.shards import world

            world_size = world()[0]
        self.plan = make_sampler(sampler, data.num_groups, data.languages, batch_size, alpha=alpha,
                                 seed=seed if sampler_seed is None else sampler_seed, world_size=world_size)
        self.rows = IndexBatchSampler(self.plan)
        expected = data.num_groups * len(data.languages) ** 2 * 3
        if len(dataset) != expected:
            raise ValueError(f"dataset: expected the table of parallel_st_dataset(data) ({expected} rows for "
                             f"{data.num_groups} groups x {len(data.languages)}^2 language pairs x 3 fields), "
                             f"got {len(dataset)} rows")
        self.world_size = world_size
        # accelerate's DataLoaderShard.set_epoch reaches a wrapped batch sampler's .sampler
        self.sampler = self

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.plan) * self.world_size

    def __iter__(self):
        epoch = self.epoch
        for step in range(len(self.plan)):
            rows = [self.rows.row(key) for key in self.plan.global_batch(epoch, step)]
            for rank in range(self.world_size):
                yield rows[rank * self.batch_size:(rank + 1) * self.batch_size]

    def batch_type(self, step: int) -> tuple[str, str | None]:
        """``("mono", lang)`` / ``("cross", None)`` / ``("mixed", None)`` of global step ``step``
        of the current epoch (the same for every rank)."""
        return self.plan.batch_type(self.epoch, step)


def parallel_batch_sampler(data: "ParallelQADataset", sampler: str = "hybrid", *, alpha: float = 0.5,
                           seed: int | None = None, world_size: int | None = None):
    """The ``batch_sampler=`` value of ``SentenceTransformerTrainingArguments`` drawing ``sampler``
    batches (``hybrid`` with ``alpha``, ``x-x-mono``, ``x-y``, ``en-en``, ``x-x``, ``simcse``) from
    the table ``parallel_st_dataset(data)``; ``seed`` default: the trainer's ``args.seed``.
    See :class:`ParallelSTBatchSampler`.

    Raises:
        ValueError: unknown ``sampler`` (checked here, before training starts).
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler: expected one of {sorted(SAMPLERS)}, got {sampler!r}")
    return partial(ParallelSTBatchSampler, data=data, sampler=sampler, alpha=alpha, sampler_seed=seed,
                   world_size=world_size)


__all__ = ["GROUP_COLUMN", "parallel_st_dataset", "ParallelSTBatchSampler", "parallel_batch_sampler"]
