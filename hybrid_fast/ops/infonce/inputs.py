"""Validation of :func:`hybrid_fast.infonce_loss`'s arguments (shared by the API and the
reference): errors name the argument, what was expected and what came."""
from __future__ import annotations

import torch

from .._common.validation import check_finite, check_index_vector, check_matrix, check_same

REDUCTIONS = ("mean", "sum", "none")


def infonce_inputs(q, p, labels, q_groups, p_groups, reduction):
    """Validate and normalise the arguments of :func:`hybrid_fast.infonce_loss`.

    Returns ``(q, p, labels, q_groups, p_groups)``, contiguous, with default labels
    ``arange(B)`` and ``q_groups = p_groups[labels]`` when only ``p_groups`` is given.
    """
    check_matrix(q, "q", dim_name="B")
    check_matrix(p, "p", dim_name="N")
    check_same(q, p, "q", "p")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    B, N = q.shape[0], p.shape[0]
    if labels is None:
        if N < B:
            raise ValueError(f"default labels arange(B) need N >= B: got B = {B} queries and N = {N} "
                             f"passages; pass labels= explicitly")
        labels = torch.arange(B, device=q.device)
    else:
        labels = check_index_vector(labels, "labels", B, "B", q.device, upper=N, upper_name="N (rows of p)")
    if q_groups is not None and p_groups is None:
        raise ValueError("q_groups was given without p_groups: masking needs both (or p_groups alone, "
                         "with q_groups defaulting to p_groups[labels])")
    if p_groups is not None:
        p_groups = check_index_vector(p_groups, "p_groups", N, "N", q.device)
        if q_groups is None:
            q_groups = p_groups.index_select(0, labels)
        else:
            q_groups = check_index_vector(q_groups, "q_groups", B, "B", q.device)
    check_finite(q, "q")
    check_finite(p, "p")
    return q.contiguous(), p.contiguous(), labels, q_groups, p_groups
