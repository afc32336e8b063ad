"""Backend "triton" of ``infonce_loss`` and ``topk_search``: torch ops around the kernels of
``hybrid_fast.triton`` (kernels/triton), with fake and autograd registrations.

Ops (namespace ``hybrid_fast_triton``, same schemas and contracts as ``hybrid_fast::infonce_fwd``,
``infonce_bwd``, ``infonce_fused`` and ``topk_ip`` in csrc/ops_def.cpp):

* on a GPU they are ``torch.library.triton_op`` s (torch.compile sees the Triton kernels);
* under ``TRITON_INTERPRET=1`` (CPU tensors) they are ``torch.library.custom_op`` s with
  ``register_fake``: triton_op runs eagerly there but opcheck/torch.compile fail on it.

Importing this module only registers the backend entries in :mod:`.registry` (no triton
import); the ops are defined on the first call. Devices: "cuda", and "cpu" only when
``TRITON_INTERPRET=1`` (``registry.triton_available``).
"""
from __future__ import annotations

import importlib
import os

import torch

from . import registry
from .infonce import make_one_direction, register_infonce_formulas
from .topk import topk_chunked_reference

NAMESPACE = "hybrid_fast_triton"
_STATE: dict = {}


def kernels():
    """The ``hybrid_fast.triton`` package (imports triton). Wheels and working editable installs
    ship it; in a source checkout whose editable install predates kernels/triton, the checkout's
    kernels/ folder is appended to ``hybrid_fast.__path__`` (first use only) so that
    ``hybrid_fast.triton`` resolves to kernels/triton."""
    try:
        return importlib.import_module("hybrid_fast.triton")
    except ImportError:
        pass
    import hybrid_fast

    root = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "kernels")
    if not os.path.exists(os.path.join(root, "triton", "__init__.py")):
        raise ImportError("hybrid_fast.triton is not installed and kernels/triton was not found; "
                          "reinstall with: pip install --no-build-isolation -e .")
    if root not in hybrid_fast.__path__:
        hybrid_fast.__path__.append(root)
    return importlib.import_module("hybrid_fast.triton")


def _define_ops():
    """Define the torch ops once (first call), in the mode this process supports."""
    if "ops" in _STATE:
        return _STATE["ops"]
    kernels()
    from hybrid_fast.triton import infonce as K
    from hybrid_fast.triton import topk as T

    interpret = os.environ.get("TRITON_INTERPRET") == "1"
    op_kind = torch.library.custom_op if interpret else torch.library.triton_op

    @op_kind(NAMESPACE + "::infonce_fwd", mutates_args=())
    def infonce_fwd(q: torch.Tensor, p: torch.Tensor, labels: torch.Tensor, scale: torch.Tensor,
                    q_groups: torch.Tensor | None, p_groups: torch.Tensor | None, row_block: int,
                    col_block: int) -> tuple[torch.Tensor, torch.Tensor]:
        return K.infonce_fwd(q, p, labels, scale, q_groups, p_groups, row_block, col_block)

    @op_kind(NAMESPACE + "::infonce_bwd", mutates_args=())
    def infonce_bwd(grad_rows: torch.Tensor, grad_lse: torch.Tensor | None, q: torch.Tensor, p: torch.Tensor,
                    labels: torch.Tensor, scale: torch.Tensor, q_groups: torch.Tensor | None,
                    p_groups: torch.Tensor | None, lse: torch.Tensor, row_block: int,
                    col_block: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return K.infonce_bwd(grad_rows, grad_lse, q, p, labels, scale, q_groups, p_groups, lse, row_block, col_block)

    @op_kind(NAMESPACE + "::infonce_fused", mutates_args=())
    def infonce_fused(q: torch.Tensor, p: torch.Tensor, labels: torch.Tensor, scale: torch.Tensor,
                      q_groups: torch.Tensor | None, p_groups: torch.Tensor | None, row_weights: torch.Tensor,
                      row_block: int, col_block: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                                torch.Tensor, torch.Tensor]:
        return K.infonce_fused(q, p, labels, scale, q_groups, p_groups, row_weights, row_block, col_block)

    @op_kind(NAMESPACE + "::topk_ip", mutates_args=())
    def topk_ip(queries: torch.Tensor, corpus: torch.Tensor, k: int, exclude: torch.Tensor | None, tile_q: int,
                tile_n: int, splits: int) -> tuple[torch.Tensor, torch.Tensor]:
        return T.topk_ip(queries, corpus, k, exclude, tile_q, tile_n, splits)

    # ---- fake kernels and autograd formulas: the same code as the C++ ops'
    register_infonce_formulas(NAMESPACE)

    @topk_ip.register_fake
    def _(queries, corpus, k, exclude, tile_q, tile_n, splits):
        Q = queries.shape[0]
        return queries.new_empty((Q, k), dtype=torch.float32), queries.new_empty((Q, k), dtype=torch.int64)

    _STATE["ops"] = ops = dict(infonce_fwd=infonce_fwd, infonce_bwd=infonce_bwd, infonce_fused=infonce_fused,
                               topk_ip=topk_ip, topk_supported=T.fused_supported)
    return ops


# Registry impl (signature of infonce_one_direction_compiled): mean/sum with gradients ->
# infonce_fused (4 passes for 16-bit d <= 768: hybrid_fast.triton.infonce.passes), otherwise
# infonce_fwd (1 pass; its backward adds passes() - 1 more).
infonce_one_direction = make_one_direction(NAMESPACE, prepare=lambda: _define_ops())


def topk_ip(q, c, k, exclude, tile_q, tile_n, splits):
    """Registry impl (signature of ``hybrid_fast.ops.topk._cpu_impl``)."""
    ops = _define_ops()
    if ops["topk_supported"](q, c, k):
        return ops["topk_ip"](q, c, k, exclude, tile_q, tile_n, splits)
    return topk_chunked_reference(q, c, k, exclude)


registry.op("infonce_loss").register("triton", ("cpu", "cuda"), registry.triton_available, infonce_one_direction)
registry.op("topk_search").register("triton", ("cpu", "cuda"), registry.triton_available, topk_ip)
