"""Fake (meta) kernels of the top-k ops, so that torch.compile and opcheck can trace them. Top-k
has no autograd formula (ids are not differentiable). One fake serves ``hybrid_fast::topk_ip``
and ``hybrid_fast_triton::topk_ip`` (same schema); the CUDA k-selection ops have their own."""
from __future__ import annotations

import torch

from .._common.validation import compute_dtype


def topk_ip_fake(queries, corpus, k, exclude=None, tile_q=0, tile_n=0, splits=0):
    Q = queries.shape[0]
    return (queries.new_empty((Q, k), dtype=compute_dtype(queries.dtype)),
            queries.new_empty((Q, k), dtype=torch.int64))


def register_topk_ip_fake(namespace: str) -> None:
    """Register :func:`topk_ip_fake` for ``<namespace>::topk_ip``."""
    torch.library.register_fake(namespace + "::topk_ip")(topk_ip_fake)


def register_cuda_selection_fakes(namespace: str) -> None:
    """Fakes of ``<namespace>::topk_from_scores`` and ``topk_merge_keys`` (backend "cuda")."""

    @torch.library.register_fake(namespace + "::topk_from_scores")
    def _from_scores_fake(scores, k, col_offset=0, exclude=None, segments=1):
        torch._check(1 <= k <= scores.shape[1])
        return scores.new_empty((scores.shape[0], k), dtype=torch.int64)

    @torch.library.register_fake(namespace + "::topk_merge_keys")
    def _merge_keys_fake(keys, k):
        torch._check(1 <= k <= keys.shape[1])
        return keys.new_empty((keys.shape[0], k), dtype=torch.int64)
