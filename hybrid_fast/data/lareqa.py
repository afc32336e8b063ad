"""LAReQA-format retrieval data (XQuAD-R, MLQA-R): questions, candidate sentences, relevance.

File format (one JSON file per language, SQuAD v1.1 layout plus sentence boundaries)::

    {"data": [{"title": ..., "paragraphs": [{"context": str,
        "sentences": [str, ...], "sentence_breaks": [[start, end], ...],
        "qas": [{"id": str, "question": str, "answers": [{"answer_start": int, "text": str}]}]}]}]}

Definitions (docs/method.md section 4):

* Candidates of language L are the sentences of L's paragraphs, de-duplicated per
  (paragraph context, sentence position): a paragraph repeated in the file (MLQA-R repeats a
  paragraph per question) yields its sentences once.
* The sentence of a question in language L is the one whose break range contains the first
  answer's ``answer_start``: ``start <= answer_start < end``; when ``answer_start`` equals a
  sentence's ``end`` (and no later sentence starts there) that sentence is taken.
* A question's relevant candidates are its answer sentence in every loaded language, linked by
  the question id (XQuAD-R: 11 relevant candidates per question, one per language).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ._io import require
from ._squad_json import first_answer, iter_paragraphs, resolve_language_files
from .sources import XQUAD_R_LANGUAGES


@dataclass(frozen=True)
class LareqaQuestion:
    """One question in one language; ``qid`` is shared by its translations."""

    qid: str
    lang: str
    text: str


@dataclass(frozen=True)
class LareqaCandidate:
    """One candidate sentence of language ``lang``: sentence ``sentence_index`` of paragraph
    ``paragraph_index`` (index among the distinct paragraphs of that language, file order)."""

    lang: str
    paragraph_index: int
    sentence_index: int
    sentence: str
    context: str


@dataclass
class LareqaDataset:
    """Questions and candidates of several languages, with cross-language relevance.

    Attributes:
        languages: the languages loaded, in the order given.
        questions: every question, grouped by language (block per language, file order within).
        candidates: every candidate, grouped by language in the same language order.
        relevant: ``relevant[i]`` = sorted candidate indices relevant to ``questions[i]``
            (its answer sentence in each language where the question id exists).
    """

    languages: tuple[str, ...]
    questions: list[LareqaQuestion] = field(default_factory=list)
    candidates: list[LareqaCandidate] = field(default_factory=list)
    relevant: list[list[int]] = field(default_factory=list)

    def question_lang_ids(self) -> list[int]:
        """Index into ``languages`` of each question's language."""
        position = {lang: i for i, lang in enumerate(self.languages)}
        return [position[q.lang] for q in self.questions]

    def candidate_lang_ids(self) -> list[int]:
        """Index into ``languages`` of each candidate's language."""
        position = {lang: i for i, lang in enumerate(self.languages)}
        return [position[c.lang] for c in self.candidates]

    def summary(self) -> str:
        """One line: languages, questions, candidates, mean relevant per question."""
        mean_rel = sum(map(len, self.relevant)) / max(1, len(self.relevant))
        return (
            f"{len(self.languages)} languages, {len(self.questions)} questions, "
            f"{len(self.candidates)} candidates, {mean_rel:.2f} relevant per question"
        )


def _answer_sentence(breaks: list, answer_start: int) -> int | None:
    for i, (start, end) in enumerate(breaks):
        if start <= answer_start < end:
            return i
    for i, (start, end) in enumerate(breaks):
        if answer_start == end:
            return i
    return None


def parse_lareqa_file(
    path: Path, lang: str
) -> tuple[list[LareqaQuestion], list[LareqaCandidate], dict[str, int]]:
    """Parse one language file.

    Returns:
        ``(questions, candidates, answer_of)`` where ``answer_of[qid]`` is the index (into this
        file's ``candidates``) of the question's answer sentence.

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: malformed JSON or a malformed record (the message names the file and the
            record path, e.g. ``data[3].paragraphs[1].qas[0]``), an answer outside every sentence,
            or a question id repeated with a different answer sentence.
    """
    questions: list[LareqaQuestion] = []
    candidates: list[LareqaCandidate] = []
    answer_of: dict[str, int] = {}
    paragraph_index_of: dict[str, int] = {}
    first_candidate_of: dict[str, int] = {}
    for _article, paragraph, where, context in iter_paragraphs(path):
        sentences = require(paragraph, "sentences", list, where)
        breaks = require(paragraph, "sentence_breaks", list, where)
        if len(sentences) != len(breaks):
            raise ValueError(
                f"{where}: {len(sentences)} sentences but {len(breaks)} sentence_breaks"
            )
        for b, span in enumerate(breaks):
            if not (isinstance(span, list) and len(span) == 2 and all(isinstance(x, int) for x in span)):
                raise ValueError(f"{where}.sentence_breaks[{b}]: expected [start, end] ints, got {span!r}")
        if context not in paragraph_index_of:
            paragraph_index_of[context] = len(paragraph_index_of)
            first_candidate_of[context] = len(candidates)
            for s, sentence in enumerate(sentences):
                if not isinstance(sentence, str):
                    raise ValueError(f"{where}.sentences[{s}]: expected str, got {type(sentence).__name__}")
                candidates.append(
                    LareqaCandidate(lang, paragraph_index_of[context], s, sentence, context)
                )
        base = first_candidate_of[context]
        for k, qa in enumerate(require(paragraph, "qas", list, where)):
            qa_where = f"{where}.qas[{k}]"
            qid = require(qa, "id", str, qa_where)
            text = require(qa, "question", str, qa_where)
            _, start = first_answer(qa, qid, qa_where)
            sentence_index = _answer_sentence(breaks, start)
            if sentence_index is None:
                raise ValueError(
                    f"{qa_where}: answer_start {start} of question {qid!r} lies in no "
                    f"sentence_breaks range {breaks}"
                )
            if qid in answer_of:
                if answer_of[qid] != base + sentence_index:
                    raise ValueError(f"{qa_where}: question id {qid!r} repeated with another answer")
                continue
            answer_of[qid] = base + sentence_index
            questions.append(LareqaQuestion(qid, lang, text))
    return questions, candidates, answer_of


def load_lareqa(
    path: str | os.PathLike | None = None,
    languages: Sequence[str] | None = None,
    *,
    name: str = "xquad-r",
    file_pattern: str = "{lang}.json",
    download: bool | None = None,
) -> LareqaDataset:
    """Load a LAReQA dataset (XQuAD-R by default; MLQA-R with ``name="mlqa-r"`` and a path).

    Args:
        path: folder with one file per language (``file_pattern``); ``None`` = resolve through
            :func:`hybrid_fast.data.sources.resolve_data_dir` (env, cache, then download).
        languages: languages to load; default all 11 XQuAD-R languages.
        name: dataset name used for resolution and messages.
        file_pattern: file name per language, ``{lang}`` substituted.
        download: see :func:`resolve_data_dir`.

    Returns:
        A :class:`LareqaDataset`.

    Raises:
        ValueError: empty or repeated ``languages``, or malformed files (file and record named).
        FileNotFoundError: the folder or a language file is missing.
    """
    languages, files = resolve_language_files(
        name, path, languages, XQUAD_R_LANGUAGES, file_pattern, download
    )
    dataset = LareqaDataset(languages=languages)
    answers_per_lang: list[dict[str, int]] = []
    for lang, file_path in zip(languages, files):
        questions, candidates, answer_of = parse_lareqa_file(file_path, lang)
        offset = len(dataset.candidates)
        dataset.questions.extend(questions)
        dataset.candidates.extend(candidates)
        answers_per_lang.append({qid: offset + idx for qid, idx in answer_of.items()})
    for question in dataset.questions:
        dataset.relevant.append(
            sorted(answers[question.qid] for answers in answers_per_lang if question.qid in answers)
        )
    return dataset
