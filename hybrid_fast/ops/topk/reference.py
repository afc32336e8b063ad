"""Pure-PyTorch exact top-k search: the test oracle, the "torch mm + topk" baseline and backend
"reference" of :func:`hybrid_fast.topk_search` (re-exported as ``hybrid_fast.reference``).

Materialises the (Q, N) score matrix on purpose. Semantics are those of
:func:`hybrid_fast.topk_search` with ``precision="fp32"`` (or fp64 for fp64 inputs).
"""
from __future__ import annotations

import torch

from .._common import registry
from .._common.validation import compute_dtype
from .inputs import mask_excluded, topk_inputs


def topk_scores(queries: torch.Tensor, corpus: torch.Tensor, k: int, exclude: torch.Tensor | None):
    """Top-k of validated inputs: ``exclude`` is None or a (Q, E) int64 tensor, -1 = none.

    Scores in the compute dtype; ties by ascending index (sort by index, then a stable sort by
    score); excluded ids and NaN scores are never returned; rows with fewer than k candidates
    are padded with (-inf, -1).
    """
    ct = compute_dtype(queries.dtype if queries.dtype == torch.float64 else corpus.dtype)
    scores = queries.to(ct) @ corpus.to(ct).T
    scores = torch.nan_to_num(scores, nan=float("-inf"))
    if exclude is not None and exclude.numel() > 0:
        mask_excluded(scores, exclude)
    # The columns are already in ascending index order, so a stable descending sort applies
    # the tie rule.
    values, indices = torch.sort(scores, dim=1, descending=True, stable=True)
    values, indices = values[:, :k].contiguous(), indices[:, :k].contiguous()
    indices[values == float("-inf")] = -1
    return values, indices


def topk_search(queries, corpus, k, *, metric="ip", exclude=None):
    """The naive oracle of :func:`hybrid_fast.topk_search`: ``sort(queries @ corpus.T)``.

    Same arguments, validation, outputs, tie rule and padding as the fused op with
    ``precision="fp32"``; memory O(Q N).
    """
    queries, corpus, exclude = topk_inputs(queries, corpus, k, metric, exclude, "fp32")
    return topk_scores(queries, corpus, k, exclude)


def _reference_impl(q, c, k, exclude, tile_q, tile_n, splits):
    """Registry implementation of backend "reference" (the tiles do not apply)."""
    return topk_scores(q, c, k, exclude)


registry.op("topk_search").register("reference", ("cpu", "cuda"), _reference_impl)
