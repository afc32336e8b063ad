"""The evaluators take any object with ``encode(texts, kind)`` (the TextEncoder protocol): a tiny
bag-of-words fake, no model, no transformers."""
from __future__ import annotations

import json
import zlib

import torch

from hybrid_fast.data import BeirDataset, LareqaCandidate, LareqaDataset, LareqaQuestion
from hybrid_fast.eval import TextEncoder, beir_metrics
from hybrid_fast.eval.beir import document_text, evaluate_beir
from hybrid_fast.eval.xquad_r import evaluate_lareqa, lareqa_scores_from_embeddings


class BagOfWords:
    """Hashed word counts, L2-normalised; records its calls. No ``contexts`` keyword."""

    dim = 64

    def __init__(self):
        self.calls = []

    def _row(self, text):
        row = torch.zeros(self.dim)
        for word in text.lower().replace(".", " ").split():
            row[zlib.crc32(word.encode()) % self.dim] += 1.0
        return torch.nn.functional.normalize(row, dim=0)

    def encode(self, texts, kind="passage"):
        self.calls.append(kind)
        return torch.stack([self._row(t) for t in texts]) if texts else torch.zeros(0, self.dim)


class BagOfWordsWithContexts(BagOfWords):
    def encode(self, texts, kind="passage", *, contexts=None):
        self.calls.append((kind, None if contexts is None else list(contexts)))
        return torch.stack([self._row(t + " " + (contexts[i] if contexts else "")) for i, t in enumerate(texts)])


def tiny_lareqa():
    langs = ("en", "de")
    words = {"en": ["apple tree", "river bank", "mountain snow"], "de": ["apfel baum", "fluss ufer", "berg schnee"]}
    questions = [LareqaQuestion(f"q{i}", lang, words[lang][i] + " question") for lang in langs for i in range(3)]
    candidates = [LareqaCandidate(lang, i, 0, words[lang][i], f"paragraph {i}") for lang in langs for i in range(3)]
    relevant = [[i, 3 + i] for _ in langs for i in range(3)]
    return LareqaDataset(langs, questions, candidates, relevant)


def test_fake_encoder_satisfies_the_protocol():
    assert isinstance(BagOfWords(), TextEncoder)
    assert not isinstance(object(), TextEncoder)


def test_evaluate_lareqa_with_any_encoder():
    data = tiny_lareqa()
    encoder = BagOfWords()
    result = evaluate_lareqa(encoder, data)
    assert encoder.calls == ["query", "passage"]
    expected = lareqa_scores_from_embeddings(
        encoder.encode([q.text for q in data.questions], "query"),
        encoder.encode([c.sentence for c in data.candidates], "passage"),
        data.relevant, data.question_lang_ids(), data.candidate_lang_ids(), data.languages)
    for setting in ("mono", "cross", "multi"):
        assert result[setting] == expected[setting]
    assert result["mono"]["map"] == 1.0  # each question shares its words with its own sentence only
    assert result["cross"]["map"] < 1.0  # no shared words across languages

    with_contexts = BagOfWordsWithContexts()
    evaluate_lareqa(with_contexts, data, candidate_context="paragraph")
    assert with_contexts.calls == [("query", None), ("passage", [c.context for c in data.candidates])]


def tiny_beir(folder):
    corpus = {"d1": {"title": "Paris", "text": "capital of France"}, "d2": {"title": "", "text": "yellow bananas"},
              "d3": {"title": "Rome", "text": "capital of Italy"}, "d4": {"title": "", "text": "green apples"}}
    queries = {"q1": "capital France", "q2": "bananas", "q3": "capital"}
    qrels = {"q1": {"d1": 2, "d3": 0}, "q2": {"d2": 1}, "q3": {"d1": 1, "d3": 1, "d4": 0}}
    return BeirDataset(corpus=corpus, queries=queries, qrels=qrels, folder=folder)


def test_evaluate_beir_with_any_encoder(tmp_path):
    data = tiny_beir(tmp_path)
    encoder = BagOfWords()
    result = evaluate_beir(encoder, data, k_values=(1, 3), top_k=4)
    assert encoder.calls == ["query", "passage"]
    # brute force: every document scored for every query
    q = encoder.encode(list(data.queries.values()), "query")
    d = encoder.encode([document_text(doc) for doc in data.corpus.values()], "passage")
    run = {qid: {did: float(q[i] @ d[j]) for j, did in enumerate(data.corpus)} for i, qid in enumerate(data.queries)}
    expected = beir_metrics(data.qrels, run, (1, 3))
    assert {k: result[k] for k in expected} == expected


def test_eval_cli_runs_any_encoder(tmp_path, monkeypatch):
    """The CLI commands take the encoder from _build_encoder; one without identity() is fine."""
    import hybrid_fast.eval.cli as cli

    folder = tmp_path / "beir"
    (folder / "qrels").mkdir(parents=True)
    data = tiny_beir(folder)
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"_id": i, **doc}) + "\n" for i, doc in data.corpus.items()))
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": i, "text": t}) + "\n" for i, t in data.queries.items()))
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{g}\n" for q, docs in data.qrels.items() for d, g in docs.items()))
    monkeypatch.setattr(cli, "_build_encoder", lambda args: BagOfWords())
    out = tmp_path / "beir.json"
    assert cli.main(["beir", "--model", "bag-of-words", "--data", str(folder), "--output", str(out), "--no-progress"]) == 0
    result = json.loads(out.read_text())
    assert result["ndcg@10"] == evaluate_beir(BagOfWords(), data)["ndcg@10"]
    assert result["config"]["model"] == "bag-of-words" and "encoder" not in result["config"]
