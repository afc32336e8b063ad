"""The formulas of the InfoNCE torch ops ``<namespace>::infonce_{fwd,bwd,fused}``, written once for
every namespace that defines them (``hybrid_fast``: the C++ CPU kernels, schemas in
csrc/ops_def.cpp; ``hybrid_fast_triton``: the Triton kernels, the same schemas):

* :func:`register_infonce_formulas`: fake (meta) kernels and autograd formulas;
* :func:`make_one_direction`: the registry implementation of one loss direction on those ops
  (which op a call takes, the reduction).
"""
from __future__ import annotations

import torch

from .._common.validation import compute_dtype


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
