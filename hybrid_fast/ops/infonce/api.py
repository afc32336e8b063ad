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
                 reduction="mean", backend="auto"):
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

    Returns:
        0-d loss (mean/sum) or (B,) losses ("none"), float32 for float32/bf16/fp16 inputs,
        float64 for float64. Differentiable w.r.t. q, p and scale.

    Numerics: bf16/fp16 inputs are upcast to fp32 tile by tile; accumulation in fp32 (fp64 for
    fp64). Log-sum-exp is computed online (running max), so any scale is stable. Expected error
    vs an fp64 evaluation on the same inputs: ~1e-5 relative in fp32.

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
                           reduction=reduction, backend=backend)


def loss_with_tiles(q, p, labels=None, *, scale=20.0, q_groups=None, p_groups=None, symmetric=False,
                    reduction="mean", backend="auto", row_block: int = 0, col_block: int = 0):
    """:func:`infonce_loss` with the tile sizes that tests force (not public API): ``row_block``
    query rows and ``col_block`` candidates per tile (0 = tuned default); small tiles exercise
    the multi-tile paths on tiny inputs. Ignored by the reference."""
    q, p, labels, q_groups, p_groups = infonce_inputs(q, p, labels, q_groups, p_groups, reduction)
    s = scale_tensor(scale, q.dtype, q.device)
    _, impl = OP.resolve(backend, q.device)
    one_direction = lambda qq, pp, ll, qg, pg: impl(qq, pp, ll, s, qg, pg, reduction, row_block, col_block)  # noqa: E731
    loss = one_direction(q, p, labels, q_groups, p_groups)
    if symmetric:
        p_pos = p.index_select(0, labels)
        pg_pos = p_groups.index_select(0, labels) if p_groups is not None else None
        back = one_direction(p_pos, q, torch.arange(q.shape[0], device=q.device), pg_pos, q_groups)
        loss = (loss + back) / 2
    return loss


__all__ = ["infonce_loss", "loss_with_tiles"]
