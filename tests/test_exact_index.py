"""hybrid_fast.ExactIndex: add/search, doc ids and BEIR results, save/load, memory-mapped streaming."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import hybrid_fast as hf


def data(N=237, d=19, Q=6):
    return torch.randint(-3, 4, (Q, d)).float(), torch.randint(-3, 4, (N, d)).float()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_add_in_pieces_matches_topk_search(seed, dtype):
    q, c = data()
    ix = hf.ExactIndex(19, dtype=dtype)
    ix.add(c[:100])
    ix.add(c[100:].numpy())
    assert ix.ntotal == len(ix) == 237
    s, i = ix.search(q, 40)
    rs, ri = hf.reference.topk_search(q, c.to(dtype), 40)
    assert torch.equal(i, ri) and torch.equal(s, rs)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("metric", ["ip", "cosine"])
def test_save_load_round_trip_and_mmap_streaming(seed, tmp_path, dtype, metric):
    q, c = torch.randn(5, 24), torch.randn(301, 24)
    ix = hf.ExactIndex(24, metric=metric, dtype=dtype)
    ix.add(c, ids=[f"doc{j}" for j in range(301)])
    want = ix.search(q, 25)
    ix.save(tmp_path / "ix")
    mem = hf.ExactIndex.load(tmp_path / "ix", mmap=False)
    mm = hf.ExactIndex.load(tmp_path / "ix")
    assert isinstance(mm._mmap, np.memmap) and mm.doc_ids == ix.doc_ids and mm.metric == metric
    assert mm.dtype == dtype
    got_mem = mem.search(q, 25)
    assert torch.equal(got_mem[1], want[1]) and torch.equal(got_mem[0], want[0])
    for chunk_rows in (7, 25, 100, 10_000):  # chunks shorter than k, tile edges, one chunk
        s, i = mm.search(q, 25, chunk_rows=chunk_rows)
        torch.testing.assert_close(s, want[0], atol=1e-5, rtol=0)
        # same ids except for fp32-rounding swaps between equal-within-1e-5 scores
        assert (i == want[1]).float().mean() > 0.95


def test_mmap_streaming_exact_on_integer_ties(seed, tmp_path):
    q, c = data()
    c[50:] = c[:187].clone()  # duplicates across chunks: ties must resolve by ascending id
    ix = hf.ExactIndex(19)
    ix.add(c)
    ix.save(tmp_path / "ix")
    mm = hf.ExactIndex.load(tmp_path / "ix")
    ex = [[0, 60], [1], [], [236], [5, 6, 7], [100]]
    for k in (1, 13, 237):
        s, i = mm.search(q, k, chunk_rows=31, exclude=ex)
        rs, ri = hf.reference.topk_search(q, c, k, exclude=ex)
        assert torch.equal(i, ri) and torch.equal(s, rs)


def test_from_npy_cosine_streams_unnormalised_file(seed, tmp_path):
    q, c = torch.randn(4, 16), torch.randn(150, 16) * 3
    np.save(tmp_path / "c.npy", c.numpy())
    ix = hf.ExactIndex.from_npy(tmp_path / "c.npy", metric="cosine")
    s, i = ix.search(q, 10, chunk_rows=40)
    rs, ri = hf.reference.topk_search(q, c, 10, metric="cosine")
    torch.testing.assert_close(s, rs, atol=1e-5, rtol=0)
    assert (i == ri).float().mean() > 0.95


def test_beir_results_and_doc_id_exclude(seed):
    q, c = torch.randn(3, 8), torch.randn(20, 8)
    ix = hf.ExactIndex(8)
    ix.add(c[:10], ids=[f"d{j}" for j in range(10)])
    ix.add(c[10:], ids=[f"d{j}" for j in range(10, 20)])
    s, i = ix.search(q, 4)
    res = ix.search(q, 4, query_ids=["a", "b", "c"], exclude=[["d" + str(int(i[0, 0]))], [], []])
    assert set(res) == {"a", "b", "c"}
    assert list(res["b"]) == [f"d{j}" for j in i[1].tolist()]
    assert res["b"][f"d{int(i[1, 0])}"] == pytest.approx(float(s[1, 0]))
    assert f"d{int(i[0, 0])}" not in res["a"] and len(res["a"]) == 4
    assert hf.search.to_beir(s, i, ["x", "y", "z"])["x"] == {str(j): v for j, v in zip(i[0].tolist(), s[0].tolist())}


def test_index_errors(tmp_path):
    ix = hf.ExactIndex(8)
    with pytest.raises(ValueError, match="the index is empty"):
        ix.search(torch.randn(2, 8), 1)
    with pytest.raises(ValueError, match=r"vectors must have shape \(n, dim=8\)"):
        ix.add(torch.randn(3, 7))
    with pytest.raises(ValueError, match="metric must be one of"):
        hf.ExactIndex(8, metric="l2")
    with pytest.raises(ValueError, match="dim must be a positive int"):
        hf.ExactIndex(0)
    with pytest.raises(ValueError, match="NaN or Inf"):
        ix.add(torch.full((2, 8), float("nan")))
    ix.add(torch.randn(5, 8))
    with pytest.raises(ValueError, match="ids given now but not at an earlier add"):
        ix.add(torch.randn(2, 8), ids=["a", "b"])
    with pytest.raises(ValueError, match=r"k must satisfy 1 <= k <= N = 5"):
        ix.search(torch.randn(2, 8), 6)
    with pytest.raises(ValueError, match="same dim"):
        ix.search(torch.randn(2, 9), 1)
    ix.save(tmp_path / "ix")
    mm = hf.ExactIndex.load(tmp_path / "ix")
    with pytest.raises(RuntimeError, match="memory-mapped"):
        mm.add(torch.randn(1, 8))
    with pytest.raises(ValueError, match=r"k must satisfy 1 <= k <= N = 5"):
        mm.search(torch.randn(2, 8), 6)
