"""pytest-benchmark file for exact top-k search (not a timed test: run explicitly).

    python -m pytest benches/bench_topk.py --benchmark-only -q

Providers: hybrid_fast (exact, fp32, bf16 corpus), FAISS IndexFlatIP, torch mm + topk, at a
mid-size shape that fits a CI box (the issue's full sweep: python -m hybrid_fast.benchmarks.topk --full).
"""
from __future__ import annotations

import pytest
import torch

import hybrid_fast as hf

N, D = 50_000, 768


@pytest.fixture(scope="module")
def corpus():
    torch.manual_seed(0)
    return torch.nn.functional.normalize(torch.randn(N, D), dim=1)


def _provider(name, q, corpus, k):
    if name == "hybrid_fast exact":
        return lambda: hf.topk_search(q, corpus, k)
    if name == "hybrid_fast fp32":
        return lambda: hf.topk_search(q, corpus, k, precision="fp32")
    if name == "hybrid_fast bf16 corpus":
        cb = corpus.to(torch.bfloat16)
        return lambda: hf.topk_search(q, cb, k)
    if name == "faiss IndexFlatIP":
        faiss = pytest.importorskip("faiss")
        index = faiss.IndexFlatIP(D)
        index.add(corpus.numpy())
        return lambda: index.search(q.numpy(), k)
    return lambda: torch.topk(q @ corpus.T, k, dim=1)


@pytest.mark.parametrize("provider", ["hybrid_fast exact", "hybrid_fast fp32", "hybrid_fast bf16 corpus",
                                      "faiss IndexFlatIP", "torch mm + topk"])
@pytest.mark.parametrize("Q,k", [(1, 10), (16, 100), (256, 10), (256, 1000)])
def test_topk(benchmark, corpus, provider, Q, k):
    q = torch.nn.functional.normalize(torch.randn(Q, D), dim=1)
    fn = _provider(provider, q, corpus, k)
    benchmark.extra_info.update(Q=Q, N=N, d=D, k=k, flops=2 * Q * N * D)
    benchmark.pedantic(fn, rounds=3, warmup_rounds=1)
