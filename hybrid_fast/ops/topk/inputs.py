"""Validation of :func:`hybrid_fast.topk_search`'s arguments (shared by the API, the reference and
:class:`hybrid_fast.ExactIndex`): errors name the argument, what was expected and what came."""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .._common.validation import check_finite, check_matrix, compute_dtype

METRICS = ("ip", "cosine")
PRECISIONS = ("exact", "fp32", "bf16")


def exclude_tensor(exclude, Q: int, N: int, device: torch.device) -> torch.Tensor | None:
    """``exclude`` as a (Q, E) int64 tensor, -1 = none; accepts (Q,), (Q, E) or Q sequences."""
    if exclude is None:
        return None
    if isinstance(exclude, torch.Tensor):
        if exclude.dtype != torch.int64:
            raise TypeError(f"exclude must be int64 ids, got {exclude.dtype}")
        ex = exclude[:, None] if exclude.dim() == 1 else exclude
        if ex.dim() != 2 or ex.shape[0] != Q:
            raise ValueError(f"exclude must have shape (Q={Q},) or (Q={Q}, E), got {tuple(exclude.shape)}")
        ex = ex.to(device).contiguous()
    elif isinstance(exclude, Sequence):
        if len(exclude) != Q:
            raise ValueError(f"exclude must hold one list of ids per query (Q={Q}), got {len(exclude)}")
        rows = [[int(v)] if isinstance(v, int) else [int(x) for x in v] for v in exclude]
        E = max((len(r) for r in rows), default=0)
        ex = torch.full((Q, E), -1, dtype=torch.int64)
        for i, r in enumerate(rows):
            ex[i, :len(r)] = torch.tensor(r, dtype=torch.int64)
        ex = ex.to(device)
    else:
        raise TypeError(f"exclude must be None, an int64 tensor or a sequence of id lists, got {type(exclude).__name__}")
    if ex.numel() > 0 and not torch.compiler.is_compiling():
        lo, hi = int(ex.min()), int(ex.max())
        if lo < -1 or hi >= N:
            bad = lo if lo < -1 else hi
            raise ValueError(f"exclude out of range: expected -1 (none) or 0 <= id < N = {N}, got {bad}")
    return ex


def mask_excluded(scores: torch.Tensor, exclude: torch.Tensor, first_id: int = 0,
                  value: float = float("-inf")) -> torch.Tensor:
    """Set ``scores[r, j] = value`` (in place; returned) where row r of ``exclude`` ((Q, E) int64,
    -1 = none) holds the id ``first_id + j``: the columns of ``scores`` (Q, L) are the ids
    ``first_id .. first_id + L - 1`` (a corpus tile); ids outside them are left alone."""
    inside = (exclude >= first_id) & (exclude < first_id + scores.shape[1])
    rows = torch.arange(scores.shape[0], device=scores.device)[:, None].expand_as(exclude)
    scores[rows[inside], exclude[inside] - first_id] = value
    return scores


def topk_inputs(queries, corpus, k, metric, exclude, precision):
    """Validate and normalise the arguments of :func:`topk_search`.

    Returns ``(queries, corpus, exclude)``: contiguous, normalised for ``metric="cosine"``,
    ``exclude`` as (Q, E) int64 with -1 = none (or None).
    """
    check_matrix(queries, "queries", dim_name="Q")
    if isinstance(corpus, torch.Tensor) and corpus.dim() == 2 and corpus.shape[0] == 0:
        raise ValueError(f"corpus is empty: expected at least one row (N >= 1), got shape {tuple(corpus.shape)}")
    check_matrix(corpus, "corpus", dim_name="N")
    if queries.shape[1] != corpus.shape[1]:
        raise ValueError(f"queries and corpus must have the same dim, got queries {tuple(queries.shape)} "
                         f"and corpus {tuple(corpus.shape)}")
    if (queries.dtype == torch.float64) != (corpus.dtype == torch.float64):
        raise TypeError(f"float64 queries need a float64 corpus and vice versa, got queries {queries.dtype} "
                        f"and corpus {corpus.dtype}")
    if queries.device != corpus.device:
        raise ValueError(f"queries and corpus must be on the same device, got {queries.device} and {corpus.device}")
    N = corpus.shape[0]
    if not isinstance(k, int) or isinstance(k, bool):
        raise TypeError(f"k must be an int, got {type(k).__name__}")
    if not 1 <= k <= N:
        raise ValueError(f"k must satisfy 1 <= k <= N = {N} (corpus rows), got k = {k}")
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    check_finite(queries, "queries")
    ex = exclude_tensor(exclude, queries.shape[0], N, queries.device)
    if metric == "cosine":
        queries = normalize_rows(queries)
        corpus = normalize_rows(corpus)
    return queries.contiguous(), corpus.contiguous(), ex


def normalize_rows(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit L2 norm (computed in fp32/fp64, stored in x's dtype); zero rows stay 0."""
    ct = compute_dtype(x.dtype)
    return F.normalize(x.to(ct), dim=1).to(x.dtype)
