"""CPU capability probe of the top-k precision strategy: are bf16 GEMM tiles fast on this CPU?"""
from __future__ import annotations

from ... import _ext


def fast_bf16_matmul() -> bool:
    """Whether ``precision="exact"`` screens in bf16 here: the compiled module's bf16 GEMM choice
    (csrc/common/isa.h): ``HYBRID_FAST_BF16_GEMM=on|off`` forces it, ``auto`` picks CPUs with
    bf16 matrix units (AMX-BF16; AVX512-BF16 with oneDNN's micro-kernel), reported in
    ``hybrid_fast.backends()["build"]["cpu_module"]``. Elsewhere the exact answer is computed
    directly in fp32 (benches/RESULTS.md, "bf16 GEMM tiles").
    """
    return _ext.cpu.available and bool(_ext.cpu.module.bf16_gemm())
