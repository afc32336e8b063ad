r"""Fused InfoNCE in Triton: online log-sum-exp forward, dq/dscale in the same row pass, dp in a
column pass. The (B, N) score matrix is never written to global memory.

Contract (same as :func:`hybrid_fast.infonce_loss`, one direction): with
:math:`s_{ij} = \text{scale}\,\langle q_i, p_j\rangle`, candidate j masked for row i when
``p_groups[j] == q_groups[i] and j != labels[i]``,

.. math:: \ell_i = \text{lse}_i - s_{i,y_i},\qquad \text{lse}_i = \log\sum_{j\ \text{unmasked}} e^{s_{ij}}

Gradients of :math:`L = \sum_i g_i \ell_i + h_i \text{lse}_i` (``a_i = g_i + h_i``, ``b_i = g_i``;
the fused training op has ``a = b = row_weights``): with :math:`P_{ij} = e^{s_{ij} - \text{lse}_i}`
(0 where masked) and :math:`dS_{ij} = a_i P_{ij} - b_i [j = y_i]`,

    dq_i = scale * sum_j dS_ij p_j,  dp_j = scale * sum_i dS_ij q_i,
    dscale = sum_ij dS_ij <q_i, p_j>.

Kernels (raw layer; host launchers below validate nothing: hybrid_fast.ops does that):

* ``_rows_kernel``, grid (cdiv(B, BLOCK_M), n_d): for a block of query rows, stream p in BLOCK_N
  tiles: S tile = q_blk @ p_tile^T (K-loop over d in BLOCK_K), online max/sum (FlashAttention),
  positive score picked from the tile. With COMPUTE_GRAD it also accumulates
  ``sum_j exp(s_ij - m_i) p_j`` (rescaled online, exactly like FlashAttention's output with
  V = p) and ``sum_j exp(s_ij - m_i) <q_i,p_j>``, so dq and the per-row dscale term come out of
  the same pass; no second sweep is needed once lse is known.
* ``_cols_kernel``, grid (cdiv(N, BLOCK_N), n_d): for a block of candidates, stream q in BLOCK_M
  tiles, recompute S^T, form dS from the saved lse and accumulate dS^T @ q. Deterministic (no
  atomics).

The dq/dp accumulators (fp32, in registers) of one program are N_ACC <= 8 tiles of BLOCK_D
columns (``acc0..acc7``, static unroll), all updated from the same S tile; a program covers
N_ACC * BLOCK_D columns of d and n_d = cdiv(d, N_ACC * BLOCK_D) programs along d each recompute S.

Passes (one pass = 2BNd flops); ``passes()`` gives them for the defaults:

* forward only (no grad): 1 pass.
* fused training (infonce_fused, mean/sum): rows kernel n_d + 1, cols kernel n_d + 1, total
  2 n_d + 2. With all of d in one program (n_d = 1) that is 4 passes, the minimum without
  atomics or a stored B x N matrix (S for lse and P @ p in the rows kernel, S^T recompute and
  dS^T @ q in the cols kernel).
* unfused (infonce_fwd then infonce_bwd, reduction="none" with grad): 1 + (2 n_d + 2).

Default tiles for sm_90 (``GRAD_CONFIGS``), from ahead-of-time compiles (``aot.py``: ptxas -v for
sm_90a with the JIT's divisibility-by-16 hints; registers per thread, spill stores in bytes,
shared memory in bytes; not timed: no GPU when chosen). Passes before -> after this tiling, fused
op: d = 256: 4 -> 4, d = 512: 6 -> 4, d = 768: 8 -> 4 (16-bit inputs).

    d    dtype      pass  BLOCK_M x BLOCK_N x BLOCK_K, N_ACC x BLOCK_D  warps/stages  regs  spill  smem   passes
    512  bf16/fp16  rows  64 x 32 x 64, 2 x 256                          8 / 3         255   0      36864  4
    512  bf16/fp16  cols  32 x 64 x 64, 2 x 256                          8 / 3         239   0      36864
    768  bf16/fp16  rows  64 x 32 x 64, 3 x 256                          16 / 2        128   376    32768  4
    768  bf16/fp16  cols  32 x 64 x 64, 3 x 256                          16 / 2        128   184    32768
    256  bf16/fp16  rows  64 x 64 x 64, 1 x 256                          8 / 3         221   0      49152  4
    256  bf16/fp16  cols  64 x 64 x 64, 1 x 256                          8 / 3         200   0      49152
    any  fp32       rows  32 x 32 x 32, 1 x 128 (chunked)                4 / 2         182   0      20480  2 cdiv(d,128) + 2
    any  fp32       cols  32 x 32 x 32, 1 x 128 (chunked)                4 / 2         167   0      20480  (768: 14, 512: 10)

d = 768 (16-bit) is the register limit of the full-d scheme: 64 rows x 768 fp32 accumulator
columns are 96 registers a thread at 16 warps (ptxas cap 128 at 512 threads), and a few hundred
bytes spill (6 x 128 accumulators, BLOCK_N = 16 or 64 rows, more stages: no better). With 8 warps
it spills kilobytes. Above d = 768 (16-bit) the chunked fallback applies: programs of 3 x 256
columns (d = 1024: 6 passes). fp32 uses IEEE FMA dots (no tensor cores) whose operands also
live in registers: two 128-column accumulators already spill (564 bytes), so fp32 stays chunked
in 128 columns (more passes than the old 256-column chunks, which spilled ~4 KB; fp32 is not the
fast path). fp64: the fp32 tiles.

Memory: O(B + N) fp32/fp64 buffers (lse, per-row dscale terms, upstream weights) plus dq/dp
in the input dtype; nothing O(B N).

Numerics: fp32 accumulation (fp64 for fp64 inputs); fp32 inputs use IEEE fp32 dot
(``input_precision="ieee"``, not TF32); bf16/fp16 use tensor-core dots with fp32 accumulate, P
and dS are rounded to the input dtype for the second product (as FlashAttention does). lse is
kept in the accumulator dtype inside the kernel and stored as float64. Under
``TRITON_INTERPRET=1`` every tile is upcast to the accumulator dtype at load (the interpreter's
bf16 dot is broken).

Tiles: BLOCK_M/BLOCK_N/BLOCK_K/BLOCK_D powers of two >= 16; ``config()`` picks them (explicit
row_block/col_block/k_block/d_block/d_acc override; ``d_acc=1`` forces the chunked scheme).
Forward-only: 128 x 64, 8 warps, 3 stages. Under the interpreter: 64-wide tiles, BLOCK_D 64,
all of d in one program up to d = 256.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .._common.triton_helpers import INTERPRET, dot_nt, launch, pow2_block
from .._common.validation import compute_dtype

@triton.jit
def _dot_acc(w, ptr, rows64, row_ok, stride, dcols, D, acc, UPCAST: tl.constexpr, PRECISION: tl.constexpr,
             ACC: tl.constexpr):
    """acc + w @ X[rows, dcols] (X row-major with row stride ``stride``), w already in the dot dtype."""
    x = tl.load(ptr + rows64[:, None] * stride + dcols[None, :], mask=row_ok[:, None] & (dcols < D)[None, :],
                other=0.0)
    if UPCAST:
        x = x.to(ACC)
    return tl.dot(w, x, acc, input_precision=PRECISION, out_dtype=ACC)


@triton.jit
def _load_groups(ptr, idx, ok, HAS_GROUPS: tl.constexpr):
    """Group ids ``ptr[idx]`` (0 where not ``ok``) when HAS_GROUPS, else ``idx`` (a placeholder that
    :func:`_pair_mask` never reads)."""
    if HAS_GROUPS:
        return tl.load(ptr + idx, mask=ok, other=0)
    else:
        return idx


@triton.jit
def _pair_mask(cand, cand_ok, cand_group, label, query_ok, query_group, HAS_GROUPS: tl.constexpr):
    """(is_pos, valid) of one score tile, shared by the rows kernel (S, queries x candidates) and
    the cols kernel (S^T): the candidate-side operands (ids ``cand``, ``cand_ok``, group ids) and
    the query-side ones (labels, ``query_ok``, group ids) come already broadcast to the tile's
    orientation. valid: a real (query, candidate) pair that is not a false negative (same group
    and not the label); is_pos: candidate == label (padding included: callers mask it)."""
    is_pos = cand == label
    valid = cand_ok & query_ok
    if HAS_GROUPS:
        valid = valid & ((cand_group != query_group) | is_pos)
    return is_pos, valid


@triton.jit
def _store_dq(acc, l, a, b, scale, p_ptr, lab_safe, dq_ptr, rows64, row_ok, stride_p, stride_dq, dcols, D,
              ACC: tl.constexpr):
    d_ok = dcols < D
    py = tl.load(p_ptr + lab_safe[:, None] * stride_p + dcols[None, :], mask=row_ok[:, None] & d_ok[None, :],
                 other=0.0).to(ACC)
    dq = scale * (a[:, None] * (acc / l[:, None]) - b[:, None] * py)
    tl.store(dq_ptr + rows64[:, None] * stride_dq + dcols[None, :], dq.to(dq_ptr.dtype.element_ty),
             mask=row_ok[:, None] & d_ok[None, :])


@triton.jit
def _rows_kernel(q_ptr, p_ptr, labels_ptr, qg_ptr, pg_ptr, scale_ptr, a_ptr, b_ptr,
                 loss_ptr, lse_ptr, dq_ptr, dsc_ptr,
                 B, N, D, stride_q, stride_p, stride_dq,
                 HAS_GROUPS: tl.constexpr, COMPUTE_GRAD: tl.constexpr, UPCAST: tl.constexpr,
                 PRECISION: tl.constexpr, ACC: tl.constexpr,
                 BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
                 N_ACC: tl.constexpr):
    pid_m = tl.program_id(0)
    pid_d = tl.program_id(1)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < B
    rows64 = rows.to(tl.int64)
    scale = tl.load(scale_ptr).to(ACC)
    lab = tl.load(labels_ptr + rows, mask=row_ok, other=-1)
    qg = _load_groups(qg_ptr, rows, row_ok, HAS_GROUPS)
    m = tl.full([BLOCK_M], float("-inf"), ACC)
    l = tl.zeros([BLOCK_M], ACC)
    pos_raw = tl.zeros([BLOCK_M], ACC)
    p_raw = tl.zeros([BLOCK_M], ACC)  # sum_j exp(s_ij - m_i) * <q_i, p_j>
    # this program's dq columns: N_ACC accumulators of BLOCK_D columns each (static unroll)
    d0 = pid_d * (N_ACC * BLOCK_D) + tl.arange(0, BLOCK_D)
    acc0 = tl.zeros([BLOCK_M, BLOCK_D], ACC)
    acc1 = tl.zeros([BLOCK_M, BLOCK_D], ACC)
    acc2 = tl.zeros([BLOCK_M, BLOCK_D], ACC)
    acc3 = tl.zeros([BLOCK_M, BLOCK_D], ACC)
    acc4 = tl.zeros([BLOCK_M, BLOCK_D], ACC)
    acc5 = tl.zeros([BLOCK_M, BLOCK_D], ACC)
    acc6 = tl.zeros([BLOCK_M, BLOCK_D], ACC)
    acc7 = tl.zeros([BLOCK_M, BLOCK_D], ACC)
    for n0 in range(0, N, BLOCK_N):
        cols = n0 + tl.arange(0, BLOCK_N)
        col_ok = cols < N
        cols64 = cols.to(tl.int64)
        raw = dot_nt(q_ptr, rows64, row_ok, stride_q, p_ptr, cols64, col_ok, stride_p, D,
                      tl.zeros([BLOCK_M, BLOCK_N], ACC), BLOCK_K, UPCAST, PRECISION, ACC)
        s = raw * scale
        pg = _load_groups(pg_ptr, cols, col_ok, HAS_GROUPS)
        # padding rows (rows >= B) are left valid here: nothing of theirs is stored
        is_pos, valid = _pair_mask(cols[None, :], col_ok[None, :], pg[None, :], lab[:, None], rows[:, None] >= 0,
                                   qg[:, None], HAS_GROUPS)
        s = tl.where(valid, s, float("-inf"))
        pos_raw += tl.sum(tl.where(is_pos & col_ok[None, :], raw, 0.0), 1)
        m_new = tl.maximum(m, tl.max(s, 1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # all masked so far: keep exp finite
        alpha = tl.exp(m - m_safe)
        pexp = tl.exp(s - m_safe[:, None])
        l = l * alpha + tl.sum(pexp, 1)
        if COMPUTE_GRAD:
            p_raw = p_raw * alpha + tl.sum(pexp * raw, 1)
            if UPCAST:
                w = pexp
            else:
                w = pexp.to(p_ptr.dtype.element_ty)
            # FlashAttention's O = P V with V = p, one product per accumulator (same S tile)
            acc0 = _dot_acc(w, p_ptr, cols64, col_ok, stride_p, d0, D, acc0 * alpha[:, None], UPCAST, PRECISION, ACC)
            if N_ACC > 1:
                acc1 = _dot_acc(w, p_ptr, cols64, col_ok, stride_p, d0 + BLOCK_D, D, acc1 * alpha[:, None],
                                UPCAST, PRECISION, ACC)
            if N_ACC > 2:
                acc2 = _dot_acc(w, p_ptr, cols64, col_ok, stride_p, d0 + 2 * BLOCK_D, D, acc2 * alpha[:, None],
                                UPCAST, PRECISION, ACC)
            if N_ACC > 3:
                acc3 = _dot_acc(w, p_ptr, cols64, col_ok, stride_p, d0 + 3 * BLOCK_D, D, acc3 * alpha[:, None],
                                UPCAST, PRECISION, ACC)
            if N_ACC > 4:
                acc4 = _dot_acc(w, p_ptr, cols64, col_ok, stride_p, d0 + 4 * BLOCK_D, D, acc4 * alpha[:, None],
                                UPCAST, PRECISION, ACC)
            if N_ACC > 5:
                acc5 = _dot_acc(w, p_ptr, cols64, col_ok, stride_p, d0 + 5 * BLOCK_D, D, acc5 * alpha[:, None],
                                UPCAST, PRECISION, ACC)
            if N_ACC > 6:
                acc6 = _dot_acc(w, p_ptr, cols64, col_ok, stride_p, d0 + 6 * BLOCK_D, D, acc6 * alpha[:, None],
                                UPCAST, PRECISION, ACC)
            if N_ACC > 7:
                acc7 = _dot_acc(w, p_ptr, cols64, col_ok, stride_p, d0 + 7 * BLOCK_D, D, acc7 * alpha[:, None],
                                UPCAST, PRECISION, ACC)
        m = m_new
    lse = m + tl.log(l)
    if pid_d == 0:
        tl.store(loss_ptr + rows, lse - scale * pos_raw, mask=row_ok)
        tl.store(lse_ptr + rows, lse.to(tl.float64), mask=row_ok)
    if COMPUTE_GRAD:
        a = tl.load(a_ptr + rows, mask=row_ok, other=0.0).to(ACC)
        b = tl.load(b_ptr + rows, mask=row_ok, other=0.0).to(ACC)
        lab_safe = tl.where(row_ok, lab, 0).to(tl.int64)
        _store_dq(acc0, l, a, b, scale, p_ptr, lab_safe, dq_ptr, rows64, row_ok, stride_p, stride_dq, d0, D, ACC)
        if N_ACC > 1:
            _store_dq(acc1, l, a, b, scale, p_ptr, lab_safe, dq_ptr, rows64, row_ok, stride_p, stride_dq,
                      d0 + BLOCK_D, D, ACC)
        if N_ACC > 2:
            _store_dq(acc2, l, a, b, scale, p_ptr, lab_safe, dq_ptr, rows64, row_ok, stride_p, stride_dq,
                      d0 + 2 * BLOCK_D, D, ACC)
        if N_ACC > 3:
            _store_dq(acc3, l, a, b, scale, p_ptr, lab_safe, dq_ptr, rows64, row_ok, stride_p, stride_dq,
                      d0 + 3 * BLOCK_D, D, ACC)
        if N_ACC > 4:
            _store_dq(acc4, l, a, b, scale, p_ptr, lab_safe, dq_ptr, rows64, row_ok, stride_p, stride_dq,
                      d0 + 4 * BLOCK_D, D, ACC)
        if N_ACC > 5:
            _store_dq(acc5, l, a, b, scale, p_ptr, lab_safe, dq_ptr, rows64, row_ok, stride_p, stride_dq,
                      d0 + 5 * BLOCK_D, D, ACC)
        if N_ACC > 6:
            _store_dq(acc6, l, a, b, scale, p_ptr, lab_safe, dq_ptr, rows64, row_ok, stride_p, stride_dq,
                      d0 + 6 * BLOCK_D, D, ACC)
        if N_ACC > 7:
            _store_dq(acc7, l, a, b, scale, p_ptr, lab_safe, dq_ptr, rows64, row_ok, stride_p, stride_dq,
                      d0 + 7 * BLOCK_D, D, ACC)
        if pid_d == 0:
            # per-row dscale term sum_j dS_ij <q_i, p_j>; summed on the host (deterministic)
            tl.store(dsc_ptr + rows, a * (p_raw / l) - b * pos_raw, mask=row_ok)


@triton.jit
def _store_dp(acc, scale, dp_ptr, cols64, col_ok, stride_dp, dcols, D):
    tl.store(dp_ptr + cols64[:, None] * stride_dp + dcols[None, :], (scale * acc).to(dp_ptr.dtype.element_ty),
             mask=col_ok[:, None] & (dcols < D)[None, :])


@triton.jit
def _cols_kernel(q_ptr, p_ptr, labels_ptr, qg_ptr, pg_ptr, scale_ptr, a_ptr, b_ptr, lse_ptr, dp_ptr,
                 B, N, D, stride_q, stride_p, stride_dp,
                 HAS_GROUPS: tl.constexpr, UPCAST: tl.constexpr, PRECISION: tl.constexpr, ACC: tl.constexpr,
                 BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
                 N_ACC: tl.constexpr):
    pid_n = tl.program_id(0)
    pid_d = tl.program_id(1)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    col_ok = cols < N
    cols64 = cols.to(tl.int64)
    scale = tl.load(scale_ptr).to(ACC)
    pg = _load_groups(pg_ptr, cols, col_ok, HAS_GROUPS)
    d0 = pid_d * (N_ACC * BLOCK_D) + tl.arange(0, BLOCK_D)
    acc0 = tl.zeros([BLOCK_N, BLOCK_D], ACC)
    acc1 = tl.zeros([BLOCK_N, BLOCK_D], ACC)
    acc2 = tl.zeros([BLOCK_N, BLOCK_D], ACC)
    acc3 = tl.zeros([BLOCK_N, BLOCK_D], ACC)
    acc4 = tl.zeros([BLOCK_N, BLOCK_D], ACC)
    acc5 = tl.zeros([BLOCK_N, BLOCK_D], ACC)
    acc6 = tl.zeros([BLOCK_N, BLOCK_D], ACC)
    acc7 = tl.zeros([BLOCK_N, BLOCK_D], ACC)
    for m0 in range(0, B, BLOCK_M):
        rows = m0 + tl.arange(0, BLOCK_M)
        row_ok = rows < B
        rows64 = rows.to(tl.int64)
        lab = tl.load(labels_ptr + rows, mask=row_ok, other=-1)
        lse = tl.load(lse_ptr + rows, mask=row_ok, other=0.0).to(ACC)
        a = tl.load(a_ptr + rows, mask=row_ok, other=0.0).to(ACC)
        b = tl.load(b_ptr + rows, mask=row_ok, other=0.0).to(ACC)
        raw = dot_nt(p_ptr, cols64, col_ok, stride_p, q_ptr, rows64, row_ok, stride_q, D,
                      tl.zeros([BLOCK_N, BLOCK_M], ACC), BLOCK_K, UPCAST, PRECISION, ACC)
        qg = _load_groups(qg_ptr, rows, row_ok, HAS_GROUPS)
        is_pos, valid = _pair_mask(cols[:, None], col_ok[:, None], pg[:, None], lab[None, :], row_ok[None, :],
                                   qg[None, :], HAS_GROUPS)
        prob = tl.where(valid, tl.exp(raw * scale - lse[None, :]), 0.0)
        ds = a[None, :] * prob - tl.where(is_pos & valid, b[None, :], 0.0)
        if not UPCAST:
            ds = ds.to(q_ptr.dtype.element_ty)
        # dp[cols] += dS^T @ q[rows], one product per accumulator (same dS tile)
        acc0 = _dot_acc(ds, q_ptr, rows64, row_ok, stride_q, d0, D, acc0, UPCAST, PRECISION, ACC)
        if N_ACC > 1:
            acc1 = _dot_acc(ds, q_ptr, rows64, row_ok, stride_q, d0 + BLOCK_D, D, acc1, UPCAST, PRECISION, ACC)
        if N_ACC > 2:
            acc2 = _dot_acc(ds, q_ptr, rows64, row_ok, stride_q, d0 + 2 * BLOCK_D, D, acc2, UPCAST, PRECISION, ACC)
        if N_ACC > 3:
            acc3 = _dot_acc(ds, q_ptr, rows64, row_ok, stride_q, d0 + 3 * BLOCK_D, D, acc3, UPCAST, PRECISION, ACC)
        if N_ACC > 4:
            acc4 = _dot_acc(ds, q_ptr, rows64, row_ok, stride_q, d0 + 4 * BLOCK_D, D, acc4, UPCAST, PRECISION, ACC)
        if N_ACC > 5:
            acc5 = _dot_acc(ds, q_ptr, rows64, row_ok, stride_q, d0 + 5 * BLOCK_D, D, acc5, UPCAST, PRECISION, ACC)
        if N_ACC > 6:
            acc6 = _dot_acc(ds, q_ptr, rows64, row_ok, stride_q, d0 + 6 * BLOCK_D, D, acc6, UPCAST, PRECISION, ACC)
        if N_ACC > 7:
            acc7 = _dot_acc(ds, q_ptr, rows64, row_ok, stride_q, d0 + 7 * BLOCK_D, D, acc7, UPCAST, PRECISION, ACC)
    _store_dp(acc0, scale, dp_ptr, cols64, col_ok, stride_dp, d0, D)
    if N_ACC > 1:
        _store_dp(acc1, scale, dp_ptr, cols64, col_ok, stride_dp, d0 + BLOCK_D, D)
    if N_ACC > 2:
        _store_dp(acc2, scale, dp_ptr, cols64, col_ok, stride_dp, d0 + 2 * BLOCK_D, D)
    if N_ACC > 3:
        _store_dp(acc3, scale, dp_ptr, cols64, col_ok, stride_dp, d0 + 3 * BLOCK_D, D)
    if N_ACC > 4:
        _store_dp(acc4, scale, dp_ptr, cols64, col_ok, stride_dp, d0 + 4 * BLOCK_D, D)
    if N_ACC > 5:
        _store_dp(acc5, scale, dp_ptr, cols64, col_ok, stride_dp, d0 + 5 * BLOCK_D, D)
    if N_ACC > 6:
        _store_dp(acc6, scale, dp_ptr, cols64, col_ok, stride_dp, d0 + 6 * BLOCK_D, D)
    if N_ACC > 7:
        _store_dp(acc7, scale, dp_ptr, cols64, col_ok, stride_dp, d0 + 7 * BLOCK_D, D)

# ----------------------------------------------------------------------------- host launchers
MAX_ACC = 8  # dq/dp accumulators per program (acc0..acc7 in the kernels)


def _dtype_config(dtype: torch.dtype):
    """(accumulator tl dtype, upcast tiles at load, dot input precision) for an input dtype."""
    if dtype == torch.float64:
        return tl.float64, True, "ieee"
    if dtype == torch.float32:
        return tl.float32, True, "ieee"
    return tl.float32, INTERPRET, "tf32"  # 16-bit inputs: native tensor-core dot on GPU


def _dkind(dtype: torch.dtype) -> str:
    """Row key of GRAD_CONFIGS: "16bit", or "fp32" (fp64 uses the fp32 tiles)."""
    return "16bit" if dtype in (torch.bfloat16, torch.float16) else "fp32"


# Default tiles of the gradient passes on sm_90, per (input dtype kind, kind of pass):
# rows (d_max, BLOCK_M, BLOCK_N, BLOCK_K, max BLOCK_D, num_warps, num_stages). The first row whose
# d_max >= d applies, with all of d in one program (N_ACC = cdiv(d, BLOCK_D) accumulators,
# 4 passes); a d above the last d_max uses the chunked fallback with the last row's tiles: one
# program holds the last d_max columns of dq/dp and each of the cdiv(d, d_max) chunks
# recomputes S. Chosen from sm_90 AOT compiles (registers / spills: table in the module
# docstring and benches/RESULTS_gpu.md); not timed (no GPU when written).
GRAD_CONFIGS = {
    ("16bit", "rows"): [(256, 64, 64, 64, 256, 8, 3), (512, 64, 32, 64, 256, 8, 3), (768, 64, 32, 64, 256, 16, 2)],
    ("16bit", "cols"): [(256, 64, 64, 64, 256, 8, 3), (512, 32, 64, 64, 256, 8, 3), (768, 32, 64, 64, 256, 16, 2)],
    ("fp32", "rows"): [(128, 32, 32, 32, 128, 4, 2)],
    ("fp32", "cols"): [(128, 32, 32, 32, 128, 4, 2)],
}


def _split_d(D: int, d_block: int, d_acc: int, max_cols: int, max_bd: int = 256):
    """(BLOCK_D, N_ACC, n_dchunks): accumulator width, accumulators per program, programs along d.

    Default: the layout with the least padding, then the fewest accumulators (BLOCK_D a power of
    two <= max_bd, N_ACC <= MAX_ACC, N_ACC * BLOCK_D >= min(D, max_cols)), so that all of d lives
    in one program (n_dchunks = 1) when D <= max_cols. ``d_block`` fixes BLOCK_D, ``d_acc``
    N_ACC (``d_acc=1``: the chunked scheme of one BLOCK_D-wide accumulator per program)."""
    target = min(D, max_cols)
    if d_block > 0:
        bd = pow2_block(d_block, d_block, D)
        na = d_acc if d_acc > 0 else min(MAX_ACC, triton.cdiv(target, bd))
    elif d_acc > 0:
        na = d_acc
        bd = pow2_block(triton.cdiv(target, na), 0, D, hi=max_bd)
    else:
        best = None
        for bd_ in (16, 32, 64, 128, 256):
            na_ = triton.cdiv(target, bd_)
            if bd_ <= max_bd and na_ <= MAX_ACC and (best is None or (na_ * bd_, na_) < best[0]):
                best = ((na_ * bd_, na_), bd_, na_)
        bd, na = best[1], best[2]
    na = max(1, min(na, MAX_ACC, triton.cdiv(D, bd)))
    return bd, na, triton.cdiv(D, bd * na)


def config(D: int, dtype, kind: str, *, B: int = 1 << 30, N: int = 1 << 30, row_block: int = 0,
           col_block: int = 0, k_block: int = 0, d_block: int = 0, d_acc: int = 0) -> dict:
    """Tiles and launch options of one pass. ``kind``: "fwd" (rows kernel without gradient),
    "rows" (rows kernel with dq) or "cols" (dp). Explicit arguments (0 = default) override."""
    if kind == "fwd":
        bm = pow2_block(row_block, 128, B)
        bn = pow2_block(col_block, 64, N)
        bk = pow2_block(k_block, 64, D, hi=128)
        opts = {} if INTERPRET else dict(num_warps=8 if bm * bn >= 128 * 64 else 4, num_stages=3)
        return dict(BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, BLOCK_D=16, N_ACC=1, n_dchunks=1, **opts)
    table = GRAD_CONFIGS[(_dkind(dtype), kind)]
    row = next((r for r in table if D <= r[0]), table[-1])
    _, bm0, bn0, bk0, bd0, warps, stages = row
    if INTERPRET:  # small tiles: the interpreter's cost grows with the tile, not the flops
        bm0, bn0, bk0, bd0 = 64, 64, 64, 64
        max_cols = 4 * 64
    else:
        max_cols = table[-1][0]
    bm = pow2_block(row_block, bm0, B)
    bn = pow2_block(col_block, bn0, N)
    bk = pow2_block(k_block, bk0, D, hi=128)
    bd, na, nch = _split_d(D, d_block, d_acc, max_cols, bd0)
    opts = {} if INTERPRET else dict(num_warps=warps, num_stages=stages)
    return dict(BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, BLOCK_D=bd, N_ACC=na, n_dchunks=nch, **opts)


def _launch_kwargs(cfg):
    return {k: v for k, v in cfg.items() if k != "n_dchunks"}


def rows_pass(q, p, labels, scale, q_groups, p_groups, a=None, b=None, *, row_block=0, col_block=0,
              k_block=0, d_block=0, d_acc=0):
    """Launch ``_rows_kernel``: returns (loss_rows, lse) and, when ``a``/``b`` (B,) are given,
    also (dq like q, per-row dscale terms (B,)). Inputs contiguous and validated."""
    B, D = q.shape
    N = p.shape[0]
    ct = compute_dtype(q.dtype)
    acc, upcast, prec = _dtype_config(q.dtype)
    grad = a is not None
    cfg = config(D, q.dtype, "rows" if grad else "fwd", B=B, N=N, row_block=row_block, col_block=col_block,
                 k_block=k_block, d_block=d_block, d_acc=d_acc)
    loss = torch.empty(B, dtype=ct, device=q.device)
    lse = torch.empty(B, dtype=torch.float64, device=q.device)
    dq = torch.empty_like(q) if grad else loss
    dsc = torch.empty(B, dtype=ct, device=q.device) if grad else loss
    has_groups = p_groups is not None
    grid = (triton.cdiv(B, cfg["BLOCK_M"]), cfg["n_dchunks"])
    launch(_rows_kernel, grid, q, p, labels, q_groups if has_groups else labels, p_groups if has_groups else labels,
            scale, a if grad else loss, b if grad else loss, loss, lse, dq, dsc,
            B, N, D, q.stride(0), p.stride(0), dq.stride(0) if grad else 0,
            HAS_GROUPS=has_groups, COMPUTE_GRAD=grad, UPCAST=upcast, PRECISION=prec, ACC=acc,
            **_launch_kwargs(cfg))
    if grad:
        return loss, lse, dq, dsc
    return loss, lse


def cols_pass(q, p, labels, scale, q_groups, p_groups, lse, a, b, *, row_block=0, col_block=0, k_block=0,
              d_block=0, d_acc=0):
    """Launch ``_cols_kernel``: dp (like p) from the saved lse and the row weights a, b."""
    B, D = q.shape
    N = p.shape[0]
    acc, upcast, prec = _dtype_config(q.dtype)
    cfg = config(D, q.dtype, "cols", B=B, N=N, row_block=row_block, col_block=col_block, k_block=k_block,
                 d_block=d_block, d_acc=d_acc)
    dp = torch.empty_like(p)
    has_groups = p_groups is not None
    grid = (triton.cdiv(N, cfg["BLOCK_N"]), cfg["n_dchunks"])
    launch(_cols_kernel, grid, q, p, labels, q_groups if has_groups else labels, p_groups if has_groups else labels,
            scale, a, b, lse, dp, B, N, D, q.stride(0), p.stride(0), dp.stride(0),
            HAS_GROUPS=has_groups, UPCAST=upcast, PRECISION=prec, ACC=acc, **_launch_kwargs(cfg))
    return dp


def infonce_fwd(q, p, labels, scale, q_groups, p_groups, row_block=0, col_block=0, **tiles):
    """Schema of ``hybrid_fast::infonce_fwd``: -> (loss_rows (B,) compute dtype, lse (B,) float64).
    One pass (2BNd flops)."""
    return rows_pass(q, p, labels, scale, q_groups, p_groups, row_block=row_block, col_block=col_block, **tiles)


def infonce_bwd(grad_rows, grad_lse, q, p, labels, scale, q_groups, p_groups, lse, row_block=0, col_block=0,
                **tiles):
    """Schema of ``hybrid_fast::infonce_bwd``: gradients of sum_i g_i loss_i + h_i lse_i.
    -> (dq like q, dp like p, dscale 0-d compute dtype). ``passes(d, grad=True) `` passes (4 with
    all of d in one program)."""
    ct = compute_dtype(q.dtype)
    g = grad_rows.to(ct).contiguous()
    a = g + grad_lse.to(ct) if grad_lse is not None else g
    a = a.contiguous()
    _, _, dq, dsc = rows_pass(q, p, labels, scale, q_groups, p_groups, a, g, row_block=row_block,
                              col_block=col_block, **tiles)
    dp = cols_pass(q, p, labels, scale, q_groups, p_groups, lse, a, g, row_block=row_block, col_block=col_block,
                   **tiles)
    return dq, dp, dsc.sum()


def infonce_fused(q, p, labels, scale, q_groups, p_groups, row_weights, row_block=0, col_block=0, **tiles):
    """Schema of ``hybrid_fast::infonce_fused``: loss = sum_i w_i loss_i and its gradients.
    -> (loss 0-d, lse (B,) float64, dq like q, dp like p, dscale 0-d). ``passes(d, grad=True)``
    passes (4 with all of d in one program)."""
    w = row_weights.to(compute_dtype(q.dtype)).contiguous()
    rows, lse, dq, dsc = rows_pass(q, p, labels, scale, q_groups, p_groups, w, w, row_block=row_block,
                                   col_block=col_block, **tiles)
    dp = cols_pass(q, p, labels, scale, q_groups, p_groups, lse, w, w, row_block=row_block, col_block=col_block,
                   **tiles)
    return (rows * w).sum(), lse, dq, dp, dsc.sum()


def passes(d: int, *, grad: bool, fused: bool = True, dtype=torch.bfloat16, d_block: int = 0,
           d_acc: int = 0) -> int:
    """Number of 2BNd matrix-product passes of a call (for the benchmarks' flop counts): forward 1;
    fused training op: rows kernel 1 + n_d (S, then P @ p per d chunk) and cols kernel 1 + n_d,
    i.e. 2 n_d + 2, with n_d = programs along d (1 when all of d fits one program: 4 passes);
    unfused (infonce_fwd, then infonce_bwd) one more."""
    if not grad:
        return 1
    n_rows = config(d, dtype, "rows", d_block=d_block, d_acc=d_acc)["n_dchunks"]
    n_cols = config(d, dtype, "cols", d_block=d_block, d_acc=d_acc)["n_dchunks"]
    return n_rows + n_cols + 2 + (0 if fused else 1)

