"""The correctness suite on CUDA tensors (bf16/fp16/fp32) for the Triton backend, plus
torch.compile. Marked ``gpu``; skipped without CUDA. Run by benches/gpu_check.sh (``pytest -m gpu``).

Oracle: the float64 reference on the same (already rounded) inputs, on the CPU. Tolerances from
tests/oracle_utils.py; the 16-bit kernels round P and dS to the input dtype before the second
product (tensor cores), which the OUTPUT_ROUNDING entries for bf16/fp16 cover.
"""
from __future__ import annotations

import sys

import pytest
import torch

import hybrid_fast as hf
from hybrid_fast.ops.infonce.api import loss_with_tiles
from hybrid_fast.ops.topk.api import search_with_tiles
from oracle_utils import assert_close
from test_infonce import make_inputs

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

DTYPES = [torch.float32, torch.bfloat16, torch.float16]


@pytest.fixture(autouse=True, scope="module")
def not_interpreted():
    mod = sys.modules.get("hybrid_fast.ops._common.triton_helpers")
    if mod is not None and mod.INTERPRET:
        pytest.skip("the Triton kernels were imported in interpreter mode in this process; run -m gpu alone")


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


@pytest.mark.parametrize("dtype", DTYPES)
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


def _grid_inputs(Q, N, d, dtype):
    q = (torch.randint(-4, 5, (Q, d)) / 4).to(dtype)
    x = (torch.randint(-4, 5, (N, d)) / 4).to(dtype)
    x[N // 2] = x[1]
    return q.cuda(), x.cuda()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("Q,N,d,k", [(1, 5000, 64, 10), (100, 20000, 128, 100), (37, 777, 48, 1), (5, 3000, 32, 600)])
def test_topk_cuda_exact(dtype, Q, N, d, k, seed):
    """Grid-valued inputs: every dot product is exact in fp32, so scores and ids must equal the
    reference's (ties by ascending id) bit for bit. k = 600 takes the multi-pass fallback."""
    from hybrid_fast.ops.topk.reference import topk_scores

    q, x = _grid_inputs(Q, N, d, dtype)
    ex = torch.randint(-1, N, (Q, 3), device="cuda")
    s, i = hf.topk_search(q, x, k, exclude=ex, backend="triton", precision="fp32")
    rs, ri = topk_scores(q.float(), x.float(), k, ex)
    assert torch.equal(s, rs) and torch.equal(i, ri)


def test_topk_cuda_torch_compile(seed):
    q, x = _grid_inputs(16, 4096, 64, torch.bfloat16)
    fn = lambda q, x: hf.topk_search(q, x, 10, backend="triton", precision="fp32")  # noqa: E731
    a = fn(q, x)
    b = torch.compile(fn, fullgraph=True)(q, x)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


# ----------------------------------------------------------------------------- backend "cuda"
# hybrid_fast._C_cuda (kernels/cuda/topk_select.cu). Written without a GPU: compile-checked only
# until this suite runs on one.
def _cuda_module():
    from hybrid_fast import _ext

    if _ext.cuda is None or not _ext.cuda.available:
        pytest.skip(f"hybrid_fast._C_cuda is not usable: {None if _ext.cuda is None else _ext.cuda.error}")
    return torch.ops.hybrid_fast_cuda


def _check_cuda_backend(q, x, k, ex=None, **kw):
    from hybrid_fast.ops.topk.reference import topk_scores

    s, i = hf.topk_search(q, x, k, exclude=ex, backend="cuda", precision="fp32", **kw)
    rs, ri = topk_scores(q.float(), x.float(), k, ex)
    assert s.dtype == torch.float32 and i.dtype == torch.int64 and s.shape == i.shape == (q.shape[0], k)
    assert torch.equal(i, ri), (i, ri)
    assert torch.equal(s, rs)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("Q,N,d,k", [(1, 5000, 64, 10), (100, 20000, 128, 100), (37, 777, 48, 1),
                                     (5, 3000, 32, 600), (3, 1000, 16, 1000), (2, 70000, 32, 5000),
                                     (300, 4000, 64, 257)])
def test_topk_cuda_backend_exact(dtype, Q, N, d, k, seed):
    """Grid-valued inputs (exact dot products in every summation order): ids and scores equal the
    reference's bit for bit. k = 1, k > 256, k > 4096 (host-sorted rows), k = N; one row range
    per block (Q = 300) and several (Q <= 100: segments + merge)."""
    _cuda_module()
    q, x = _grid_inputs(Q, N, d, dtype)
    _check_cuda_backend(q, x, k, torch.randint(-1, N, (Q, 3), device="cuda"))


@pytest.mark.parametrize("tiles", [dict(tile_n=700), dict(tile_n=333, tile_q=7, splits=3), dict(splits=1)])
def test_topk_cuda_backend_forced_tiles(tiles, seed):
    """Several corpus chunks (running best merged by topk_merge_keys, last chunk shorter than k),
    several query blocks, forced row ranges."""
    _cuda_module()
    q, x = _grid_inputs(20, 5000, 32, torch.bfloat16)
    _check_cuda_backend(q, x, 400, torch.randint(-1, 5000, (20, 5), device="cuda"), **tiles)


def test_topk_cuda_backend_ties_zero_and_nan(seed):
    """Duplicate vectors and all-zero scores (including -0) tie on the id; NaN scores (inf * 0)
    are never returned; exclude lists with duplicates and longer than the kernel's limit."""
    _cuda_module()
    q, x = _grid_inputs(8, 3000, 16, torch.float32)
    x[1000:2000] = x[:1000]  # every vector twice
    _check_cuda_backend(q, x, 50)
    zq = torch.zeros(4, 16, device="cuda")
    _check_cuda_backend(zq, -x.abs() - 1, 100)  # every score is 0 or -0: ids 0 .. 99
    xn = x.clone()
    xn[7, 0] = float("inf")
    qn = q.clone()
    qn[:, 0] = 0.0  # inf * 0 = NaN for corpus row 7
    _check_cuda_backend(qn, xn, 3000)  # k = N: NaN and excluded rows become (-inf, -1) padding
    ex = torch.randint(0, 3000, (8, 5000), device="cuda")  # > topk_max_exclude: masked in the tile
    ex[:, 1] = ex[:, 0]
    _check_cuda_backend(q, x, 300, ex)


def test_topk_cuda_ops_direct(seed):
    """The ops against torch.topk on unique keys: segments do not change the answer; padding
    keys are returned only when fewer than k real keys exist."""
    ops = _cuda_module()
    s = torch.randn(6, 50000, device="cuda")
    ref = ops.topk_from_scores(s, 300, 17)
    for seg in (2, 7, 64):
        assert torch.equal(ops.topk_from_scores(s, 300, 17, None, seg), ref)
    keys = torch.randperm(60000, device="cuda")[:6 * 9000].view(6, 9000) * 1000003 - (1 << 35)
    keys[:, :100] = torch.iinfo(torch.int64).min
    for k in (1, 255, 4096, 5000, 8900, 9000):
        want = torch.topk(keys, k, dim=1).values
        assert torch.equal(ops.topk_merge_keys(keys, k), want)
    with pytest.raises(RuntimeError, match="1 <= k <= L"):
        ops.topk_merge_keys(keys, 9001)
    with pytest.raises(RuntimeError, match="float32"):
        ops.topk_from_scores(s.double(), 3)
    with pytest.raises((RuntimeError, NotImplementedError)):  # no CPU kernel is registered
        ops.topk_from_scores(s.cpu(), 3)


def test_topk_cuda_opcheck(seed):
    ops = _cuda_module()
    s = torch.randn(5, 3000, device="cuda")
    ex = torch.randint(-1, 3000, (5, 4), device="cuda")
    torch.library.opcheck(ops.topk_from_scores.default, (s, 20, 5, ex, 3))
    torch.library.opcheck(ops.topk_from_scores.default, (s, 3000, 0, None, 1))  # k = L
    big = torch.randn(3, 6000, device="cuda")
    torch.library.opcheck(ops.topk_from_scores.default, (big, 5000, 0, None, 2))  # k > 4096: host sort
    torch.library.opcheck(ops.topk_merge_keys.default, (ops.topk_from_scores(s, 100), 40))


def test_topk_cuda_backend_torch_compile(seed):
    _cuda_module()
    q, x = _grid_inputs(16, 4096, 64, torch.bfloat16)
    fn = lambda q, x: hf.topk_search(q, x, 10, backend="cuda", precision="fp32")  # noqa: E731
    a = fn(q, x)
    b = torch.compile(fn, fullgraph=True)(q, x)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.parametrize("backend", ["triton", "cuda"])
def test_topk_cuda_exact_screen_matches_direct(backend, seed):
    """precision="exact" with the bf16 screen + fp32 rescore on CUDA tensors (the strategy code is
    device-agnostic; "auto" picks it only on CPUs): same result as direct fp32 scoring."""
    if backend == "cuda":
        _cuda_module()
    q, x = _grid_inputs(9, 3000, 64, torch.float32)
    a = search_with_tiles(q, x, 17, backend=backend, precision="exact", exact_strategy="screen")
    b = hf.topk_search(q, x, 17, backend=backend, precision="fp32")
    assert a[0].device.type == "cuda"
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
