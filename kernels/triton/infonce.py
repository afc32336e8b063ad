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

* ``_rows_kernel``, grid (cdiv(B, BLOCK_M), n_dchunks): for a block of query rows, stream p in
  BLOCK_N tiles: S tile = q_blk @ p_tile^T (K-loop over d in BLOCK_K), online max/sum
  (FlashAttention), positive score picked from the tile. With COMPUTE_GRAD it also accumulates
  ``sum_j exp(s_ij - m_i) p_j[dchunk]`` (rescaled online, exactly like FlashAttention's output
  with V = p) and ``sum_j exp(s_ij - m_i) <q_i,p_j>``, so dq and the per-row dscale term come out
  of the same pass; no second sweep is needed once lse is known.
* ``_cols_kernel``, grid (cdiv(N, BLOCK_N), n_dchunks): for a block of candidates, stream q in
  BLOCK_M tiles, recompute S^T, form dS from the saved lse and accumulate dS^T @ q[dchunk].
  Deterministic (no atomics).

Passes (one pass = 2BNd flops), n_d = cdiv(d, BLOCK_D) (the dq/dp accumulators, BLOCK x BLOCK_D
fp32, must live in registers, so d is split into n_d output chunks and each chunk recomputes S):

* forward only (no grad): 1 pass.
* fused training (infonce_fused, mean/sum): rows kernel n_d + 1, cols kernel n_d + 1, total
  2 n_d + 2; with d <= BLOCK_D (d <= 256 by default) that is 4 passes (the minimum without
  atomics: S for lse, P @ p, S^T recompute, dS^T @ q).
* unfused (infonce_fwd then infonce_bwd, reduction="none" with grad): 1 + (2 n_d + 2).

Memory: O(B + N) fp32/fp64 buffers (lse, per-row dscale terms, upstream weights) plus dq/dp
in the input dtype; nothing O(B N).

Numerics: fp32 accumulation (fp64 for fp64 inputs); fp32 inputs use IEEE fp32 dot
(``input_precision="ieee"``, not TF32); bf16/fp16 use tensor-core dots with fp32 accumulate, P
and dS are rounded to the input dtype for the second product (as FlashAttention does). lse is
kept in the accumulator dtype inside the kernel and stored as float64. Under
``TRITON_INTERPRET=1`` every tile is upcast to the accumulator dtype at load (the interpreter's
bf16 dot is broken).

Tiles: BLOCK_M/BLOCK_N/BLOCK_K/BLOCK_D powers of two >= 16. Defaults are first guesses for
Hopper (128x64 forward, 64x64 with BLOCK_D <= 256 for the gradient passes, num_warps 8,
num_stages 3), untuned: no GPU was available when they were written.
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"


def _launch(kernel, grid, *args, **kwargs):
    """Launch through torch.library.wrap_triton on GPU (traceable by torch.compile inside a
    triton_op); plain launch under the interpreter."""
    if INTERPRET:
        return kernel[grid](*args, **kwargs)
    return torch.library.wrap_triton(kernel)[grid](*args, **kwargs)


@triton.jit
def _rows_kernel(q_ptr, p_ptr, labels_ptr, qg_ptr, pg_ptr, scale_ptr, a_ptr, b_ptr,
                 loss_ptr, lse_ptr, dq_ptr, dsc_ptr,
                 B, N, D, stride_q, stride_p, stride_dq,
                 HAS_GROUPS: tl.constexpr, COMPUTE_GRAD: tl.constexpr, UPCAST: tl.constexpr,
                 PRECISION: tl.constexpr, ACC: tl.constexpr,
                 BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr):
    pid_m = tl.program_id(0)
    pid_d = tl.program_id(1)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < B
    rows64 = rows.to(tl.int64)
    scale = tl.load(scale_ptr).to(ACC)
    lab = tl.load(labels_ptr + rows, mask=row_ok, other=-1)
    if HAS_GROUPS:
        qg = tl.load(qg_ptr + rows, mask=row_ok, other=0)
    m = tl.full([BLOCK_M], float("-inf"), ACC)
    l = tl.zeros([BLOCK_M], ACC)
    pos_raw = tl.zeros([BLOCK_M], ACC)
    p_raw = tl.zeros([BLOCK_M], ACC)  # sum_j exp(s_ij - m_i) * <q_i, p_j>
    dcols = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    d_ok = dcols < D
    acc = tl.zeros([BLOCK_M, BLOCK_D], ACC)
    for n0 in range(0, N, BLOCK_N):
        cols = n0 + tl.arange(0, BLOCK_N)
        col_ok = cols < N
        cols64 = cols.to(tl.int64)
        raw = tl.zeros([BLOCK_M, BLOCK_N], ACC)
        for k0 in range(0, D, BLOCK_K):
            ks = k0 + tl.arange(0, BLOCK_K)
            k_ok = ks < D
            qt = tl.load(q_ptr + rows64[:, None] * stride_q + ks[None, :], mask=row_ok[:, None] & k_ok[None, :], other=0.0)
            pt = tl.load(p_ptr + cols64[:, None] * stride_p + ks[None, :], mask=col_ok[:, None] & k_ok[None, :], other=0.0)
            if UPCAST:
                qt = qt.to(ACC)
                pt = pt.to(ACC)
            raw = tl.dot(qt, tl.trans(pt), raw, input_precision=PRECISION, out_dtype=ACC)
        s = raw * scale
        is_pos = cols[None, :] == lab[:, None]
        valid = col_ok[None, :] & (rows[:, None] >= 0)
        if HAS_GROUPS:
            pg = tl.load(pg_ptr + cols, mask=col_ok, other=0)
            valid = valid & ((pg[None, :] != qg[:, None]) | is_pos)
        s = tl.where(valid, s, float("-inf"))
        pos_raw += tl.sum(tl.where(is_pos & col_ok[None, :], raw, 0.0), 1)
        m_new = tl.maximum(m, tl.max(s, 1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # all masked so far: keep exp finite
        alpha = tl.exp(m - m_safe)
        pexp = tl.exp(s - m_safe[:, None])
        l = l * alpha + tl.sum(pexp, 1)
        if COMPUTE_GRAD:
            p_raw = p_raw * alpha + tl.sum(pexp * raw, 1)
            pd = tl.load(p_ptr + cols64[:, None] * stride_p + dcols[None, :], mask=col_ok[:, None] & d_ok[None, :], other=0.0)
            if UPCAST:
                w = pexp
                pd = pd.to(ACC)
            else:
                w = pexp.to(pd.dtype)
            acc = acc * alpha[:, None] + tl.dot(w, pd, input_precision=PRECISION, out_dtype=ACC)
        m = m_new
    lse = m + tl.log(l)
    if pid_d == 0:
        tl.store(loss_ptr + rows, lse - scale * pos_raw, mask=row_ok)
        tl.store(lse_ptr + rows, lse.to(tl.float64), mask=row_ok)
    if COMPUTE_GRAD:
        a = tl.load(a_ptr + rows, mask=row_ok, other=0.0).to(ACC)
        b = tl.load(b_ptr + rows, mask=row_ok, other=0.0).to(ACC)
        lab_safe = tl.where(row_ok, lab, 0).to(tl.int64)
        py = tl.load(p_ptr + lab_safe[:, None] * stride_p + dcols[None, :], mask=row_ok[:, None] & d_ok[None, :], other=0.0).to(ACC)
        dq = scale * (a[:, None] * (acc / l[:, None]) - b[:, None] * py)
        tl.store(dq_ptr + rows64[:, None] * stride_dq + dcols[None, :], dq.to(dq_ptr.dtype.element_ty),
                 mask=row_ok[:, None] & d_ok[None, :])
        if pid_d == 0:
            # per-row dscale term sum_j dS_ij <q_i, p_j>; summed on the host (deterministic)
            tl.store(dsc_ptr + rows, a * (p_raw / l) - b * pos_raw, mask=row_ok)


@triton.jit
def _cols_kernel(q_ptr, p_ptr, labels_ptr, qg_ptr, pg_ptr, scale_ptr, a_ptr, b_ptr, lse_ptr, dp_ptr,
                 B, N, D, stride_q, stride_p, stride_dp,
                 HAS_GROUPS: tl.constexpr, UPCAST: tl.constexpr, PRECISION: tl.constexpr, ACC: tl.constexpr,
                 BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr):
    pid_n = tl.program_id(0)
    pid_d = tl.program_id(1)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    col_ok = cols < N
    cols64 = cols.to(tl.int64)
    scale = tl.load(scale_ptr).to(ACC)
    if HAS_GROUPS:
        pg = tl.load(pg_ptr + cols, mask=col_ok, other=0)
    dcols = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    d_ok = dcols < D
    acc = tl.zeros([BLOCK_N, BLOCK_D], ACC)
    for m0 in range(0, B, BLOCK_M):
        rows = m0 + tl.arange(0, BLOCK_M)
        row_ok = rows < B
        rows64 = rows.to(tl.int64)
        lab = tl.load(labels_ptr + rows, mask=row_ok, other=-1)
        lse = tl.load(lse_ptr + rows, mask=row_ok, other=0.0).to(ACC)
        a = tl.load(a_ptr + rows, mask=row_ok, other=0.0).to(ACC)
        b = tl.load(b_ptr + rows, mask=row_ok, other=0.0).to(ACC)
        raw = tl.zeros([BLOCK_N, BLOCK_M], ACC)
        for k0 in range(0, D, BLOCK_K):
            ks = k0 + tl.arange(0, BLOCK_K)
            k_ok = ks < D
            pt = tl.load(p_ptr + cols64[:, None] * stride_p + ks[None, :], mask=col_ok[:, None] & k_ok[None, :], other=0.0)
            qt = tl.load(q_ptr + rows64[:, None] * stride_q + ks[None, :], mask=row_ok[:, None] & k_ok[None, :], other=0.0)
            if UPCAST:
                qt = qt.to(ACC)
                pt = pt.to(ACC)
            raw = tl.dot(pt, tl.trans(qt), raw, input_precision=PRECISION, out_dtype=ACC)
        is_pos = cols[:, None] == lab[None, :]
        valid = col_ok[:, None] & row_ok[None, :]
        if HAS_GROUPS:
            qg = tl.load(qg_ptr + rows, mask=row_ok, other=0)
            valid = valid & ((pg[:, None] != qg[None, :]) | is_pos)
        prob = tl.where(valid, tl.exp(raw * scale - lse[None, :]), 0.0)
        ds = a[None, :] * prob - tl.where(is_pos & valid, b[None, :], 0.0)
        qd = tl.load(q_ptr + rows64[:, None] * stride_q + dcols[None, :], mask=row_ok[:, None] & d_ok[None, :], other=0.0)
        if UPCAST:
            qd = qd.to(ACC)
            acc = tl.dot(ds, qd, acc, input_precision=PRECISION, out_dtype=ACC)
        else:
            acc = tl.dot(ds.to(qd.dtype), qd, acc, input_precision=PRECISION, out_dtype=ACC)
    tl.store(dp_ptr + cols64[:, None] * stride_dp + dcols[None, :], (scale * acc).to(dp_ptr.dtype.element_ty),
             mask=col_ok[:, None] & d_ok[None, :])


# ----------------------------------------------------------------------------- host launchers
def _pow2_block(requested: int, default: int, extent: int, lo: int = 16, hi: int = 256) -> int:
    """Tile size: ``requested`` (0 = ``default``) rounded up to a power of two in [lo, hi],
    no larger than needed for ``extent``."""
    b = requested if requested > 0 else default
    b = min(b, max(lo, extent))
    return max(lo, min(hi, triton.next_power_of_2(b)))


def _dtype_config(dtype: torch.dtype):
    """(accumulator tl dtype, upcast tiles at load, dot input precision) for an input dtype."""
    if dtype == torch.float64:
        return tl.float64, True, "ieee"
    if dtype == torch.float32:
        return tl.float32, True, "ieee"
    return tl.float32, INTERPRET, "tf32"  # 16-bit inputs: native tensor-core dot on GPU


def _compute_dtype(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


def _tiles(B, N, D, row_block, col_block, k_block, d_block, grad):
    bm = _pow2_block(row_block, 64 if grad else 128, B)
    bn = _pow2_block(col_block, 64, N)
    bk = _pow2_block(k_block, 64, D, hi=128)
    bd = _pow2_block(d_block, 256 if not INTERPRET else 64, D)
    return bm, bn, bk, bd


def _warps(bm, bn):
    return dict(num_warps=8 if bm * bn >= 128 * 64 else 4, num_stages=3) if not INTERPRET else {}


def rows_pass(q, p, labels, scale, q_groups, p_groups, a=None, b=None, *, row_block=0, col_block=0,
              k_block=0, d_block=0):
    """Launch ``_rows_kernel``: returns (loss_rows, lse) and, when ``a``/``b`` (B,) are given,
    also (dq like q, per-row dscale terms (B,)). Inputs contiguous and validated."""
    B, D = q.shape
    N = p.shape[0]
    ct = _compute_dtype(q.dtype)
    acc, upcast, prec = _dtype_config(q.dtype)
    grad = a is not None
    bm, bn, bk, bd = _tiles(B, N, D, row_block, col_block, k_block, d_block, grad)
    loss = torch.empty(B, dtype=ct, device=q.device)
    lse = torch.empty(B, dtype=torch.float64, device=q.device)
    dq = torch.empty_like(q) if grad else loss
    dsc = torch.empty(B, dtype=ct, device=q.device) if grad else loss
    has_groups = p_groups is not None
    grid = (triton.cdiv(B, bm), triton.cdiv(D, bd) if grad else 1)
    _launch(_rows_kernel, grid, q, p, labels, q_groups if has_groups else labels, p_groups if has_groups else labels,
            scale, a if grad else loss, b if grad else loss, loss, lse, dq, dsc,
            B, N, D, q.stride(0), p.stride(0), dq.stride(0) if grad else 0,
            HAS_GROUPS=has_groups, COMPUTE_GRAD=grad, UPCAST=upcast, PRECISION=prec, ACC=acc,
            BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, BLOCK_D=bd, **_warps(bm, bn))
    if grad:
        return loss, lse, dq, dsc
    return loss, lse


def cols_pass(q, p, labels, scale, q_groups, p_groups, lse, a, b, *, row_block=0, col_block=0, k_block=0,
              d_block=0):
    """Launch ``_cols_kernel``: dp (like p) from the saved lse and the row weights a, b."""
    B, D = q.shape
    N = p.shape[0]
    acc, upcast, prec = _dtype_config(q.dtype)
    bm, bn, bk, bd = _tiles(B, N, D, row_block, col_block, k_block, d_block, True)
    dp = torch.empty_like(p)
    has_groups = p_groups is not None
    grid = (triton.cdiv(N, bn), triton.cdiv(D, bd))
    _launch(_cols_kernel, grid, q, p, labels, q_groups if has_groups else labels, p_groups if has_groups else labels,
            scale, a, b, lse, dp, B, N, D, q.stride(0), p.stride(0), dp.stride(0),
            HAS_GROUPS=has_groups, UPCAST=upcast, PRECISION=prec, ACC=acc,
            BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, BLOCK_D=bd, **_warps(bm, bn))
    return dp


def infonce_fwd(q, p, labels, scale, q_groups, p_groups, row_block=0, col_block=0, **tiles):
    """Schema of ``hybrid_fast::infonce_fwd``: -> (loss_rows (B,) compute dtype, lse (B,) float64).
    One pass (2BNd flops)."""
    return rows_pass(q, p, labels, scale, q_groups, p_groups, row_block=row_block, col_block=col_block, **tiles)


def infonce_bwd(grad_rows, grad_lse, q, p, labels, scale, q_groups, p_groups, lse, row_block=0, col_block=0,
                **tiles):
    """Schema of ``hybrid_fast::infonce_bwd``: gradients of sum_i g_i loss_i + h_i lse_i.
    -> (dq like q, dp like p, dscale 0-d compute dtype). 2 n_d + 2 passes."""
    ct = _compute_dtype(q.dtype)
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
    -> (loss 0-d, lse (B,) float64, dq like q, dp like p, dscale 0-d). 2 n_d + 2 passes."""
    w = row_weights.to(_compute_dtype(q.dtype)).contiguous()
    rows, lse, dq, dsc = rows_pass(q, p, labels, scale, q_groups, p_groups, w, w, row_block=row_block,
                                   col_block=col_block, **tiles)
    dp = cols_pass(q, p, labels, scale, q_groups, p_groups, lse, w, w, row_block=row_block, col_block=col_block,
                   **tiles)
    return (rows * w).sum(), lse, dq, dp, dsc.sum()


def passes(d: int, *, grad: bool, fused: bool = True, d_block: int = 0) -> int:
    """Number of 2BNd matrix-product passes of a call (for the benchmarks' flop counts)."""
    if not grad:
        return 1
    bd = _pow2_block(d_block, 256 if not INTERPRET else 64, d)
    nd = triton.cdiv(d, bd)
    return 2 * nd + 2 + (0 if fused else 1)


KERNELS = {"infonce_rows": _rows_kernel, "infonce_cols": _cols_kernel}
