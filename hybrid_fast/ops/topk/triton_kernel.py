r"""Fused inner-product top-k in Triton: score tiles are reduced to top-k candidates on chip.

Contract (``hybrid_fast::topk_ip``): for each query i the k corpus ids j with the largest
:math:`s_{ij} = \langle q_i, x_j\rangle` (fp32 accumulation), best first, equal scores by
ascending id, ``exclude`` ids and NaN scores never returned, rows with fewer than k candidates
padded with (-inf, -1).

Kernel ``_topk_kernel``, grid (cdiv(Q, BLOCK_Q), splits): each program owns BLOCK_Q queries and
one contiguous range of the corpus. Per BLOCK_N tile: S = q_blk @ x_tile^T (K-loop over d in
BLOCK_K, fp32 accumulate; fp32 inputs use IEEE dots), NaN -> -inf, -0 -> +0, excluded ids
masked. Each score is packed with its id into one int64 key (the format of
``hybrid_fast/ops/_common/keys.py``: ``ordered_int32(score) << 32 | (2^32 - 1 - id)``), so that
integer order is (score desc, id asc) and one ``tl.topk`` on keys selects values and ids together. The tile's top KP keys are
merged with the running top KP (join + topk) in registers; only (Q, splits, KP) keys reach
global memory, never the Q x N scores. The host merges the splits with ``torch.topk`` on the
keys and decodes them.

Limits: KP = next_pow2(k) <= 256 (larger k, float64 inputs and N >= 2^32 - 1 take the chunked
multi-pass fallback in ``hybrid_fast.ops.topk.triton``); ids < 2^32 - 1.

Flops 2 Q N d; bytes: the corpus (N d itemsize) once per query block (Q <= BLOCK_Q: once), plus
Q splits KP 8 bytes of candidates. Tile defaults (BLOCK_Q 64, BLOCK_N 128, BLOCK_K 64) are
untuned first guesses for Hopper.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .._common.keys import ID_MASK, decode_keys
from .._common.triton_helpers import INTERPRET, KEY_MIN, dot_nt, launch, pack_keys, pow2_block

KP_MAX = 256


@triton.jit
def _topk_kernel(q_ptr, x_ptr, ex_ptr, out_ptr, Q, N, D, E, n_per_split, stride_q, stride_x, stride_ex,
                 HAS_EXCLUDE: tl.constexpr, UPCAST: tl.constexpr, PRECISION: tl.constexpr,
                 BLOCK_Q: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, KP: tl.constexpr):
    pid_q = tl.program_id(0)
    pid_s = tl.program_id(1)
    rows = pid_q * BLOCK_Q + tl.arange(0, BLOCK_Q)
    row_ok = rows < Q
    rows64 = rows.to(tl.int64)
    n_start = pid_s * n_per_split
    n_end = tl.minimum(N, n_start + n_per_split)
    best = tl.full([BLOCK_Q, KP], KEY_MIN, tl.int64)
    for n0 in range(n_start, n_end, BLOCK_N):
        cols = n0 + tl.arange(0, BLOCK_N)
        col_ok = cols < n_end
        cols64 = cols.to(tl.int64)
        acc = dot_nt(q_ptr, rows64, row_ok, stride_q, x_ptr, cols64, col_ok, stride_x, D,
                      tl.zeros([BLOCK_Q, BLOCK_N], tl.float32), BLOCK_K, UPCAST, PRECISION, tl.float32)
        s = tl.where(acc != acc, float("-inf"), acc)  # NaN never returned
        s = tl.where(s == 0.0, 0.0, s)  # -0 -> +0: equal scores must tie on the id
        ok = col_ok[None, :] & row_ok[:, None]
        if HAS_EXCLUDE:
            for e in range(0, E):
                ex = tl.load(ex_ptr + rows64 * stride_ex + e, mask=row_ok, other=-1)
                ok = ok & (cols64[None, :] != ex[:, None])
        key = tl.where(ok, pack_keys(s, cols64[None, :]), KEY_MIN)
        tile_top = tl.topk(key, KP, dim=1)
        merged = tl.reshape(tl.join(best, tile_top), [BLOCK_Q, 2 * KP])
        best = tl.topk(merged, KP, dim=1)
    kp = tl.arange(0, KP)
    out = out_ptr + (rows64[:, None] * tl.num_programs(1) + pid_s) * KP + kp[None, :]
    tl.store(out, best, mask=row_ok[:, None])


def fused_supported(queries: torch.Tensor, corpus: torch.Tensor, k: int) -> bool:
    """Whether :func:`topk_ip` runs the fused kernel (else the caller takes a chunked fallback)."""
    return (triton.next_power_of_2(k) <= KP_MAX and queries.dtype != torch.float64
            and corpus.dtype != torch.float64 and corpus.shape[0] < ID_MASK)


def dtype_config(q_dtype, c_dtype):
    """(UPCAST, PRECISION) of ``_topk_kernel`` for query/corpus dtypes: tiles upcast to fp32 at
    load under the interpreter, for mixed dtypes and for fp32 (IEEE dot); 16-bit: native
    tensor-core dot. The launcher and ``aot.py`` both use it."""
    upcast = INTERPRET or q_dtype != c_dtype or q_dtype == torch.float32
    return upcast, "ieee" if upcast else "tf32"


def config(Q: int, N: int, D: int, k: int, *, tile_q: int = 0, tile_n: int = 0, k_block: int = 0) -> dict:
    """Tiles and launch options of ``_topk_kernel`` (the launcher and ``aot.py`` both use it):
    KP = next_pow2(k); BLOCK_Q 64 (16 for KP > 64: register budget of the candidate lists),
    BLOCK_N 128 (>= KP), BLOCK_K 64; explicit ``tile_q``/``tile_n``/``k_block`` (0 = default)
    override; no launch options under the interpreter."""
    kp = max(triton.next_power_of_2(k), 1)
    bq = pow2_block(tile_q, 64 if kp <= 64 else 16, Q, hi=128)
    bn = max(pow2_block(tile_n, 128, N, hi=1024), kp)
    bk = pow2_block(k_block, 64, D, hi=128)
    opts = {} if INTERPRET else dict(num_warps=8 if bq * bn >= 64 * 128 else 4, num_stages=3)
    return dict(BLOCK_Q=bq, BLOCK_N=bn, BLOCK_K=bk, KP=kp, **opts)


def topk_ip(queries, corpus, k, exclude=None, tile_q=0, tile_n=0, splits=0, *, k_block=0):
    """Launch ``_topk_kernel`` and merge the splits: -> (scores (Q, k) float32, ids (Q, k) int64).

    Inputs validated and contiguous (``hybrid_fast.ops.topk.inputs.topk_inputs``); ``exclude`` None or
    (Q, E) int64 with -1 = none; requires :func:`fused_supported`. ``tile_q``/``tile_n``: BLOCK_Q
    and BLOCK_N (powers of two >= 16, rounded up; BLOCK_N >= KP); ``splits``: corpus ranges
    (0 = enough to fill ~2 waves of 132 SMs)."""
    Q, D = queries.shape
    N = corpus.shape[0]
    cfg = config(Q, N, D, k, tile_q=tile_q, tile_n=tile_n, k_block=k_block)
    bq, bn, kp = cfg["BLOCK_Q"], cfg["BLOCK_N"], cfg["KP"]
    n_tiles = triton.cdiv(N, bn)
    if splits <= 0:
        splits = max(1, min(n_tiles, triton.cdiv(264, triton.cdiv(Q, bq))))
    splits = min(splits, n_tiles)
    n_per_split = triton.cdiv(n_tiles, splits) * bn
    splits = triton.cdiv(N, n_per_split)
    out = torch.empty((Q, splits, kp), dtype=torch.int64, device=queries.device)
    upcast, prec = dtype_config(queries.dtype, corpus.dtype)
    has_ex = exclude is not None and exclude.numel() > 0
    ex = exclude if has_ex else out
    launch(_topk_kernel, (triton.cdiv(Q, bq), splits), queries, corpus, ex, out, Q, N, D,
            exclude.shape[1] if has_ex else 0, n_per_split, queries.stride(0), corpus.stride(0),
            ex.stride(0) if has_ex else 0,
            HAS_EXCLUDE=has_ex, UPCAST=upcast, PRECISION=prec, **cfg)
    keys = out.view(Q, splits * kp)
    keys = torch.topk(keys, k, dim=1, sorted=True).values
    return decode_keys(keys)

