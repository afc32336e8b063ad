"""CPU capability probe of the top-k precision strategy: are bf16 GEMM tiles fast on this CPU?"""
from __future__ import annotations

from ... import _ext


def fast_bf16_matmul() -> bool:
    """Whether ``precision="exact"`` screens in bf16 here: the compiled module's bf16 GEMM choice
    (csrc/common/isa.h): ``HYBRID_FAST_BF16_GEMM=on|off`` forces it, ``auto`` picks CPUs with
    AMX-BF16 units (``hybrid_fast.backends()["build"]["cpu_module"]["bf16_units"]``). Elsewhere the
    exact answer is fastest computed directly in fp32 (benches/RESULTS.md, "bf16 GEMM tiles").
    """
    return _ext.cpu.available and bool(_ext.cpu.module.bf16_gemm())
