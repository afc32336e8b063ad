"""Contiguous shards of a sequence over ranks, and ragged all-gathers (no gradient).

The evaluators under ``torchrun`` encode one contiguous shard of the corpus and of the queries
per rank (:func:`shard_range`), then reassemble rows in rank order (:func:`all_gather_varlen`),
which is the original order: rank r's rows follow those of ranks < r.
"""
from __future__ import annotations

import torch
import torch.distributed as dist

from .gather import DTYPE_CODES, _compact, all_gather_blocks, pad_rows


def world(process_group=None) -> tuple[int, int]:
    """``(world_size, rank)`` of ``process_group``; ``(1, 0)`` when torch.distributed is not initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(process_group), dist.get_rank(process_group)
    return 1, 0


def shard_range(n: int, world_size: int, rank: int) -> tuple[int, int]:
    """``[lo, hi)`` of rank ``rank``'s contiguous shard of ``n`` items: the first ``n % W`` ranks
    get one item more; shards are in rank order and may be empty (``n < W``)."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    base, extra = divmod(n, world_size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


def all_gather_varlen(rows: torch.Tensor | None, process_group=None, *, row_shape: tuple = (),
                      dtype: torch.dtype | None = None) -> torch.Tensor:
    """Concatenate every rank's ``rows`` (n_r, ...) in rank order; n_r may differ or be 0.

    A rank with nothing to contribute may pass None: the trailing shape and dtype then come from
    the other ranks (``row_shape``/``dtype`` give them when no rank has rows). Collectives: one
    metadata all-gather, one of the rows padded to the largest n_r. No gradient.
    """
    W, _ = world(process_group)
    if W == 1:
        if rows is None:
            return torch.empty((0,) + tuple(row_shape), dtype=dtype or torch.float32)
        return rows
    codes = DTYPE_CODES
    inv = {v: k for k, v in codes.items()}
    shape = tuple(rows.shape[1:]) if rows is not None else tuple(row_shape)
    if len(shape) > 6:
        raise ValueError(f"rows may have at most 6 trailing dims, got {shape}")
    meta = torch.tensor([0 if rows is None else rows.shape[0], -1 if rows is None else codes[rows.dtype], len(shape)]
                        + list(shape) + [0] * (6 - len(shape)), dtype=torch.int64)
    if rows is None:
        meta[2] = -1  # unknown trailing shape
    m = all_gather_blocks(meta, process_group)
    known = [r for r in range(W) if int(m[r, 2]) >= 0]  # ranks that passed a tensor
    if not known:
        return torch.empty((0,) + tuple(row_shape), dtype=dtype or torch.float32)
    ref = m[known[0]]
    ndim = int(ref[2])
    tail = tuple(int(x) for x in ref[3:3 + ndim])
    ref_dtype = inv.get(int(ref[1]), dtype or torch.float32)
    for r in known:
        t = tuple(int(x) for x in m[r, 3:3 + int(m[r, 2])])
        if t != tail or (int(m[r, 0]) > 0 and inv.get(int(m[r, 1])) != ref_dtype):
            raise ValueError(f"all_gather_varlen: ranks disagree on row shape/dtype: rank {known[0]} has "
                             f"{tail} {ref_dtype}, rank {r} has {t} {inv.get(int(m[r, 1]))}")
    counts = m[:, 0].tolist()
    local = rows if rows is not None and rows.shape[0] > 0 else torch.empty((0,) + tail, dtype=ref_dtype)
    buf = all_gather_blocks(pad_rows(local.to(ref_dtype).contiguous(), max(max(counts), 1)), process_group)
    return _compact(buf, 0, counts)


def encode_shard(encoder, texts, kind: str, *, contexts=None, process_group=None):
    """Encode this rank's contiguous shard of ``texts`` (and ``contexts``) with a
    :class:`~hybrid_fast.eval.protocol.TextEncoder`; returns ``(embeddings or None when the shard
    is empty, lo)`` where ``lo`` is the shard's first global row."""
    W, rank = world(process_group)
    lo, hi = shard_range(len(texts), W, rank)
    if hi == lo:
        return None, lo
    if contexts is None:
        return encoder.encode(list(texts[lo:hi]), kind), lo
    return encoder.encode(list(texts[lo:hi]), kind, contexts=list(contexts[lo:hi])), lo


def encode_gathered(encoder, texts, kind: str, *, contexts=None, process_group=None) -> torch.Tensor:
    """Every row of ``texts`` encoded, each rank encoding one shard: :func:`encode_shard` then
    :func:`all_gather_varlen` (rows in the original order on every rank)."""
    local, _ = encode_shard(encoder, texts, kind, contexts=contexts, process_group=process_group)
    return all_gather_varlen(local, process_group)
