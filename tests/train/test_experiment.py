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


# ---------------------------------------------------------------- one parse per run, shared merge
LANGS = ("en", "de")


def tiny_xquad(n_articles=6):
    """``{lang: [ParallelQA]}``: articles a0.. with 3 paragraphs of 2 questions each (paragraph
    indices global, as in XQuAD)."""
    from hybrid_fast.data.squad import ParallelQA

    n = 6 * n_articles
    return {lang: [ParallelQA(f"q{i}", f"a{i // 6}", lang, f"{lang} question {i} about topic {i % 5}",
                              f"{lang} paragraph {i // 2} says something about {i % 7}", 0, "x", i // 2)
                   for i in range(n)] for lang in LANGS}


def tiny_xquad_r(records, languages):
    """A LAReQA set over ``records``: one candidate sentence per paragraph and language, relevant to
    the paragraph's questions in every language (what test_lareqa's consistency checks expect)."""
    first = records[languages[0]]
    paragraphs = sorted({r.paragraph_index for r in first})
    candidates = [LareqaCandidate(lang, p, 0, f"{lang} sentence of paragraph {p}", "ctx")
                  for lang in languages for p in paragraphs]
    index = {(c.lang, c.paragraph_index): i for i, c in enumerate(candidates)}
    questions = [LareqaQuestion(r.group_id, lang, r.question) for lang in languages for r in records[lang]]
    paragraph_of = {r.group_id: r.paragraph_index for r in first}
    relevant = [sorted(index[(lang, paragraph_of[q.qid])] for lang in languages) for q in questions]
    return LareqaDataset(tuple(languages), questions, candidates, relevant)


def losses_of(run_dir):
    """The reproducible part of a run's metrics.jsonl (every line, timings dropped)."""
    from hybrid_fast.train.trainer import read_metrics

    return [{k: v for k, v in r.items() if k != "examples_per_s"} for r in read_metrics(run_dir / "metrics.jsonl")]


def test_experiment_parses_xquad_once_and_trains_each_arm_as_a_standalone_trainer(monkeypatch, tmp_path, tiny_model):
    """One run (every arm, two seeds) parses XQuAD exactly once, and each arm/seed still trains on
    the data ``Trainer(cfg)`` would build for itself: same split.json and the same losses and
    validation losses step for step (same sampler seeds, splits, batches)."""
    import json

    import hybrid_fast.data as data
    import hybrid_fast.train.experiment as experiment
    from hybrid_fast.model import BiEncoder
    from hybrid_fast.train import TrainConfig, Trainer
    from hybrid_fast.train.config import load_config_file

    records, parses = tiny_xquad(), []

    def fake_load_squad_parallel(path, languages=None, **kwargs):
        parses.append(tuple(languages))
        return {lang: records[lang] for lang in languages}

    monkeypatch.setattr(data, "load_squad_parallel", fake_load_squad_parallel)
    monkeypatch.setattr(data, "load_lareqa", lambda path, languages: tiny_xquad_r(records, languages))
    monkeypatch.setattr(BiEncoder, "from_pretrained", staticmethod(lambda name, **kwargs: tiny_model()))
    base = TrainConfig(languages=list(LANGS), dev_articles=1, test_articles=2, batch_size=4, max_steps=3,
                       warmup_steps=1, lr=1e-3, val_every=2, val_batches=1, save_every=0, log_every=1,
                       progress=False)
    seeds = [0, 1]
    results = experiment.run_experiment(base, data_dir=tmp_path / "data", seeds=seeds, work_dir=tmp_path / "runs")
    assert parses == [LANGS]  # one parse for training, validation and the test set of every arm and seed
    assert list(results["arms"]) == list(experiment.ARMS)
    assert len(results["split"]["test"]) == 2 and len(results["split"]["dev"]) == 1
    for arm in experiment.TRAINED_ARMS:
        for seed in seeds:
            run = tmp_path / "runs" / f"{arm}-seed{seed}"
            cfg = TrainConfig(**load_config_file(run / "config.json"))
            assert (cfg.sampler, cfg.seed) == (arm, seed)
            alone = tmp_path / "alone" / run.name
            Trainer(cfg.replace(output_dir=str(alone))).train(save_model=False)  # builds its own datasets
            assert json.loads((run / "split.json").read_text()) == json.loads((alone / "split.json").read_text())
            got, expected = losses_of(run), losses_of(alone)
            assert any("val_loss" in r for r in expected)  # validation ran: the dev set was handed over
            assert got == expected, (arm, seed)


@pytest.mark.parametrize("command", ["train", "experiment"])
def test_both_entry_points_merge_preset_file_and_flags_in_config_from_args(command, monkeypatch, tmp_path):
    """defaults < preset (experiment only) < --config file < flags, for ``hybrid-fast train`` and
    ``hybrid-fast experiment`` alike, and the config each one runs with is the one built by
    :func:`config_from_args` (a second merge elsewhere would not be called)."""
    import json

    import hybrid_fast.train.cli as cli
    import hybrid_fast.train.config as config
    import hybrid_fast.train.experiment as experiment
    import hybrid_fast.train.trainer as trainer

    merges, used = [], []

    def spy(args, **kwargs):
        cfg = real(args, **kwargs)
        merges.append((kwargs, cfg))
        return cfg

    real = config.config_from_args
    for module in (cli, experiment):  # where the entry points look the function up
        monkeypatch.setattr(module, "config_from_args", spy, raising=False)

    class FakeTrainer:
        def __init__(self, cfg):
            used.append(cfg)

        def train(self, resume=False):
            return {"losses": {}}

    def fake_run(base, **kwargs):
        used.append(base)
        return {"arms": {}, "timing_s": 0.0}

    monkeypatch.setattr(trainer, "Trainer", FakeTrainer)
    monkeypatch.setattr(experiment, "run_experiment", fake_run)
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"batch_size": 8, "max_steps": 7, "lr": 0.002, "languages": ["en", "de"]}))
    # --warmup-steps 20 is the dataclass default: given as a flag it still beats the preset's 2.
    flags = ["--config", str(path), "--lr", "0.003", "--warmup-steps", "20", "--no-progress"]
    if command == "experiment":
        argv = ["experiment", "--quick", "--output", str(tmp_path / "r.json"), "--work-dir", str(tmp_path / "w")]
    else:
        argv = ["train"]
    assert cli.main(argv + flags) == 0
    assert len(merges) == 1 and len(used) == 1 and used[0] is merges[0][1]
    cfg = used[0]
    # file over preset and defaults; flags over file
    assert (cfg.batch_size, cfg.max_steps, cfg.languages) == (8, 7, ["en", "de"])
    assert (cfg.lr, cfg.warmup_steps, cfg.progress) == (0.003, 20, False)
    if command == "experiment":
        assert merges[0][0] == {"preset": experiment.QUICK}
        assert (cfg.val_every, cfg.query_max_length) == (experiment.QUICK["val_every"], 32)  # preset over defaults
    else:
        assert merges[0][0] == {}
        assert (cfg.val_every, cfg.query_max_length) == (50, 64)  # no preset: dataclass defaults


# ---------------------------------------------------------------- crash-safe reruns, the report
@pytest.fixture
def tiny_experiment(monkeypatch, tmp_path, tiny_model):
    """``run(arms, **config_changes)`` -> (results, trained): ``run_experiment`` on the tiny XQuAD
    with the tiny model (seeds 0 and 1, report into ``tmp_path/report``); ``trained`` lists the
    (arm, seed) pairs that trained in that call."""
    import hybrid_fast.data as data
    import hybrid_fast.train.experiment as experiment
    from hybrid_fast.model import BiEncoder
    from hybrid_fast.train import TrainConfig

    records = tiny_xquad()
    monkeypatch.setattr(data, "load_squad_parallel", lambda path, languages=None, **kw: {l: records[l] for l in languages})
    monkeypatch.setattr(data, "load_lareqa", lambda path, languages: tiny_xquad_r(records, languages))
    monkeypatch.setattr(BiEncoder, "from_pretrained", staticmethod(lambda name, **kwargs: tiny_model()))
    trained = []
    real_init = experiment.Trainer.__init__

    def counting_init(self, cfg, **kwargs):
        trained.append((cfg.sampler, cfg.seed))
        real_init(self, cfg, **kwargs)

    monkeypatch.setattr(experiment.Trainer, "__init__", counting_init)

    def run(arms=experiment.ARMS, **changes):
        trained.clear()
        base = TrainConfig(languages=list(LANGS), dev_articles=1, test_articles=2, batch_size=4, max_steps=2,
                           warmup_steps=1, lr=1e-3, val_every=1, val_batches=1, save_every=0, log_every=1,
                           progress=False).replace(**changes)
        results = experiment.run_experiment(base, data_dir=tmp_path / "data", seeds=[0, 1], arms=arms,
                                            work_dir=tmp_path / "runs", report_dir=tmp_path / "report")
        return results, list(trained)

    return run


def without_timings(value):
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if k not in ("timing_s", "eval_s", "wall_s",
                                                                             "examples_per_s")}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def test_a_rerun_reuses_finished_runs_and_redoes_the_rest(tiny_experiment, tmp_path, monkeypatch):
    """Each arm/seed's evaluation is recorded when it is done: the same command after a crash
    trains only what had not finished and reports what one uninterrupted call reports."""
    import hybrid_fast.train.experiment as experiment

    arms = ("zero-shot", "x-y", "hybrid")
    full, trained = tiny_experiment(arms)
    assert trained == [("x-y", 0), ("x-y", 1), ("hybrid", 0), ("hybrid", 1)]
    assert (tmp_path / "runs" / "zero-shot" / experiment.FINISHED_RUN).is_file()
    again, trained = tiny_experiment(arms)
    assert trained == []
    assert without_timings(again) == without_timings(full)

    # A crash in hybrid seed 1's evaluation: zero-shot, x-y and hybrid seed 0 are kept.
    (tmp_path / "runs" / "hybrid-seed1" / experiment.FINISHED_RUN).unlink()
    real_evaluate, calls = experiment.evaluate_model, []

    def crash_on_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("killed")
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(experiment, "evaluate_model", crash_on_second)
    with pytest.raises(RuntimeError, match="killed"):
        tiny_experiment(arms)
    resumed, trained = tiny_experiment(arms)
    assert trained == [("hybrid", 1)]
    assert without_timings(resumed) == without_timings(full)  # training is deterministic on the CPU

    # Other settings: nothing is reused.
    _, trained = tiny_experiment(arms, lr=2e-3)
    assert trained == [("x-y", 0), ("x-y", 1), ("hybrid", 0), ("hybrid", 1)]


def test_report_per_language_tables_heatmaps_and_rebuild(tiny_experiment, tmp_path):
    """Per-language figures from the per-question values equal the evaluation's own per-language
    figures; report.md holds their tables and every arm's heatmap; ``hybrid-fast report`` rebuilds
    the same report.md from the files."""
    import json

    import hybrid_fast.train.experiment as experiment
    from hybrid_fast.cli import main
    from hybrid_fast.eval.report import write_json

    pytest.importorskip("matplotlib")
    results, _ = tiny_experiment()
    for arm in experiment.TRAINED_ARMS:
        seeds = [json.loads((tmp_path / "runs" / f"{arm}-seed{s}" / experiment.FINISHED_RUN).read_text())["result"]
                 for s in (0, 1)]
        for lang in LANGS:
            for metric in ("mono_map", "cross_map", "multi_map", "rank_distance"):
                expected = np.mean([r["per_language"][lang][metric] for r in seeds])
                assert results["per_language"][arm][lang][metric] == pytest.approx(expected, rel=1e-9), (arm, lang)
    report_dir = tmp_path / "report"
    report = (report_dir / "report.md").read_text()
    assert "## XQuAD-R per language" in report and "| hybrid |" in report
    for arm in experiment.ARMS:
        assert (report_dir / f"heatmap-{arm}.png").is_file()
        assert arm == "hybrid" or (report_dir / f"heatmap-hybrid-minus-{arm}.png").is_file()
    # Rebuilt from results JSON + per_query.json + metrics.jsonl (older JSONs lack per_language).
    results.pop("per_language")
    write_json(results, tmp_path / "results.json")
    (report_dir / "report.md").unlink()
    assert main(["report", str(tmp_path / "results.json"), "--work-dir", str(tmp_path / "runs"),
                 "--report-dir", str(report_dir)]) == 0
    assert (report_dir / "report.md").read_text() == report
    assert main(["report", str(tmp_path / "missing.json")]) == 2


def test_per_language_tables_mark_languages_unseen_in_training():
    from hybrid_fast.train.experiment_report import per_language_markdown

    values = {"mono_map": 0.5, "cross_map": 0.25, "multi_map": 0.125, "rank_distance": 3.0}
    text = per_language_markdown({"settings": {"languages": ["en"]},
                                  "per_language": {"hybrid": {"en": values, "el": dict(values, mono_map=0.25)}}})
    assert "| Model | en | el* | macro |" in text and "not a training language" in text
    assert "| hybrid | 0.500 | 0.250 | 0.375 |" in text


def test_beir_spread_is_the_std_over_seeds_of_the_mean_over_folders():
    from hybrid_fast.train.experiment import summarize_beir
    from hybrid_fast.train.experiment_report import beir_markdown, beir_mean_std, results_table

    def seed(s, a, b):
        return {"seed": s, "beir": {"f1": {"ndcg@10": a, "recall@100": 1.0, "mrr@10": 1.0, "map": 1.0},
                                    "f2": {"ndcg@10": b, "recall@100": 1.0, "mrr@10": 1.0, "map": 1.0}}}

    beir = summarize_beir([seed(0, 0.5, 0.7), seed(1, 0.3, 0.5), seed(2, 0.4, 0.2)])
    arm = {"beir": beir}
    assert beir_mean_std(arm) == pytest.approx(np.std([0.6, 0.4, 0.3], ddof=1))
    assert beir["mean"]["ndcg@10"] == pytest.approx(np.mean([0.6, 0.4, 0.3]))
    assert "| hybrid | 0.400 ± 0.100 / 1.000 / 1.000 | 0.467 ± 0.252 / 1.000 / 1.000 | 0.433 ± 0.153 |" in \
        beir_markdown({"arms": {"hybrid": arm}})
    one_seed = {"beir": summarize_beir([seed(0, 0.5, 0.7)])}
    assert beir_mean_std(one_seed) is None
    arms = {"hybrid": {**arm, **{s: {"map": 0.5, "map_std": 0.0} for s in ("mono", "cross", "multi")},
                       "rank_distance": 1.0, "rank_distance_std": 0.0}}
    assert "0.433 ± 0.153" in results_table({"arms": arms})


def test_report_notes_beir_folders_that_share_queries():
    from hybrid_fast.train.experiment import shared_queries
    from hybrid_fast.train.experiment_report import beir_overlap_note

    shared = shared_queries({"small": {"q1", "q2"}, "big": {"q1", "q3", "q4"}, "other": {"x"}})
    assert shared == {"small": {"big": 1}, "big": {"small": 1}, "other": {}}
    note = beir_overlap_note({"beir": {name: {"shared_queries": v} for name, v in shared.items()}})
    assert note == ("Note: `small` and `big` share 1 evaluated queries: the mean over folders counts "
                    "them twice; read the folders' own columns.\n")
    assert beir_overlap_note({"beir": {"a": {"shared_queries": {}}, "b": {"shared_queries": {}}}}) == ""
    assert beir_overlap_note({}) == ""
