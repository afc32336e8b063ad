"""What the SQuAD-format loaders share: per-language file resolution and the SQuAD v1.1 walk.

Used by :mod:`.squad` (XQuAD, MLQA: ``load_squad_parallel``) and :mod:`.lareqa` (XQuAD-R,
MLQA-R: ``load_lareqa``), whose files are both one SQuAD v1.1 JSON document per language::

    {"data": [{"title": ..., "paragraphs": [{"context": str, ...,
        "qas": [{"id": str, "question": str, "answers": [{"answer_start": int, ...}]}]}]}]}

What each format does with a record (repeated question ids, paragraph numbering, answer text,
LAReQA's sentences) stays in its own module: those rules differ between the two.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator, Sequence

from ._io import read_json, require
from .sources import resolve_data_dir


def resolve_language_files(
    name: str,
    path: str | os.PathLike | None,
    languages: Sequence[str] | None,
    default_languages: tuple[str, ...],
    file_pattern: str,
    download: bool | None,
) -> tuple[tuple[str, ...], list[Path]]:
    """Check ``languages`` and find one file per language (``file_pattern`` with ``{lang}``).

    Returns:
        ``(languages, files)``: the languages as a tuple (``default_languages`` when None) and
        the path of each one's file, in the same order.

    Raises:
        ValueError: ``languages`` is empty or repeats a language.
        FileNotFoundError: from :func:`resolve_data_dir` (folder or a language file missing;
            the message names the folder, the missing files and the expected ones).
    """
    languages = tuple(languages) if languages is not None else default_languages
    if not languages:
        raise ValueError("languages: expected at least one language, got none")
    if len(set(languages)) != len(languages):
        raise ValueError(f"languages: expected distinct languages, got {list(languages)}")
    names = [file_pattern.format(lang=lang) for lang in languages]
    folder = resolve_data_dir(name, path, files=names, download=download)
    return languages, [folder / file_name for file_name in names]


def iter_paragraphs(path: Path) -> Iterator[tuple[Any, dict, str, str]]:
    """Read a SQuAD v1.1 file and yield ``(article, paragraph, where, context)`` per paragraph,
    in file order, after checking ``data``, each article's ``paragraphs`` and each paragraph's
    ``context`` (``where`` = ``"<file>: data[a].paragraphs[p]"``, for the caller's messages).

    Raises:
        FileNotFoundError / ValueError: from :func:`read_json` and :func:`require` (file and
            record path named).
    """
    document = read_json(path)
    articles = require(document, "data", list, f"{path}")
    for a, article in enumerate(articles):
        paragraphs = require(article, "paragraphs", list, f"{path}: data[{a}]")
        for p, paragraph in enumerate(paragraphs):
            where = f"{path}: data[{a}].paragraphs[{p}]"
            context = require(paragraph, "context", str, where)
            yield article, paragraph, where, context


def first_answer(qa: dict, qid: str, qa_where: str) -> tuple[dict, int]:
    """The first answer of question record ``qa`` and its ``answer_start``.

    Raises:
        ValueError: ``answers`` missing, not a list or empty, or the first answer without an
            int ``answer_start`` (message starts with ``qa_where``).
    """
    answers = require(qa, "answers", list, qa_where)
    if not answers:
        raise ValueError(f"{qa_where}: question {qid!r} has no answers")
    start = require(answers[0], "answer_start", int, f"{qa_where}.answers[0]")
    return answers[0], start
