"""Loaders: real shared files (skipped when absent) and tiny synthetic files for error paths."""

import json

import pytest

from hybrid_fast.data import (
    ParallelQA,
    group_ids_shared_by_all,
    load_beir,
    load_lareqa,
    load_squad_parallel,
    resolve_data_dir,
)


def write_lareqa(folder, lang, paragraphs):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{lang}.json").write_text(json.dumps({"data": [{"title": "T", "paragraphs": paragraphs}]}))


def paragraph(context, breaks, qas):
    sentences = [context[s:e] for s, e in breaks]
    return {"context": context, "sentences": sentences, "sentence_breaks": breaks, "qas": qas}


def qa(qid, start):
    return {"id": qid, "question": f"question {qid}?", "answers": [{"answer_start": start, "text": "x"}]}


def test_synthetic_lareqa_relevance_and_dedup(tmp_path):
    ctx = "Aaa bbb. Ccc ddd."
    breaks = [[0, 8], [9, 17]]
    # the same paragraph listed twice (MLQA-R style): sentences must be counted once
    write_lareqa(tmp_path, "en", [paragraph(ctx, breaks, [qa("q1", 9)]), paragraph(ctx, breaks, [qa("q2", 0)])])
    write_lareqa(tmp_path, "de", [paragraph("Xx. Yy zz.", [[0, 3], [4, 10]], [qa("q1", 4), qa("q2", 3)])])
    data = load_lareqa(tmp_path, ["en", "de"])
    assert len(data.candidates) == 4 and len(data.questions) == 4
    # candidates: en0 en1 de0 de1; q1 -> en sentence 1, de sentence 1; q2 -> en 0, de 0 (start == end of 0)
    assert data.relevant == [[1, 3], [0, 2], [1, 3], [0, 2]]
    assert data.question_lang_ids() == [0, 0, 1, 1]
    assert data.candidate_lang_ids() == [0, 0, 1, 1]


def test_lareqa_errors_name_file_and_record(tmp_path):
    write_lareqa(tmp_path, "en", [paragraph("Aaa.", [[0, 4]], [qa("q1", 40)])])
    with pytest.raises(ValueError, match=r"en\.json: data\[0\]\.paragraphs\[0\]\.qas\[0\]: answer_start 40"):
        load_lareqa(tmp_path, ["en"])
    (tmp_path / "en.json").write_text('{"data": [{"paragraphs": [')
    with pytest.raises(ValueError, match=r"en\.json:1:\d+: malformed or truncated JSON"):
        load_lareqa(tmp_path, ["en"])
    bad = paragraph("Aaa.", [[0, 4]], [qa("q1", 0)])
    del bad["sentences"]
    write_lareqa(tmp_path, "en", [bad])
    with pytest.raises(ValueError, match=r"paragraphs\[0\]: missing field 'sentences'"):
        load_lareqa(tmp_path, ["en"])
    with pytest.raises(FileNotFoundError, match="lacks"):
        load_lareqa(tmp_path, ["en", "xx"])
    with pytest.raises(ValueError, match="distinct"):
        load_lareqa(tmp_path, ["en", "en"])


def test_offline_without_path_says_where_to_put_files():
    with pytest.raises(FileNotFoundError, match=r"downloads are off.*--data"):
        load_lareqa(None, ["en"])
    with pytest.raises(FileNotFoundError, match="not found"):
        resolve_data_dir("xquad-r", "/nonexistent/folder")


def test_env_variable_locates_data(shared_data, monkeypatch):
    monkeypatch.setenv("HYBRID_FAST_DATA", str(shared_data))
    assert resolve_data_dir("xquad-r", files=["en.json"]) == shared_data / "xquad-r"


def test_beir_errors_name_file_and_line(tmp_path):
    (tmp_path / "qrels").mkdir()
    (tmp_path / "corpus.jsonl").write_text('{"_id": "d1", "text": "a"}\n{"_id": "d2", "text": \n')
    (tmp_path / "queries.jsonl").write_text('{"_id": "q1", "text": "a"}\n')
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    with pytest.raises(ValueError, match=r"corpus\.jsonl:2: malformed or truncated"):
        load_beir(tmp_path)
    (tmp_path / "corpus.jsonl").write_text('{"_id": "d1", "text": "a"}\n')
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\tgood\n")
    with pytest.raises(ValueError, match=r"test\.tsv:2: expected an integer grade"):
        load_beir(tmp_path)
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\n")
    with pytest.raises(ValueError, match=r"test\.tsv:2: expected 3 tab-separated fields"):
        load_beir(tmp_path)
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq9\td1\t1\n")
    with pytest.raises(ValueError, match="absent from queries.jsonl"):
        load_beir(tmp_path)
    with pytest.raises(ValueError, match="path= .* or name="):
        load_beir()


def test_real_xquad_r(shared_data):
    data = load_lareqa(shared_data / "xquad-r")
    assert data.languages == ("ar", "de", "el", "en", "es", "hi", "ru", "th", "tr", "vi", "zh")
    assert len(data.questions) == 11 * 1190
    assert 12_000 < len(data.candidates) < 14_000
    assert all(len(r) == 11 for r in data.relevant)
    en = data.languages.index("en")
    first_en = data.question_lang_ids().index(en)
    question = data.questions[first_en]
    en_sentence = next(data.candidates[i] for i in data.relevant[first_en] if data.candidates[i].lang == "en")
    assert question.qid == "56beb4343aeaaa14008c925b" and "308" in en_sentence.sentence


def test_real_xquad_parallel(shared_data):
    records = load_squad_parallel(shared_data / "xquad", ["en", "de", "ro"])
    assert {lang: len(r) for lang, r in records.items()} == {"en": 1190, "de": 1190, "ro": 1190}
    assert len(group_ids_shared_by_all(records)) == 1190
    first = records["de"][0]
    assert isinstance(first, ParallelQA) and first.group_id == records["en"][0].group_id
    assert first.article == "Super_Bowl_50"
    assert first.passage[first.answer_start:].startswith(first.answer_text)


def test_real_beir(shared_data):
    data = load_beir(shared_data / "beir" / "dbpedia-subset")
    assert len(data.corpus) == 5000 and len(data.queries) == len(data.qrels) == 40
    assert {g for q in data.qrels.values() for g in q.values()} == {0, 1, 2}


def write_squad(folder, lang, articles, pattern="xquad.{lang}.json"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / pattern.format(lang=lang)).write_text(json.dumps({"data": articles}))


def test_synthetic_squad_parallel_records(tmp_path):
    ctx = "Aaa bbb. Ccc ddd."
    # the same context twice: unlike LAReQA candidates, paragraph_index counts occurrences
    write_squad(tmp_path, "en", [{"title": "T", "paragraphs": [{"context": ctx, "qas": [qa("q1", 9)]},
                                                                {"context": ctx, "qas": [qa("q2", 0)]}]}])
    write_squad(tmp_path, "de", [{"paragraphs": [{"context": "Xx. Yy zz.", "qas": [qa("q2", 0), qa("q1", 4)]}]}])
    records = load_squad_parallel(tmp_path, ["en", "de"])
    assert list(records) == ["en", "de"]
    assert records["en"] == [
        ParallelQA("q1", "T", "en", "question q1?", ctx, 9, "x", 0),
        ParallelQA("q2", "T", "en", "question q2?", ctx, 0, "x", 1),
    ]
    assert [(r.group_id, r.article, r.paragraph_index) for r in records["de"]] == [("q2", "", 0), ("q1", "", 0)]
    assert group_ids_shared_by_all(records) == ["q1", "q2"]


def test_squad_parallel_errors_name_file_and_record(tmp_path):
    def load_with(qas, lang="en"):
        write_squad(tmp_path, lang, [{"title": "T", "paragraphs": [{"context": "Aaa.", "qas": qas}]}])
        return load_squad_parallel(tmp_path, [lang])

    with pytest.raises(ValueError, match=r"xquad\.en\.json: data\[0\]\.paragraphs\[0\]\.qas\[1\]: question id 'q1' repeated"):
        load_with([qa("q1", 0), qa("q1", 0)])
    with pytest.raises(ValueError, match=r"qas\[0\]: question 'q1' has no answers"):
        load_with([{"id": "q1", "question": "?", "answers": []}])
    with pytest.raises(ValueError, match=r"qas\[0\]\.answers\[0\]\.text: expected str, got int"):
        load_with([{"id": "q1", "question": "?", "answers": [{"answer_start": 0, "text": 3}]}])
    with pytest.raises(ValueError, match=r"qas\[0\]\.answers\[0\]: missing field 'answer_start'"):
        load_with([{"id": "q1", "question": "?", "answers": [{"text": "x"}]}])
    # answers are checked before the question text (error order is part of the contract)
    with pytest.raises(ValueError, match=r"qas\[0\]: question 'q1' has no answers"):
        load_with([{"id": "q1", "answers": []}])
    write_squad(tmp_path, "en", [{"title": "T", "paragraphs": [{"qas": []}]}])
    with pytest.raises(ValueError, match=r"xquad\.en\.json: data\[0\]\.paragraphs\[0\]: missing field 'context'"):
        load_squad_parallel(tmp_path, ["en"])
    (tmp_path / "xquad.en.json").write_text('{"data": [')
    with pytest.raises(ValueError, match=r"xquad\.en\.json:1:\d+: malformed or truncated JSON"):
        load_squad_parallel(tmp_path, ["en"])
    with pytest.raises(FileNotFoundError, match=r"lacks \['xquad\.xx\.json'\]"):
        load_squad_parallel(tmp_path, ["en", "xx"])
    with pytest.raises(ValueError, match="distinct"):
        load_squad_parallel(tmp_path, ["en", "en"])
    with pytest.raises(ValueError, match="at least one language"):
        load_squad_parallel(tmp_path, [])


def test_lareqa_answer_errors(tmp_path):
    write_lareqa(tmp_path, "en", [paragraph("Aaa.", [[0, 4]], [{"id": "q1", "question": "?", "answers": []}])])
    with pytest.raises(ValueError, match=r"en\.json: data\[0\]\.paragraphs\[0\]\.qas\[0\]: question 'q1' has no answers"):
        load_lareqa(tmp_path, ["en"])
    # the question text is checked before the answers in LAReQA files
    write_lareqa(tmp_path, "en", [paragraph("Aaa.", [[0, 4]], [{"id": "q1", "answers": []}])])
    with pytest.raises(ValueError, match=r"qas\[0\]: missing field 'question'"):
        load_lareqa(tmp_path, ["en"])
    # a repeated id is accepted with the same answer sentence (MLQA-R), rejected with another
    ctx, breaks = "Aaa bbb. Ccc ddd.", [[0, 8], [9, 17]]
    write_lareqa(tmp_path, "en", [paragraph(ctx, breaks, [qa("q1", 0)]), paragraph(ctx, breaks, [qa("q1", 1)])])
    assert len(load_lareqa(tmp_path, ["en"]).questions) == 1
    write_lareqa(tmp_path, "en", [paragraph(ctx, breaks, [qa("q1", 0)]), paragraph(ctx, breaks, [qa("q1", 9)])])
    with pytest.raises(ValueError, match=r"paragraphs\[1\]\.qas\[0\]: question id 'q1' repeated with another answer"):
        load_lareqa(tmp_path, ["en"])
    with pytest.raises(ValueError, match="at least one language"):
        load_lareqa(tmp_path, [])
