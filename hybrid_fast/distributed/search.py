"""Sharded exact top-k search over ``torch.distributed`` ranks.

Each rank holds a contiguous shard of one corpus, shards in rank order: rank r's row j is global
row ``sum(N_<r) + j`` (sizes gathered, so shards may differ in size, be empty, or be smaller
than k). Each rank runs the fused top-k on its shard, the (Q, k) partials are all-gathered and
merged under the single-process order (score descending, then global id ascending), so the
result is the single-process search of the concatenated corpus.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from .gather import all_gather_blocks
from .shards import world


def sharded_search(local_search: Callable, n_local: int, num_queries: int, k: int, *, exclude=None,
                   result_on: int | str = "all", process_group=None, score_dtype: torch.dtype = torch.float32):
    """Merge per-shard top-k lists into the global top-k (the engine of :func:`sharded_topk_search`
    and of :class:`hybrid_fast.ExactIndex`'s sharded mode).

    ``local_search(kk, local_exclude)`` returns this shard's ``(scores, local ids)`` top-kk
    ((Q, kk), padded with (-inf, -1)); it is not called on an empty shard. ``exclude``: None or
    (Q, E) int64 **global** ids (-1 = none), identical on every rank. ``score_dtype``: the
    dtype of the scores every rank returns (float64 for float64 searches, else float32).

    Collectives: one all-gather of (N_r, Q, k) metadata, one of the (Q, k) scores, one of the ids.
    Returns ``(scores, global_ids)`` on every rank, or only on rank ``result_on`` (others get None).
    """
    W, rank = world(process_group)
    if result_on != "all" and not (isinstance(result_on, int) and 0 <= result_on < W):
        raise ValueError(f"result_on must be 'all' or a rank in [0, {W}), got {result_on!r}")
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be an int >= 1, got {k!r}")
    if W > 1:
        meta = all_gather_blocks(torch.tensor([n_local, num_queries, k], dtype=torch.int64), process_group)
        sizes = meta[:, 0].tolist()
        for col, what in ((1, "number of queries Q"), (2, "k")):
            if len(set(meta[:, col].tolist())) != 1:
                raise ValueError(f"sharded search: every rank must pass the same {what}, got "
                                 f"{dict(enumerate(meta[:, col].tolist()))} by rank")
    else:
        sizes = [n_local]
    total, offset = sum(sizes), sum(sizes[:rank])
    if not 1 <= k <= total:
        raise ValueError(f"k must satisfy 1 <= k <= N = {total} (rows of all shards together), got k = {k}")

    from ..ops.topk.merge import chunk_topk, sort_rows  # the single-process tie rule: score desc, then id asc

    scores = torch.full((num_queries, k), float("-inf"), dtype=score_dtype)
    ids = torch.full((num_queries, k), -1, dtype=torch.int64)
    if n_local > 0:
        s, i = chunk_topk(offset, n_local, k, exclude, local_search)  # this shard = the chunk at offset
        kk = s.shape[1]
        scores[:, :kk] = s.cpu()
        ids[:, :kk] = i.cpu()
    if W == 1:
        return scores, ids
    all_scores = all_gather_blocks(scores, process_group)  # (W, Q, k), shards in rank order
    all_ids = all_gather_blocks(ids, process_group)
    if result_on != "all" and rank != result_on:
        return None
    return sort_rows(torch.cat(all_scores.unbind(0), 1), torch.cat(all_ids.unbind(0), 1), k)


def sharded_topk_search(queries, local_corpus, k: int, *, metric: str = "ip", exclude=None, precision: str = "exact",
                        backend: str = "auto", result_on: int | str = "all", process_group=None):
    """Exact top-k of ``queries`` against a corpus sharded over the ranks of ``process_group``.

    Every rank passes the same ``queries`` (Q, d) and its own contiguous shard ``local_corpus``
    (N_r, d), shards in rank order; N_r may be 0 or smaller than k, and N need not divide by W.
    Each rank runs :func:`hybrid_fast.topk_search` on its shard (same ``metric``, ``precision``,
    ``backend``); the (Q, k) partials are all-gathered and merged by score descending, then
    global id ascending: the single-process search of the concatenated corpus, with the same
    tie rule. Without an initialised process group this is :func:`hybrid_fast.topk_search`.

    Args:
        exclude: None or (Q, E) int64 global ids to leave out (-1 = none), the same on every rank.
        result_on: "all" (every rank gets the result) or a rank (the others get None).

    Returns:
        ``(scores, global_ids)``, (Q, k) each, on CPU; rows padded with (-inf, -1) where fewer
        than k candidates remain after ``exclude``.

    Memory per rank: the local search's, plus W x Q x k (score, id) pairs for the merge.
    Communication: 2 x W x Q x k x 8 bytes received per rank (one all-gather each of scores, ids).

    Raises:
        ValueError naming the argument (the same on every rank) when ranks disagree on Q or k, or
        k > N (all shards together); the local search's errors otherwise.
    """
    from ..ops._common.validation import compute_dtype
    from ..ops.topk import topk_search
    from ..ops.topk.inputs import exclude_tensor

    if not isinstance(queries, torch.Tensor) or queries.dim() != 2:
        raise ValueError(f"queries must be a (Q, d) tensor, got "
                         f"{tuple(queries.shape) if isinstance(queries, torch.Tensor) else type(queries).__name__}")
    if not isinstance(local_corpus, torch.Tensor) or local_corpus.dim() != 2 or local_corpus.shape[1] != queries.shape[1]:
        raise ValueError(f"local_corpus must be a (N_r, d={queries.shape[1]}) tensor (N_r may be 0), got "
                         f"{tuple(local_corpus.shape) if isinstance(local_corpus, torch.Tensor) else type(local_corpus).__name__}")
    Q = queries.shape[0]
    ex = None
    if exclude is not None:  # global ids: checked against a bound that every id passes, the total N comes later
        ex = exclude_tensor(exclude, Q, torch.iinfo(torch.int64).max, torch.device("cpu"))

    def local_search(kk, local_ex):
        return topk_search(queries, local_corpus, kk, metric=metric, exclude=local_ex, precision=precision,
                           backend=backend)

    return sharded_search(local_search, local_corpus.shape[0], Q, k, exclude=ex, result_on=result_on,
                          process_group=process_group, score_dtype=compute_dtype(queries.dtype))
