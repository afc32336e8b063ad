"""Experiment helpers: evaluation of a BiEncoder on a LAReQA set, seed summaries, tables, split."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hybrid_fast.data import LareqaCandidate, LareqaDataset, LareqaQuestion
from hybrid_fast.train.experiment import evaluate_model, markdown_tables, summarize


def tiny_lareqa():
    langs = ("en", "de")
    questions = [LareqaQuestion(f"q{i}", lang, f"{lang} question {i}") for lang in langs for i in range(3)]
    candidates = [LareqaCandidate(lang, 0, i, f"{lang} sentence {i}", "ctx") for lang in langs for i in range(3)]
    # Shifted by one: the random model ranks the sentence sharing the question's number first, so
    # the relevant ones land at ranks 2-3 (and their pooled ranks differ); question 0 has two per
    # language (ideal DCG over two items).
    relevant = [sorted({(i + 1) % 3, 3 + (i + 1) % 3} | ({2, 5} if i == 0 else set()))
                for _ in langs for i in range(3)]
    return LareqaDataset(langs, questions, candidates, relevant)


def brute_force_mono_ndcg10(model, data, query_prefix="Q: ", passage_prefix="P: "):
    """Mono nDCG@10 (binary relevance, macro over languages) from a float64 sort per query."""
    q = model.encode([query_prefix + x.text for x in data.questions], "query").double()
    c = model.encode([passage_prefix + x.sentence for x in data.candidates], "passage").double()
    per_lang = {}
    for i, question in enumerate(data.questions):
        pool = [j for j, cand in enumerate(data.candidates) if cand.lang == question.lang]
        relevant = {j for j in data.relevant[i] if data.candidates[j].lang == question.lang}
        if not relevant:
            continue
        ranking = sorted(pool, key=lambda j: (-float(q[i] @ c[j]), j))
        dcg = sum(1 / math.log2(r + 2) for r, j in enumerate(ranking[:10]) if j in relevant)
        idcg = sum(1 / math.log2(r + 2) for r in range(min(len(relevant), 10)))
        per_lang.setdefault(question.lang, []).append(dcg / idcg)
    return float(np.mean([np.mean(v) for v in per_lang.values()]))


class FixedEmbeddings:
    """Stands in for a BiEncoder: ``encode`` returns given embeddings by kind."""

    def __init__(self, queries, passages):
        self.emb = {"query": torch.tensor(queries).view(-1, 1), "passage": torch.tensor(passages).view(-1, 1)}

    def encode(self, texts, kind, batch_size=64):
        assert len(texts) == len(self.emb[kind])
        return self.emb[kind]


def test_mono_ndcg_uses_the_mono_map_ranking():
    """Hand-made 1-d scores: nDCG@10 ranks within the query's language, ties to the lower index
    (as mono mAP), cuts at 10, counts every own-language relevant item in the ideal DCG and
    leaves out a query with no relevant item in its language."""
    langs = ("en", "de")
    # en candidates 0..11 score 5, 5, 4, ..., -5 (0 and 1 tie); de candidates 12..23 score 10..-1,
    # above every en one, so ranking in the pooled candidates would change the en ranks.
    scores = [5.0] + [5.0 - i for i in range(11)] + [10.0 - i for i in range(12)]
    candidates = [LareqaCandidate(lang, 0, i, f"{lang} {i}", "") for lang in langs for i in range(12)]
    questions = [LareqaQuestion(f"q{i}", lang, "q") for i, lang in enumerate(["en"] * 3 + ["de"] * 2)]
    relevant = [[0, 10, 14],  # en ranks 1 and 11 (past the cut-off)
                [1, 12],  # en rank 2: tied with candidate 0, the lower index goes first
                [13],  # nothing relevant in en: left out of the en mean
                [2, 14],  # de rank 3
                [0, 15, 16]]  # de ranks 4 and 5
    model = FixedEmbeddings([1.0] * 5, scores)
    result = evaluate_model(model, LareqaDataset(langs, questions, candidates, relevant),
                            query_prefix="", passage_prefix="")
    d = lambda r: 1 / math.log2(1 + r)  # noqa: E731
    en = [d(1) / (d(1) + d(2)), d(2)]
    de = [d(3), (d(4) + d(5)) / (d(1) + d(2))]
    assert result["per_language"]["en"]["mono_ndcg@10"] == pytest.approx(np.mean(en))
    assert result["per_language"]["de"]["mono_ndcg@10"] == pytest.approx(np.mean(de))
    assert result["mono"]["ndcg@10"] == pytest.approx((np.mean(en) + np.mean(de)) / 2)
    # The same ranks give mono mAP.
    ap_en = [(1 / 1 + 2 / 11) / 2, 1 / 2]
    assert result["per_language"]["en"]["mono_map"] == pytest.approx(np.mean(ap_en))


def test_evaluate_model_and_summaries(tiny_model):
    model = tiny_model()
    result = evaluate_model(model, tiny_lareqa(), query_prefix="Q: ", passage_prefix="P: ")
    for setting in ("mono", "cross", "multi"):
        assert 0.0 < result[setting]["map"] <= 1.0
    assert 0.0 < result["mono"]["ndcg@10"] <= 1.0
    assert result["rank_distance"] >= 0
    # Independent oracle: float64 brute-force ranking of each query's own-language candidates.
    expected = brute_force_mono_ndcg10(model, tiny_lareqa())
    assert expected < 1.0  # some relevant item below rank 1, else a wrong filter could still score 1
    assert result["mono"]["ndcg@10"] == pytest.approx(expected, rel=1e-6)
    seeds = [dict(result, seed=s) for s in (0, 1)]
    seeds[1] = {**seeds[1], "mono": {**result["mono"], "map": result["mono"]["map"] / 2}}
    summary = summarize(seeds)
    assert summary["mono"]["map"] == pytest.approx(0.75 * result["mono"]["map"])
    assert summary["mono"]["map_std"] == pytest.approx(np.std([result["mono"]["map"], result["mono"]["map"] / 2], ddof=1))
    assert [r["seed"] for r in summary["per_seed"]] == [0, 1]
    table = markdown_tables({"arms": {"hybrid": summary}})
    assert "| hybrid |" in table and "± " in table


def test_experiment_flags_override_the_preset(monkeypatch, tmp_path):
    import hybrid_fast.train.experiment as experiment
    from hybrid_fast.train.cli import build_parser

    seen = {}

    def fake_run(base, **kwargs):
        seen.update(lr=base.lr, batch_size=base.batch_size, max_steps=base.max_steps, seeds=kwargs["seeds"])
        return {"arms": {}, "timing_s": 0.0}

    monkeypatch.setattr(experiment, "run_experiment", fake_run)
    out = str(tmp_path / "r.json")
    experiment.main_from_args(build_parser().parse_args(["experiment", "--quick", "--output", out]))
    assert seen == dict(lr=experiment.QUICK["lr"], batch_size=16, max_steps=6, seeds=[0])
    # A flag equal to the dataclass default still wins over the preset.
    experiment.main_from_args(build_parser().parse_args(["experiment", "--lr", "3e-5", "--output", out]))
    assert seen == dict(lr=3e-5, batch_size=32, max_steps=30, seeds=[0, 1, 2])
