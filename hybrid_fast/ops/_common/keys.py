"""The packed (score, id) key format of top-k selection on GPUs: defined here, once.

The Triton top-k kernel (``hybrid_fast/ops/topk/triton_kernel.py``, through
:mod:`.triton_helpers`) and the CUDA k-selection kernels (``kernels/cuda/topk_select.cuh``,
whose constants ``tests/ops/test_topk_keys.py`` checks against these) select on one int64 per
candidate::

    key = ordered_int32(score) << ID_BITS | (ID_MASK - id)
    ordered_int32(b) = b if b >= 0 else b ^ ORDER_FLIP      (b: the fp32 bits of the score)

so that signed integer order is (score descending, id ascending) and one integer top-k selects
scores and ids together. ``MIN_KEY`` (below every real key) pads rows with fewer than k
candidates; ids must be < ``ID_MASK``. -0.0 must be turned into +0.0 before packing (the two
would otherwise not tie on the id).
"""
from __future__ import annotations

import torch

ID_BITS = 32
ID_MASK = (1 << ID_BITS) - 1  # 0xFFFFFFFF; ids must be < ID_MASK
ORDER_FLIP = 0x7FFFFFFF  # negative fp32 bit patterns: flip the magnitude bits
MIN_KEY = -(1 << 63)  # padding: below every real key (INT64_MIN)


def encode_keys(scores: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """float32 scores and int64 ids (same shape) -> packed int64 keys. The Python mirror of the
    kernels' packing (tests, host-side merges)."""
    bits = (scores.float() + 0.0).view(torch.int32)  # + 0.0: -0 -> +0
    ordered = torch.where(bits >= 0, bits, bits ^ ORDER_FLIP).to(torch.int64)
    return (ordered << ID_BITS) | (ID_MASK - ids)


def decode_keys(keys: torch.Tensor):
    """Packed int64 keys -> (scores float32, ids int64); padding and -inf scores -> (-inf, -1)."""
    ordered = (keys >> ID_BITS).to(torch.int32)
    bits = torch.where(ordered >= 0, ordered, ordered ^ ORDER_FLIP)
    scores = bits.view(torch.float32)  # bits is a fresh tensor; masked_fill below copies
    ids = ID_MASK - (keys & ID_MASK)
    pad = (keys == MIN_KEY) | (scores == float("-inf"))
    return scores.masked_fill(pad, float("-inf")), ids.masked_fill(pad, -1)
