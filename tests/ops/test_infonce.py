"""Fused InfoNCE against the pure-PyTorch reference in float64, on every backend present: the
compiled CPU kernels, Triton on CPU tensors under the interpreter (marker ``interpreter``; fp32,
fp16 and fp64 only: the interpreter's bf16 dot is broken, shared/docs/build-notes.md), Triton on
CUDA tensors (marker ``gpu``: bf16/fp16/fp32 and torch.compile).

Small odd shapes and forced small tiles run the multi-tile, multi-d-chunk and split-merge paths.
Tolerances: tests/oracle_utils.py; the 16-bit GPU kernels round P and dS to the input dtype
before the second product (tensor cores), which the OUTPUT_ROUNDING entries for bf16/fp16 cover.
"""
from __future__ import annotations

import pytest
import torch

import hybrid_fast as hf
from hybrid_fast.ops.infonce.api import loss_with_tiles
from oracle_utils import (assert_close, backend_cases, check_against_reference, compiled_cpu_backends, gpu,
                          interpreter, make_inputs)

BACKENDS = compiled_cpu_backends("infonce_loss")
DTYPES = [torch.float64, torch.float32, torch.bfloat16, torch.float16]
INTERPRETER_DTYPES = [torch.float32, torch.float16, torch.float64]


@pytest.mark.parametrize("backend,dtype,shape,blocks", backend_cases(
    cpu=[(dt, shape, (0, 0)) for dt in DTYPES
         for shape in [(1, 1, 1), (5, 5, 3), (37, 53, 19), (64, 64, 32), (65, 129, 24)]],
    triton=[(dt, shape, (16, 16)) for dt in INTERPRETER_DTYPES for shape in [(1, 1, 1), (5, 5, 3), (37, 53, 19)]]))
def test_matches_reference_shapes(backend, dtype, shape, blocks, seed):
    B, N, d = shape
    q, p, lab, qg, pg = make_inputs(B, N, d, dtype)
    check_against_reference(backend, q, p, lab, qg, pg, row_block=blocks[0], col_block=blocks[1])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("blocks", [(1, 1), (4, 7), (16, 16), (15, 17), (64, 0), (0, 31)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_tiles_and_reductions(backend, blocks, reduction, seed):
    """Forced small tiles run the two-pass and multi-row-block paths on small inputs."""
    q, p, lab, qg, pg = make_inputs(33, 47, 13, torch.float64, groups=9, labels="random")
    check_against_reference(backend, q, p, lab, qg, pg, reduction=reduction, row_block=blocks[0], col_block=blocks[1],
                            scale=torch.tensor(7.5, dtype=torch.float64))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layout", ["diag", "grouped", "random"])
@pytest.mark.parametrize("hard_negatives", [1, 3])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_hard_negative_layouts(backend, layout, hard_negatives, dtype, seed):
    B = 21
    N = B * (hard_negatives + 1)
    q, p, lab, qg, pg = make_inputs(B, N, 17, dtype, labels=layout)
    check_against_reference(backend, q, p, lab, qg, pg, col_block=16)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_masks_symmetric_learnable_scale(backend, symmetric, reduction, dtype, seed):
    q, p, lab, qg, pg = make_inputs(29, 58, 11, dtype, groups=6, labels="random")
    scale = torch.tensor(13.0, dtype=torch.float32)  # a learnable temperature
    check_against_reference(backend, q, p, lab, qg, pg, scale=scale, symmetric=symmetric, reduction=reduction,
                            row_block=8, col_block=20)


@pytest.mark.parametrize("backend", BACKENDS)
def test_parallel_duplicates_are_masked(backend, seed):
    """Parallel data: the same passage in 3 languages is one group; only the labelled one is positive."""
    B, d = 12, 16
    unit = lambda x: torch.nn.functional.normalize(x, dim=-1)  # noqa: E731
    base = unit(torch.randn(B, d, dtype=torch.float64))
    p = torch.cat([unit(base + 0.01 * torch.randn(B, d, dtype=torch.float64)) for _ in range(3)])
    pg = torch.arange(B).repeat(3)
    q = unit(base + 0.05 * torch.randn(B, d, dtype=torch.float64))
    masked = hf.infonce_loss(q, p, p_groups=pg, backend=backend, reduction="none")
    unmasked = hf.infonce_loss(q, p, backend=backend, reduction="none")
    # Unmasked, the two translations of the positive score like it and dilute it: ~log(3) more.
    assert ((unmasked - masked) > 0.5).all(), (unmasked - masked)
    expected = hf.reference.infonce_loss(q, p, p_groups=pg, reduction="none")
    assert_close(masked, expected, torch.float64, "masked loss")


@pytest.mark.parametrize("backend,blocks", backend_cases(cpu=[((0, 0),)], triton=[((16, 16),)]))
def test_large_scale_is_stable(backend, blocks, seed):
    """Online log-sum-exp: scale 1e3 on unnormalised inputs overflows a naive exp."""
    q, p, lab, _, _ = make_inputs(19, 40, 8, torch.float32)
    loss = loss_with_tiles(q * 10, p * 10, scale=1000.0, backend=backend, row_block=blocks[0], col_block=blocks[1])
    ref = hf.reference.infonce_loss((q * 10).double(), (p * 10).double(), scale=1000.0)
    assert torch.isfinite(loss)
    torch.testing.assert_close(loss.double(), ref, rtol=1e-4, atol=1e-2)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("symmetric", [False, True])
def test_gradcheck(backend, reduction, symmetric, seed):
    q, p, lab, qg, pg = make_inputs(6, 9, 4, torch.float64, groups=4, labels="random")
    q.requires_grad_()
    p.requires_grad_()
    scale = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)

    def fn(q, p, scale):
        return loss_with_tiles(q, p, lab, scale=scale, q_groups=qg, p_groups=pg, symmetric=symmetric,
                               reduction=reduction, backend=backend, row_block=4, col_block=4)

    assert torch.autograd.gradcheck(fn, (q, p, scale))


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_grad_path_matches(backend, seed):
    q, p, lab, qg, pg = make_inputs(30, 45, 10, torch.float32, groups=5, labels="random")
    with torch.no_grad():
        a = hf.infonce_loss(q, p, lab, q_groups=qg, p_groups=pg, backend=backend)
    b = hf.reference.infonce_loss(q.double(), p.double(), lab, q_groups=qg, p_groups=pg)
    assert_close(a, b, torch.float32, "no-grad loss")


@pytest.mark.parametrize("backend", BACKENDS)
def test_noncontiguous_inputs(backend, seed):
    q = torch.randn(20, 24, dtype=torch.float64)[:, ::2]
    p = torch.randn(12, 26, dtype=torch.float64).T  # (26, 12), column-major
    got = hf.infonce_loss(q, p, backend=backend)
    assert_close(got, hf.reference.infonce_loss(q, p), torch.float64, "loss")


# ------------------------------------------------ backend "triton": interpreter-only checks
# Launcher internals (d chunks, accumulators, pass counts) and the torch ops, on CPU tensors.
def K():
    from hybrid_fast.ops.infonce import triton_kernel

    return triton_kernel


@interpreter
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("blocks", [(16, 16), (32, 0)])
def test_triton_tiles_reductions_masks(reduction, blocks, seed):
    q, p, lab, qg, pg = make_inputs(33, 47, 13, torch.float32, groups=9, labels="random")
    check_against_reference("triton", q, p, lab, qg, pg, reduction=reduction, row_block=blocks[0],
                            col_block=blocks[1], scale=torch.tensor(7.5))


@interpreter
@pytest.mark.parametrize("layout", ["grouped", "random"])
def test_triton_hard_negatives(layout, seed):
    B = 21
    q, p, lab, qg, pg = make_inputs(B, 4 * B, 17, torch.float32, labels=layout)
    check_against_reference("triton", q, p, lab, qg, pg, row_block=16, col_block=32)


@interpreter
@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_triton_symmetric_learnable_scale(symmetric, reduction, dtype, seed):
    q, p, lab, qg, pg = make_inputs(29, 58, 11, dtype, groups=6, labels="random")
    check_against_reference("triton", q, p, lab, qg, pg, scale=torch.tensor(13.0), symmetric=symmetric,
                            reduction=reduction, row_block=16, col_block=16)


@interpreter
@pytest.mark.parametrize("d_acc,n_dchunks", [(1, 3), (0, 1), (2, 2)])
def test_triton_d_chunks_and_k_loop(d_acc, n_dchunks, seed):
    """d = 40 with BLOCK_K = BLOCK_D = 16: three K steps; the dq/dp columns as three 1-accumulator
    chunks (d_acc=1, the chunked fallback, 8 passes), all of d in one program (3 accumulators,
    4 passes) or two programs of 2 accumulators (the last one half masked, 6 passes)."""
    assert K().config(40, torch.float32, "rows", d_block=16, d_acc=d_acc)["n_dchunks"] == n_dchunks
    q, p, lab, qg, pg = make_inputs(19, 35, 40, torch.float32, groups=5, labels="random")
    w = torch.rand(19, dtype=torch.float64) + 0.5
    loss, lse, dq, dp, dscale = K().infonce_fused(q, p, lab, torch.tensor(9.0), qg, pg, w.float(), 16, 16,
                                                  k_block=16, d_block=16, d_acc=d_acc)
    qq, pp = q.double().requires_grad_(), p.double().requires_grad_()
    ss = torch.tensor(9.0, dtype=torch.float64, requires_grad=True)
    rows = hf.reference.infonce_loss(qq, pp, lab, scale=ss, q_groups=qg, p_groups=pg, reduction="none")
    (rows * w).sum().backward()
    assert_close(loss, (rows * w).sum(), torch.float32, "loss")
    assert_close(dq, qq.grad, torch.float32, "dq", output_in_dtype=True)
    assert_close(dp, pp.grad, torch.float32, "dp", output_in_dtype=True)
    assert_close(dscale, ss.grad, torch.float32, "dscale", output_in_dtype=True)
    expected_lse = rows.detach() + 9.0 * (q.double() * p.double()[lab]).sum(1)
    assert_close(lse, expected_lse, torch.float32, "lse")
    assert K().passes(40, grad=True, d_block=16, d_acc=d_acc) == 2 * n_dchunks + 2
    assert K().passes(40, grad=True) == 4 and K().passes(768, grad=False) == 1


@interpreter
def test_triton_passes_full_d_defaults():
    """Defaults on the GPU (the launcher's table, not the interpreter's small tiles): all of d in
    one program for 16-bit inputs up to d = 768 (4 passes), chunked above; fp32 chunked above 128."""
    mod = K()
    old = mod.INTERPRET
    try:
        mod.INTERPRET = False
        for d in (64, 256, 384, 512, 768):
            for dt in (torch.bfloat16, torch.float16):
                assert mod.passes(d, grad=True, dtype=dt) == 4, (d, dt)
                assert mod.passes(d, grad=True, fused=False, dtype=dt) == 5
        assert mod.passes(1024, grad=True, dtype=torch.bfloat16) == 6  # 2 chunks of 768 columns
        assert mod.passes(768, grad=True, dtype=torch.bfloat16, d_acc=1) == 8  # the old chunked scheme
        assert mod.passes(768, grad=True, dtype=torch.float32) == 14  # fp32 FMA path: 128-column chunks
        assert mod.config(768, torch.bfloat16, "rows")["N_ACC"] == 3
    finally:
        mod.INTERPRET = old


@interpreter
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("case", ["odd", "groups_sym", "hard_neg"])
def test_triton_full_d_multi_accumulator(dtype, case, seed, monkeypatch):
    """Full-d tiling with several accumulators in one program (d = 75 with BLOCK_D = 16: 5
    accumulators, the last one masked; d = 100 with BLOCK_D = 32: 4): odd sizes, groups,
    symmetric, hard negatives (N > B), learnable scale, through the public op and its autograd,
    against the float64 reference."""
    B, N, d, bd = {"odd": (23, 23, 75, 16), "groups_sym": (26, 26, 100, 32), "hard_neg": (17, 51, 75, 16)}[case]
    mod = K()
    cfg = mod.config(d, dtype, "rows", d_block=bd)
    assert cfg["n_dchunks"] == 1 and cfg["N_ACC"] == -(-d // bd)
    orig = mod.config

    def forced(D, dt, kind, **kw):  # the public op takes row/col blocks only: force BLOCK_K/BLOCK_D here
        if kind != "fwd":
            kw.update(k_block=16, d_block=bd)
        return orig(D, dt, kind, **kw)

    monkeypatch.setattr(mod, "config", forced)
    labels = {"odd": "diag", "groups_sym": "random", "hard_neg": "grouped"}[case]
    q, p, lab, qg, pg = make_inputs(B, N, d, dtype, groups=5 if case == "groups_sym" else 0, labels=labels)
    check_against_reference("triton", q, p, lab, qg, pg, scale=torch.tensor(11.0),
                            symmetric=case == "groups_sym", row_block=16, col_block=16)


@interpreter
def test_triton_masked_duplicates(seed):
    """A whole tile of masked candidates before the positive keeps the online max finite."""
    B, d = 12, 16
    base = torch.nn.functional.normalize(torch.randn(B, d, dtype=torch.float64), dim=-1)
    p = torch.cat([base + 0.01 * torch.randn(B, d, dtype=torch.float64) for _ in range(3)]).float()
    pg = torch.arange(B).repeat(3)
    lab = torch.arange(2 * B, 3 * B)  # positives in the last copy: earlier tiles are all masked for some rows
    q = (base + 0.05 * torch.randn(B, d, dtype=torch.float64)).float()
    got = loss_with_tiles(q, p, lab, p_groups=pg, backend="triton", reduction="none", row_block=16, col_block=16)
    want = hf.reference.infonce_loss(q.double(), p.double(), lab, p_groups=pg, reduction="none")
    assert_close(got, want, torch.float32, "masked loss")


@interpreter
def test_triton_opcheck(seed):
    from hybrid_fast.ops.infonce.triton import define_ops as _define_ops

    ops = _define_ops()
    q, p, lab, qg, pg = make_inputs(6, 9, 5, torch.float32, groups=3, labels="random")
    q.requires_grad_()
    p.requires_grad_()
    scale = torch.tensor(3.0, requires_grad=True)
    torch.library.opcheck(ops["infonce_fwd"], (q, p, lab, scale, qg, pg, 16, 16),
                          test_utils=("test_schema", "test_faketensor", "test_autograd_registration"))


@interpreter
def test_triton_backend_needs_interpreter_on_cpu(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET")
    q = torch.randn(4, 3)
    with pytest.raises(RuntimeError, match=r"backend 'triton' .* not available .*available: \["):
        hf.infonce_loss(q, q, backend="triton")


# ---------------------------------------------------- backend "triton" on CUDA tensors (GPU)
# bf16/fp16/fp32 against the float64 reference on the CPU; torch.compile; linear memory.
# Run by benches/gpu_check.sh (pytest -m gpu).
GPU_DTYPES = [torch.float32, torch.bfloat16, torch.float16]


def _run(q, p, lab, qg, pg, scale, weights, **kw):
    dev = "cuda"
    qq = q.detach().to(dev).requires_grad_()
    pp = p.detach().to(dev).requires_grad_()
    ss = scale.detach().to(dev).requires_grad_()
    mv = lambda t: None if t is None else t.to(dev)  # noqa: E731
    loss = loss_with_tiles(qq, pp, mv(lab), scale=ss, q_groups=mv(qg), p_groups=mv(pg), backend="triton", **kw)
    (loss * weights.to(dev, loss.dtype)).sum().backward()
    return loss.detach().cpu(), qq.grad.cpu(), pp.grad.cpu(), ss.grad.cpu()


def _reference(q, p, lab, qg, pg, scale, weights, **kw):
    qq = q.double().requires_grad_()
    pp = p.double().requires_grad_()
    ss = scale.double().requires_grad_()
    loss = hf.reference.infonce_loss(qq, pp, lab, scale=ss, q_groups=qg, p_groups=pg, **kw)
    (loss * weights.double()).sum().backward()
    return loss.detach(), qq.grad, pp.grad, ss.grad


@gpu
@pytest.mark.parametrize("dtype", GPU_DTYPES)
@pytest.mark.parametrize("case", [
    dict(shape=(37, 53, 19), groups=0, labels="diag", symmetric=False, reduction="mean"),
    dict(shape=(64, 256, 64), groups=9, labels="random", symmetric=True, reduction="none"),
    dict(shape=(100, 300, 40), groups=0, labels="grouped", symmetric=False, reduction="sum", blocks=(16, 16)),
    dict(shape=(512, 512, 768), groups=17, labels="diag", symmetric=True, reduction="mean"),
    dict(shape=(300, 900, 300), groups=0, labels="random", symmetric=False, reduction="none"),
])
def test_infonce_cuda_matches_reference(dtype, case, seed):
    B, N, d = case["shape"]
    q, p, lab, qg, pg = make_inputs(B, N, d, dtype, groups=case["groups"], labels=case["labels"])
    scale = torch.tensor(13.0)
    w = torch.rand(B if case["reduction"] == "none" else (), dtype=torch.float64) + 0.5
    rb, cb = case.get("blocks", (0, 0))
    kw = dict(symmetric=case["symmetric"], reduction=case["reduction"])
    got = _run(q, p, lab, qg, pg, scale, w, row_block=rb, col_block=cb, **kw)
    want = _reference(q, p, lab, qg, pg, scale, w, **kw)
    assert_close(got[0], want[0], dtype, "loss")
    assert got[1].dtype == dtype and got[2].dtype == dtype
    assert_close(got[1], want[1], dtype, "dq", output_in_dtype=True)
    assert_close(got[2], want[2], dtype, "dp", output_in_dtype=True)
    assert_close(got[3], want[3], dtype if dtype != torch.float32 else torch.float32, "dscale", output_in_dtype=True)


@gpu
def test_infonce_cuda_torch_compile(seed):
    q, p, lab, qg, pg = make_inputs(128, 256, 64, torch.bfloat16, groups=7, labels="random")
    q, p, lab, qg, pg = (t.cuda() for t in (q, p, lab, qg, pg))

    def fn(q, p, scale):
        return hf.infonce_loss(q, p, lab, scale=scale, q_groups=qg, p_groups=pg, backend="triton", symmetric=True)

    compiled = torch.compile(fn, fullgraph=True)
    outs = []
    for f in (fn, compiled):
        qq, pp = q.clone().requires_grad_(), p.clone().requires_grad_()
        ss = torch.tensor(20.0, device="cuda", requires_grad=True)
        loss = f(qq, pp, ss)
        loss.backward()
        outs.append((loss.detach(), qq.grad, pp.grad, ss.grad))
    for a, b in zip(*outs):
        torch.testing.assert_close(a.float(), b.float(), rtol=1e-2, atol=1e-3)


@gpu
def test_infonce_cuda_memory_is_linear(seed):
    """B = N = 16384, d = 256 in bf16: a (B, N) fp32 matrix would be 1 GiB; the fused loss must
    stay far below that."""
    B, d = 16384, 256
    q = torch.randn(B, d, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    p = torch.randn(B, d, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    hf.infonce_loss(q, p, backend="triton").backward()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    assert peak < 64 * B * d, f"peak extra memory {peak / 2**20:.1f} MiB is not O(B d)"
