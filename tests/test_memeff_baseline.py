"""The memeff baseline of the GPU benchmark computes the same loss as ours.

memeff (PyPI, Apache-2.0; carried as benches/wheels/memeff-0.3.1-py3-none-any.whl) is CUDA-only
by its own checks, but its Triton kernels run under TRITON_INTERPRET=1 on CPU tensors once the
two CUDA-only probes are patched (``validate_features``: "features must be CUDA tensors";
``torch.cuda.get_device_capability``: its block tables, sm_90 here). This runs memeff's real
forward and backward kernels (the FlashAttention-shaped backward at these sizes) in a subprocess
(interpreter mode must be set before triton is imported) and compares loss and gradients with
``hybrid_fast.reference.infonce_loss`` in float64:

* ``MemoryEfficientQwen3Loss(temperature=1/scale, margin=2.0, normalized_inputs=True,
  stable=False)`` = one-direction InfoNCE (q -> p, in-batch negatives, B = N, mean): margin >= 2
  disables its false-negative mask, no q-q/d-d negatives, no internal L2 normalisation,
  textbook 1/temperature gradient scale. This is the one the benchmark compares against.
* ``MemoryEfficientCLIPLoss(...)`` = ``symmetric=True``.

memeff's kernels use exp2(S/T - 1/T): they assume unit-norm inputs, so the inputs are normalised.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

# Presence checks only: memeff runs in a subprocess (interpreter mode from its start); importing
# it here is not needed.
for _mod in ("memeff", "triton"):
    if importlib.util.find_spec(_mod) is None:
        pytest.skip(f"could not import {_mod!r}: not installed", allow_module_level=True)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = r"""
import json, os, sys
import torch
import memeff, memeff.clip_qwen3_loss as Q, memeff.clip_loss as CL
Q._validate_features = CL._validate_features = lambda x, y: None  # CUDA-only check
torch.cuda.get_device_capability = lambda device=None: (9, 0)     # block tables: sm_90
import hybrid_fast as hf
from hybrid_fast.benchmarks.infonce import memeff_loss
torch.manual_seed(0)
B, d, scale = 24, 32, 20.0  # memeff: d < 64 must be a power of two
q = torch.nn.functional.normalize(torch.randn(B, d, dtype=torch.float64), dim=1)
p = torch.nn.functional.normalize(q + 0.4 * torch.randn(B, d, dtype=torch.float64), dim=1)
out = {}
for name, sym, fn in [
        ("qwen3", False, memeff_loss(scale)[0]),  # exactly the benchmark's memeff provider
        ("clip", True, memeff.MemoryEfficientCLIPLoss(temperature=1 / scale, normalized_inputs=True, stable=False))]:
    qq, pp = q.float().requires_grad_(), p.float().requires_grad_()
    loss = fn(qq, pp)
    loss.backward()
    q64, p64 = q.clone().requires_grad_(), p.clone().requires_grad_()
    ref = hf.reference.infonce_loss(q64, p64, scale=scale, symmetric=sym)
    ref.backward()
    out[name] = dict(loss=loss.item(), ref=ref.item(),
                     dq=(qq.grad.double() - q64.grad).abs().max().item(),
                     dp=(pp.grad.double() - p64.grad).abs().max().item(),
                     gmax=max(q64.grad.abs().max().item(), p64.grad.abs().max().item()))
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def results():
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(l for l in proc.stdout.splitlines() if l.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


@pytest.mark.parametrize("name", ["qwen3", "clip"])
def test_memeff_loss_equals_reference(results, name):
    r = results[name]
    # fp32 kernels (memeff accumulates in fp32) against float64: fp32 tolerances
    assert abs(r["loss"] - r["ref"]) <= 2e-4 * abs(r["ref"]) + 2e-5, r
    assert r["dq"] <= 2e-4 * r["gmax"] + 2e-5, r
    assert r["dp"] <= 2e-4 * r["gmax"] + 2e-5, r
