"""pytest-benchmark entry for the fused InfoNCE loss (fwd+bwd) vs pure-PyTorch baselines.

    pytest benches/bench_infonce.py --benchmark-enable -m "" [--benchmark-json out.json]

Sizes are modest so a sweep finishes in minutes on 2 cores; the full sweep with peak memory and
roofline fractions is ``python -m hybrid_fast.benchmarks.infonce --full`` (benches/RESULTS.md).
"""
import pytest
import torch

from hybrid_fast.benchmarks.common import environment
from hybrid_fast.benchmarks.infonce import DTYPES, FORCED_BF16_GEMM, PROVIDERS, bf16_path, loss_fn, setup, step


@pytest.mark.parametrize("provider", [p for p in PROVIDERS if p != "naive"])
@pytest.mark.parametrize("B", [1024, 4096])
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_infonce_fwd_bwd(benchmark, provider, B, dtype):
    if provider == "linear_cross_entropy" and dtype == "bf16":
        pytest.skip("bf16 GEMM on a CPU without AVX512-BF16/AMX runs at ~0.5 GFLOP/s")
    if provider in FORCED_BF16_GEMM and dtype != "bf16":
        pytest.skip("bf16 inputs only (the hybrid_fast case runs this kernel)")
    q, p, y = setup(B, B, 768, DTYPES[dtype])
    fn = loss_fn(provider)
    env = environment()
    benchmark.extra_info.update(flops=3 * 2.0 * B * B * 768, threads=torch.get_num_threads(),
                                bf16_units=env["bf16_units"], bf16_path=bf16_path(provider, DTYPES[dtype]))
    benchmark.pedantic(step, args=(fn, q, p, y, "full", provider), rounds=3, warmup_rounds=1)
