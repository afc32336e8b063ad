"""Triton helpers shared by the kernels of several ops (imported only by the Triton kernel
modules ``hybrid_fast/ops/<op>/triton_kernel.py``; importing this imports triton).

* :func:`launch`: through ``torch.library.wrap_triton`` on GPU, plain under the interpreter;
* :func:`dot_nt`: the score tile ``A[rows] @ B[rows]^T`` with a K-loop over d;
* :func:`pack_keys`: the packed (score, id) keys of :mod:`.keys` (the one definition);
* :func:`pow2_block`: tile-size rounding of the launchers;
* :func:`torch_op`: how the backends define their torch ops in this process.

Set ``TRITON_INTERPRET=1`` before the first import to run the kernels on CPU tensors.
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from . import keys

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"


def launch(kernel, grid, *args, **kwargs):
    """Launch through torch.library.wrap_triton on GPU (traceable by torch.compile inside a
    triton_op); plain launch under the interpreter."""
    if INTERPRET:
        return kernel[grid](*args, **kwargs)
    return torch.library.wrap_triton(kernel)[grid](*args, **kwargs)


@triton.jit
def dot_nt(a_ptr, a_rows64, a_ok, stride_a, b_ptr, b_rows64, b_ok, stride_b, D, acc, BLOCK_K: tl.constexpr,
            UPCAST: tl.constexpr, PRECISION: tl.constexpr, ACC: tl.constexpr):
    """acc + A[a_rows] @ B[b_rows]^T over the whole of d (K-loop in BLOCK_K): the score tile of
    every InfoNCE and top-k kernel (A, B row-major with row strides stride_a, stride_b)."""
    for k0 in range(0, D, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        k_ok = ks < D
        at = tl.load(a_ptr + a_rows64[:, None] * stride_a + ks[None, :], mask=a_ok[:, None] & k_ok[None, :], other=0.0)
        bt = tl.load(b_ptr + b_rows64[:, None] * stride_b + ks[None, :], mask=b_ok[:, None] & k_ok[None, :], other=0.0)
        if UPCAST:
            at = at.to(ACC)
            bt = bt.to(ACC)
        acc = tl.dot(at, tl.trans(bt), acc, input_precision=PRECISION, out_dtype=ACC)
    return acc


# The key format of .keys as compile-time constants of the kernels.
KEY_ID_BITS = tl.constexpr(keys.ID_BITS)
KEY_ID_MASK = tl.constexpr(keys.ID_MASK)
KEY_ORDER_FLIP = tl.constexpr(keys.ORDER_FLIP)
KEY_MIN = tl.constexpr(keys.MIN_KEY)


@triton.jit
def pack_keys(scores, ids64):
    """fp32 scores and int64 ids (broadcastable) -> int64 keys of :mod:`.keys`: integer order is
    (score desc, id asc). The caller maps NaN to -inf and -0 to +0 first."""
    bits = scores.to(tl.int32, bitcast=True)
    ordered = tl.where(bits >= 0, bits, bits ^ KEY_ORDER_FLIP)
    return (ordered.to(tl.int64) << KEY_ID_BITS) | (KEY_ID_MASK - ids64)


def pow2_block(requested: int, default: int, extent: int, lo: int = 16, hi: int = 256) -> int:
    """Tile size: ``requested`` (0 = ``default``) rounded up to a power of two in [lo, hi],
    no larger than needed for ``extent``."""
    b = requested if requested > 0 else default
    b = min(b, max(lo, extent))
    return max(lo, min(hi, triton.next_power_of_2(b)))


def torch_op(name: str):
    """Decorator defining the torch op ``name`` around a launcher: on a GPU a
    ``torch.library.triton_op`` (torch.compile sees the Triton kernels); under
    ``TRITON_INTERPRET=1`` (CPU tensors) a ``torch.library.custom_op`` (triton_op runs eagerly
    there but opcheck/torch.compile fail on it)."""
    kind = torch.library.custom_op if INTERPRET else torch.library.triton_op
    return kind(name, mutates_args=())
