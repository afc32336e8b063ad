"""Exact top-k search by inner product: the public function, its contract, the choice of the
precision strategy and of the backend.

Layers: the score tile (at::mm, or csrc/cpu/simd/score_tile.cpp for few queries), the
threshold filter (csrc/cpu/simd/topk_filter.cpp) and keep-best-k handler
(csrc/common/topk_handler.h) -> the fused driver and op ``hybrid_fast::topk_ip``
(csrc/cpu/topk_ip_cpu.cpp, schema in csrc/ops_def.cpp) -> the backends of this package
(:mod:`.cpu`, :mod:`.triton`, :mod:`.cuda`, :mod:`.reference`) -> :func:`topk_search`
(validation :mod:`.inputs`, precision strategy :mod:`.screen`, backend choice) ->
:class:`hybrid_fast.ExactIndex`.
"""
from __future__ import annotations

import torch

from .._common import registry
from .cpu_features import fast_bf16_matmul
from .inputs import topk_inputs
from .screen import exact_by_screen

OP = registry.op("topk_search")
EXACT_STRATEGIES = ("auto", "direct", "screen")


def topk_search(queries, corpus, k, *, metric="ip", exclude=None, precision="exact", backend="auto"):
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
            (:func:`choose_exact_strategy`, :func:`~.cpu_features.fast_bf16_matmul`): "direct"
            fp32 scoring on CPUs without AMX-BF16 units (the screen measured slower on
            AVX512-BF16 without AMX), else
            "screen": bf16 scoring of a candidate set certified through the bound
            :func:`~.screen.bf16_screen_bound`
            (:math:`|\tilde s - s| \le c_d \|q\| \|x\|`, :math:`c_d \approx 2^{-7}`), then an fp32
            rescore. "fp32": direct fp32 scoring. "bf16": inputs rounded to bf16, fp32
            accumulation, no rescoring: approximate (errors up to :math:`c_d \|q\|\|x\|`; ranks
            of near-ties may swap), scores float32.
        backend: "auto" | "cpu" | "triton" | "cuda" | "reference" (the oracle, materialises
            Q x N). "auto" picks the compiled kernel for the tensors' device
            (:func:`hybrid_fast.backends` lists the choice).

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
    return search_with_tiles(queries, corpus, k, metric=metric, exclude=exclude, precision=precision,
                             backend=backend)


def choose_exact_strategy(device: torch.device) -> str:
    """The strategy of ``precision="exact"`` for fp32/16-bit inputs: "screen" on CPUs where bf16
    matmul is fast, else "direct" (the screen is chosen on CPUs only: tested there)."""
    return "screen" if device.type == "cpu" and fast_bf16_matmul() else "direct"


def search_with_tiles(queries, corpus, k, *, metric="ip", exclude=None, precision="exact", backend="auto",
                      exact_strategy="auto", tile_q: int = 0, tile_n: int = 0, splits: int = 0):
    """:func:`topk_search` with the knobs that tests and benchmarks force (not public API).

    ``exact_strategy``: "auto" | "direct" | "screen" (forces the strategy of
    ``precision="exact"``). ``tile_q``, ``tile_n``, ``splits``: query rows per tile, corpus rows
    per tile, corpus ranges (0 = auto): small values exercise the tiled and merge paths on tiny
    inputs. Each backend reads them as its own tiles (see its module)."""
    queries, corpus, ex = topk_inputs(queries, corpus, k, metric, exclude, precision)
    if exact_strategy not in EXACT_STRATEGIES:
        raise ValueError(f"exact_strategy must be one of {EXACT_STRATEGIES}, got {exact_strategy!r}")
    _, impl = OP.resolve(backend, queries.device)

    def run(q, c, kk, e):
        return impl(q, c, kk, e, tile_q, tile_n, splits)

    if precision == "bf16":
        return run(queries.to(torch.bfloat16), corpus.to(torch.bfloat16), k, ex)
    f64 = queries.dtype == torch.float64
    if precision == "exact" and not f64:
        strategy = choose_exact_strategy(queries.device) if exact_strategy == "auto" else exact_strategy
        if strategy == "screen":
            return exact_by_screen(run, queries, corpus, k, ex)
    return run(queries, corpus, k, ex)


__all__ = ["topk_search", "search_with_tiles", "choose_exact_strategy", "EXACT_STRATEGIES"]
