"""Fused InfoNCE loss: the public function, its contract, the backend choice and the symmetric term.

The kernels never materialise the (B, N) score matrix; see :func:`infonce_loss` for the contract.
Layers: raw kernels (csrc/cpu/infonce_cpu.cpp + csrc/cpu/simd/, :mod:`.triton_kernel`) -> the
torch ops ``hybrid_fast::infonce_{fwd,bwd,fused}`` (schemas in csrc/ops_def.cpp; fake and
autograd formulas in :mod:`.formulas`) -> the backends (:mod:`.cpu`, :mod:`.triton`,
:mod:`.reference`) -> :func:`infonce_loss` (validation :mod:`.inputs`, backend choice,
symmetric term).
"""
from __future__ import annotations

import torch

from .._common import registry
from .._common.validation import scale_tensor
from .inputs import infonce_inputs

OP = registry.op("infonce_loss")


def infonce_loss(q, p, labels=None, *, scale=20.0, q_groups=None, p_groups=None, symmetric=False,
                 reduction="mean", backend="auto", gather_across_devices: bool = False, process_group=None):
    r"""InfoNCE with in-batch negatives, fused: the (B, N) score matrix is never materialised.

    Computes, with :math:`s_{ij} = \text{scale} \cdot \langle q_i, p_j \rangle`,

    .. math:: \ell_i = \log \sum_{j \in A_i} e^{s_{ij}} - s_{i, y_i}

    where :math:`y_i` = ``labels[i]`` and :math:`A_i` holds every j except false negatives:
    ``p_groups[j] == q_groups[i] and j != labels[i]`` (the same passage in another language,
    duplicates). ``symmetric=True`` adds the passage-to-query term: row ``p[labels[i]]`` against
    all queries (query k masked when ``q_groups[k] == p_groups[labels[i]]`` and k != i) and
    averages the two directions (sentence-transformers' MultipleNegativesSymmetricRankingLoss).

    Args:
        q: (B, d) queries; float32, bfloat16, float16 or float64. Any device a backend serves.
        p: (N, d) candidates (positives and hard negatives in any layout), same dtype/device.
        labels: (B,) int64, index in ``p`` of each query's positive; default ``arange(B)``
            (needs N >= B).
        scale: float or 0-d tensor, > 0 (1/temperature). If it requires grad, its gradient is
            computed (learnable temperature).
        q_groups, p_groups: optional (B,) / (N,) int64 group ids for false-negative masking.
            ``p_groups`` alone implies ``q_groups = p_groups[labels]``.
        symmetric: add the passage-to-query direction.
        reduction: "mean" | "sum" | "none" ((B,) per-query losses).
        backend: "auto" | "reference" | "cpu" | "triton" | "cuda". "auto" picks the compiled
            kernel for the tensors' device (:func:`hybrid_fast.backends` lists the choice).
        gather_across_devices: under an initialised ``torch.distributed`` process group, score
            each rank's local queries against the candidates of **every** rank (cross-rank
            negatives); a no-op when torch.distributed is not initialised. ``labels`` and group
            ids stay local; the op offsets labels by the gathered candidate counts of the
            preceding ranks, gathers group ids with their rows, and sends candidate gradients
            back to their owners (reduce-scatter). The loss covers the local rows only; the
            parameter gradient DDP averages over ranks is the gradient of
            ``(1/W) sum_r loss_r``: for "mean" the single-process gradient of the global batch
            (also for unequal per-rank batch sizes: the local mean is then rescaled by
            ``W * B_r / B_global``), for "sum" the global sum's gradient / W, as DDP gives for
            any summed loss. ``scale`` must be equal on all ranks (checked) and stays an
            ordinary parameter. Every rank must call with the same dim, dtype, presence of
            group ids and ``symmetric`` (checked: the same error on every rank, no hang).
            Memory: O(W * (N_r + B_r) * d) for the gathered rows and their gradient plus
            one score tile; never a (B, W * N) matrix. See :mod:`hybrid_fast.distributed.gather`.
        process_group: the ``torch.distributed`` group to gather over (default: the world).

    Returns:
        0-d loss (mean/sum) or (B,) losses ("none"), float32 for float32/bf16/fp16 inputs,
        float64 for float64. Differentiable w.r.t. q, p and scale.

    Numerics: bf16/fp16 inputs are upcast to fp32 tile by tile; accumulation in fp32 (fp64 for
    fp64). Log-sum-exp is computed online (running max), so any scale is stable. Expected error
    vs an fp64 evaluation on the same inputs: ~1e-5 relative in fp32. On the CPU, bf16 inputs
    run as bf16 x bf16 -> fp32 GEMM tiles instead where the CPU has bf16 matrix units (AMX-BF16,
    AVX512-BF16; ``HYBRID_FAST_BF16_GEMM=auto``; ``on``/``off`` force either path, see
    ``hybrid_fast.backends()["build"]["cpu_module"]``): the scores are the same (bf16 products are
    exact in fp32), the gradient tile is rounded to bf16 before the two gradient products, which
    adds at most 2^-8 (|G| |p|) entrywise to dq (|G|^T |q| to dp) besides the bf16 rounding of the
    returned gradients (tests/test_bf16_gemm.py).

    Memory: O((B + N) * d) for gradients and upcast copies plus one score tile
    (32 MiB at most by default). The reference needs
    several (B, N) matrices.

    Complexity: forward alone 2BNd flops; training (mean/sum with grad) 3 x 2BNd when a tile spans
    all N columns (the default up to N = 32768 in fp32), else 4 x 2BNd; reduction="none" with
    grad: 4 x 2BNd (the backward needs the upstream per-row gradients). Symmetric adds the same on
    a (B, B) problem.

    Determinism: the CPU kernel is deterministic for a fixed thread count.

    Raises:
        ValueError / TypeError naming the argument for: wrong shapes, dtypes, devices, B = 0 or
        N = 0, N < B with default labels, labels out of range, group tensors of the wrong length,
        NaN/Inf inputs, non-positive scale, unknown reduction.
        RuntimeError listing the available backends when ``backend`` cannot run here;
        :class:`hybrid_fast.MissingExtensionError` when the compiled module is missing or stale.
    """
    return loss_with_tiles(q, p, labels, scale=scale, q_groups=q_groups, p_groups=p_groups, symmetric=symmetric,
                           reduction=reduction, backend=backend, gather_across_devices=gather_across_devices,
                           process_group=process_group)


def loss_with_tiles(q, p, labels=None, *, scale=20.0, q_groups=None, p_groups=None, symmetric=False,
                    reduction="mean", backend="auto", row_block: int = 0, col_block: int = 0,
                    gather_across_devices: bool = False, process_group=None):
    """:func:`infonce_loss` with the tile sizes that tests force (not public API): ``row_block``
    query rows and ``col_block`` candidates per tile (0 = tuned default); small tiles exercise
    the multi-tile paths on tiny inputs. Ignored by the reference."""
    q, p, labels, q_groups, p_groups = infonce_inputs(q, p, labels, q_groups, p_groups, reduction)
    s = scale_tensor(scale, q.dtype, q.device)
    _, impl = OP.resolve(backend, q.device)
    one_direction = lambda qq, pp, ll, qg, pg: impl(qq, pp, ll, s, qg, pg, reduction, row_block, col_block)  # noqa: E731
    # Candidates of each direction: the local batch, or every rank's (cross-rank negatives).
    cand_p, cand_labels, cand_pg = p, labels, p_groups
    cand_q, q_labels, cand_qg, mean_factor = q, None, q_groups, None
    if gather_across_devices:
        from ...distributed.gather import cross_rank_candidates

        x = cross_rank_candidates(q, p, labels, q_groups, p_groups, scale=s, symmetric=symmetric,
                                  group=process_group)
        if x is not None:
            cand_p, cand_labels, cand_pg, mean_factor = x.p, x.labels, x.p_groups, x.mean_factor
            if symmetric:
                cand_q, q_labels, cand_qg = x.q, x.q_labels, x.q_groups
    loss = one_direction(q, cand_p, cand_labels, q_groups, cand_pg)
    if symmetric:
        p_pos = p.index_select(0, labels)
        pg_pos = p_groups.index_select(0, labels) if p_groups is not None else None
        if q_labels is None:
            q_labels = torch.arange(q.shape[0], device=q.device)
        back = one_direction(p_pos, cand_q, q_labels, pg_pos, cand_qg)
        loss = (loss + back) / 2
    if mean_factor is not None and reduction == "mean":
        loss = loss * mean_factor
    return loss


__all__ = ["infonce_loss", "loss_with_tiles"]
