"""Backend "cuda" of ``topk_search``: cuBLAS score tiles reduced by the CUDA k-selection kernels.

Ops (namespace ``hybrid_fast_cuda``, defined by ``hybrid_fast._C_cuda``: csrc/cuda/topk_select.cpp
around kernels/cuda/topk_select.cu; fakes registered here so torch.compile can trace them):

* ``topk_from_scores(scores (R, L) f32, k, col_offset=0, exclude=None, segments=1) -> (R, k) i64``
* ``topk_merge_keys(keys (R, L) i64, k) -> (R, k) i64``

Keys are the packed ``ordered_int32(score) << 32 | (2^32 - 1 - id)`` of
``hybrid_fast/ops/_common/keys.py`` (integer order = score desc, id asc), decoded there.

Algorithm of :func:`topk_ip`: the corpus is processed in chunks of ``n_chunk`` rows (and the
queries in blocks of ``q_block`` rows) so that one fp32 score tile stays under
``SCORE_TILE_BYTES`` (never Q x N). Each tile ``q_blk @ chunk^T`` is a cuBLAS GEMM (fp32 inputs:
sgemm, TF32 only if the caller enabled ``torch.backends.cuda.matmul.allow_tf32``; bf16/fp16:
tensor cores with fp32 output via ``torch.mm(..., out_dtype=torch.float32)``; mixed dtypes: the
chunk is upcast to fp32), reduced to its best k keys by ``topk_from_scores`` (radix select, one
thread block per row, or per row range when there are few queries), and merged into the running
best k with ``topk_merge_keys``. Float64 inputs and N >= 2^32 - 1 take the chunked pure-PyTorch
fallback of the Triton backend.

Status: compile-checked only (nvcc for sm_90a, HF_CUDA=CHECK); no GPU was available to run it.
"""
from __future__ import annotations

import torch

from ... import _ext
from .._common import registry
from .._common.keys import ID_MASK, decode_keys
from .formulas import register_cuda_selection_fakes
from .inputs import mask_excluded
from .merge import topk_chunked_reference

NAMESPACE = "hybrid_fast_cuda"
SCORE_TILE_BYTES = 256 << 20  # one fp32 score tile (q_block x n_chunk)
TARGET_BLOCKS = 264  # ~2 waves of 132 SMs (H100): split rows into ranges when Q is below this
MIN_SEGMENT = 8192  # columns per row range, at least (and at least 4 k)


_STATE: dict = {}


def _scores(q: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """fp32 (Q, n) tile q @ c^T on cuBLAS."""
    if q.dtype == c.dtype and q.dtype in (torch.bfloat16, torch.float16):
        return torch.mm(q, c.T, out_dtype=torch.float32)
    return torch.mm(q.float(), c.float().T)


def _segments(rows: int, cols: int, k: int) -> int:
    if rows >= TARGET_BLOCKS:
        return 1
    want = -(-TARGET_BLOCKS // max(rows, 1))
    return max(1, min(want, cols // max(MIN_SEGMENT, 4 * k)))


def topk_keys(q, c, k, exclude, n_chunk: int = 0, q_block: int = 0, segments: int = 0) -> torch.Tensor:
    """Best k packed keys per query, (Q, k) int64, best first. ``n_chunk``/``q_block``/``segments``:
    corpus rows per tile, query rows per tile, row ranges per tile row (0 = auto)."""
    ops = torch.ops.hybrid_fast_cuda
    Q, N = q.shape[0], c.shape[0]
    budget = SCORE_TILE_BYTES // 4
    n_chunk = min(N, max(n_chunk if n_chunk > 0 else budget // max(Q, 1), k))
    if q_block <= 0:
        q_block = max(1, budget // n_chunk)
    ex_in_kernel = exclude is not None and exclude.shape[1] <= _STATE["max_exclude"]
    blocks = []
    for q0 in range(0, max(Q, 1), q_block):
        qb = q[q0:q0 + q_block]
        ex = exclude[q0:q0 + q_block] if exclude is not None else None
        best = None
        for n0 in range(0, N, n_chunk):
            s = _scores(qb, c[n0:n0 + n_chunk])
            if ex is not None and not ex_in_kernel:
                s = mask_excluded(s, ex, n0, float("nan"))  # NaN: never returned (lists too long for the kernel)
            L = s.shape[1]
            kc = min(k, L)
            seg = segments if segments > 0 else _segments(qb.shape[0], L, kc)
            keys = ops.topk_from_scores(s, kc, n0, ex if ex_in_kernel else None, min(seg, L))
            best = keys if best is None else ops.topk_merge_keys(torch.cat([best, keys], 1), k)
        blocks.append(best)
    return blocks[0] if len(blocks) == 1 else torch.cat(blocks, 0)


def topk_ip(q, c, k, exclude, tile_q, tile_n, splits):
    """Registry implementation (signature of :func:`hybrid_fast.ops.topk.cpu.topk_ip`): tile_q / tile_n are the
    query block and corpus chunk, splits the row ranges per tile row (0 = auto)."""
    if q.dtype == torch.float64 or c.dtype == torch.float64 or c.shape[0] >= ID_MASK:
        return topk_chunked_reference(q, c, k, exclude)
    keys = topk_keys(q, c, k, exclude, n_chunk=tile_n, q_block=tile_q, segments=splits)
    return decode_keys(keys)


def why_unavailable(device: torch.device) -> Exception | None:
    if _ext.cuda is None:
        return RuntimeError(f"this torch ({torch.__version__}) was built without CUDA")
    return _ext.cuda.unavailable_error("topk_search(backend='cuda')")


if _ext.cuda is not None and _ext.cuda.available:  # the schemas come with the compiled module
    _STATE["max_exclude"] = _ext.cuda.module.build_info()["topk_max_exclude"]
    register_cuda_selection_fakes(NAMESPACE)

registry.op("topk_search").register("cuda", ("cuda",), topk_ip, why_unavailable)
