"""Sharded exact search (gloo/CPU, W = 2 and 3) equals the single-process search exactly.

Corpus and queries hold small integers, so every dot product is exact in float32 whatever the
tiling: results must be bit-identical, ties included (duplicate rows are injected, and ordered by
global id). Shards: uneven, one smaller than k, one empty.
"""
from __future__ import annotations

import pytest
import torch

import hybrid_fast as hf
from hybrid_fast.distributed import sharded_topk_search
from hybrid_fast.distributed.testing import run_workers

K = 7


def _data(seed=7, n=41, q=9, d=5):
    g = torch.Generator().manual_seed(seed)
    corpus = torch.randint(-3, 4, (n, d), generator=g).float()
    corpus[30] = corpus[2]  # duplicates across shards: equal scores, ordered by id
    corpus[31] = corpus[2]
    corpus[12] = corpus[35]
    queries = torch.randint(-3, 4, (q, d), generator=g).float()
    queries[0] = corpus[2]  # query 0's best scores are the three-way tie
    exclude = torch.full((q, 2), -1, dtype=torch.int64)
    exclude[1, 0], exclude[2] = 30, torch.tensor([5, 40])
    return queries, corpus, exclude


# shard sizes per rank (sum = 41): uneven, smaller than k, empty
LAYOUTS = {2: [(0, 23), (23, 41)], 3: [(0, 3), (3, 3), (3, 41)]}


def _count_calls(module, name):
    """Wrap ``module.name`` (for the rest of this worker process): the returned list grows by
    one per call."""
    calls, real = [], getattr(module, name)

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    setattr(module, name, counting)
    return calls


def _worker(rank, world, queries, corpus, exclude):
    lo, hi = LAYOUTS[world][rank]
    shard = corpus[lo:hi]
    out = {"all": sharded_topk_search(queries, shard, K),
           "exclude": sharded_topk_search(queries, shard, K, exclude=exclude),
           "cosine": sharded_topk_search(queries, shard, K, metric="cosine"),
           "f64": sharded_topk_search(queries.double(), shard.double(), K),
           "rank0": sharded_topk_search(queries, shard, K, result_on=0),
           "k=N": sharded_topk_search(queries, shard, corpus.shape[0])}
    index = hf.ExactIndex(corpus.shape[1], sharded=True)
    if hi > lo:
        index.add(shard, ids=[f"doc{j}" for j in range(lo, hi)])
    out["index"] = index.search(queries, K)
    id_gathers = _count_calls(torch.distributed, "all_gather_object")
    beir_args = dict(query_ids=[f"q{i}" for i in range(queries.shape[0])],
                     exclude=[[f"doc{j}" for j in row if j >= 0] for row in exclude.tolist()])
    out["index_beir"] = index.search(queries, K, **beir_args)
    out["index_beir_again"] = index.search(queries, K, **beir_args)  # the kept ids: no gather
    gathers_before_add = len(id_gathers)
    if rank == world - 1:  # one rank adds: every rank must gather the ids again and see it
        index.add(queries[:1] * 10, ids=["new"])
    out["after_add"] = index.search(queries[:1], 1, query_ids=["q0"])
    index.search(queries[:1], 1, query_ids=["q0"])
    out["id_gathers"] = (gathers_before_add, len(id_gathers))
    try:
        sharded_topk_search(queries, shard, corpus.shape[0] + 1)
        out["k_too_big"] = None
    except ValueError as err:
        out["k_too_big"] = str(err)
    return out


@pytest.fixture(scope="module", params=[2, 3], ids=["W2", "W3"])
def sharded(request):
    queries, corpus, exclude = _data()
    return request.param, run_workers(_worker, request.param, queries, corpus, exclude, timeout=180)


def _assert_same(got, want, what):
    assert torch.equal(got[1], want[1]), f"{what}: ids differ\n{got[1]}\n{want[1]}"
    assert torch.equal(got[0], want[0]), f"{what}: scores differ"


def test_sharded_equals_single_process(sharded):
    W, results = sharded
    queries, corpus, exclude = _data()
    want = {"all": hf.topk_search(queries, corpus, K),
            "exclude": hf.topk_search(queries, corpus, K, exclude=exclude),
            "cosine": hf.topk_search(queries, corpus, K, metric="cosine"),
            "f64": hf.topk_search(queries.double(), corpus.double(), K),
            "k=N": hf.topk_search(queries, corpus, corpus.shape[0])}
    top = want["all"][1][0].tolist()
    assert top[top.index(2):top.index(2) + 3] == [2, 30, 31]  # the injected tie, by id
    for r in range(W):
        for name, w in want.items():
            _assert_same(results[r][name], w, f"W={W} rank {r} {name}")
    _assert_same(results[0]["rank0"], want["all"], "result_on=0")
    assert all(results[r]["rank0"] is None for r in range(1, W))


def test_sharded_index_equals_single_index(sharded):
    W, results = sharded
    queries, corpus, exclude = _data()
    index = hf.ExactIndex(corpus.shape[1])
    index.add(corpus, ids=[f"doc{j}" for j in range(corpus.shape[0])])
    want = index.search(queries, K)
    want_beir = index.search(queries, K, query_ids=[f"q{i}" for i in range(queries.shape[0])],
                             exclude=[[f"doc{j}" for j in row if j >= 0] for row in exclude.tolist()])
    for r in range(W):
        _assert_same(results[r]["index"], want, f"W={W} rank {r} ExactIndex")
        assert results[r]["index_beir"] == want_beir
        assert results[r]["index_beir_again"] == want_beir


def test_sharded_index_gathers_doc_ids_once_until_a_shard_changes(sharded):
    """Two BEIR-style searches gather the shards' doc ids once; an add on one rank makes every
    rank gather them again (once), and the added document is found."""
    W, results = sharded
    queries, _, _ = _data()
    best = float((queries[0] * 10) @ queries[0])
    for r in range(W):
        assert results[r]["id_gathers"] == (1, 2), f"rank {r}"
        assert results[r]["after_add"] == {"q0": {"new": best}}, f"rank {r}"


def test_k_larger_than_all_shards_is_rejected_on_every_rank(sharded):
    W, results = sharded
    for r in range(W):
        assert results[r]["k_too_big"] is not None and "k must satisfy" in results[r]["k_too_big"]


def test_without_process_group_is_topk_search():
    queries, corpus, _ = _data()
    _assert_same(sharded_topk_search(queries, corpus, K), hf.topk_search(queries, corpus, K), "W=1")
