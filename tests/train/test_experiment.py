"""Experiment helpers: evaluation of a BiEncoder on a LAReQA set, seed summaries, tables, split."""
from __future__ import annotations

import numpy as np
import pytest

from hybrid_fast.data import LareqaCandidate, LareqaDataset, LareqaQuestion
from hybrid_fast.train.experiment import evaluate_model, markdown_tables, summarize



def tiny_lareqa():
    langs = ("en", "de")
    questions = [LareqaQuestion(f"q{i}", lang, f"{lang} question {i}") for lang in langs for i in range(3)]
    candidates = [LareqaCandidate(lang, 0, i, f"{lang} sentence {i}", "ctx") for lang in langs for i in range(3)]
    relevant = [[i, 3 + i] for _ in langs for i in range(3)]
    return LareqaDataset(langs, questions, candidates, relevant)


def test_evaluate_model_and_summaries(tiny_model):
    result = evaluate_model(tiny_model(), tiny_lareqa(), query_prefix="Q: ", passage_prefix="P: ")
    for setting in ("mono", "cross", "multi"):
        assert 0.0 < result[setting]["map"] <= 1.0
    assert 0.0 < result["mono"]["ndcg@10"] <= 1.0
    assert result["rank_distance"] >= 0
    # nDCG@10 with one relevant item among 3 candidates: 1 / log2(1 + rank), rank <= 3.
    assert result["mono"]["ndcg@10"] >= 0.5 - 1e-9
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
