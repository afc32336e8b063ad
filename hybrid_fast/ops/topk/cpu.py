"""Backend "cpu" of :func:`hybrid_fast.topk_search`: the C++ op ``hybrid_fast::topk_ip``
(csrc/cpu/topk_ip_cpu.cpp, schema in csrc/ops_def.cpp) of the compiled module
``hybrid_fast._C``. ``tile_q`` / ``tile_n`` / ``splits``: query rows per tile, corpus rows per
tile, corpus ranges (0 = auto)."""
from __future__ import annotations

import torch

from ... import _ext
from .._common import registry
from .formulas import register_topk_ip_fake


def topk_ip(q, c, k, exclude, tile_q, tile_n, splits):
    """Registry implementation (the signature every top-k backend shares)."""
    return torch.ops.hybrid_fast.topk_ip(q, c, k, exclude, tile_q, tile_n, splits)


registry.op("topk_search").register(
    "cpu", ("cpu",), topk_ip, lambda device: _ext.cpu.unavailable_error("topk_search(backend='cpu')"))

if _ext.cpu.available:  # the schema comes with the compiled module
    register_topk_ip_fake("hybrid_fast")
