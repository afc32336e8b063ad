"""The CPU providers of the per-op benchmark modules run and agree with the oracle on tiny inputs:
a benchmark that calls an op with arguments it no longer takes fails here, not on the day it is
run (the sweeps themselves are never timed in tests)."""
from __future__ import annotations

import pytest
import torch

import hybrid_fast as hf
from hybrid_fast.benchmarks import infonce as bench_infonce
from hybrid_fast.benchmarks import topk as bench_topk
from oracle_utils import needs_cpu_module


@needs_cpu_module
def test_topk_providers_run_and_agree():
    torch.manual_seed(0)
    corpus = torch.nn.functional.normalize(torch.randn(300, 32), dim=1)
    q = torch.nn.functional.normalize(torch.randn(4, 32), dim=1)
    fns = bench_topk.providers(q, corpus, corpus.to(torch.bfloat16), 5, bench_topk.faiss_index(corpus))
    _, want = hf.reference.topk_search(q, corpus, 5)
    for name, fn in fns.items():
        out = fn()
        ids = torch.as_tensor(out[1]) if not isinstance(out, torch.return_types.topk) else out.indices
        if "bf16 corpus" not in name:  # the bf16 corpus is another corpus: its own top-k
            assert torch.equal(ids.long(), want), name


@needs_cpu_module
@pytest.mark.parametrize("provider", bench_infonce.PROVIDERS)
def test_infonce_providers_run_and_agree(provider):
    q, p, y = bench_infonce.setup(8, 8, 16, torch.float32)
    loss = bench_infonce.loss_fn(provider)(q, p, y)
    want = hf.reference.infonce_loss(q.double(), p.double(), y, scale=bench_infonce.SCALE)
    torch.testing.assert_close(loss.double(), want, rtol=1e-4, atol=1e-5)
