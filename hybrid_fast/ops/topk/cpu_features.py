"""CPU capability probe of the top-k precision strategy: is bf16 matmul fast on this CPU?"""
from __future__ import annotations

import torch


def fast_bf16_matmul() -> bool:
    """Whether this CPU multiplies bf16 much faster than fp32 (AMX-BF16 or AVX512-BF16).

    Only then does ``precision="exact"`` screen in bf16; on AVX2-only CPUs torch's bf16 matmul
    is a slow fallback, so the exact answer is fastest computed directly in fp32.
    """
    cap = torch.backends.cpu.get_cpu_capability()
    if cap != "AVX512":
        return False
    amx = getattr(torch._C._cpu, "_is_amx_tile_supported", lambda: False)()
    bf16 = getattr(torch._C._cpu, "_is_avx512_bf16_supported", lambda: False)()
    return bool(amx or bf16)
