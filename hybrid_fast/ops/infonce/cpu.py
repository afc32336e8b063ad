"""Backend "cpu" of :func:`hybrid_fast.infonce_loss`: the C++ ops ``hybrid_fast::infonce_{fwd,bwd,fused}``
(csrc/cpu/infonce_cpu.cpp, schemas in csrc/ops_def.cpp) of the compiled module ``hybrid_fast._C``,
with the fake and autograd formulas of :mod:`.formulas`."""
from __future__ import annotations

from ... import _ext
from .._common import registry
from .formulas import make_one_direction, register_infonce_formulas

one_direction = make_one_direction("hybrid_fast")

registry.op("infonce_loss").register(
    "cpu", ("cpu",), one_direction, lambda device: _ext.cpu.unavailable_error("infonce_loss(backend='cpu')"))

if _ext.cpu.available:  # the schemas come with the compiled module
    register_infonce_formulas("hybrid_fast")
