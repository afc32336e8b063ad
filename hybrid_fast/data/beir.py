"""BEIR-format retrieval folders: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/{split}.tsv``.

* ``corpus.jsonl``: one object per line with ``_id`` (str), ``text`` (str), optional ``title``.
* ``queries.jsonl``: one object per line with ``_id`` and ``text``.
* ``qrels/{split}.tsv``: header ``query-id<TAB>corpus-id<TAB>score``; ``score`` is an integer
  relevance grade (graded: 0, 1, 2, ...). Grade 0 rows are kept (judged non-relevant).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ._io import iter_jsonl, iter_tsv, require
from .sources import resolve_data_dir


@dataclass
class BeirDataset:
    """A BEIR folder in memory.

    Attributes:
        corpus: ``{doc_id: {"title": str, "text": str}}`` in file order.
        queries: ``{query_id: text}``, only queries that appear in the qrels, in file order.
        qrels: ``{query_id: {doc_id: grade}}``.
        folder: where it was read from.
    """

    corpus: dict[str, dict[str, str]]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    folder: Path

    def summary(self) -> str:
        judged = sum(len(v) for v in self.qrels.values())
        return f"{len(self.queries)} queries, {len(self.corpus)} documents, {judged} judgements"


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
    """Read a BEIR qrels TSV into ``{query_id: {doc_id: grade}}``.

    Raises:
        FileNotFoundError: missing file. ValueError: bad header, wrong field count or a
            non-integer grade (file and line named).
    """
    qrels: dict[str, dict[str, int]] = {}
    for line_number, (qid, docid, grade) in iter_tsv(path, ("query-id", "corpus-id", "score")):
        try:
            value = int(grade)
        except ValueError:
            raise ValueError(f"{path}:{line_number}: expected an integer grade, got {grade!r}") from None
        qrels.setdefault(qid, {})[docid] = value
    return qrels


def load_beir(
    path: str | os.PathLike | None = None,
    *,
    name: str | None = None,
    split: str = "test",
    download: bool | None = None,
) -> BeirDataset:
    """Load a BEIR-format folder.

    Args:
        path: the folder; or ``None`` with ``name`` (e.g. ``"scifact"``) to use the env/cache or
            download ``beir/<name>``.
        split: qrels split (``qrels/{split}.tsv``).

    Raises:
        ValueError: neither ``path`` nor ``name``; malformed files (file and line named); qrels
            naming a query absent from ``queries.jsonl``.
        FileNotFoundError: missing folder or file.
    """
    if path is None and name is None:
        raise ValueError("load_beir: expected path= (a BEIR folder) or name= (e.g. 'scifact'), got neither")
    files = ["corpus.jsonl", "queries.jsonl", f"qrels/{split}.tsv"]
    folder = resolve_data_dir(f"beir/{name}" if name else "beir", path, files=files, download=download)
    corpus = _read_id_records(folder / "corpus.jsonl", with_title=True)
    all_queries = {k: v["text"] for k, v in _read_id_records(folder / "queries.jsonl", with_title=False).items()}
    qrels = read_qrels(folder / "qrels" / f"{split}.tsv")
    unknown = [q for q in qrels if q not in all_queries]
    if unknown:
        raise ValueError(
            f"{folder / 'qrels' / f'{split}.tsv'}: {len(unknown)} query ids absent from "
            f"queries.jsonl, e.g. {unknown[:3]}"
        )
    queries = {q: t for q, t in all_queries.items() if q in qrels}
    return BeirDataset(corpus=corpus, queries=queries, qrels=qrels, folder=folder)
