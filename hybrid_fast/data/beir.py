"""BEIR-format retrieval folders: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/{split}.tsv``.

* ``corpus.jsonl``: one object per line with ``_id`` (str), ``text`` (str), optional ``title``
  (missing or null = no title).
* ``queries.jsonl``: one object per line with ``_id`` and ``text``.
* ``qrels/{split}.tsv``: ``query-id<TAB>corpus-id<TAB>score`` rows, with or without that header
  line (detected, not assumed), or TREC qrels ``qid iteration docid grade`` (4 columns, tab or
  whitespace separated; the iteration column is ignored). The grade is an integer relevance
  grade (graded: 0, 1, 2, ...). Grade 0 rows are kept (judged non-relevant).

Published subsets often judge queries missing from ``queries.jsonl`` or documents missing from
``corpus.jsonl``: :func:`load_beir` drops those judgements (and queries left without any) and
records the counts in :attr:`BeirDataset.dropped` (logged); ``strict=True`` raises instead.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ._io import iter_jsonl, iter_lines, require
from .sources import missing_files, resolve_data_dir

log = logging.getLogger(__name__)

QRELS_HEADER = ("query-id", "corpus-id", "score")


def beir_files(split: str = "test") -> list[str]:
    """The files a BEIR folder holds for ``split`` (relative paths), as :func:`load_beir` reads them."""
    return ["corpus.jsonl", "queries.jsonl", f"qrels/{split}.tsv"]


def missing_beir_files(folder: str | os.PathLike, split: str = "test") -> list[str] | None:
    """The files of :func:`beir_files` that ``folder`` lacks (``[]``: a complete BEIR folder;
    None: ``folder`` is not a folder). The check :func:`load_beir` makes, for a caller that checks
    before any work (:func:`hybrid_fast.preflight.check_beir_dirs`)."""
    folder = Path(folder).expanduser()
    return missing_files(folder, beir_files(split)) if folder.is_dir() else None


@dataclass
class BeirDataset:
    """A BEIR folder in memory.

    Attributes:
        corpus: ``{doc_id: {"title": str, "text": str}}`` in file order.
        queries: ``{query_id: text}``, only queries that appear in the qrels, in file order.
        qrels: ``{query_id: {doc_id: grade}}``.
        folder: where it was read from.
        dropped: what :func:`load_beir` left out of the qrels file: ``{"queries_absent"}`` (query
            ids missing from queries.jsonl), ``"judgements_unknown_documents"`` (rows naming a
            document missing from corpus.jsonl), ``"queries_without_known_documents"`` (queries
            whose every judged document is unknown); all 0 when nothing was dropped.
    """

    corpus: dict[str, dict[str, str]]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    folder: Path
    dropped: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        judged = sum(len(v) for v in self.qrels.values())
        text = f"{len(self.queries)} queries, {len(self.corpus)} documents, {judged} judgements"
        left_out = ", ".join(f"{n} {what.replace('_', ' ')}" for what, n in self.dropped.items() if n)
        return f"{text} (dropped: {left_out})" if left_out else text


def _read_id_records(path: Path, with_title: bool) -> dict[str, dict[str, str]]:
    records: dict[str, dict[str, str]] = {}
    for line_number, obj in iter_jsonl(path):
        where = f"{path}:{line_number}"
        raw_id = require(obj, "_id", (str, int), where)
        text = require(obj, "text", str, where)
        title = obj.get("title") or ""
        if with_title and not isinstance(title, str):
            raise ValueError(f"{where}.title: expected str, got {type(title).__name__}")
        doc_id = str(raw_id)
        if doc_id in records:
            raise ValueError(f"{where}: repeated _id {doc_id!r}")
        records[doc_id] = {"title": title, "text": text}
    return records


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """Read a qrels file into ``{query_id: {doc_id: grade}}``: BEIR rows (``query-id corpus-id
    score``, the header line optional) or TREC rows (``qid iteration docid grade``).

    Format detection (logged at INFO): the first line is the header when its fields are
    ``query-id corpus-id score``; the row format (3 or 4 columns) is that of the first data row and
    every row must follow it. Rows are split on tabs when the first data row has one, else on runs
    of whitespace (TREC files are often space-separated).

    Raises:
        FileNotFoundError: missing file. ValueError naming file and line: an empty file, a row with
            another field count than the first, a column count other than 3 or 4, a non-integer
            grade (which also catches a misspelt header).
    """
    path = Path(path)
    qrels: dict[str, dict[str, int]] = {}
    header, split, width = None, None, None
    for line_number, line in iter_lines(path, "qrels TSV"):
        if width is None and header is None and tuple(f.lower() for f in line.split()) == QRELS_HEADER:
            header = line_number  # only the first line can be the header
            continue
        if width is None:
            split = "\t" if "\t" in line else None
        fields = [f.strip() for f in (line.split("\t") if split else line.split())]
        if width is None:
            width = len(fields)
            if width not in (3, 4):
                raise ValueError(f"{path}:{line_number}: expected 3 {'tab' if split else 'whitespace'}-separated "
                                 f"fields (query-id corpus-id score) or 4 (TREC: qid iteration docid grade), got "
                                 f"{len(fields)}: {fields!r}")
            log.info("qrels %s: %s, %s rows (%s-separated)", path,
                     f"header on line {header}" if header else "no header line",
                     "BEIR 3-column" if width == 3 else "TREC 4-column", "tab" if split else "whitespace")
        if len(fields) != width:
            raise ValueError(f"{path}:{line_number}: expected {width} {'tab' if split else 'whitespace'}-separated "
                             f"fields (as the first row), got {len(fields)}: {fields!r}")
        qid, docid, grade = (fields[0], fields[1], fields[2]) if width == 3 else (fields[0], fields[2], fields[3])
        if not re.fullmatch(r"[+-]?\d+", grade):
            hint = f" (a header must read {' '.join(QRELS_HEADER)!r})" if line_number == 1 else ""
            raise ValueError(f"{path}:{line_number}: expected an integer grade, got {grade!r}{hint}")
        qrels.setdefault(qid, {})[docid] = int(grade)
    if width is None:
        raise ValueError(f"{path}: no qrels rows (empty file{' after the header' if header else ''})")
    return qrels


def _known_only(qrels: dict[str, dict[str, int]], queries: dict, corpus: dict, where: Path,
                strict: bool) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
    """The judgements of known queries on known documents, and the counts of what was dropped
    (see :attr:`BeirDataset.dropped`). ``strict``: any unknown id raises ValueError instead."""
    absent = [q for q in qrels if q not in queries]
    unknown_docs = [(q, d) for q in qrels if q in queries for d in qrels[q] if d not in corpus]
    if strict and absent:
        raise ValueError(f"{where}: {len(absent)} query ids absent from queries.jsonl, e.g. {absent[:3]} "
                         "(without --strict / strict=True they are dropped and counted)")
    if strict and unknown_docs:
        raise ValueError(f"{where}: {len(unknown_docs)} judgements name documents absent from corpus.jsonl, e.g. "
                         f"{[d for _, d in unknown_docs[:3]]} (without --strict / strict=True they are dropped "
                         "and counted)")
    kept = {q: {d: g for d, g in docs.items() if d in corpus} for q, docs in qrels.items() if q in queries}
    emptied = [q for q, docs in kept.items() if not docs]
    for q in emptied:
        del kept[q]
    dropped = {"queries_absent": len(absent), "judgements_unknown_documents": len(unknown_docs),
               "queries_without_known_documents": len(emptied)}
    if absent:
        log.warning("%s: dropped %d query ids absent from queries.jsonl (e.g. %s)", where, len(absent), absent[:3])
    if unknown_docs:
        log.warning("%s: dropped %d judgements naming documents absent from corpus.jsonl (e.g. %s); %d queries "
                    "left without judgements dropped too", where, len(unknown_docs),
                    [d for _, d in unknown_docs[:3]], len(emptied))
    return kept, dropped


def load_beir(
    path: str | os.PathLike | None = None,
    *,
    name: str | None = None,
    split: str = "test",
    download: bool | None = None,
    strict: bool = False,
) -> BeirDataset:
    """Load a BEIR-format folder.

    Args:
        path: the folder; or ``None`` with ``name`` (e.g. ``"scifact"``) to use the env/cache or
            download ``beir/<name>``.
        split: qrels split (``qrels/{split}.tsv``; formats: :func:`read_qrels`).
        strict: raise on qrels naming queries absent from ``queries.jsonl`` or documents absent
            from ``corpus.jsonl``; default: drop them, count them in ``dropped`` and log it.

    Raises:
        ValueError: neither ``path`` nor ``name``; malformed files (file and line named); with
            ``strict``, unknown query or document ids in the qrels; no judged query left.
        FileNotFoundError: missing folder or file.
    """
    if path is None and name is None:
        raise ValueError("load_beir: expected path= (a BEIR folder) or name= (e.g. 'scifact'), got neither")
    folder = resolve_data_dir(f"beir/{name}" if name else "beir", path, files=beir_files(split), download=download)
    corpus = _read_id_records(folder / "corpus.jsonl", with_title=True)
    all_queries = {k: v["text"] for k, v in _read_id_records(folder / "queries.jsonl", with_title=False).items()}
    qrels_path = folder / "qrels" / f"{split}.tsv"
    qrels, dropped = _known_only(read_qrels(qrels_path), all_queries, corpus, qrels_path, strict)
    if not qrels:
        raise ValueError(f"{qrels_path}: no judgement left to evaluate: {dropped['queries_absent']} query ids absent "
                         f"from queries.jsonl, {dropped['judgements_unknown_documents']} judgements naming "
                         "documents absent from corpus.jsonl")
    queries = {q: t for q, t in all_queries.items() if q in qrels}
    return BeirDataset(corpus=corpus, queries=queries, qrels=qrels, folder=folder, dropped=dropped)
