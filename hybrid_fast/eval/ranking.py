"""Ranking helpers over embeddings (torch only; no model code).

* :func:`count_outranking_per_group` gives, for every relevant item of every query, how many
  candidates of each group outrank it in the full ranking: the exact input of full-ranking mAP,
  computed chunk by chunk in O(chunk x N) memory.
* :func:`search_topk` is the one place the top-k search backend is chosen (BEIR runs).

Scores are inner products ``q . c`` (cosine when the embeddings are L2-normalised). Ties are
deterministic: among equal scores the lower candidate index ranks first.
"""

from __future__ import annotations

import torch


def _check_embeddings(queries: torch.Tensor, candidates: torch.Tensor) -> None:
    if queries.ndim != 2 or candidates.ndim != 2:
        raise ValueError(
            f"expected 2-D embeddings [Q, d] and [N, d], got shapes {tuple(queries.shape)} and {tuple(candidates.shape)}"
        )
    if queries.shape[1] != candidates.shape[1]:
        raise ValueError(f"embedding sizes differ: queries d={queries.shape[1]}, candidates d={candidates.shape[1]}")


def count_outranking_per_group(
    queries: torch.Tensor,
    candidates: torch.Tensor,
    relevant: torch.Tensor,
    group_ids: torch.Tensor,
    num_groups: int | None = None,
    *,
    chunk_size: int = 256,
) -> torch.Tensor:
    """Count, per group, the candidates that outrank each relevant item.

    Candidate ``c`` outranks relevant item ``r`` for query ``q`` when ``s(q, c) > s(q, r)``, or
    ``s(q, c) == s(q, r)`` and ``c < r`` (index order). So the 1-based rank of ``r`` among the
    candidates of group ``g`` (``r`` in ``g``) is ``out[q, j, g] + 1``, and among all candidates
    ``out[q, j, :].sum() + 1``.

    Args:
        queries: ``[Q, d]`` float.
        candidates: ``[N, d]`` float, same dtype and device as ``queries``.
        relevant: ``[Q, R]`` int64 candidate indices, ``-1`` = padding.
        group_ids: ``[N]`` int64 in ``[0, G)`` (e.g. the candidate's language). Any order; the
            candidates are regrouped internally (stable), original indices kept for ties.
        num_groups: ``G``; default ``group_ids.max() + 1``.
        chunk_size: queries per chunk (memory O(chunk x N + chunk x R x max group size)).

    Returns:
        int64 ``[Q, R, G]``; all zeros on padding entries.

    Complexity: ``2 Q N d`` flops for the scores, ``~3 Q R N`` comparisons.

    Raises:
        ValueError: shape mismatches, indices out of range, ``chunk_size < 1``.
    """
    _check_embeddings(queries, candidates)
    num_queries, num_candidates = queries.shape[0], candidates.shape[0]
    if relevant.ndim != 2 or relevant.shape[0] != num_queries:
        raise ValueError(f"relevant: expected shape [{num_queries}, R], got {tuple(relevant.shape)}")
    if group_ids.shape != (num_candidates,):
        raise ValueError(f"group_ids: expected shape [{num_candidates}], got {tuple(group_ids.shape)}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size: expected >= 1, got {chunk_size}")
    relevant = relevant.to(torch.int64)
    if relevant.numel() and (relevant.max() >= num_candidates or relevant.min() < -1):
        raise ValueError(f"relevant: expected indices in [-1, {num_candidates}), got range [{int(relevant.min())}, {int(relevant.max())}]")
    group_ids = group_ids.to(torch.int64)
    num_groups = int(group_ids.max()) + 1 if num_groups is None else num_groups
    if num_candidates and (group_ids.min() < 0 or group_ids.max() >= num_groups):
        raise ValueError(f"group_ids: expected values in [0, {num_groups}), got range [{int(group_ids.min())}, {int(group_ids.max())}]")

    # Regroup candidates into contiguous blocks (stable: index order kept inside a block).
    order = torch.sort(group_ids, stable=True).indices
    grouped = candidates[order]
    sizes = torch.bincount(group_ids, minlength=num_groups).tolist()
    bounds = [0]
    for size in sizes:
        bounds.append(bounds[-1] + size)

    position_of = torch.empty_like(order)  # original index -> column in `grouped`
    position_of[order] = torch.arange(num_candidates)
    num_relevant = relevant.shape[1]
    out = torch.zeros(num_queries, num_relevant, num_groups, dtype=torch.int64)
    padding = relevant < 0
    safe_relevant = relevant.clamp(min=0)
    for start in range(0, num_queries, chunk_size):
        stop = min(start + chunk_size, num_queries)
        scores = queries[start:stop] @ grouped.T  # [c, N], grouped order
        rel_index = safe_relevant[start:stop]  # original indices [c, R]
        # The relevant item's score is read from the same matmul, so it compares equal to itself.
        rel_scores = scores.gather(1, position_of[rel_index])  # [c, R]
        rel_scores_3d = rel_scores.unsqueeze(2)
        rel_index_3d = rel_index.unsqueeze(2)
        for g in range(num_groups):
            lo, hi = bounds[g], bounds[g + 1]
            if lo == hi:
                continue
            block = scores[:, lo:hi].unsqueeze(1)  # [c, 1, n_g]
            higher = (block > rel_scores_3d).sum(-1)
            tied_before = ((block == rel_scores_3d) & (order[lo:hi].view(1, 1, -1) < rel_index_3d)).sum(-1)
            out[start:stop, :, g] = higher + tied_before
    out[padding] = 0
    return out


def search_topk(
    queries: torch.Tensor, corpus: torch.Tensor, k: int, *, backend: str = "auto", chunk_size: int = 1024
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact inner-product top-k: ``(scores [Q, k'], indices [Q, k'])``, ``k' = min(k, N)``.

    Rows are sorted by descending score, ties by ascending corpus index. ``backend="auto"`` is
    the fused ``hybrid_fast.topk_search``; ``"torch"`` the pure-PyTorch oracle
    (``hybrid_fast.reference.topk_search``) over query chunks (memory O(chunk x N)). This is the
    only function to change to switch backends.

    Raises:
        ValueError: shape mismatch, ``k < 1`` or an unknown ``backend`` (choices: auto, torch).
    """
    if backend not in ("auto", "torch"):
        raise ValueError(f"backend: expected 'auto' or 'torch', got {backend!r}")
    _check_embeddings(queries, corpus)
    if k < 1:
        raise ValueError(f"k: expected >= 1, got {k}")
    k = min(k, corpus.shape[0])
    import hybrid_fast

    if backend == "auto":
        return hybrid_fast.topk_search(queries, corpus, k, metric="ip")
    parts = [hybrid_fast.reference.topk_search(queries[start : start + chunk_size], corpus, k)
             for start in range(0, queries.shape[0], chunk_size)]
    return torch.cat([s for s, _ in parts]), torch.cat([i for _, i in parts])
