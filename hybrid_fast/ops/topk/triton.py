"""Backend "triton" of :func:`hybrid_fast.topk_search`: the torch op ``hybrid_fast_triton::topk_ip``
(same schema and contract as ``hybrid_fast::topk_ip`` in csrc/ops_def.cpp; tests/ops check that
the schemas agree) around the kernel of :mod:`.triton_kernel`.

Importing this module registers the backend only (no triton import); the op is defined on the
first call (:func:`hybrid_fast.ops._common.triton_helpers.torch_op`). Devices: "cuda", and "cpu"
only under ``TRITON_INTERPRET=1``. What the kernel does not take (k > 256, float64,
N >= 2^32 - 1) runs the chunked pure-PyTorch fallback (:func:`.merge.topk_chunked_reference`).
"""
from __future__ import annotations

import torch

from .._common import registry
from .formulas import register_topk_ip_fake
from .merge import topk_chunked_reference

NAMESPACE = "hybrid_fast_triton"
_STATE: dict = {}


def define_ops() -> dict:
    """Define the op once (first call), in the mode this process supports."""
    if "ops" not in _STATE:
        from .._common.triton_helpers import torch_op
        from . import triton_kernel as T

        @torch_op(NAMESPACE + "::topk_ip")
        def topk_ip_op(queries: torch.Tensor, corpus: torch.Tensor, k: int, exclude: torch.Tensor | None,
                       tile_q: int, tile_n: int, splits: int) -> tuple[torch.Tensor, torch.Tensor]:
            return T.topk_ip(queries, corpus, k, exclude, tile_q, tile_n, splits)

        register_topk_ip_fake(NAMESPACE)
        _STATE["ops"] = dict(topk_ip=topk_ip_op, topk_supported=T.fused_supported)
    return _STATE["ops"]


def topk_ip(q, c, k, exclude, tile_q, tile_n, splits):
    """Registry implementation (signature of :func:`hybrid_fast.ops.topk.cpu.topk_ip`)."""
    ops = define_ops()
    if ops["topk_supported"](q, c, k):
        return ops["topk_ip"](q, c, k, exclude, tile_q, tile_n, splits)
    return topk_chunked_reference(q, c, k, exclude)


registry.op("topk_search").register("triton", ("cpu", "cuda"), topk_ip, registry.triton_unavailable)
