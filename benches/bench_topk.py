"""pytest-benchmark file for exact top-k search (not a timed test: run explicitly).

    python -m pytest benches/bench_topk.py --benchmark-only -q

Providers: hybrid_fast (exact, fp32, bf16 corpus), FAISS IndexFlatIP, torch mm + topk, at a
mid-size shape that fits a CI box (the issue's full sweep: python -m hybrid_fast.benchmarks.topk --full).
"""
from __future__ import annotations

import pytest
import torch

from hybrid_fast.benchmarks.topk import faiss_index, providers

N, D = 50_000, 768


@pytest.fixture(scope="module")
def corpus():
    torch.manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(N, D), dim=1)
    return x, x.to(torch.bfloat16), faiss_index(x)


@pytest.mark.parametrize("provider", ["hybrid_fast exact (fp32)", "hybrid_fast fp32", "hybrid_fast exact (bf16 corpus)",
                                      "faiss IndexFlatIP", "torch mm + topk"])
@pytest.mark.parametrize("Q,k", [(1, 10), (16, 100), (256, 10), (256, 1000)])
def test_topk(benchmark, corpus, provider, Q, k):
    x, x_bf16, index = corpus
    q = torch.nn.functional.normalize(torch.randn(Q, D), dim=1)
    fns = providers(q, x, x_bf16, k, index)  # the CLI benchmark's providers (benchmarks/topk.py)
    if provider not in fns:
        pytest.skip(f"{provider}: not installed")
    benchmark.extra_info.update(Q=Q, N=N, d=D, k=k, flops=2 * Q * N * D)
    benchmark.pedantic(fns[provider], rounds=3, warmup_rounds=1)
