"""The packed (score, id) key format (hybrid_fast/ops/_common/keys.py): its order, its round trip,
the Triton kernel's packing (interpreter) and the CUDA header's constants, all against the one
Python definition."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch

from hybrid_fast.ops._common import keys
from oracle_utils import interpreter

CUDA_HEADER = Path(__file__).resolve().parents[2] / "kernels" / "cuda" / "topk_select.cuh"


def _scores_and_ids():
    s = torch.tensor([3.5, -0.0, 0.0, -1e-30, 1e-30, -7.25, float("inf"), float("-inf"), 3.5, -7.25, 2.0 ** -149])
    ids = torch.tensor([5, 9, 2, 0, 1, 3, 7, 8, 4, 6, keys.ID_MASK - 1])
    return s, ids


def test_integer_order_is_score_desc_then_id_asc():
    s, ids = _scores_and_ids()
    by_key = torch.argsort(keys.encode_keys(s, ids), descending=True)
    # The tie rule spelled out: sort by id, then a stable sort by score (descending); -0 == +0.
    by_id = torch.argsort(ids)
    want = by_id[torch.sort((s + 0.0)[by_id], descending=True, stable=True).indices]
    assert torch.equal(by_key, want)
    assert bool((keys.encode_keys(s, ids) > keys.MIN_KEY).all())  # padding sorts below every key


def test_decode_inverts_encode_and_maps_padding():
    s, ids = _scores_and_ids()
    k = keys.encode_keys(s, ids)
    ds, di = keys.decode_keys(torch.cat([k, torch.tensor([keys.MIN_KEY])]))
    finite = s != float("-inf")
    assert torch.equal(ds[:-1][finite], (s + 0.0)[finite]) and torch.equal(di[:-1][finite], ids[finite])
    assert ds[-1] == float("-inf") and di[-1] == -1  # padding
    assert bool((di[:-1][~finite] == -1).all())  # a -inf score decodes as padding


# A jit function sees module globals only, and triton.jit picks interpreter mode at decoration:
# decorated here with TRITON_INTERPRET=1 (run only by the `interpreter` test below).
_OLD = os.environ.get("TRITON_INTERPRET")
os.environ["TRITON_INTERPRET"] = "1"
try:
    import triton
    import triton.language as tl

    from hybrid_fast.ops._common.triton_helpers import pack_keys

    @triton.jit
    def _pack(s_ptr, id_ptr, out_ptr, n, BLOCK: tl.constexpr):
        i = tl.arange(0, BLOCK)
        ok = i < n
        s = tl.load(s_ptr + i, mask=ok, other=0.0)
        s = tl.where(s == 0.0, 0.0, s)  # -0 -> +0, as the kernels do before packing
        tl.store(out_ptr + i, pack_keys(s, tl.load(id_ptr + i, mask=ok, other=0)), mask=ok)
except ImportError:
    _pack = None
finally:
    if _OLD is None:
        del os.environ["TRITON_INTERPRET"]
    else:
        os.environ["TRITON_INTERPRET"] = _OLD


@interpreter
@pytest.mark.skipif(_pack is None, reason="triton is not installed")
def test_triton_pack_keys_matches_python():
    s, ids = _scores_and_ids()
    out = torch.empty(s.shape[0], dtype=torch.int64)
    _pack[(1,)](s, ids, out, s.shape[0], BLOCK=16)
    assert torch.equal(out, keys.encode_keys(s, ids))


def test_cuda_header_constants_match_keys_py():
    text = CUDA_HEADER.read_text()

    def constant(name):
        m = re.search(rf"constexpr\s+\w+\s+{name}\s*=\s*([^;]+);", text)
        assert m, f"{name} not found in {CUDA_HEADER.name}"
        return m.group(1).strip()

    assert constant("kTopkPadKey") == "INT64_MIN" and keys.MIN_KEY == -(2 ** 63)
    assert int(constant("kTopkKeyIdBits"), 0) == keys.ID_BITS
    assert int(constant("kTopkKeyIdMask").rstrip("ull").rstrip("ULL"), 0) == keys.ID_MASK
    assert int(constant("kTopkKeyOrderFlip"), 0) == keys.ORDER_FLIP
    # The kernel packs with the named constants, not literals of its own.
    source = CUDA_HEADER.with_suffix(".cu").read_text()
    assert "kTopkKeyOrderFlip" in source and "kTopkKeyIdBits" in source and "kTopkKeyIdMask" in source
    assert "0x7FFFFFFF" not in source and "0xFFFFFFFFull" not in source
