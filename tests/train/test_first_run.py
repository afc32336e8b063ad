"""A newcomer's first run: the packaged sample and its resolution, the experiment's BEIR block,
table and report, bad command-line input (one line, exit 2) and missing optional dependencies."""
from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from hybrid_fast.data import sample as sample_mod
from hybrid_fast.data.sample import SAMPLE_ARCHIVE, SAMPLE_LABEL, resolve_experiment_data, sample_root

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(os.environ.get("HYBRID_FAST_DATA", REPO.parent / "shared" / "data"))
QUICK_LANGS = ["de", "en", "es", "tr", "vi"]


@pytest.fixture(autouse=True)
def offline(offline_data_env):
    """No network, an empty download cache, no $HYBRID_FAST_DATA."""


# ---------------------------------------------------------------- the packaged sample
def test_sample_is_small_licensed_and_complete():
    from hybrid_fast.data import load_beir, load_lareqa, load_squad_parallel

    assert SAMPLE_ARCHIVE.stat().st_size < 5_000_000
    beside = SAMPLE_ARCHIVE.parent
    assert "Attribution-ShareAlike 4.0" in (beside / "LICENSE").read_text()
    assert "XQuAD-R" in (beside / "NOTICE.md").read_text()
    root = sample_root()
    assert sample_root() == root  # unpacked once, reused
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["languages"] == QUICK_LANGS and len(manifest["test_articles"]) == 10
    records = load_squad_parallel(root / "xquad", QUICK_LANGS)
    assert {len(v) for v in records.values()} == {1190}  # every article: the split is the full set's
    lareqa = load_lareqa(root / "xquad-r", QUICK_LANGS)
    titles = {r.group_id: r.article for r in records["en"]}
    assert {titles[q.qid] for q in lareqa.questions} == set(manifest["test_articles"])
    beir = load_beir(root / "beir" / "dbpedia-sample")
    assert len(beir.queries) == 24 and 300 <= len(beir.corpus) <= 1000
    assert (root / "LICENSE").is_file() and (root / "NOTICE.md").is_file()


def test_sample_test_set_equals_the_full_sets(tmp_path):
    """The quick experiment's test set from the sample is the one from the full XQuAD-R."""
    if not (SHARED_DATA / "xquad-r").is_dir():
        pytest.skip(f"full data sets not found: {SHARED_DATA / 'xquad-r'} (set HYBRID_FAST_DATA)")
    from hybrid_fast.train.config import TrainConfig
    from hybrid_fast.data.xquad_split import build_datasets, load_xquad, xquad_r_test_set

    sets = []
    for root in (SHARED_DATA, sample_root()):
        cfg = TrainConfig(data_dir=str(root))
        records = load_xquad(cfg)
        _, _, split = build_datasets(cfg, records)
        sets.append((split, xquad_r_test_set(root, tuple(cfg.languages), split["test"], xquad=records[cfg.languages[0]])))
    (split_full, full), (split_sample, sampled) = sets
    assert split_full == split_sample
    assert full.questions == sampled.questions
    # paragraph_index numbers the paragraphs of a file: the sample's file has fewer articles.
    strip = lambda c: (c.lang, c.sentence_index, c.sentence, c.context)  # noqa: E731
    assert [strip(c) for c in full.candidates] == [strip(c) for c in sampled.candidates]
    assert full.relevant == sampled.relevant


def write_experiment_data(root: Path, languages=("en",)) -> Path:
    for lang in languages:
        (root / "xquad").mkdir(parents=True, exist_ok=True)
        (root / "xquad-r").mkdir(parents=True, exist_ok=True)
        (root / "xquad" / f"xquad.{lang}.json").write_text("{}")
        (root / "xquad-r" / f"{lang}.json").write_text("{}")
    return root


def test_resolution_order_ends_with_the_packaged_sample(tmp_path, monkeypatch, caplog):
    explicit = write_experiment_data(tmp_path / "explicit")
    env = write_experiment_data(tmp_path / "env")
    assert resolve_experiment_data(explicit, ["en"]) == (explicit, str(explicit))
    with pytest.raises(FileNotFoundError, match=r"^--data: expected a folder holding .*xquad-r/de.json"):
        resolve_experiment_data(explicit, ["en", "de"])  # an explicit path is the only place looked at
    with pytest.raises(FileNotFoundError, match=r"^--data: .*not a folder"):
        resolve_experiment_data(tmp_path / "none", ["en"])
    monkeypatch.setenv("HYBRID_FAST_DATA", str(env))
    assert resolve_experiment_data(None, ["en"]) == (env, str(env))
    monkeypatch.delenv("HYBRID_FAST_DATA")
    cache = write_experiment_data(tmp_path / "cache" / "data")
    assert resolve_experiment_data(None, ["en"]) == (cache, str(cache))
    with caplog.at_level(logging.INFO, logger="hybrid_fast.data.sample"):
        root, label = resolve_experiment_data(None, ["en", "de"])  # cache lacks de; offline: no download
    assert (root, label) == (sample_root(), SAMPLE_LABEL)
    assert [r.message for r in caplog.records if "packaged sample" in r.message]
    with pytest.raises(FileNotFoundError, match="--languages: the packaged sample holds"):
        resolve_experiment_data(None, ["en", "ar"])


def test_failed_download_falls_back_to_the_sample(monkeypatch):
    calls = []

    def failing(name, path=None, *, files=(), download=None):
        calls.append(name)
        raise FileNotFoundError(f"could not download dataset {name!r} (no network); put files somewhere")

    monkeypatch.setattr(sample_mod, "resolve_data_dir", failing)
    assert resolve_experiment_data(None, ["en"], download=True)[1] == SAMPLE_LABEL
    assert calls == ["xquad"]


# ---------------------------------------------------------------- BEIR block, table and report
def tiny_beir(folder: Path) -> Path:
    (folder / "qrels").mkdir(parents=True)
    docs = [{"_id": f"d{i}", "title": "", "text": f"en sentence {i}"} for i in range(6)]
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": f"q{i}", "text": f"en question {i}"}) + "\n"
                                                  for i in range(3)))
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"q{i}\td{(i + 1) % 6}\t1\n" for i in range(3)))
    return folder


def test_every_arm_is_evaluated_on_every_beir_folder(monkeypatch, tmp_path, tiny_model):
    """The BEIR block per arm: per-folder metrics equal a direct evaluate_beir of the same model
    (with the run's prefixes), means over seeds with per-seed values, and the mean over folders."""
    import hybrid_fast.data as data
    import hybrid_fast.train.experiment as experiment
    from hybrid_fast.data import load_beir
    from hybrid_fast.eval.beir import evaluate_beir
    from hybrid_fast.model import BiEncoder
    from hybrid_fast.train import TrainConfig
    from test_experiment import LANGS, tiny_xquad, tiny_xquad_r

    records = tiny_xquad()
    monkeypatch.setattr(data, "load_squad_parallel", lambda path, languages=None, **kw: records)
    monkeypatch.setattr(data, "load_lareqa", lambda path, languages: tiny_xquad_r(records, languages))
    models = []

    def build(name, **kwargs):
        models.append(tiny_model())
        return models[-1]

    monkeypatch.setattr(BiEncoder, "from_pretrained", staticmethod(build))
    a, b = tiny_beir(tmp_path / "a" / "set"), tiny_beir(tmp_path / "b" / "set")
    base = TrainConfig(languages=list(LANGS), dev_articles=1, test_articles=2, batch_size=4, max_steps=2,
                       warmup_steps=1, val_every=0, save_every=0, log_every=1, progress=False)
    results = experiment.run_experiment(base, data_dir=tmp_path, seeds=[0, 1], arms=("zero-shot", "hybrid"),
                                        work_dir=tmp_path / "runs", beir_dirs=[a, b], data_label=SAMPLE_LABEL,
                                        keep_models=True, report_dir=tmp_path / "report")
    assert results["data"] == SAMPLE_LABEL
    assert list(results["beir"]) == ["set", "set-2"]
    zero = results["arms"]["zero-shot"]["beir"]
    direct = evaluate_beir(experiment.PrefixedEncoder(models[0], query_prefix=base.query_prefix,
                                                      passage_prefix=base.passage_prefix), load_beir(a))
    for key in experiment.BEIR_KEYS:
        assert zero["set"][key] == pytest.approx(direct[key])
    hybrid = results["arms"]["hybrid"]["beir"]
    assert [r["seed"] for r in hybrid["set"]["per_seed"]] == [0, 1]
    assert hybrid["set"]["ndcg@10"] == pytest.approx(np.mean([r["ndcg@10"] for r in hybrid["set"]["per_seed"]]))
    assert hybrid["mean"]["recall@100"] == pytest.approx((hybrid["set"]["recall@100"] + hybrid["set-2"]["recall@100"]) / 2)
    for seed in (0, 1):  # --keep-models keeps each arm's model folder
        assert (tmp_path / "runs" / f"hybrid-seed{seed}" / "model").is_dir()
    report = (tmp_path / "report" / "report.md").read_text()
    assert "BEIR nDCG@10" in report and "set-2" in report
    table = experiment_table(results)
    assert table.splitlines()[0].split()[0] == "arm" and any(line.startswith("hybrid ") for line in table.splitlines())


def experiment_table(results):
    from hybrid_fast.train.experiment_report import results_table

    return results_table(results)


def test_plots_degrade_to_one_warning_without_matplotlib(monkeypatch, tmp_path, caplog):
    import hybrid_fast.eval.report as report
    from hybrid_fast.train.experiment_report import bar_chart, write_report

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ModuleNotFoundError
    monkeypatch.setattr(report, "_warned_no_matplotlib", False)
    arm = {"mono": {"map": 0.5}, "cross": {"map": 0.4}, "multi": {"map": 0.3}, "rank_distance": 2.0,
           "per_seed": [{"seed": 0, "mono_map": 0.5, "cross_map": 0.4, "multi_map": 0.3, "mono_ndcg@10": 0.6,
                         "rank_distance": 2.0}],
           "cross_matrix": {"languages": ["en"], "map": [[0.5]]}}
    for s in ("mono", "cross", "multi"):
        arm[s].update(map_std=0.0)
    arm["mono"].update({"ndcg@10": 0.6, "ndcg@10_std": 0.0})
    arm["rank_distance_std"] = 0.0
    results = {"arms": {"hybrid": arm}, "test_set": "t", "settings": {"seeds": [0]}}
    with caplog.at_level(logging.WARNING):
        assert bar_chart(results, tmp_path / "m.png") is None
        path = write_report(results, tmp_path, {}, title="t")
    assert len([r for r in caplog.records if "matplotlib is not installed" in r.message]) == 1
    assert "not drawn" in path.read_text() and not list(tmp_path.glob("*.png"))


def test_outputs_are_atomic(tmp_path):
    from hybrid_fast._atomic import atomic_path, write_text_atomic

    target = write_text_atomic(tmp_path / "r.json", "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash while writing")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["r.json"]


# ---------------------------------------------------------------- bad input: one line, exit 2
def run_cli(argv, capsys):
    from hybrid_fast.cli import main

    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.fixture
def no_work(monkeypatch):
    """Fails the test if the experiment starts its work."""
    import hybrid_fast.train.experiment as experiment

    def forbidden(*args, **kwargs):
        raise AssertionError("run_experiment called: the error came after work started")

    monkeypatch.setattr(experiment, "run_experiment", forbidden)


def bad_inputs(tmp_path, create=True):
    if create:
        (tmp_path / "bad.json").write_text("{not json")
        (tmp_path / "list.yaml").write_text("- a\n")
        (tmp_path / "empty-data").mkdir()
        (tmp_path / "file").write_text("")
    return {
        "unknown model": (["--model", "no-such-model-xyz"], "--model: expected 'minilm-offline'"),
        "model folder without config": (["--model", str(tmp_path / "empty-data")], "--model: expected a model folder"),
        "missing data folder": (["--data", str(tmp_path / "none")], "--data: expected a folder"),
        "malformed data folder": (["--data", str(tmp_path / "empty-data")], "--data: expected a folder holding"),
        "malformed config": (["--config", str(tmp_path / "bad.json")], "--config: expected valid JSON"),
        "config not a mapping": (["--config", str(tmp_path / "list.yaml")], "--config"),
        "missing config": (["--config", str(tmp_path / "none.json")], "--config: expected a readable"),
        "unknown flag value": (["--pooling", "max"], "--pooling: expected one of ['mean', 'cls'], got 'max'"),
        "out-of-range value": (["--alpha", "2"], "--alpha: expected a number in [0, 1], got 2.0"),
        "unknown arm": (["--arms", "nope"], "argument --arms: invalid choice: 'nope'"),
        "unwritable output": (["--output", str(tmp_path / "file" / "r.json")], "--output: expected a writable path"),
        "output is a folder": (["--output", str(tmp_path)], "--output: expected a file path"),
        "bad BEIR folder": (["--beir", str(tmp_path / "empty-data")], "--beir: expected a BEIR folder"),
    }


@pytest.mark.parametrize("case", list(bad_inputs(Path("/nonexistent"), create=False)))
def test_bad_input_is_one_line_naming_the_flag_exit_2(case, tmp_path, capsys, no_work):
    argv, expected = bad_inputs(tmp_path)[case]
    code, err = run_cli(["experiment", "--quick", "--output", str(tmp_path / "out" / "r.json"), *argv], capsys)
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert expected in err
    assert not (tmp_path / "out" / "r.json").exists()


def test_debug_shows_the_traceback(tmp_path, capsys, no_work):
    from hybrid_fast.cli import main

    with pytest.raises(ValueError, match="pooling"):
        main(["--debug", "experiment", "--quick", "--pooling", "max", "--output", str(tmp_path / "r.json")])


def test_missing_optional_dependency_fails_before_work_naming_the_extra(monkeypatch, tmp_path, capsys, no_work):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "transformers" else real(name, *a))
    code, err = run_cli(["experiment", "--quick", "--output", str(tmp_path / "r.json")], capsys)
    assert code == 2 and "['transformers']" in err and "hybrid_fast[all]" in err and len(err.splitlines()) == 1


def test_train_names_a_missing_data_dir(tmp_path, capsys):
    code, err = run_cli(["train", "--data-dir", str(tmp_path / "none"), "--output-dir", str(tmp_path / "run")], capsys)
    assert code == 2, err
    # one error line (the model loads first, so transformers' weight-loading bar may precede it)
    assert "Traceback" not in err and [ln for ln in err.splitlines() if "error" in ln] == [err.splitlines()[-1]], err
    assert "--data-dir: expected a folder holding xquad/" in err and str(tmp_path / "none") in err
    assert not (tmp_path / "run" / "config.json").exists()


# ---------------------------------------------------------------- train without --data-dir
def test_train_data_resolves_like_the_experiment_without_data_dir(tmp_path, monkeypatch, caplog):
    """No --data-dir: $HYBRID_FAST_DATA (XQuAD alone is enough to train), the cache, else the
    packaged sample (logged), which holds the default training languages; an explicit folder is
    used as given; languages the sample lacks are a clear error naming both flags."""
    from hybrid_fast.data.xquad_split import load_xquad, resolve_training_data
    from hybrid_fast.train.config import TrainConfig

    default = TrainConfig()
    assert default.data_dir is None
    with caplog.at_level(logging.INFO, logger="hybrid_fast.data.sample"):
        assert resolve_training_data(default) == str(sample_root())
    assert [r.message for r in caplog.records if "packaged sample" in r.message]
    assert not (sample_root() / "xquad-r" / "ar.json").exists()  # the sample is the fallback, not a full set
    env = tmp_path / "env"
    (env / "xquad").mkdir(parents=True)
    for lang in default.languages:
        (env / "xquad" / f"xquad.{lang}.json").write_text("{}")
    monkeypatch.setenv("HYBRID_FAST_DATA", str(env))
    assert resolve_training_data(default) == str(env)
    explicit = str(tmp_path / "none")
    assert resolve_training_data(TrainConfig(data_dir=explicit)) == explicit  # checked by the loader, as before
    monkeypatch.delenv("HYBRID_FAST_DATA")
    assert sorted(load_xquad(TrainConfig(languages=["vi", "en"]))) == ["en", "vi"]  # from the sample
    with pytest.raises(ValueError, match=r"^--languages: the packaged sample holds .*'ar'.*pass --data-dir DIR"):
        load_xquad(TrainConfig(languages=["en", "ar"]))
    with pytest.raises(FileNotFoundError, match="none"):  # an explicit folder: the loader's error, as before
        load_xquad(TrainConfig(data_dir=explicit, languages=["en", "ar"]))


def test_trainer_without_data_dir_trains_on_the_sample_and_records_it(tiny_model, tmp_path):
    from hybrid_fast.train.config import TrainConfig
    from hybrid_fast.train.trainer import Trainer

    cfg = TrainConfig(output_dir=str(tmp_path / "run"), batch_size=4, max_steps=1, val_every=0, save_every=0,
                      log_every=1, progress=False, languages=["en", "de"])
    trainer = Trainer(cfg, model=tiny_model())
    assert trainer.config.data_dir == str(sample_root()) and cfg.data_dir is None
    trainer.train(save_model=False)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["data_dir"] == str(sample_root())


def test_train_cli_names_languages_missing_from_the_sample(tmp_path, capsys):
    code, err = run_cli(["train", "--languages", "en", "ar", "--output-dir", str(tmp_path / "run")], capsys)
    assert code == 2, err
    # one error line (the model loads first, so transformers' weight-loading bar may precede it)
    assert "Traceback" not in err and [ln for ln in err.splitlines() if "error" in ln] == [err.splitlines()[-1]], err
    assert "error: --languages: the packaged sample holds" in err and "--data-dir DIR" in err
    assert not (tmp_path / "run" / "config.json").exists()
