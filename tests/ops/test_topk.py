"""hybrid_fast.topk_search against the naive oracle (hybrid_fast.reference.topk_search), on every
backend present: the compiled CPU kernels, Triton on CPU tensors under the interpreter (marker
``interpreter``), Triton and the CUDA k-selection on CUDA tensors (marker ``gpu``).

Two kinds of comparison:
* integer-valued inputs (exact in fp32/bf16/fp64, every summation order gives the same score):
  many exact ties, so indices must match the oracle *exactly* under the tie rule;
* random floats: tie-aware check against float64 scores (the returned set is a valid top-k up
  to fp32 rounding, scores match, rows sorted).
Small tiles (tile_q, tile_n, splits) force the tiled and merge paths on tiny inputs.
"""
from __future__ import annotations

import pytest
import torch

import hybrid_fast as hf
from hybrid_fast.ops.topk import bf16_screen_bound, fast_bf16_matmul
from hybrid_fast.ops.topk.api import search_with_tiles
from oracle_utils import assert_valid_topk, gpu, grid_inputs, integer_data, interpreter, near_tie_data

CPU = pytest.mark.skipif(not hf.backends()["build"].get("cpu_module", True), reason="no compiled module")

# (tile_q, tile_n, splits): auto; tiny tiles + corpus split (merge path); one query per tile with
# many splits; tiles not dividing the sizes.
TILINGS = [(0, 0, 0), (3, 5, 2), (1, 7, 5), (4, 64, 1)]


@CPU
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("tiling", TILINGS)
@pytest.mark.parametrize("k", [1, 9, 70, 211])
def test_integer_inputs_match_oracle_exactly(seed, dtype, tiling, k):
    q, c = integer_data(13, 211, 17, dtype)
    tq, tn, sp = tiling
    s, i = search_with_tiles(q, c, k, tile_q=tq, tile_n=tn, splits=sp)
    rs, ri = hf.reference.topk_search(q, c, k)
    assert s.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert i.dtype == torch.int64
    assert torch.equal(i, ri)
    assert torch.equal(s, rs)


@CPU
@pytest.mark.parametrize("corpus_dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("d", [1, 8, 13, 64, 77])
@pytest.mark.parametrize("Q,tile_q", [(1, 0), (5, 0), (33, 0), (70, 0), (70, 9)])
def test_both_score_kernels_match_oracle_exactly(seed, corpus_dtype, d, Q, tile_q):
    """Query blocks of <= 32 rows score with the dot-product kernel (csrc/cpu/simd/score_tile.cpp),
    larger ones with at::mm: Q = 70 untiled takes at::mm, tile_q = 9 the dot kernel; d covers the
    8-lane tail; the odd row count (N = 203) the 4-row block tail; 16-bit corpora are widened."""
    q, c = integer_data(Q, 203, d, torch.float32)
    c = c.to(corpus_dtype)
    s, i = search_with_tiles(q, c, 37, tile_q=tile_q)
    rs, ri = hf.reference.topk_search(q, c.float(), 37)
    assert torch.equal(i, ri)
    assert torch.equal(s, rs)


@CPU
@pytest.mark.parametrize("tiling", TILINGS)
@pytest.mark.parametrize("k", [1, 40, 300])
def test_random_float32_is_a_valid_topk(seed, tiling, k):
    q, c = torch.randn(11, 61), torch.randn(300, 61)
    tq, tn, sp = tiling
    s, i = search_with_tiles(q, c, k, tile_q=tq, tile_n=tn or 16, splits=sp)
    assert_valid_topk(s, i, q, c, k)


@CPU
def test_many_queries_split_over_threads(seed):
    q, c = torch.randn(300, 40), torch.randn(1000, 40)  # >= 64 rows per thread: query split
    s, i = hf.topk_search(q, c, 25)
    assert_valid_topk(s, i, q, c, 25)


@CPU
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_corpus_with_float32_queries(seed, dtype):
    q, c = torch.randn(5, 33), torch.randn(257, 33).to(dtype)
    s, i = search_with_tiles(q, c, 20, tile_n=32)
    assert s.dtype == torch.float32
    assert_valid_topk(s, i, q, c.float(), 20)


@CPU
@pytest.mark.parametrize("form", ["vector", "padded", "lists"])
def test_exclude(seed, form):
    q, c = integer_data(6, 50, 9, torch.float32)
    rows = [[i, 3] for i in range(6)]
    if form == "vector":
        rows = [[i] for i in range(6)]
        ex = torch.arange(6)
    elif form == "padded":
        rows = [[i, 3 if i % 2 else -1] for i in range(6)]
        ex = torch.tensor(rows)
    else:
        ex = rows
    for k in (1, 10, 50):
        s, i = search_with_tiles(q, c, k, exclude=ex, tile_n=8, splits=3)
        rs, ri = hf.reference.topk_search(q, c, k, exclude=ex)
        assert torch.equal(i, ri) and torch.equal(s, rs)
        for r, ids in enumerate(rows):
            assert not any(j in i[r].tolist() for j in ids if j >= 0)
    # k = N with exclusions: the tail is padded with (-inf, -1)
    assert (i == -1).sum(1).tolist() == [sum(j >= 0 for j in set(r)) for r in rows]
    assert bool((s[i == -1] == float("-inf")).all())


@CPU
def test_cosine(seed):
    q, c = torch.randn(7, 24) * 5, torch.randn(130, 24) * torch.rand(130, 1) * 10
    s, i = search_with_tiles(q, c, 15, metric="cosine", tile_n=16)
    qn, cn = torch.nn.functional.normalize(q, dim=1), torch.nn.functional.normalize(c, dim=1)
    assert_valid_topk(s, i, qn, cn, 15, atol=1e-5)
    assert float(s.max()) <= 1 + 1e-5
    rs, ri = hf.reference.topk_search(q, c, 15, metric="cosine")
    torch.testing.assert_close(s, rs, atol=1e-5, rtol=0)


@CPU
def test_reference_backend_and_cpu_backend_agree(seed):
    q, c = integer_data(5, 77, 12, torch.float32)
    a = hf.topk_search(q, c, 30, backend="cpu")
    b = hf.topk_search(q, c, 30, backend="reference")
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


# ------------------------------------------------------------------- precision strategies
@CPU
@pytest.mark.parametrize("cluster,N", [(64, 400), (100, 100)])  # 64: certified after kk grows
def test_exact_screen_resolves_near_ties_that_bf16_cannot(seed, cluster, N):
    q, c = near_tie_data(N=N, cluster=cluster)
    fp32 = hf.topk_search(q, c, 10, precision="fp32")
    exact = search_with_tiles(q, c, 10, precision="exact", exact_strategy="screen")
    bf16 = hf.topk_search(q, c, 10, precision="bf16")
    S = q.double() @ c.double().T
    true = torch.sort(S, dim=1, descending=True, stable=True).indices[:, :10]
    # fp32 and the certified screen get the exact order; bf16 cannot (the test has teeth)
    assert torch.equal(fp32[1], true)
    assert torch.equal(exact[1], true)
    assert not torch.equal(bf16[1], true)
    torch.testing.assert_close(exact[0], fp32[0], atol=1e-4, rtol=0)


@CPU
@pytest.mark.parametrize("bf16_gemm", ["off", "on"])  # HYBRID_FAST_BF16_GEMM: both tile paths
@pytest.mark.parametrize("Q", [9, 41])  # dot-product kernel (<= 32 queries) and GEMM tiles
@pytest.mark.parametrize("k", [1, 17, 300])
def test_exact_screen_matches_direct_on_ties_and_exclude(seed, k, Q, bf16_gemm, monkeypatch):
    monkeypatch.setenv("HYBRID_FAST_BF16_GEMM", bf16_gemm)
    q, c = integer_data(Q, 300, 16, torch.float32)
    ex = [[i, 5] for i in range(Q)]
    a = search_with_tiles(q, c, k, exclude=ex, exact_strategy="screen", tile_n=32)
    b = search_with_tiles(q, c, k, exclude=ex, exact_strategy="direct")
    assert torch.equal(a[1], b[1]) and torch.equal(a[0], b[0])


def test_bf16_screen_bound_holds_and_is_tight(seed):
    d = 256
    c_d = bf16_screen_bound(d)
    # worst-case rounding: every element sits just below a bf16 rounding midpoint, same sign
    base = 1 + (2 ** -8) * (1 - 2 ** -12)  # rounds down by ~u relative
    q = torch.full((1, d), base) * (1 + 1e-3 * torch.rand(1, d))
    x = torch.full((50, d), base) * (1 + 1e-3 * torch.rand(50, d))
    x = torch.cat([x, torch.randn(200, d)])
    q = torch.cat([q, torch.randn(20, d)])
    s32 = q @ x.T
    sbf = q.bfloat16().float() @ x.bfloat16().float().T
    ratio = (sbf - s32).abs() / (q.norm(dim=1)[:, None] * x.norm(dim=1)[None, :])
    assert float(ratio.max()) <= c_d
    assert float(ratio.max()) >= 0.25 * c_d  # the adversarial rows come close: the bound is not vacuous


def test_fast_bf16_matmul_reports_a_bool():
    assert isinstance(fast_bf16_matmul(), bool)


# ------------------------------------------------------------------- op-level checks
@CPU
def test_opcheck(seed):
    q, c = torch.randn(6, 20), torch.randn(90, 20)
    ex = torch.tensor([[0, -1]] * 6)
    torch.library.opcheck(torch.ops.hybrid_fast.topk_ip.default, (q, c, 7, ex, 2, 16, 2))
    torch.library.opcheck(torch.ops.hybrid_fast.topk_ip.default, (q.double(), c.double(), 90, None, 0, 0, 0))


@CPU
def test_no_q_by_n_allocation_in_the_kernel(seed):
    """The op's peak extra memory is far below one Q x N fp32 score matrix."""
    from hybrid_fast.benchmarks.common import current_rss_bytes, peak_rss_bytes, reset_peak_rss

    q, c = torch.randn(256, 32), torch.randn(60000, 32)
    qxn = 256 * 60000 * 4
    # The high-water mark must be reset, or an earlier test's peak hides this call's growth.
    if not reset_peak_rss():
        pytest.skip("cannot reset the peak-RSS counter (/proc/self/clear_refs)")
    base = current_rss_bytes()
    hf.topk_search(q, c, 10, backend="reference")  # the oracle allocates Q x N: the probe must see it
    assert peak_rss_bytes() - base >= qxn // 2, "peak-RSS probe does not see a Q x N allocation"
    # A warm-up call first: one-off allocations (the bf16 screen's kernels and buffers, where the
    # CPU picks it) are not per-call memory and depend on what ran before in this process.
    hf.topk_search(q, c, 10)
    reset_peak_rss()
    base = current_rss_bytes()
    hf.topk_search(q, c, 10)
    grown = peak_rss_bytes() - base
    assert grown < qxn // 4, f"peak RSS grew by {grown} bytes"


# ------------------------------------------------------------------- bad input
@pytest.mark.parametrize("backend", ["reference", pytest.param("cpu", marks=CPU)])
def test_bad_input(backend):
    q, c = torch.randn(3, 8), torch.randn(10, 8)
    f = lambda *a, **kw: hf.topk_search(*a, backend=backend, **kw)  # noqa: E731
    with pytest.raises(ValueError, match=r"k must satisfy 1 <= k <= N = 10.*got k = 0"):
        f(q, c, 0)
    with pytest.raises(ValueError, match=r"k must satisfy 1 <= k <= N = 10.*got k = 11"):
        f(q, c, 11)
    with pytest.raises(TypeError, match="k must be an int"):
        f(q, c, 2.0)
    with pytest.raises(ValueError, match="same dim"):
        f(q, torch.randn(10, 9), 2)
    with pytest.raises(ValueError, match="corpus is empty"):
        f(q, torch.randn(0, 8), 1)
    qn = q.clone()
    qn[1, 2] = float("nan")
    with pytest.raises(ValueError, match="queries contains NaN"):
        f(qn, c, 2)
    with pytest.raises(TypeError, match="queries must be float32"):
        f(q.long(), c, 2)
    with pytest.raises(TypeError, match="corpus must be float32"):
        f(q, c.int(), 2)
    with pytest.raises(TypeError, match="float64 queries need a float64 corpus"):
        f(q.double(), c, 2)
    with pytest.raises(ValueError, match="queries must be 2-D"):
        f(q[0], c, 2)
    with pytest.raises(ValueError, match="metric must be one of"):
        f(q, c, 2, metric="l2")
    with pytest.raises(ValueError, match="precision must be one of"):
        f(q, c, 2, precision="int8")
    with pytest.raises(ValueError, match=r"exclude out of range.*got 10"):
        f(q, c, 2, exclude=torch.tensor([0, 1, 10]))
    with pytest.raises(ValueError, match=r"exclude must have shape \(Q=3"):
        f(q, c, 2, exclude=torch.tensor([0, 1]))
    with pytest.raises(TypeError, match="exclude must be int64"):
        f(q, c, 2, exclude=torch.tensor([0.0, 1.0, 2.0]))


@CPU
def test_op_level_errors():
    q, c = torch.randn(3, 8), torch.randn(10, 8)
    with pytest.raises(ValueError, match=r"k must satisfy 1 <= k <= N = 10"):
        torch.ops.hybrid_fast.topk_ip(q, c, 11)
    with pytest.raises(ValueError, match="same dim"):
        torch.ops.hybrid_fast.topk_ip(q, torch.randn(10, 7), 1)
    with pytest.raises(ValueError, match="out of range"):
        torch.ops.hybrid_fast.topk_ip(q, c, 1, torch.tensor([[10]] * 3))


@pytest.mark.slow
@CPU
def test_large_odd_shapes(seed):
    q, c = torch.randn(301, 769), torch.randn(20011, 769)
    for k in (1, 1000):
        s, i = hf.topk_search(q, c, k)
        assert_valid_topk(s[:40], i[:40], q[:40], c, k, atol=2e-4)


@CPU
@pytest.mark.parametrize("isa", ["default", "avx2"])
def test_each_compiled_isa_scores_exactly(isa):
    """ATEN_CPU_CAPABILITY caps the SIMD variant of the score, filter and dot kernels: each one in
    a fresh process, on integer data (exact in every summation order) through both score paths
    (dot kernel for <= 32 queries, at::mm above) and fp32/bf16/fp16 corpora with a d % 8 tail."""
    import os
    import subprocess
    import sys

    code = (
        "import torch, hybrid_fast as hf, hybrid_fast._C as C\n"
        "torch.manual_seed(5)\n"
        "for Q in (1, 4, 70):\n"
        "    q = torch.randint(-3, 4, (Q, 77)).float(); c = torch.randint(-3, 4, (203, 77)).float()\n"
        "    c[150] = c[3]\n"
        "    for dt in (torch.float32, torch.bfloat16, torch.float16):\n"
        "        s, i = hf.topk_search(q, c.to(dt), 31)\n"
        "        rs, ri = hf.reference.topk_search(q, c, 31)\n"
        "        assert torch.equal(i, ri) and torch.equal(s, rs), (Q, dt)\n"
        "print(C.cpu_isa())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, ATEN_CPU_CAPABILITY=isa),
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    used = out.stdout.strip().splitlines()[-1]
    if isa == "avx2" and used != "avx2":
        pytest.skip(f"this CPU has no AVX2 (kernels use {used})")
    assert used == isa


@pytest.mark.parametrize("Q", [1, 2, 3, 5])
def test_duplicate_rows_tie_exactly_wherever_they_sit_in_a_tile(Q):
    # Real-valued data (integer data sums exactly in any order): row N-1 duplicates row 0, but
    # row 0 is scored in a full 4-row block and row N-1 in a tile's tail. Every register block of
    # the dot kernel must reduce in one order, so the two scores are equal and the tie goes to id 0.
    g = torch.Generator().manual_seed(11)
    corpus = torch.randn(203, 77, generator=g)
    corpus[-1] = corpus[0]
    queries = torch.randn(Q, 77, generator=g)
    before = torch.get_num_threads()
    for threads in (1, 2):  # one corpus range, or two (then row 202 ends the second range)
        torch.set_num_threads(threads)
        try:
            scores, ids = hf.topk_search(queries, corpus, 203, precision="fp32", backend="cpu")
        finally:
            torch.set_num_threads(before)
        for r in range(Q):
            where = {int(i): j for j, i in enumerate(ids[r])}
            assert scores[r, where[0]] == scores[r, where[202]], (threads, r)
            assert where[202] == where[0] + 1, (threads, r)


# ------------------------------------------------ backend "triton" on CPU tensors (interpreter)
# The op through its registry implementation with forced 16-wide tiles; grid-valued inputs make
# every fp32 dot product exact, so scores and ids must equal the reference's bit for bit.
def _check_topk(q, x, k, exclude=None, **kw):
    from hybrid_fast.ops.topk.reference import topk_scores
    from hybrid_fast.ops.topk.triton import topk_ip

    s, i = topk_ip(q, x, k, exclude, kw.get("tile_q", 16), kw.get("tile_n", 16), kw.get("splits", 0))
    rs, ri = topk_scores(q.float() if q.dtype != torch.float64 else q, x, k, exclude)
    assert s.dtype == rs.dtype and i.dtype == torch.int64
    torch.testing.assert_close(s, rs, rtol=0, atol=0)
    assert torch.equal(i, ri), (i, ri)


@interpreter
@pytest.mark.parametrize("k,splits", [(1, 1), (5, 3), (16, 0)])
def test_triton_ties_tiles_splits(k, splits, seed):
    q, x = grid_inputs(5, 70, 24)
    _check_topk(q, x, k, splits=splits)


@interpreter
def test_triton_exclude_and_padding(seed):
    q, x = grid_inputs(3, 20, 8)
    ex = torch.tensor([[1, 10, -1], [-1, -1, -1], [0, 1, 2]])
    _check_topk(q, x, 5, ex)
    # k = N with excluded ids: rows padded with (-inf, -1)
    _check_topk(q, x, 20, ex, tile_n=16)


@interpreter
def test_triton_fp16_corpus_and_nan(seed):
    q, x = grid_inputs(4, 33, 12)
    x[5, 0] = float("nan")  # a NaN score is never returned
    _check_topk(q, x.half(), 4)


@interpreter
def test_triton_large_k_fallback_and_public_api(seed):
    q, x = grid_inputs(2, 300, 6)
    _check_topk(q, x, 290)  # k > 256: chunked multi-pass fallback
    s, i = search_with_tiles(q, x, 7, backend="triton", precision="fp32", tile_q=16, tile_n=16)
    rs, ri = hf.reference.topk_search(q, x, 7)
    assert torch.equal(i, ri) and torch.equal(s, rs)


@interpreter
def test_triton_opcheck(seed):
    from hybrid_fast.ops.topk.triton import define_ops as _define_ops

    q, x = grid_inputs(3, 40, 8)
    torch.library.opcheck(_define_ops()["topk_ip"], (q, x, 4, None, 16, 16, 2),
                          test_utils=("test_schema", "test_faketensor"))


# ------------------------------------------ backends "triton" and "cuda" on CUDA tensors (GPU)
# Run by benches/gpu_check.sh (pytest -m gpu). Backend "cuda" (hybrid_fast._C_cuda,
# kernels/cuda/topk_select.cu) was written without a GPU: compile-checked only until this runs.
GPU_DTYPES = [torch.float32, torch.bfloat16, torch.float16]


def _grid_inputs(Q, N, d, dtype):
    q, x = grid_inputs(Q, N, d, dtype)
    return q.cuda(), x.cuda()


@gpu
@pytest.mark.parametrize("dtype", GPU_DTYPES)
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


@gpu
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


@gpu
@pytest.mark.parametrize("dtype", GPU_DTYPES)
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


@gpu
@pytest.mark.parametrize("tiles", [dict(tile_n=700), dict(tile_n=333, tile_q=7, splits=3), dict(splits=1)])
def test_topk_cuda_backend_forced_tiles(tiles, seed):
    """Several corpus chunks (running best merged by topk_merge_keys, last chunk shorter than k),
    several query blocks, forced row ranges."""
    _cuda_module()
    q, x = _grid_inputs(20, 5000, 32, torch.bfloat16)
    _check_cuda_backend(q, x, 400, torch.randint(-1, 5000, (20, 5), device="cuda"), **tiles)


@gpu
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


@gpu
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


@gpu
def test_topk_cuda_opcheck(seed):
    ops = _cuda_module()
    s = torch.randn(5, 3000, device="cuda")
    ex = torch.randint(-1, 3000, (5, 4), device="cuda")
    torch.library.opcheck(ops.topk_from_scores.default, (s, 20, 5, ex, 3))
    torch.library.opcheck(ops.topk_from_scores.default, (s, 3000, 0, None, 1))  # k = L
    big = torch.randn(3, 6000, device="cuda")
    torch.library.opcheck(ops.topk_from_scores.default, (big, 5000, 0, None, 2))  # k > 4096: host sort
    torch.library.opcheck(ops.topk_merge_keys.default, (ops.topk_from_scores(s, 100), 40))


@gpu
def test_topk_cuda_backend_torch_compile(seed):
    _cuda_module()
    q, x = _grid_inputs(16, 4096, 64, torch.bfloat16)
    fn = lambda q, x: hf.topk_search(q, x, 10, backend="cuda", precision="fp32")  # noqa: E731
    a = fn(q, x)
    b = torch.compile(fn, fullgraph=True)(q, x)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@gpu
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


def test_tile_masking_of_excludes_equals_the_whole_matrix_masking():
    """The one exclude mask (the reference's, and the CUDA backend's per tile for lists too long
    for its kernel): masking tile by tile at the tiles' first ids masks what masking the whole
    (Q, N) score matrix masks; -1 entries and ids of other tiles are left alone."""
    from hybrid_fast.ops.topk.inputs import mask_excluded

    g = torch.Generator().manual_seed(3)
    scores = torch.randn(4, 23, generator=g)
    exclude = torch.tensor([[0, 22, -1], [5, 5, 11], [-1, -1, -1], [7, 12, 17]])
    whole = mask_excluded(scores.clone(), exclude, value=float("nan"))
    expected = scores.clone()
    for r, ids in enumerate(exclude.tolist()):
        for j in ids:
            if j >= 0:
                expected[r, j] = float("nan")
    torch.testing.assert_close(whole, expected, equal_nan=True, rtol=0, atol=0)
    tiles = [mask_excluded(scores[:, n0:n0 + 6].clone(), exclude, n0, float("nan")) for n0 in range(0, 23, 6)]
    torch.testing.assert_close(torch.cat(tiles, 1), expected, equal_nan=True, rtol=0, atol=0)
