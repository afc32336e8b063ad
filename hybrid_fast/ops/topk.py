"""Exact top-k search by inner product: public API, fake registration, backend entries.

Layers: the score tile (at::mm, or csrc/cpu/simd/score_tile.cpp for few queries), the
threshold filter (csrc/cpu/simd/topk_filter.cpp) and keep-best-k handler
(csrc/common/topk_handler.h) -> the fused driver and op ``hybrid_fast::topk_ip``
(csrc/cpu/topk_ip_cpu.cpp, schema in csrc/ops_def.cpp) -> :func:`topk_search` (validation,
metric, precision strategy, backend choice) -> :class:`hybrid_fast.ExactIndex`.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from . import registry
from .validation import check_finite, check_matrix, compute_dtype
from .. import _ext

_OP = registry.op("topk_search")

METRICS = ("ip", "cosine")
PRECISIONS = ("exact", "fp32", "bf16")
EXACT_STRATEGIES = ("auto", "direct", "screen")

BF16_UNIT_ROUNDOFF = 2.0 ** -8
FP32_UNIT_ROUNDOFF = 2.0 ** -24


# ----------------------------------------------------------------------------- validation
def _exclude_tensor(exclude, Q: int, N: int, device: torch.device) -> torch.Tensor | None:
    """``exclude`` as a (Q, E) int64 tensor, -1 = none; accepts (Q,), (Q, E) or Q sequences."""
    if exclude is None:
        return None
    if isinstance(exclude, torch.Tensor):
        if exclude.dtype != torch.int64:
            raise TypeError(f"exclude must be int64 ids, got {exclude.dtype}")
        ex = exclude[:, None] if exclude.dim() == 1 else exclude
        if ex.dim() != 2 or ex.shape[0] != Q:
            raise ValueError(f"exclude must have shape (Q={Q},) or (Q={Q}, E), got {tuple(exclude.shape)}")
        ex = ex.to(device).contiguous()
    elif isinstance(exclude, Sequence):
        if len(exclude) != Q:
            raise ValueError(f"exclude must hold one list of ids per query (Q={Q}), got {len(exclude)}")
        rows = [[int(v)] if isinstance(v, int) else [int(x) for x in v] for v in exclude]
        E = max((len(r) for r in rows), default=0)
        ex = torch.full((Q, E), -1, dtype=torch.int64)
        for i, r in enumerate(rows):
            ex[i, :len(r)] = torch.tensor(r, dtype=torch.int64)
        ex = ex.to(device)
    else:
        raise TypeError(f"exclude must be None, an int64 tensor or a sequence of id lists, got {type(exclude).__name__}")
    if ex.numel() > 0 and not torch.compiler.is_compiling():
        lo, hi = int(ex.min()), int(ex.max())
        if lo < -1 or hi >= N:
            bad = lo if lo < -1 else hi
            raise ValueError(f"exclude out of range: expected -1 (none) or 0 <= id < N = {N}, got {bad}")
    return ex


def topk_inputs(queries, corpus, k, metric, exclude, precision):
    """Validate and normalise the arguments of :func:`topk_search`.

    Returns ``(queries, corpus, exclude)``: contiguous, normalised for ``metric="cosine"``,
    ``exclude`` as (Q, E) int64 with -1 = none (or None).
    """
    check_matrix(queries, "queries", dim_name="Q")
    if isinstance(corpus, torch.Tensor) and corpus.dim() == 2 and corpus.shape[0] == 0:
        raise ValueError(f"corpus is empty: expected at least one row (N >= 1), got shape {tuple(corpus.shape)}")
    check_matrix(corpus, "corpus", dim_name="N")
    if queries.shape[1] != corpus.shape[1]:
        raise ValueError(f"queries and corpus must have the same dim, got queries {tuple(queries.shape)} "
                         f"and corpus {tuple(corpus.shape)}")
    if (queries.dtype == torch.float64) != (corpus.dtype == torch.float64):
        raise TypeError(f"float64 queries need a float64 corpus and vice versa, got queries {queries.dtype} "
                        f"and corpus {corpus.dtype}")
    if queries.device != corpus.device:
        raise ValueError(f"queries and corpus must be on the same device, got {queries.device} and {corpus.device}")
    N = corpus.shape[0]
    if not isinstance(k, int) or isinstance(k, bool):
        raise TypeError(f"k must be an int, got {type(k).__name__}")
    if not 1 <= k <= N:
        raise ValueError(f"k must satisfy 1 <= k <= N = {N} (corpus rows), got k = {k}")
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    check_finite(queries, "queries")
    ex = _exclude_tensor(exclude, queries.shape[0], N, queries.device)
    if metric == "cosine":
        queries = normalize_rows(queries)
        corpus = normalize_rows(corpus)
    return queries.contiguous(), corpus.contiguous(), ex


def normalize_rows(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit L2 norm (computed in fp32/fp64, stored in x's dtype); zero rows stay 0."""
    ct = compute_dtype(x.dtype)
    return F.normalize(x.to(ct), dim=1).to(x.dtype)


# ----------------------------------------------------------------------------- packed keys
# The GPU backends (Triton kernel, CUDA k-selection) select on one int64 per candidate:
# key = ordered_int32(score) << 32 | (2^32 - 1 - id), so integer order is (score desc, id asc).
MIN_KEY = -(2 ** 63)  # padding: below every real key
ID_MASK = 0xFFFFFFFF  # ids must be < ID_MASK


def decode_keys(keys: torch.Tensor):
    """Packed int64 keys -> (scores float32, ids int64); padding and -inf scores -> (-inf, -1)."""
    ordered = (keys >> 32).to(torch.int32)
    bits = torch.where(ordered >= 0, ordered, ordered ^ 0x7FFFFFFF)
    scores = bits.view(torch.float32)  # bits is a fresh tensor; masked_fill below copies
    ids = ID_MASK - (keys & ID_MASK)
    pad = (keys == MIN_KEY) | (scores == float("-inf"))
    return scores.masked_fill(pad, float("-inf")), ids.masked_fill(pad, -1)


# ----------------------------------------------------------------------------- strategies
def fast_bf16_matmul() -> bool:
    """Whether ``precision="exact"`` screens in bf16 here: the compiled module's bf16 GEMM choice
    (csrc/common/isa.h): ``HYBRID_FAST_BF16_GEMM=on|off`` forces it, ``auto`` picks CPUs with
    bf16 matrix units (AMX-BF16; AVX512-BF16 with oneDNN's micro-kernel), reported in
    ``hybrid_fast.backends()["build"]["cpu_module"]``. Elsewhere the exact answer is computed
    directly in fp32 (benches/RESULTS.md, "bf16 GEMM tiles").
    """
    return _ext.cpu.available and bool(_ext.cpu.module.bf16_gemm())


def bf16_screen_bound(d: int) -> float:
    r"""Constant c_d with ``|s_bf16 - s_fp32| <= c_d * ||q|| * ||x||`` for one dot product.

    s_bf16 = fl32(sum_i bf16(q_i) bf16(x_i)) (bf16 inputs, fp32 accumulation in any order),
    s_fp32 = fl32(sum_i q_i x_i). With u = 2^-8 (bf16 unit roundoff), |bf16(a) - a| <= u|a|, so
    |bf16(q_i) bf16(x_i) - q_i x_i| <= (2u + u^2)|q_i x_i|; fp32 summation of d terms adds at most
    gamma_d sum|terms| with gamma_d = d 2^-24 / (1 - d 2^-24) (Higham, Thm 3.1; FMA only
    tightens it), and sum_i |q_i x_i| <= ||q|| ||x|| (Cauchy-Schwarz). Hence
    c_d = 2u + u^2 + gamma_d ((1 + u)^2 + 1). Subnormal underflow is ignored (its absolute error,
    < 2^-133 per product, is far below every other term for non-degenerate data).
    """
    u = BF16_UNIT_ROUNDOFF
    gamma = d * FP32_UNIT_ROUNDOFF / (1.0 - d * FP32_UNIT_ROUNDOFF)
    return 2 * u + u * u + gamma * ((1 + u) ** 2 + 1)


def _sort_rows(scores: torch.Tensor, indices: torch.Tensor, k: int):
    """Best k of each row under (score desc, index asc); -1 indices (padding) carry -inf."""
    scores = scores.masked_fill(indices < 0, float("-inf"))
    big = torch.iinfo(torch.int64).max
    by_index = torch.sort(indices.masked_fill(indices < 0, big), dim=1, stable=True)
    scores = scores.gather(1, by_index.indices)
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k]
    s, i = scores.gather(1, order), by_index.values.gather(1, order)
    i = i.masked_fill(s == float("-inf"), -1)
    return s.contiguous(), i.contiguous()


def topk_over_chunks(chunks, k: int, exclude, search):
    """Exact top-k over a corpus given as consecutive row chunks, merged under the tie rule.

    ``chunks`` yields ``(first_id, rows)`` in ascending id order; ``search(rows, kk, local_exclude)``
    returns the chunk's (scores, local ids) top-kk. ``exclude`` ((Q, E) global ids, -1 = none) is
    shifted per chunk. Concatenating the running best before the new chunk keeps equal scores in
    id order (earlier chunks hold smaller ids). Validation guarantees N >= k, so the result has k
    columns once every chunk is merged.
    """
    best_s = best_i = None
    for a, rows in chunks:
        n = rows.shape[0]
        local = None
        if exclude is not None:
            local = torch.where((exclude >= a) & (exclude < a + n), exclude - a, torch.full_like(exclude, -1))
        s, i = search(rows, min(k, n), local)
        i = torch.where(i >= 0, i + a, i)
        if best_s is not None:
            s, i = _sort_rows(torch.cat([best_s, s], 1), torch.cat([best_i, i], 1), k)
        best_s, best_i = s, i
    return best_s, best_i


def topk_chunked_reference(q, c, k, exclude, chunk_elems: int = 1 << 26):
    """Fallback of the GPU backends for what their kernels do not take (Triton: k > 256, float64,
    N >= 2^32 - 1; CUDA: float64): score corpus chunks of
    max(k, chunk_elems / Q) rows (Q x chunk scores in memory, never Q x N) and keep the best k."""
    from ..reference.topk import topk_scores

    chunk = max(k, chunk_elems // max(1, q.shape[0]))
    chunks = ((n0, c[n0:n0 + chunk]) for n0 in range(0, c.shape[0], chunk))
    return topk_over_chunks(chunks, k, exclude, lambda rows, kk, ex: topk_scores(q, rows, kk, ex))


def _exact_by_screen(run, queries, corpus, k, exclude, rescore_bytes=64 << 20):
    """Exact fp32 top-k via a bf16 screen of a certified candidate set, then an fp32 rescore.

    Screen: top-kk by s~ (bf16 inputs, fp32 accumulation). With delta_i = c_d ||q_i|| max_j ||x_j||
    (:func:`bf16_screen_bound`), query i is certified when s~_(k) - s~_(kk) > 2 delta_i: the k best
    screened candidates then have fp32 scores >= s~_(k) - delta_i > s~_(kk) + delta_i >= the fp32
    score of every unscreened id, so the fp32 top-k lies in the screened set. Uncertified
    queries are screened again with kk x 4 (kk = N certifies trivially).
    """
    Q, d = queries.shape
    N = corpus.shape[0]
    q32 = queries.float()
    qb, cb = queries.to(torch.bfloat16), corpus.to(torch.bfloat16)
    qn = torch.linalg.vector_norm(queries, dim=1, dtype=torch.float64)
    xmax = float(torch.linalg.vector_norm(corpus, dim=1, dtype=torch.float64).max())
    # (1 + 1e-6): the norms above are computed in fp64 from the same inputs, then rounded to fp32
    delta = (bf16_screen_bound(d) * qn * xmax * (1 + 1e-6)).float()
    out_s = torch.empty(Q, k, dtype=torch.float32, device=queries.device)
    out_i = torch.empty(Q, k, dtype=torch.int64, device=queries.device)
    pending = torch.arange(Q, device=queries.device)
    kk = min(N, max(2 * k, k + 16))
    while pending.numel() > 0:
        ex = exclude.index_select(0, pending) if exclude is not None else None
        s, i = run(qb.index_select(0, pending), cb, kk, ex)
        if kk == N:
            ok = torch.ones(pending.numel(), dtype=torch.bool, device=queries.device)
        else:
            ok = (s[:, k - 1] - s[:, kk - 1] > 2 * delta[pending]) | (s[:, k - 1] == float("-inf"))
        rows, cand = pending[ok], i[ok]
        chunk = max(1, rescore_bytes // max(1, kk * d * 4))
        for r0 in range(0, rows.numel(), chunk):
            r, c = rows[r0:r0 + chunk], cand[r0:r0 + chunk]
            vecs = corpus.index_select(0, c.clamp_min(0).reshape(-1)).float().view(c.shape[0], kk, d)
            exact = torch.bmm(vecs, q32.index_select(0, r)[:, :, None]).squeeze(2)
            out_s[r], out_i[r] = _sort_rows(exact, c, k)
        pending = pending[~ok]
        kk = min(N, 4 * kk)
    return out_s, out_i


# ----------------------------------------------------------------------------- public API
def topk_search(queries, corpus, k, *, metric="ip", exclude=None, precision="exact", backend="auto",
                exact_strategy="auto", tile_q: int = 0, tile_n: int = 0, splits: int = 0):
    r"""Exact top-k search by inner product (or cosine), fused with the matrix product.

    Computes, for each query i, the k corpus ids j with the largest scores
    :math:`s_{ij} = \langle q_i, x_j \rangle` (``metric="cosine"``: both sides L2-normalised
    first), best first; equal scores are ordered by ascending id.

    Args:
        queries: (Q, d) float32, bfloat16, float16 or float64; NaN/Inf rejected.
        corpus: (N >= 1, d) float32, bfloat16 or float16 (mixing these with the queries is
            allowed; float64 needs float64 on both sides). A bf16/fp16 corpus is streamed as is
            (half the bytes) and converted to fp32 one tile at a time.
        k: 1 <= k <= N, any size.
        metric: "ip" | "cosine" (cosine makes a normalised copy of the corpus, O(N d) memory;
            :class:`hybrid_fast.ExactIndex` normalises once at ``add``).
        exclude: ids to leave out per query: (Q,) int64 (one id each), (Q, E) int64 padded
            with -1, or a sequence of Q id lists.
        precision: "exact" (default): the exact top-k of the fp32 scores (fp64 for fp64 inputs),
            up to fp32 rounding of the dot products, by the fastest strategy for this CPU
            (``exact_strategy="auto"``, :func:`fast_bf16_matmul`): "direct" fp32 scoring on
            CPUs without bf16 matrix units, else "screen": bf16 scoring
            of a candidate set certified through the bound :func:`bf16_screen_bound`
            (:math:`|\tilde s - s| \le c_d \|q\| \|x\|`, :math:`c_d \approx 2^{-7}`), then an fp32
            rescore. "fp32": direct fp32 scoring. "bf16": inputs rounded to bf16, fp32
            accumulation, no rescoring: approximate (errors up to :math:`c_d \|q\|\|x\|`; ranks
            of near-ties may swap), scores float32.
        backend: "auto" | "cpu" | "reference" (the oracle, materialises Q x N).
        exact_strategy: "auto" | "direct" | "screen" (forces the strategy of precision="exact";
            for tests and benchmarks).
        tile_q, tile_n, splits: query rows per tile, corpus rows per tile, corpus ranges
            (0 = auto); tests force small values to exercise the tiled and merge paths.

    Returns:
        ``(scores, indices)``: (Q, k) scores in the compute dtype (float32; float64 for float64
        inputs) and (Q, k) int64 ids, each row best first. Rows with fewer than k candidates
        (excluded ids, NaN scores from a non-finite corpus) are padded with (-inf, -1).

    Numerics: fp32 accumulation (query blocks of <= 32 rows: the dot-product kernel of
    csrc/cpu/simd/score_tile.cpp, which streams the corpus without packing it; larger blocks:
    MKL sgemm tiles); scores match an fp64 evaluation to about
    d * 2^-24 * ||q|| ||x|| (worst case). Results are deterministic for fixed tile sizes and
    thread count; different tilings may change the last bits of scores and thus the order of
    near-ties (exact ties, e.g. duplicate vectors, are always ordered by id).

    Memory: never Q x N: per thread a score tile (~1 MiB), Qt x (k + max(k, 64)) candidate
    buffers, and for bf16/fp16 corpora an Nt x d fp32 tile. Complexity: 2 Q N d flops; the
    corpus (N d x itemsize bytes) is streamed once per query block (once in total for
    Q < 64 x threads, where the corpus is split across threads).

    Raises:
        ValueError / TypeError naming the argument: non-2-D or non-float inputs, empty corpus,
        dim mismatch, k out of [1, N], NaN/Inf in queries, bad exclude, unknown metric or
        precision. RuntimeError (or :class:`hybrid_fast.MissingExtensionError`) when the
        requested backend cannot run here.
    """
    queries, corpus, ex = topk_inputs(queries, corpus, k, metric, exclude, precision)
    if exact_strategy not in EXACT_STRATEGIES:
        raise ValueError(f"exact_strategy must be one of {EXACT_STRATEGIES}, got {exact_strategy!r}")
    _, impl = _OP.resolve(backend, queries.device)

    def run(q, c, kk, e):
        return impl(q, c, kk, e, tile_q, tile_n, splits)

    if precision == "bf16":
        return run(queries.to(torch.bfloat16), corpus.to(torch.bfloat16), k, ex)
    f64 = queries.dtype == torch.float64
    if precision == "exact" and not f64:
        strategy = exact_strategy
        if strategy == "auto":  # the screen is chosen on CPUs only (tested there; device-agnostic code)
            strategy = "screen" if queries.device.type == "cpu" and fast_bf16_matmul() else "direct"
        if strategy == "screen":
            return _exact_by_screen(run, queries, corpus, k, ex)
    return run(queries, corpus, k, ex)


def _reference_impl(q, c, k, exclude, tile_q, tile_n, splits):
    from ..reference.topk import topk_scores

    return topk_scores(q, c, k, exclude)


def _cpu_impl(q, c, k, exclude, tile_q, tile_n, splits):
    return torch.ops.hybrid_fast.topk_ip(q, c, k, exclude, tile_q, tile_n, splits)


_OP.register("reference", ("cpu", "cuda"), lambda d: True, _reference_impl)
_OP.register("cpu", ("cpu",), registry.cpu_module_available, _cpu_impl)


def _register_fake() -> None:
    @torch.library.register_fake("hybrid_fast::topk_ip")
    def _topk_ip_fake(queries, corpus, k, exclude=None, tile_q=0, tile_n=0, splits=0):
        ct = compute_dtype(queries.dtype)
        Q = queries.shape[0]
        return queries.new_empty((Q, k), dtype=ct), queries.new_empty((Q, k), dtype=torch.int64)


if _ext.cpu.available:  # the schema comes with the compiled module
    _register_fake()

__all__ = ["topk_search", "bf16_screen_bound", "fast_bf16_matmul", "normalize_rows", "METRICS", "PRECISIONS"]
