"""Experiment presets (hybrid_fast/train/presets.py): every preset builds a valid config; the GPU
``paper`` preset builds every object and takes a step (and a validation) with a tiny stand-in
model saved to a temporary folder (the Hub model itself is not downloaded here)."""
from __future__ import annotations

import pytest

from hybrid_fast.train.presets import PAPER_TRAIN_LANGUAGES, PRESETS, XQUAD_R_LANGUAGES


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_is_a_valid_config(name, monkeypatch, tmp_path):
    import hybrid_fast.train.experiment as experiment
    from hybrid_fast.train.cli import build_parser

    seen = {}

    def fake_run(base, **kwargs):
        seen.update(config=base, seeds=kwargs["seeds"])
        return {"arms": {}, "timing_s": 0.0}

    monkeypatch.setattr(experiment, "run_experiment", fake_run)
    # preflight needs no Hub model / converted model / full data for this check
    import hybrid_fast.data.sample as sample
    import hybrid_fast.preflight as preflight

    monkeypatch.setattr(preflight, "check_model", lambda name, flag="--model": None)
    monkeypatch.setattr(sample, "resolve_experiment_data", lambda data, languages, download=None: (str(tmp_path), "t"))
    experiment.main_from_args(build_parser().parse_args(["experiment", "--preset", name,
                                                         "--output", str(tmp_path / "r.json")]))
    cfg = seen["config"]
    assert all(getattr(cfg, k) == v for k, v in PRESETS[name].items() if k != "model")
    if name in ("me5", "paper"):
        assert cfg.languages == PAPER_TRAIN_LANGUAGES and cfg.eval_languages == XQUAD_R_LANGUAGES
        assert {"el", "vi"}.isdisjoint(cfg.languages) and len(seen["seeds"]) >= 3
    if name == "me5":
        assert cfg.model == "me5-small-offline" and (cfg.query_prefix, cfg.passage_prefix) == ("query: ", "passage: ")
    if name == "paper":
        assert (cfg.batch_size, cfg.lr, cfg.patience > 0) == (100, 3e-5, True)


def test_paper_preset_takes_a_step_with_a_tiny_stand_in(tokenizer, monkeypatch, tmp_path):
    import transformers

    import hybrid_fast.data as data
    from hybrid_fast.data.squad import ParallelQA
    from hybrid_fast.train import TrainConfig, Trainer
    from hybrid_fast.train.trainer import read_metrics

    folder = tmp_path / "tiny-bert"
    cfg = transformers.BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=2, intermediate_size=64, max_position_embeddings=300)
    transformers.BertModel(cfg).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    n = 6 * 60  # 60 articles x 3 paragraphs x 2 questions, in the 9 training languages (batch 100 needs
    # >= 100 training groups, as the real XQuAD split has: ~790)
    records = {lang: [ParallelQA(f"q{i}", f"a{i // 6}", lang, f"{lang} question {i} on {i % 11}",
                                 f"{lang} paragraph {i // 2} on {i % 7}", 0, "x", i // 2) for i in range(n)]
               for lang in PAPER_TRAIN_LANGUAGES}
    monkeypatch.setattr(data, "load_squad_parallel", lambda path, languages=None, **kw: {k: records[k] for k in languages})
    config = TrainConfig(**{**PRESETS["paper"], "model": str(folder), "max_steps": 1, "val_every": 1,
                            "val_batches": 1, "warmup_steps": 0, "save_every": 0, "log_every": 1,
                            "output_dir": str(tmp_path / "run"), "progress": False})
    assert (config.batch_size, config.lr, config.bf16) == (100, 3e-5, True)
    trainer = Trainer(config)
    summary = trainer.train(save_model=False)
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert any("loss" in r for r in rows) and any("val_loss" in r for r in rows)
    assert summary["best_val_loss"] == summary["best_val_loss"]  # a number: early stopping has its signal
