"""The torch ops behind infonce_loss: opcheck, torch.compile, ISA dispatch, missing-extension errors."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import hybrid_fast as hf
from hybrid_fast import _ext
from oracle_utils import make_inputs

needs_cpu_kernel = pytest.mark.skipif(not _ext.cpu.available, reason=f"compiled module unusable: {_ext.cpu.error}")


def _op_args(dtype, requires_grad):
    q, p, lab, qg, pg = make_inputs(13, 29, 7, dtype, groups=5, labels="random")
    q.requires_grad_(requires_grad)
    p.requires_grad_(requires_grad)
    scale = torch.tensor(5.0, dtype=torch.float64 if dtype == torch.float64 else torch.float32,
                         requires_grad=requires_grad)
    return q, p, lab, scale, qg, pg


@needs_cpu_kernel
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("blocks", [(0, 0), (4, 8)])
def test_opcheck(dtype, blocks, seed):
    ops = torch.ops.hybrid_fast
    q, p, lab, scale, qg, pg = _op_args(dtype, requires_grad=True)
    torch.library.opcheck(ops.infonce_fwd.default, (q, p, lab, scale, qg, pg, *blocks))
    torch.library.opcheck(ops.infonce_fwd.default, (q, p, lab, scale, None, None, *blocks))
    w = torch.rand(13, dtype=scale.dtype) + 0.1
    torch.library.opcheck(ops.infonce_fused.default, (q, p, lab, scale, qg, pg, w, *blocks))
    rows, lse = ops.infonce_fwd(q.detach(), p.detach(), lab, scale.detach(), qg, pg)
    g = torch.rand_like(rows)
    torch.library.opcheck(ops.infonce_bwd.default,
                          (g, torch.rand_like(lse), q.detach(), p.detach(), lab, scale.detach(), qg, pg, lse, *blocks))


@needs_cpu_kernel
@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("symmetric", [False, True])
def test_torch_compile_fullgraph(reduction, symmetric, seed):
    q, p, lab, scale, qg, pg = _op_args(torch.float32, requires_grad=True)

    def step(q, p, scale):
        loss = hf.infonce_loss(q, p, lab, scale=scale, q_groups=qg, p_groups=pg, symmetric=symmetric,
                               reduction=reduction, backend="cpu")
        return loss.sum()

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    eager_loss = step(q, p, scale)
    eager_grads = torch.autograd.grad(eager_loss, (q, p, scale))
    comp_loss = compiled(q, p, scale)
    comp_grads = torch.autograd.grad(comp_loss, (q, p, scale))
    torch.testing.assert_close(comp_loss, eager_loss)
    for a, b in zip(comp_grads, eager_grads):
        torch.testing.assert_close(a, b)


@needs_cpu_kernel
def test_torch_compile_inductor(seed):
    q, p, lab, scale, qg, pg = _op_args(torch.float32, requires_grad=True)
    compiled = torch.compile(lambda q, p: hf.infonce_loss(q, p, lab, q_groups=qg, p_groups=pg), fullgraph=True)
    loss = compiled(q, p)
    loss.backward()
    ref = hf.reference.infonce_loss(q.detach().double(), p.detach().double(), lab, q_groups=qg, p_groups=pg)
    torch.testing.assert_close(loss.double(), ref, rtol=1e-4, atol=1e-5)
    assert q.grad is not None and torch.isfinite(q.grad).all()


@needs_cpu_kernel
@pytest.mark.parametrize("isa", ["default", "avx2"])
def test_each_compiled_isa_matches_reference(isa):
    """ATEN_CPU_CAPABILITY caps the SIMD variant: run each one in a fresh process."""
    code = (
        "import torch, hybrid_fast as hf, hybrid_fast._C as C\n"
        "from hybrid_fast.ops.infonce.api import loss_with_tiles\n"
        "torch.manual_seed(3)\n"
        "q = torch.randn(37, 21, dtype=torch.float64); p = torch.randn(70, 21, dtype=torch.float64)\n"
        "pg = torch.randint(0, 7, (70,))\n"
        "for dt in (torch.float64, torch.float32):\n"
        "    a = loss_with_tiles(q.to(dt), p.to(dt), p_groups=pg, col_block=19, reduction='none')\n"
        "    b = hf.reference.infonce_loss(q.to(dt).double(), p.to(dt).double(), p_groups=pg, reduction='none')\n"
        "    torch.testing.assert_close(a.double(), b, rtol=1e-4, atol=1e-5)\n"
        "print(C.cpu_isa())\n"
    )
    env = dict(os.environ, ATEN_CPU_CAPABILITY=isa)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    used = out.stdout.strip().splitlines()[-1]
    if isa == "avx2" and used != "avx2":
        pytest.skip(f"this CPU has no AVX2 (kernels use {used})")
    assert used == isa


def test_missing_extension_error_names_versions_and_rebuild(monkeypatch):
    broken = _ext._Extension("hybrid_fast._no_such_module")
    assert not broken.available
    monkeypatch.setattr(_ext, "cpu", broken)
    q, p, *_ = make_inputs(4, 4, 3, torch.float32)
    with pytest.raises(hf.MissingExtensionError) as info:
        hf.infonce_loss(q, p)
    msg = str(info.value)
    assert torch.__version__ in msg and "pip install --no-build-isolation" in msg and "hybrid_fast._no_such_module" in msg
    # The reference keeps working.
    assert torch.isfinite(hf.infonce_loss(q, p, backend="reference"))
    with pytest.raises(hf.MissingExtensionError, match="built for torch"):
        hf.infonce_loss(q, p, backend="cpu")


def test_stale_extension_is_refused(monkeypatch):
    class Stale:
        @staticmethod
        def build_info():
            return {"torch_version": "1.0.0"}

    monkeypatch.setitem(sys.modules, "hybrid_fast._stale_for_test", Stale)
    ext = _ext._Extension("hybrid_fast._stale_for_test")
    assert not ext.available
    with pytest.raises(hf.MissingExtensionError, match=r"torch 1\.0\.0"):
        ext.require("infonce_loss")


def test_backends_report():
    report = hf.backends()
    assert report["build"]["torch"] == torch.__version__
    cpu = report["ops"]["infonce_loss"]["cpu"]
    assert "reference" in cpu["available"]
    assert cpu["auto"] == ("cpu" if _ext.cpu.available else None)


def test_unknown_or_unavailable_backend_lists_choices():
    q, p, *_ = make_inputs(4, 4, 3, torch.float32)
    with pytest.raises(ValueError, match="backend must be 'auto' or one of"):
        hf.infonce_loss(q, p, backend="fast")
    with pytest.raises(RuntimeError, match=r"available: \['reference'"):
        hf.infonce_loss(q, p, backend="cuda")
