"""Pure-PyTorch InfoNCE: the test oracle, the "pure PyTorch" benchmark baseline and backend
"reference" of :func:`hybrid_fast.infonce_loss` (re-exported as ``hybrid_fast.reference``).

Materialises the (B, N) score matrix (and autograd keeps several of them alive), which is
exactly what the fused kernels avoid. Semantics are identical to :func:`hybrid_fast.infonce_loss`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .._common import registry
from .._common.validation import compute_dtype, scale_tensor
from .inputs import infonce_inputs


def infonce_rows(q: torch.Tensor, p: torch.Tensor, labels: torch.Tensor, scale: torch.Tensor,
                 q_groups: torch.Tensor | None, p_groups: torch.Tensor | None) -> torch.Tensor:
    """Per-query losses (B,) of one direction on validated inputs, in the compute dtype."""
    ct = compute_dtype(q.dtype)
    scores = scale.to(ct) * (q.to(ct) @ p.to(ct).T)
    if p_groups is not None:
        false_negative = q_groups[:, None] == p_groups[None, :]
        false_negative[torch.arange(q.shape[0], device=q.device), labels] = False
        scores = scores.masked_fill(false_negative, float("-inf"))
    return F.cross_entropy(scores, labels, reduction="none")


def reduce_rows(rows: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return rows.mean()
    if reduction == "sum":
        return rows.sum()
    return rows


def infonce_loss(q, p, labels=None, *, scale=20.0, q_groups=None, p_groups=None, symmetric=False,
                 reduction="mean"):
    """Reference of :func:`hybrid_fast.infonce_loss` (same arguments, same result)."""
    q, p, labels, q_groups, p_groups = infonce_inputs(q, p, labels, q_groups, p_groups, reduction)
    s = scale_tensor(scale, q.dtype, q.device)
    rows = infonce_rows(q, p, labels, s, q_groups, p_groups)
    if symmetric:
        p_pos = p.index_select(0, labels)
        pg_pos = p_groups.index_select(0, labels) if p_groups is not None else None
        back = infonce_rows(p_pos, q, torch.arange(q.shape[0], device=q.device), s, pg_pos, q_groups)
        rows = (rows + back) / 2
    return reduce_rows(rows, reduction)


def one_direction(q, p, labels, scale, q_groups, p_groups, reduction, row_block, col_block):
    """Registry implementation of backend "reference" (same signature as the compiled ones): the
    pure-PyTorch oracle, differentiable through plain torch ops; materialises the (B, N) scores,
    so the tile sizes do not apply. Never chosen by "auto" (not in ``auto_order``)."""
    return reduce_rows(infonce_rows(q, p, labels, scale, q_groups, p_groups), reduction)


registry.op("infonce_loss").register("reference", ("cpu", "cuda"), one_direction)
