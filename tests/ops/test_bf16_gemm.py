"""bf16 GEMM tiles (HYBRID_FAST_BF16_GEMM, csrc/common/isa.h): both paths on every CPU.

"off" upcasts bf16 inputs to fp32; "on" multiplies them as bf16 x bf16 -> fp32 GEMM tiles (what
"auto" picks on AMX-BF16 CPUs). Each test runs under both settings against the float64 oracle.

Tolerances (u = 2^-8, the bf16 unit roundoff):
- Scores (loss, top-k): the inputs are bf16 already, so their products are exact in fp32 and the
  scores carry fp32 summation error only on both paths: the fp32 tolerances of oracle_utils.
- Gradients: the "on" path rounds the fp32 gradient tile G = scale * w_i * (softmax - onehot) to
  bf16 before dq = G p and dp = G^T q (|bf16(G) - G| <= u |G| entrywise), and both paths round the
  result to bf16 (u |dq|). Hence, entrywise,
      |dq - dq_64| <= u |dq_64| + u (|G| |p|) + fp32 terms,   |dp - dp_64| <= u |dp_64| + u (|G|^T |q|) + ...
  with |G| |p| the product of the entrywise absolute values (the bound a gradient computed from
  bf16-rounded scores would break: their error is ~scale * u |s|, not u |G|). The fp32 terms
  (d- or N-term sums, exp to 1 ulp) are covered by 1e-5 of the largest entry.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import hybrid_fast as hf
from hybrid_fast import _ext
from hybrid_fast.ops.infonce.api import loss_with_tiles
from hybrid_fast.ops.topk import fast_bf16_matmul
from hybrid_fast.ops.topk.api import search_with_tiles
from oracle_utils import assert_close, assert_valid_topk, check_against_reference, integer_data, make_inputs, near_tie_data

pytestmark = pytest.mark.skipif(not _ext.cpu.available, reason="no compiled module (hybrid_fast._C)")
U = 2.0 ** -8
ENV = "HYBRID_FAST_BF16_GEMM"


@pytest.fixture(params=["off", "on"])
def bf16_gemm(request, monkeypatch):
    monkeypatch.setenv(ENV, request.param)
    assert _ext.cpu.module.bf16_gemm() == (request.param == "on")
    return request.param


def softmax_grad_tile(q, p, lab, scale, qg, pg, w):
    """G (B, N) float64: d(sum_i w_i loss_i)/d(raw scores), raw = q p^T, for the bound."""
    s = scale * (q @ p.T)
    if pg is not None:
        drop = (pg[None, :] == qg[:, None]) & (torch.arange(p.shape[0])[None, :] != lab[:, None])
        s = s.masked_fill(drop, float("-inf"))
    g = torch.softmax(s, dim=1)
    g[torch.arange(q.shape[0]), lab] -= 1
    return g * w[:, None] * scale


@pytest.mark.parametrize("shape,blocks", [((37, 53, 19), (0, 0)), ((65, 129, 24), (16, 40)),
                                          ((64, 64, 96), (64, 0)), ((5, 5, 3), (1, 1))])
@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("groups", [0, 4])
def test_infonce_within_bf16_bound(bf16_gemm, shape, blocks, reduction, groups, seed):
    B, N, d = shape
    q, p, lab, qg, pg = make_inputs(B, N, d, torch.bfloat16, groups=groups, labels="random")
    scale = 20.0
    w = torch.rand(B, dtype=torch.float64) + 0.5
    qq, pp = q.clone().requires_grad_(), p.clone().requires_grad_()
    scale_t = torch.tensor(scale, requires_grad=True)
    loss = loss_with_tiles(qq, pp, lab, scale=scale_t, q_groups=qg, p_groups=pg, reduction=reduction,
                           backend="cpu", row_block=blocks[0], col_block=blocks[1])
    weights = torch.full((B,), 1.0 / B, dtype=torch.float64) if reduction == "mean" else w
    (loss if reduction == "mean" else (loss * w.float()).sum()).backward()

    q64, p64 = q.double().requires_grad_(), p.double().requires_grad_()
    s64 = torch.tensor(scale, dtype=torch.float64, requires_grad=True)
    ref = hf.reference.infonce_loss(q64, p64, lab, scale=s64, q_groups=qg, p_groups=pg, reduction="none")
    (ref * weights).sum().backward()
    assert_close(loss.detach(), (ref.mean() if reduction == "mean" else ref).detach(), torch.bfloat16, "loss")
    assert_close(scale_t.grad, s64.grad, torch.float32, "dscale")

    G = softmax_grad_tile(q.double(), p.double(), lab, scale, qg, pg, weights).abs()
    for name, got, want, bound in (("dq", qq.grad, q64.grad, G @ p.double().abs()),
                                   ("dp", pp.grad, p64.grad, G.T @ q.double().abs())):
        assert got.dtype == torch.bfloat16
        err = (got.double() - want).abs()
        allowed = U * (want.abs() + bound) + 1e-5 * float(want.abs().max())
        worst = float((err / allowed).max())
        assert worst <= 1.0, f"{name}: error reaches {worst:.2f} x the bf16 bound ({bf16_gemm})"


@pytest.mark.parametrize("symmetric", [False, True])
def test_infonce_symmetric_masked_learnable_scale(bf16_gemm, symmetric, seed):
    q, p, lab, qg, pg = make_inputs(24, 72, 40, torch.bfloat16, groups=5, labels="grouped")
    check_against_reference("cpu", q, p, lab, qg, pg, scale=torch.tensor(17.0), symmetric=symmetric,
                            row_block=8, col_block=32)


def test_switch_reaches_the_kernel(monkeypatch, seed):
    """on and off give the same loss (scores are fp32-exact on both) but different gradient bits
    (only "on" rounds G to bf16): the switch selects the code path, whatever the CPU."""
    q, p, lab, *_ = make_inputs(48, 96, 64, torch.bfloat16, labels="random")
    out = {}
    for mode in ("off", "on"):
        monkeypatch.setenv(ENV, mode)
        qq = q.clone().requires_grad_()
        loss = hf.infonce_loss(qq, p, lab, backend="cpu")
        loss.backward()
        out[mode] = (loss.detach(), qq.grad)
    torch.testing.assert_close(out["on"][0], out["off"][0], rtol=1e-5, atol=1e-6)
    assert not torch.equal(out["on"][1], out["off"][1])


def test_bad_switch_value_is_named(monkeypatch):
    monkeypatch.setenv(ENV, "fast")
    q, p, lab, *_ = make_inputs(4, 4, 8, torch.bfloat16)
    with pytest.raises(ValueError, match=f"{ENV} must be auto, on or off, got 'fast'"):
        hf.infonce_loss(q, p, lab, backend="cpu")
    with pytest.raises(ValueError, match=ENV):
        hf.backends()


def test_capability_is_reported(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    info = hf.backends()["build"]["cpu_module"]
    assert info["bf16_units"] in ("none", "avx512-bf16", "amx-bf16")
    assert info["bf16_gemm_mode"] == "auto"
    assert info["bf16_gemm_engine"] in ("onednn-brgemm", "cpublas")
    # the documented auto rule (csrc/common/isa.h)
    assert info["bf16_gemm"] == (info["bf16_units"] == "amx-bf16" or (
        info["bf16_units"] == "avx512-bf16" and info["bf16_gemm_engine"] == "onednn-brgemm"))
    # the top-k screen's auto rule (hybrid_fast/ops/topk/cpu_features.py): AMX-BF16 only
    assert fast_bf16_matmul() == (info["bf16_units"] == "amx-bf16")
    monkeypatch.setenv(ENV, "on")
    assert hf.backends()["build"]["cpu_module"]["bf16_gemm"] is True
    assert fast_bf16_matmul() is True
    monkeypatch.setenv(ENV, "off")
    assert fast_bf16_matmul() is False


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists() or "ATEN_CPU_CAPABILITY" in os.environ,
                    reason="needs /proc/cpuinfo and the default ATen capability")
def test_units_agree_with_the_kernels_cpu_flags():
    flags = next((line.split(":", 1)[1].split() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("flags")), [])
    units = _ext.cpu.module.bf16_units()
    if _ext.cpu.module.cpu_isa() != "avx512":
        assert units == "none"
    elif "amx_bf16" in flags and "amx_tile" in flags:
        assert units in ("amx-bf16", "avx512-bf16")  # amx-bf16 unless the OS refused the tile state
    elif "avx512_bf16" in flags:
        assert units == "avx512-bf16"
    else:
        assert units == "none"


def test_aten_capability_caps_the_units():
    code = "import hybrid_fast._C as C; print(C.cpu_isa(), C.bf16_units())"
    out = subprocess.run([sys.executable, "-c", "import torch\n" + code], capture_output=True, text=True,
                         env=dict(os.environ, ATEN_CPU_CAPABILITY="avx2"))
    assert out.returncode == 0, out.stderr
    isa, units = out.stdout.split()
    assert isa != "avx512" and units == "none"


# ------------------------------------------------------------------------------ top-k search
@pytest.mark.parametrize("Q,tiling", [(70, (0, 0, 0)), (40, (40, 64, 1)), (45, (33, 17, 3))])
def test_topk_bf16_scores_exactly_on_integer_data(bf16_gemm, Q, tiling, seed):
    """Integer data: every summation order is exact, so both paths must equal the oracle bit for
    bit, ties included (> 32 queries per block: the GEMM-tile path, not the dot kernel)."""
    q, c = integer_data(Q, 203, 77, torch.bfloat16)
    tq, tn, sp = tiling
    s, i = search_with_tiles(q, c, 31, precision="bf16", tile_q=tq, tile_n=tn, splits=sp)
    rs, ri = hf.reference.topk_search(q.float(), c.float(), 31)
    assert torch.equal(i, ri) and torch.equal(s, rs)


def test_topk_bf16_random_data_is_a_valid_topk(bf16_gemm, seed):
    q, c = torch.randn(50, 96).bfloat16(), torch.randn(700, 96).bfloat16()
    s, i = hf.topk_search(q, c, 20, precision="bf16", exclude=torch.arange(50))
    assert_valid_topk(s, i, q.float(), c.float(), 20, exclude_rows=[[j] for j in range(50)], atol=1e-4)


@pytest.mark.parametrize("cluster,N", [(64, 400), (100, 100)])
def test_topk_exact_auto_is_exact_on_near_ties(bf16_gemm, cluster, N, seed):
    """precision="exact" with the automatic strategy: the certified bf16 screen + fp32 rescore
    under "on", direct fp32 under "off"; either way the exact order of near-ties that bf16 alone
    cannot resolve (40 queries: the screen scores through the GEMM tiles)."""
    assert fast_bf16_matmul() == (bf16_gemm == "on")
    q, c = near_tie_data(N=N, cluster=cluster, Q=40)
    exact = hf.topk_search(q, c, 10)
    true = torch.sort(q.double() @ c.double().T, dim=1, descending=True, stable=True).indices[:, :10]
    assert torch.equal(exact[1], true)
    assert not torch.equal(hf.topk_search(q, c, 10, precision="bf16")[1], true)  # the data has teeth
    torch.testing.assert_close(exact[0], hf.topk_search(q, c, 10, precision="fp32")[0], atol=1e-4, rtol=0)


@pytest.mark.parametrize("k", [1, 17, 300])
def test_topk_screen_matches_direct_on_ties_and_exclude(bf16_gemm, k, seed):
    q, c = integer_data(41, 300, 16, torch.float32)
    ex = [[i, 5] for i in range(41)]
    a = search_with_tiles(q, c, k, exclude=ex, exact_strategy="screen", tile_n=32)
    b = search_with_tiles(q, c, k, exclude=ex, exact_strategy="direct")
    assert torch.equal(a[1], b[1]) and torch.equal(a[0], b[0])


# ------------------------------------------------------------------------------ benchmarks
def test_benchmark_providers_force_each_path(seed):
    """The benchmarks' forced providers really run the path they are named after, side by side in
    one process, and leave the environment as it was."""
    from hybrid_fast.benchmarks.infonce import bf16_path, loss_fn, setup, step
    from hybrid_fast.benchmarks.topk import providers

    before = os.environ.get(ENV)
    assert bf16_path("hybrid_fast_bf16_tiles", torch.bfloat16) == "bf16 tiles"
    assert bf16_path("hybrid_fast_upcast", torch.bfloat16) == "upcast"
    q, p, y = setup(40, 40, 32, torch.bfloat16)
    losses = [step(loss_fn(name), q, p, y, "full", name).detach()
              for name in ("hybrid_fast_bf16_tiles", "hybrid_fast_upcast")]
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-5, atol=1e-6)
    qs, c = torch.randn(40, 32), torch.randn(300, 32)
    fns = providers(qs, c, c.bfloat16(), 7)
    screen, direct = fns["hybrid_fast exact: bf16-tile screen"](), fns["hybrid_fast fp32"]()
    assert torch.equal(screen[1], direct[1])
    assert os.environ.get(ENV) == before
