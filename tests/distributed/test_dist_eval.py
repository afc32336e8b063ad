"""Evaluators under torch.distributed (gloo/CPU): each rank encodes one shard of the corpus and
of the queries, search/ranking is sharded, rank 0 reports; figures equal the single-process run.

A bag-of-words fake encoder (a text's row does not depend on its batch) makes the comparison
exact; duplicate documents across shards exercise the tie rule of the sharded merge.
"""
from __future__ import annotations

import zlib
from pathlib import Path

import pytest
import torch

from hybrid_fast.data import BeirDataset, LareqaCandidate, LareqaDataset, LareqaQuestion
from hybrid_fast.distributed.shards import shard_range
from hybrid_fast.distributed.testing import run_workers
from hybrid_fast.eval.beir import evaluate_beir
from hybrid_fast.eval.xquad_r import evaluate_lareqa

WORDS = ("apple tree river bank mountain snow capital france italy rome paris yellow banana green city "
         "north south music film river lake sea").split()


class HashedWords:
    """Hashed word counts, L2-normalised (16 dims: plenty of exact ties); no model."""

    dim = 16

    def encode(self, texts, kind="passage"):
        rows = torch.zeros(len(texts), self.dim)
        for i, text in enumerate(texts):
            for word in text.split():
                rows[i, zlib.crc32(word.encode()) % self.dim] += 1.0
        return torch.nn.functional.normalize(rows, dim=1)


def tiny_beir(n_docs=37, n_queries=11):
    g = torch.Generator().manual_seed(3)
    pick = lambda n: " ".join(WORDS[int(j)] for j in torch.randint(len(WORDS), (n,), generator=g))  # noqa: E731
    corpus = {f"d{j}": {"title": "", "text": pick(4)} for j in range(n_docs)}
    corpus["d30"] = dict(corpus["d3"])  # duplicates on another shard
    corpus["d36"] = dict(corpus["d3"])
    queries = {f"q{i}": pick(2) for i in range(n_queries)}
    qrels = {f"q{i}": {f"d{(5 * i) % n_docs}": 1, f"d{(7 * i + 3) % n_docs}": 2} for i in range(n_queries)}
    return BeirDataset(corpus=corpus, queries=queries, qrels=qrels, folder=Path("."))


def tiny_lareqa():
    langs = ("en", "de", "fr")
    g = torch.Generator().manual_seed(4)
    questions, candidates, relevant = [], [], []
    for li, lang in enumerate(langs):
        for i in range(5):
            questions.append(LareqaQuestion(f"q{i}", lang, f"{WORDS[i]} {WORDS[int(torch.randint(20, (1,), generator=g))]}"))
            candidates.append(LareqaCandidate(lang, i, 0, f"{WORDS[i]} {WORDS[i + 5]}", f"paragraph {i}"))
    for li in range(len(langs)):
        for i in range(5):
            relevant.append([lj * 5 + i for lj in range(len(langs))])
    return LareqaDataset(langs, questions, candidates, relevant)


def _figures(result):
    return {k: v for k, v in result.items() if k != "timing"}


def _worker(rank, world):
    beir = evaluate_beir(HashedWords(), tiny_beir(), k_values=(1, 3, 10), top_k=20, distributed=True)
    lareqa = evaluate_lareqa(HashedWords(), tiny_lareqa(), distributed=True)
    return {"beir": beir and _figures(beir), "lareqa": lareqa and _figures(lareqa)}


@pytest.fixture(scope="module")
def results():
    return run_workers(_worker, 2, timeout=180)


def test_beir_distributed_equals_single_process(results):
    want = _figures(evaluate_beir(HashedWords(), tiny_beir(), k_values=(1, 3, 10), top_k=20))
    assert results[0]["beir"] == want
    assert results[1]["beir"] is None  # rank 0 reports


def test_lareqa_distributed_equals_single_process(results):
    want = _figures(evaluate_lareqa(HashedWords(), tiny_lareqa()))
    assert results[0]["lareqa"] == want
    assert results[1]["lareqa"] is None


def test_shard_range_covers_in_rank_order():
    for n in (0, 1, 5, 37):
        for W in (1, 2, 3, 8):
            ranges = [shard_range(n, W, r) for r in range(W)]
            assert ranges[0][0] == 0 and ranges[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
            assert max(h - lo for lo, h in ranges) - min(h - lo for lo, h in ranges) <= 1
