"""SQuAD-format parallel QA (XQuAD, MLQA, translated SQuAD) as (question, passage) records.

Each language is one SQuAD v1.1 JSON file (``{"data": [{"title", "paragraphs": [{"context",
"qas": [{"id", "question", "answers": [{"answer_start", "text"}]}]}]}]}``). Translations of a
question share its ``id``; that id is the record's ``group_id`` (the key the training code uses
to keep translations of one example from being negatives of each other, docs/method.md 1).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ._io import require
from ._squad_json import first_answer, iter_paragraphs, resolve_language_files
from .sources import XQUAD_LANGUAGES


@dataclass(frozen=True)
class ParallelQA:
    """One (question, passage) pair in one language.

    Attributes:
        group_id: question id shared by all translations of this example.
        article: article title (English title in XQuAD for every language), for splits by article.
        lang: language code.
        question: question text.
        passage: the paragraph (``context``) that answers it.
        answer_start: character offset of the first answer in ``passage``.
        answer_text: text of the first answer.
        paragraph_index: index of the paragraph among the file's paragraphs (file order).
    """

    group_id: str
    article: str
    lang: str
    question: str
    passage: str
    answer_start: int
    answer_text: str
    paragraph_index: int


def parse_squad_file(path: Path, lang: str) -> list[ParallelQA]:
    """Parse one SQuAD v1.1 file into :class:`ParallelQA` records (file order).

    Raises:
        FileNotFoundError: missing file.
        ValueError: malformed JSON or record (file and record path named), a question without
            answers, or a repeated question id.
    """
    records: list[ParallelQA] = []
    seen: set[str] = set()
    # paragraph_index counts paragraphs as listed (a repeated context gets a new index),
    # unlike LAReQA candidates, which are de-duplicated by context
    for paragraph_index, (article, paragraph, where, context) in enumerate(iter_paragraphs(path)):
        title = article.get("title", "") if isinstance(article, dict) else ""
        for k, qa in enumerate(require(paragraph, "qas", list, where)):
            qa_where = f"{where}.qas[{k}]"
            qid = require(qa, "id", str, qa_where)
            if qid in seen:
                raise ValueError(f"{qa_where}: question id {qid!r} repeated")
            seen.add(qid)
            answer, start = first_answer(qa, qid, qa_where)
            text = require(answer, "text", str, f"{qa_where}.answers[0]")
            records.append(
                ParallelQA(
                    group_id=qid,
                    article=str(title),
                    lang=lang,
                    question=require(qa, "question", str, qa_where),
                    passage=context,
                    answer_start=start,
                    answer_text=text,
                    paragraph_index=paragraph_index,
                )
            )
    return records


def load_squad_parallel(
    path: str | os.PathLike | None = None,
    languages: Sequence[str] | None = None,
    *,
    name: str = "xquad",
    file_pattern: str = "xquad.{lang}.json",
    download: bool | None = None,
) -> dict[str, list[ParallelQA]]:
    """Load parallel SQuAD-format files, one per language.

    Args:
        path: folder with the files; ``None`` = resolve via :func:`resolve_data_dir`.
        languages: languages to load; default the 12 XQuAD languages.
        name: dataset name for resolution and messages (``"xquad"`` downloads from GitHub).
        file_pattern: file name per language, ``{lang}`` substituted (MLQA:
            e.g. ``"dev-context-{lang}-question-{lang}.json"``).
        download: see :func:`resolve_data_dir`.

    Returns:
        ``{lang: [ParallelQA, ...]}`` in file order; records with equal ``group_id`` across
        languages are translations of each other.

    Raises:
        ValueError: empty/repeated ``languages`` or malformed files. FileNotFoundError: missing files.
    """
    languages, files = resolve_language_files(name, path, languages, XQUAD_LANGUAGES, file_pattern, download)
    return {lang: parse_squad_file(file_path, lang) for lang, file_path in zip(languages, files)}


def group_ids_shared_by_all(records: dict[str, list[ParallelQA]]) -> list[str]:
    """Group ids present in every language of ``records``, in the first language's order."""
    if not records:
        return []
    langs = list(records)
    common = set.intersection(*({r.group_id for r in records[lang]} for lang in langs))
    return [r.group_id for r in records[langs[0]] if r.group_id in common]


def load_squad_parallel_hf(
    languages: Sequence[str],
    *,
    dataset: str = "google/xquad",
    config_pattern: str = "xquad.{lang}",
    split: str = "validation",
) -> dict[str, list[ParallelQA]]:
    """Load a Hugging Face copy of a SQuAD-format parallel set with ``datasets.load_dataset``
    (downloaded and cached by ``datasets``; needs the network the first time).

    Rows need ``id``, ``context``, ``question``, ``answers`` (``{"text": [...], "answer_start":
    [...]}``) and optionally ``title`` (``article`` is ``""`` without it; the Hub's
    ``google/xquad`` has no title, so use the GitHub files when splitting by article).
    ``paragraph_index`` numbers distinct contexts in row order.

    Raises:
        ValueError: a row without an answer (names dataset, config and row).
        Whatever ``datasets.load_dataset`` raises when offline or the name is unknown.
    """
    from datasets import load_dataset

    out: dict[str, list[ParallelQA]] = {}
    for lang in languages:
        config = config_pattern.format(lang=lang)
        rows = load_dataset(dataset, config, split=split)
        paragraph_of: dict[str, int] = {}
        records = []
        for i, row in enumerate(rows):
            answers = row["answers"]
            if not answers["text"]:
                raise ValueError(f"{dataset}/{config}[{split}] row {i}: question {row['id']!r} has no answers")
            paragraph_of.setdefault(row["context"], len(paragraph_of))
            records.append(ParallelQA(
                group_id=str(row["id"]), article=str(row.get("title", "") or ""), lang=lang,
                question=row["question"], passage=row["context"],
                answer_start=int(answers["answer_start"][0]), answer_text=answers["text"][0],
                paragraph_index=paragraph_of[row["context"]],
            ))
        out[lang] = records
    return out
