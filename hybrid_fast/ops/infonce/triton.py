"""Backend "triton" of :func:`hybrid_fast.infonce_loss`: torch ops around the launchers of
:mod:`.triton_kernel`, with the fake and autograd formulas of :mod:`.formulas`.

Ops ``hybrid_fast_triton::infonce_{fwd,bwd,fused}``: the same schemas and contracts as
``hybrid_fast::infonce_{fwd,bwd,fused}`` in csrc/ops_def.cpp (tests/ops check that the schemas
agree), defined by :func:`hybrid_fast.ops._common.triton_helpers.torch_op` (``triton_op`` on a
GPU, ``custom_op`` under ``TRITON_INTERPRET=1``).

Importing this module registers the backend only (no triton import); the ops are defined on the
first call. Devices: "cuda", and "cpu" only under ``TRITON_INTERPRET=1``
(:func:`hybrid_fast.ops._common.registry.triton_unavailable`).
"""
from __future__ import annotations

import torch

from .._common import registry
from .formulas import make_one_direction, register_infonce_formulas

NAMESPACE = "hybrid_fast_triton"
_STATE: dict = {}


def define_ops() -> dict:
    """Define the torch ops once (first call), in the mode this process supports."""
    if "ops" in _STATE:
        return _STATE["ops"]
    from .._common.triton_helpers import torch_op
    from . import triton_kernel as K

    @torch_op(NAMESPACE + "::infonce_fwd")
    def infonce_fwd(q: torch.Tensor, p: torch.Tensor, labels: torch.Tensor, scale: torch.Tensor,
                    q_groups: torch.Tensor | None, p_groups: torch.Tensor | None, row_block: int,
                    col_block: int) -> tuple[torch.Tensor, torch.Tensor]:
        return K.infonce_fwd(q, p, labels, scale, q_groups, p_groups, row_block, col_block)

    @torch_op(NAMESPACE + "::infonce_bwd")
    def infonce_bwd(grad_loss_rows: torch.Tensor, grad_lse: torch.Tensor | None, q: torch.Tensor, p: torch.Tensor,
                    labels: torch.Tensor, scale: torch.Tensor, q_groups: torch.Tensor | None,
                    p_groups: torch.Tensor | None, lse: torch.Tensor, row_block: int,
                    col_block: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return K.infonce_bwd(grad_loss_rows, grad_lse, q, p, labels, scale, q_groups, p_groups, lse, row_block, col_block)

    @torch_op(NAMESPACE + "::infonce_fused")
    def infonce_fused(q: torch.Tensor, p: torch.Tensor, labels: torch.Tensor, scale: torch.Tensor,
                      q_groups: torch.Tensor | None, p_groups: torch.Tensor | None, row_weights: torch.Tensor,
                      row_block: int, col_block: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                                torch.Tensor, torch.Tensor]:
        return K.infonce_fused(q, p, labels, scale, q_groups, p_groups, row_weights, row_block, col_block)

    register_infonce_formulas(NAMESPACE)  # the same fake and autograd code as the C++ ops'
    _STATE["ops"] = ops = dict(infonce_fwd=infonce_fwd, infonce_bwd=infonce_bwd, infonce_fused=infonce_fused)
    return ops


# mean/sum with gradients -> infonce_fused (4 passes for 16-bit d <= 768:
# triton_kernel.passes), otherwise infonce_fwd (1 pass; its backward adds passes() - 1 more).
one_direction = make_one_direction(NAMESPACE, prepare=define_ops)

registry.op("infonce_loss").register("triton", ("cpu", "cuda"), one_direction, registry.triton_unavailable)
