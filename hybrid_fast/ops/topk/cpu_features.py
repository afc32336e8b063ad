"""CPU capability probe of the top-k precision strategy: is the bf16 screen worth it on this CPU?"""
from __future__ import annotations

from ... import _ext


def fast_bf16_matmul() -> bool:
    """Whether ``precision="exact"`` screens in bf16 here (bf16 GEMM tiles, certified candidate
    set, fp32 rescore) instead of scoring directly in fp32.

    ``HYBRID_FAST_BF16_GEMM=on|off`` (csrc/common/isa.h) forces it either way on any CPU (the
    exactness tests run both). ``auto``: CPUs with AMX-BF16 units only. On AVX512-BF16 without AMX
    the loss does use bf16 tiles, but the screen lost to direct fp32 scoring there: at Q = 1000,
    N = 50,000, d = 768, k = 10 (random unit vectors; AMD Zen 4, 2 threads) 3.0-4.0 s against
    1.95 s, with 366 MiB extra memory, because the worst-case bound certifies few queries on such
    data and every widening re-reads the corpus (benches/RESULTS.md, "bf16 GEMM tiles").
    Without the compiled module: False.
    """
    if not _ext.cpu.available:
        return False
    module = _ext.cpu.module
    mode = module.bf16_gemm_mode()
    if mode != "auto":
        return mode == "on"
    return module.bf16_units() == "amx-bf16"
