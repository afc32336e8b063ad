"""One contract per op: the Triton backend's torch ops (``hybrid_fast_triton::``, defined in Python
from annotated signatures) have the same schemas as the C++ ops (``hybrid_fast::``, declared in
csrc/ops_def.cpp): same argument names, types and order, same returns. Defaults may differ only
where the Python ops have none (their callers pass every argument)."""
from __future__ import annotations

import pytest
import torch

from oracle_utils import interpreter, needs_cpu_module

OPS = ("infonce_fwd", "infonce_bwd", "infonce_fused", "topk_ip")


def _signature(op):
    schema = op.default._schema
    return ([(a.name, str(a.type)) for a in schema.arguments], [str(r.type) for r in schema.returns])


@needs_cpu_module
@interpreter
@pytest.mark.parametrize("name", OPS)
def test_triton_ops_have_the_cpp_schemas(name):
    from hybrid_fast.ops.infonce.triton import define_ops as define_infonce
    from hybrid_fast.ops.topk.triton import define_ops as define_topk

    define_infonce()
    define_topk()
    cpp = getattr(torch.ops.hybrid_fast, name)
    tri = getattr(torch.ops.hybrid_fast_triton, name)
    assert _signature(tri) == _signature(cpp), f"{name}: {tri.default._schema} != {cpp.default._schema}"
