"""Fused InfoNCE loss: public API, autograd and fake (meta) registrations.

The kernels never materialise the (B, N) score matrix; see :func:`infonce_loss` for the contract.
Layers: raw kernels (csrc/cpu/infonce_cpu.cpp + csrc/cpu/simd/, kernels/triton, kernels/cuda) ->
the torch ops ``hybrid_fast::infonce_{fwd,bwd,fused}`` (schemas in csrc/ops_def.cpp; fake and
autograd formulas below) -> :func:`infonce_loss` (validation, backend choice, symmetric term).
"""
from __future__ import annotations

import torch

from . import registry
from .validation import compute_dtype, infonce_inputs, scale_tensor
from .. import _ext

_OP = registry.op("infonce_loss")


# ----------------------------------------------------------------------------- public API
def infonce_loss(q, p, labels=None, *, scale=20.0, q_groups=None, p_groups=None, symmetric=False,
                 reduction="mean", backend="auto", row_block: int = 0, col_block: int = 0,
                 gather_across_devices: bool = False, process_group=None):
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
        row_block, col_block: tile sizes (0 = tuned default); tests force small tiles with them.
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
    (row_block x min(N, col_block), 32 MiB at most by default). The reference needs
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
    q, p, labels, q_groups, p_groups = infonce_inputs(q, p, labels, q_groups, p_groups, reduction)
    s = scale_tensor(scale, q.dtype, q.device)
    _, impl = _OP.resolve(backend, q.device)
    one_direction = lambda qq, pp, ll, qg, pg: impl(qq, pp, ll, s, qg, pg, reduction, row_block, col_block)  # noqa: E731
    # Candidates of each direction: the local batch, or every rank's (cross-rank negatives).
    cand_p, cand_labels, cand_pg = p, labels, p_groups
    cand_q, q_labels, cand_qg, mean_factor = q, None, q_groups, None
    if gather_across_devices:
        from ..distributed.gather import cross_rank_candidates

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


def _needs_grad(*tensors) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def make_one_direction(namespace: str, prepare=None):
    """The registry implementation of one InfoNCE direction on the ops ``<namespace>::infonce_*``
    (``hybrid_fast`` for the C++ CPU kernels, ``hybrid_fast_triton`` for Triton): shared by every
    compiled backend. ``prepare()`` (optional) defines the ops on first use.

    mean/sum with gradients -> ``infonce_fused`` (loss and gradients in one pass);
    otherwise ``infonce_fwd`` (its backward, ``infonce_bwd``, recomputes the scores tile by tile).
    """

    def one_direction(q, p, labels, scale, q_groups, p_groups, reduction, row_block, col_block):
        if prepare is not None:
            prepare()
        ops = getattr(torch.ops, namespace)
        scale = scale.to(q.device)
        if reduction != "none" and _needs_grad(q, p, scale):
            B = q.shape[0]
            w = torch.full((B,), 1.0 / B if reduction == "mean" else 1.0, dtype=compute_dtype(q.dtype),
                           device=q.device)
            return ops.infonce_fused(q, p, labels, scale, q_groups, p_groups, w, row_block, col_block)[0]
        rows, _ = ops.infonce_fwd(q, p, labels, scale, q_groups, p_groups, row_block, col_block)
        if reduction == "mean":
            return rows.mean()
        return rows.sum() if reduction == "sum" else rows

    return one_direction


infonce_one_direction_compiled = make_one_direction("hybrid_fast")


def infonce_one_direction_reference(q, p, labels, scale, q_groups, p_groups, reduction, row_block, col_block):
    """Registry implementation of backend "reference" (same signature as the compiled ones): the
    pure-PyTorch oracle, differentiable through plain torch ops; materialises the (B, N) scores,
    so the tile sizes do not apply. Never chosen by "auto" (not in ``auto_order``)."""
    from ..reference.infonce import infonce_rows, reduce_rows  # the oracle, by request

    return reduce_rows(infonce_rows(q, p, labels, scale, q_groups, p_groups), reduction)


_OP.register("reference", ("cpu", "cuda"), lambda d: True, infonce_one_direction_reference)
_OP.register("cpu", ("cpu",), registry.cpu_module_available, infonce_one_direction_compiled)


# ------------------------------------------------------- fake (meta) and autograd formulas
# One copy for every backend: registered on the C++ ops (schemas in csrc/ops_def.cpp) and on the
# Triton ops (hybrid_fast/ops/triton_backend.py), which share the schemas.
def register_infonce_formulas(namespace: str) -> None:
    """Register fake kernels and autograd formulas for ``<namespace>::infonce_{fwd,bwd,fused}``."""
    lib = namespace + "::"
    ops = lambda: getattr(torch.ops, namespace)  # noqa: E731  (resolved at backward time)

    @torch.library.register_fake(lib + "infonce_fwd")
    def _fwd_fake(q, p, labels, scale, q_groups, p_groups, row_block=0, col_block=0):
        return q.new_empty((q.shape[0],), dtype=compute_dtype(q.dtype)), q.new_empty((q.shape[0],), dtype=torch.float64)

    @torch.library.register_fake(lib + "infonce_bwd")
    def _bwd_fake(grad_rows, grad_lse, q, p, labels, scale, q_groups, p_groups, lse, row_block=0, col_block=0):
        return torch.empty_like(q), torch.empty_like(p), q.new_empty((), dtype=compute_dtype(q.dtype))

    @torch.library.register_fake(lib + "infonce_fused")
    def _fused_fake(q, p, labels, scale, q_groups, p_groups, row_weights, row_block=0, col_block=0):
        ct = compute_dtype(q.dtype)
        return (q.new_empty((), dtype=ct), q.new_empty((q.shape[0],), dtype=torch.float64), torch.empty_like(q),
                torch.empty_like(p), q.new_empty((), dtype=ct))

    def _scale_grad(dscale, scale):
        return dscale.to(scale.dtype).reshape(scale.shape)

    # infonce_fwd: exact backward for both outputs, through infonce_bwd.
    def _fwd_setup(ctx, inputs, output):
        q, p, labels, scale, q_groups, p_groups, row_block, col_block = inputs
        ctx.save_for_backward(q, p, labels, scale, q_groups, p_groups, output[1])
        ctx.blocks = (row_block, col_block)

    def _fwd_backward(ctx, grad_rows, grad_lse):
        q, p, labels, scale, q_groups, p_groups, lse = ctx.saved_tensors
        if grad_rows is None:  # only lse was used downstream
            grad_rows = torch.zeros_like(lse, dtype=compute_dtype(q.dtype))
        dq, dp, dscale = ops().infonce_bwd(
            grad_rows.contiguous(), None if grad_lse is None else grad_lse.contiguous(), q, p, labels, scale,
            q_groups, p_groups, lse, *ctx.blocks)
        return dq, dp, None, _scale_grad(dscale, scale), None, None, None, None

    torch.library.register_autograd(lib + "infonce_fwd", _fwd_backward, setup_context=_fwd_setup)

    # infonce_fused: the gradients were computed in the forward pass for the weighted loss;
    # backward only scales them by the upstream gradient of the loss. Its other outputs (lse and
    # the gradients themselves) are not differentiable.
    def _fused_setup(ctx, inputs, output):
        ctx.save_for_backward(output[2], output[3], output[4], inputs[3])
        ctx.mark_non_differentiable(output[1], output[2], output[3], output[4])

    def _fused_backward(ctx, grad_loss, *unused):
        dq, dp, dscale, scale = ctx.saved_tensors
        ds = _scale_grad(dscale * grad_loss.to(dscale.dtype), scale)
        # Plain eager tensors only: under tracing (fake/functional subclasses) keep the
        # data-independent path.
        eager = type(grad_loss) is torch.Tensor and not torch.compiler.is_compiling()
        if eager and float(grad_loss) == 1.0:
            # loss.backward(): hand over the gradients computed in the forward pass as they are,
            # saving two (B+N) x d passes and allocations. (A second backward through a retained
            # graph is caught by autograd's version counter if the gradients were modified.)
            return dq, dp, None, ds, None, None, None, None, None
        g = grad_loss.to(dq.dtype)
        return dq * g, dp * g, None, ds, None, None, None, None, None

    torch.library.register_autograd(lib + "infonce_fused", _fused_backward, setup_context=_fused_setup)


if _ext.cpu.available:  # the schemas come with the compiled module
    register_infonce_formulas("hybrid_fast")
