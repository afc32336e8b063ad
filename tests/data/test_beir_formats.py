"""BEIR folders as people ship them: qrels with or without a header, TREC 4-column qrels, corpora
without titles, qrels naming unknown queries/documents (dropped and counted, or --strict)."""
from __future__ import annotations

import json
import logging

import pytest

from hybrid_fast.data import load_beir, read_qrels

CORPUS = {"d1": {"title": "Paris", "text": "capital of France"}, "d2": {"text": "yellow bananas"},
          "d3": {"title": None, "text": "capital of Italy Rome"}, "d4": {"text": "green apples"}}
QUERIES = {"q1": "capital France", "q2": "bananas", "q3": "capital"}
QRELS = [("q1", "d1", 2), ("q1", "d3", 0), ("q2", "d2", 1), ("q3", "d1", 1), ("q3", "d3", 1), ("q3", "d4", 0)]
EXPECTED = {"q1": {"d1": 2, "d3": 0}, "q2": {"d2": 1}, "q3": {"d1": 1, "d3": 1, "d4": 0}}


def write_folder(folder, qrels_text, corpus=CORPUS, queries=QUERIES):
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"_id": i, **d}) + "\n" for i, d in corpus.items()))
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": i, "text": t}) + "\n" for i, t in queries.items()))
    (folder / "qrels" / "test.tsv").write_text(qrels_text)
    return folder


def beir_rows(rows=QRELS):
    return "".join(f"{q}\t{d}\t{g}\n" for q, d, g in rows)


@pytest.mark.parametrize("text, choice", [
    ("query-id\tcorpus-id\tscore\n" + beir_rows(), "header on line 1, BEIR 3-column rows (tab-separated)"),
    (beir_rows(), "no header line, BEIR 3-column rows (tab-separated)"),
    ("\n" + beir_rows().replace("\n", "\r\n"), "no header line, BEIR 3-column rows (tab-separated)"),
    ("".join(f"{q} 0 {d} {g}\n" for q, d, g in QRELS), "no header line, TREC 4-column rows (whitespace-separated)"),
    ("".join(f"{q}\tQ0\t{d}\t{g}\n" for q, d, g in QRELS), "no header line, TREC 4-column rows (tab-separated)"),
])
def test_qrels_formats_are_detected_and_logged(tmp_path, caplog, text, choice):
    path = tmp_path / "qrels.tsv"
    path.write_text(text)
    with caplog.at_level(logging.INFO, logger="hybrid_fast.data.beir"):
        assert read_qrels(path) == EXPECTED
    assert choice in caplog.text


def test_malformed_qrels_name_file_and_line(tmp_path):
    path = tmp_path / "qrels.tsv"
    for text, message in [
        ("q1\td1\t1\nq2\td2\n", r"qrels\.tsv:2: expected 3 tab-separated fields"),
        ("q1 0 d1 1\nq2 0 d2 1 7\n", r"qrels\.tsv:2: expected 4 whitespace-separated fields"),
        ("q1\td1\t1\tx\ty\n", r"qrels\.tsv:1: expected 3 tab-separated fields .* or 4"),
        ("query-id\tcorpus-id\tgrade\nq1\td1\t1\n", r"qrels\.tsv:1: expected an integer grade, got 'grade' \(a header"),
        ("q1\td1\t1\nq2\td2\t1.5\n", r"qrels\.tsv:2: expected an integer grade, got '1.5'"),
        ("query-id\tcorpus-id\tscore\n", r"no qrels rows \(empty file after the header\)"),
        ("q1\td1\t1\nquery-id\tcorpus-id\tscore\n", r"qrels\.tsv:2: expected an integer grade, got 'score'"),
    ]:
        path.write_text(text)
        with pytest.raises(ValueError, match=message):
            read_qrels(path)


def test_corpus_without_titles(tmp_path):
    data = load_beir(write_folder(tmp_path, beir_rows()))
    assert data.corpus["d2"] == {"title": "", "text": "yellow bananas"} and data.corpus["d3"]["title"] == ""
    assert data.corpus["d1"]["title"] == "Paris" and data.qrels == EXPECTED


def test_unknown_queries_and_documents_are_dropped_and_counted(tmp_path, caplog):
    rows = QRELS + [("q9", "d1", 1), ("q8", "d2", 1), ("q2", "d99", 1), ("q4", "d98", 1)]
    queries = {**QUERIES, "q4": "a query whose only judged document is unknown"}
    folder = write_folder(tmp_path, beir_rows(rows), queries=queries)
    with caplog.at_level(logging.WARNING, logger="hybrid_fast.data.beir"):
        data = load_beir(folder)
    assert data.qrels == EXPECTED and list(data.queries) == ["q1", "q2", "q3"]
    assert data.dropped == {"queries_absent": 2, "judgements_unknown_documents": 2,
                            "queries_without_known_documents": 1}
    assert "dropped 2 query ids absent from queries.jsonl" in caplog.text
    assert "dropped 2 judgements naming documents absent from corpus.jsonl" in caplog.text
    assert "dropped: 2 queries absent" in data.summary()
    with pytest.raises(ValueError, match="2 query ids absent from queries.jsonl"):
        load_beir(folder, strict=True)
    write_folder(tmp_path, beir_rows(QRELS + [("q2", "d99", 1)]))
    with pytest.raises(ValueError, match="1 judgements name documents absent from corpus.jsonl"):
        load_beir(folder, strict=True)
    assert load_beir(write_folder(tmp_path, beir_rows()), strict=True).dropped == {
        "queries_absent": 0, "judgements_unknown_documents": 0, "queries_without_known_documents": 0}


def test_eval_cli_same_figures_with_and_without_header(tmp_path, capsys):
    """``hybrid-fast eval beir --data DIR`` with the offline MiniLM: identical figures for the
    folder with and without the qrels header; the report counts the evaluated queries and what
    was dropped; --strict keeps the error."""
    pytest.importorskip("transformers")
    from hybrid_fast.cli import main
    from hybrid_fast.encoder import offline_minilm_path

    try:
        offline_minilm_path()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    extra = [("q9", "d1", 1)]  # a published subset's query that queries.jsonl lacks
    results = []
    for name, text in (("with", "query-id\tcorpus-id\tscore\n" + beir_rows(QRELS + extra)),
                       ("without", beir_rows(QRELS + extra))):
        folder = write_folder(tmp_path / name, text)
        out = tmp_path / f"{name}.json"
        assert main(["eval", "beir", "--model", "minilm-offline", "--data", str(folder), "--output", str(out),
                     "--no-progress", "--device", "cpu"]) == 0
        results.append(json.loads(out.read_text()))
        assert "3 queries evaluated, 4 documents (qrels dropped: 1 queries absent)" in capsys.readouterr().out
    with_header, without = results
    figures = [k for k in with_header if k not in ("timing", "config")]
    assert "ndcg@10" in figures and {k: with_header[k] for k in figures} == {k: without[k] for k in figures}
    assert with_header["data"] == {"queries": 3, "documents": 4, "dropped": {
        "queries_absent": 1, "judgements_unknown_documents": 0, "queries_without_known_documents": 0}}
    assert main(["eval", "beir", "--model", "minilm-offline", "--data", str(tmp_path / "without"), "--strict",
                 "--no-progress", "--device", "cpu"]) != 0
    assert "absent from queries.jsonl" in capsys.readouterr().err


def test_preflight_checks_the_files_the_loader_reads(tmp_path):
    """preflight's BEIR check is the loader's: a folder with qrels for another split passes for
    that split (and loads), fails for 'test' naming the qrels file the loader would read."""
    from hybrid_fast.preflight import UsageError, check_beir_dirs

    folder = write_folder(tmp_path / "dev-only", beir_rows())
    (folder / "qrels" / "test.tsv").rename(folder / "qrels" / "dev.tsv")
    check_beir_dirs([folder], "--beir", split="dev")
    assert load_beir(folder, split="dev").qrels == EXPECTED
    with pytest.raises(UsageError, match=r"--beir: expected a BEIR folder \(corpus.jsonl, queries.jsonl, "
                                         r"qrels/test.tsv\), got .*dev-only.* \(missing \['qrels/test.tsv'\]\)"):
        check_beir_dirs([folder], "--beir")
    with pytest.raises(FileNotFoundError, match="qrels/test.tsv"):
        load_beir(folder)
    with pytest.raises(UsageError, match=r"\(not a folder\)"):
        check_beir_dirs([tmp_path / "absent"], "--beir", split="dev")
