"""Merging top-k lists under the tie rule (score desc, id asc): per-row sort of candidates, one
chunk's step (exclude to local ids, ids back to global; also each shard's step of the sharded
search), the chunk-by-chunk driver shared by :class:`hybrid_fast.ExactIndex` (memory-mapped shards) and the
GPU backends' fallback for what their kernels do not take."""
from __future__ import annotations

import torch

from .reference import topk_scores


def sort_rows(scores: torch.Tensor, indices: torch.Tensor, k: int):
    """Best k of each row under (score desc, index asc); -1 indices (padding) carry -inf."""
    scores = scores.masked_fill(indices < 0, float("-inf"))
    big = torch.iinfo(torch.int64).max
    by_index = torch.sort(indices.masked_fill(indices < 0, big), dim=1, stable=True)
    scores = scores.gather(1, by_index.indices)
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k]
    s, i = scores.gather(1, order), by_index.values.gather(1, order)
    i = i.masked_fill(s == float("-inf"), -1)
    return s.contiguous(), i.contiguous()


def chunk_topk(first_id: int, n: int, k: int, exclude, search):
    """One chunk's top-min(k, n) in global ids: the chunk of rows ``first_id .. first_id + n - 1``
    of a corpus searched with ``search(kk, local_exclude)`` (returning (scores, local ids),
    padding -1). ``exclude`` ((Q, E) global ids, -1 = none, or None) is shifted to local ids
    (ids outside the chunk become -1); the local ids returned are shifted back (-1 kept).
    The step of :func:`topk_over_chunks` and of :func:`hybrid_fast.distributed.sharded_search`."""
    local = None
    if exclude is not None:
        local = torch.where((exclude >= first_id) & (exclude < first_id + n), exclude - first_id,
                            torch.full_like(exclude, -1))
    s, i = search(min(k, n), local)
    return s, torch.where(i >= 0, i + first_id, i)


def topk_over_chunks(chunks, k: int, exclude, search):
    """Exact top-k over a corpus given as consecutive row chunks, merged under the tie rule.

    ``chunks`` yields ``(first_id, rows)`` in ascending id order; ``search(rows, kk, local_exclude)``
    returns the chunk's (scores, local ids) top-kk. ``exclude`` ((Q, E) global ids, -1 = none) is
    shifted per chunk. Concatenating the running best before the new chunk keeps equal scores in
    id order (earlier chunks hold smaller ids). Validation guarantees N >= k, so the result has k
    columns once every chunk is merged.
    """
    best_s = best_i = None
    for a, rows in chunks:
        s, i = chunk_topk(a, rows.shape[0], k, exclude, lambda kk, local, rows=rows: search(rows, kk, local))
        if best_s is not None:
            s, i = sort_rows(torch.cat([best_s, s], 1), torch.cat([best_i, i], 1), k)
        best_s, best_i = s, i
    return best_s, best_i


def topk_chunked_reference(q, c, k, exclude, chunk_elems: int = 1 << 26):
    """Fallback of the GPU backends for what their kernels do not take (Triton: k > 256, float64,
    N >= 2^32 - 1; CUDA: float64): score corpus chunks of
    max(k, chunk_elems / Q) rows (Q x chunk scores in memory, never Q x N) and keep the best k."""
    chunk = max(k, chunk_elems // max(1, q.shape[0]))
    chunks = ((n0, c[n0:n0 + chunk]) for n0 in range(0, c.shape[0], chunk))
    return topk_over_chunks(chunks, k, exclude, lambda rows, kk, ex: topk_scores(q, rows, kk, ex))
