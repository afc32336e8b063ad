"""End to end with the real offline MiniLM on a handful of texts (synthetic folders in tmp_path)."""

import json
import subprocess
import sys

import pytest

pytest.importorskip("transformers", reason="transformers is not installed")


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HYBRID_FAST_OFFLINE", "1")
    monkeypatch.setenv("HYBRID_FAST_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def minilm_path():
    from hybrid_fast.encoder import offline_minilm_path

    try:
        return offline_minilm_path()
    except FileNotFoundError as err:
        pytest.skip(str(err))


def test_import_hybrid_fast_loads_no_heavy_modules():
    code = (
        "import sys, hybrid_fast, hybrid_fast.eval, hybrid_fast.eval.metrics, hybrid_fast.data;"
        "heavy = [m for m in ('transformers', 'datasets', 'matplotlib', 'hybrid_fast.encoder')"
        " if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_encoder_matches_sentence_transformers_and_caches(minilm_path, tmp_path):
    import torch

    from hybrid_fast.encoder import Encoder

    texts = ["Berlin is the capital of Germany.", "A cat.", "Ein langer Satz über das Wetter in Hamburg."]
    encoder = Encoder("minilm-offline", query_prefix="", passage_prefix="", cache_dir=tmp_path / "emb", batch_size=2)
    ours = encoder.encode(texts, "query")
    assert ours.shape == (3, 384) and ours.dtype == torch.float32
    st = pytest.importorskip("sentence_transformers")
    reference = torch.tensor(st.SentenceTransformer(str(minilm_path), device="cpu").encode(texts))
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=0)
    assert list((tmp_path / "emb").glob("*/shard-*.pt"))
    again = Encoder("minilm-offline", query_prefix="", passage_prefix="", cache_dir=tmp_path / "emb")
    again.model = None  # a cache hit must not touch the model
    torch.testing.assert_close(again.encode(texts[::-1], "query"), ours.flip(0))
    with pytest.raises(ValueError, match="pooling"):
        Encoder("minilm-offline", pooling="max")


def write_lareqa(folder, lang, context, breaks, questions):
    sentences = [context[s:e] for s, e in breaks]
    qas = [{"id": qid, "question": q, "answers": [{"answer_start": a, "text": "x"}]} for qid, q, a in questions]
    data = {"data": [{"title": "t", "paragraphs": [{"context": context, "sentences": sentences,
                                                    "sentence_breaks": breaks, "qas": qas}]}]}
    (folder / f"{lang}.json").write_text(json.dumps(data))


def test_cli_xquad_r_and_beir(minilm_path, tmp_path):
    from hybrid_fast.eval.cli import main

    lareqa = tmp_path / "lareqa"
    lareqa.mkdir()
    en = "Paris is the capital of France. Bananas are yellow fruit."
    es = "París es la capital de Francia. Los plátanos son frutas amarillas."
    write_lareqa(lareqa, "en", en, [[0, 31], [32, 57]], [("q1", "What is the capital of France?", 0), ("q2", "What color are bananas?", 50)])
    write_lareqa(lareqa, "es", es, [[0, 31], [32, 67]], [("q1", "¿Cuál es la capital de Francia?", 0), ("q2", "¿De qué color son los plátanos?", 60)])
    out = tmp_path / "xq.json"
    code = main(["xquad-r", "--model", "minilm-offline", "--data", str(lareqa), "--languages", "en,es",
                 "--output", str(out), "--no-progress", "--candidate-context", "paragraph"])
    assert code == 0
    result = json.loads(out.read_text())
    assert set(result) >= {"mono", "cross", "multi", "rank_distance", "per_language", "cross_matrix", "timing"}
    assert result["mono"]["map"] == 1.0  # two sentences per language, trivially separable
    assert 0.0 <= result["cross"]["map"] <= 1.0 and "r@10" in result["multi"]
    assert out.with_suffix(".png").is_file()

    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    docs = [("d1", "Paris", "Paris is the capital of France."), ("d2", "Banana", "Bananas are yellow."),
            ("d3", "Rome", "Rome is the capital of Italy.")]
    (beir / "corpus.jsonl").write_text("".join(json.dumps({"_id": i, "title": t, "text": x}) + "\n" for i, t, x in docs))
    (beir / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "capital of France"}) + "\n")
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\td3\t0\n")
    out = tmp_path / "beir.json"
    assert main(["beir", "--model", "minilm-offline", "--data", str(beir), "--output", str(out), "--no-progress"]) == 0
    result = json.loads(out.read_text())
    assert result["ndcg@10"] == 1.0 and result["mrr@10"] == 1.0 and result["recall@100"] == 1.0


def test_cli_reports_missing_data(capsys, tmp_path):
    from hybrid_fast.eval.cli import main

    assert main(["xquad-r", "--model", "minilm-offline", "--data", str(tmp_path / "none")]) == 2
    assert "not found" in capsys.readouterr().err


def test_cli_register_adds_eval():
    import argparse

    from hybrid_fast.eval.cli import register

    parser = argparse.ArgumentParser(prog="hybrid-fast")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["eval", "beir", "--model", "m", "--data", "d", "--k-values", "1,5"])
    assert callable(args.func) and args.k_values == "1,5"
