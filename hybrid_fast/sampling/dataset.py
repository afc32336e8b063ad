"""Parallel training data indexed by :class:`PairKey`, the article split, and the collator.

:class:`ParallelQADataset` wraps ``{lang: [ParallelQA]}`` (from
:func:`hybrid_fast.data.load_squad_parallel`) restricted to the groups present in every training
language. ``dataset[PairKey(g, q_lang, p_lang, field)]`` is one example; :class:`PairCollator`
turns a list of examples into texts and group-id tensors for the loss.

False negatives: XQuAD has ~5 questions per paragraph, so two different examples of one batch can
share the same positive paragraph (in the same or another language). The *mask group* of an
example is therefore its paragraph (``paragraph_index``, identical across XQuAD's languages),
not its question id: the loss never treats the same paragraph as a negative.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import torch

from ..model import DEFAULT_PREFIXES
from .samplers import PairKey

if TYPE_CHECKING:
    from ..data.squad import ParallelQA


class ParallelQADataset:
    """Map-style dataset of parallel (question, passage) examples, keyed by :class:`PairKey`.

    Args:
        records: ``{lang: [ParallelQA]}``; translations share ``group_id``.
        languages: languages to use (default: all of ``records``).
        articles: keep only these article titles (e.g. the training split); default all.

    Attributes:
        languages, group_ids (question ids in the first language's order), articles (sorted
        titles kept), num_groups.

    Raises:
        ValueError: a language missing from ``records``, no group left after filtering, or a
            group whose paragraph index differs across languages (not parallel data).
    """

    def __init__(self, records: dict[str, list["ParallelQA"]], languages: Sequence[str] | None = None,
                 articles: Sequence[str] | None = None):
        languages = tuple(languages) if languages is not None else tuple(records)
        missing = [lang for lang in languages if lang not in records]
        if missing:
            raise ValueError(f"languages: {missing} not in the records (available: {sorted(records)})")
        keep = set(articles) if articles is not None else None
        by_lang = {lang: {r.group_id: r for r in records[lang]} for lang in languages}
        first = records[languages[0]]
        self.group_ids = [r.group_id for r in first
                          if (keep is None or r.article in keep) and all(r.group_id in by_lang[l] for l in languages)]
        if not self.group_ids:
            raise ValueError(f"articles: no example left for languages {list(languages)} and articles {articles!r}")
        self.languages = languages
        self._rows = {lang: [by_lang[lang][g] for g in self.group_ids] for lang in languages}
        self._mask = []
        for i, g in enumerate(self.group_ids):
            paragraphs = {self._rows[lang][i].paragraph_index for lang in languages}
            if len(paragraphs) != 1:
                raise ValueError(f"records: group {g!r} has paragraph indices {sorted(paragraphs)} across languages")
            self._mask.append(paragraphs.pop())
        self.articles = sorted({r.article for r in self._rows[languages[0]]})

    @property
    def num_groups(self) -> int:
        return len(self.group_ids)

    def __len__(self) -> int:
        return self.num_groups

    def __getitem__(self, key: PairKey) -> dict:
        """``{"query", "passage", "group", "mask_group", "q_kind", "p_kind"}`` for ``key``.

        For ``field="pair"`` the query is the question in ``q_lang`` and the passage the paragraph in
        ``p_lang``; for SimCSE keys (``"query"``/``"passage"``) both sides are that one text.

        Raises:
            KeyError: unknown language or group index.
        """
        group, q_lang, p_lang, field = key
        if q_lang not in self._rows or p_lang not in self._rows:
            raise KeyError(f"language {q_lang!r}/{p_lang!r} not in {list(self.languages)}")
        q_rec, p_rec = self._rows[q_lang][group], self._rows[p_lang][group]
        if field == "pair":
            query, passage, q_kind, p_kind = q_rec.question, p_rec.passage, "query", "passage"
        elif field in ("query", "passage"):
            text = q_rec.question if field == "query" else q_rec.passage
            query, passage, q_kind, p_kind = text, text, field, field
        else:
            raise KeyError(f"field {field!r}")
        return {"query": query, "passage": passage, "group": int(group), "mask_group": self._mask[group],
                "q_kind": q_kind, "p_kind": p_kind}

    def to_hf_dataset(self, *, query_prefix: str = "", passage_prefix: str = "", group_column: str | None = None):
        """A ``datasets.Dataset`` with one row per (group, q_lang, p_lang, field), columns
        ``anchor``/``positive`` (texts with the prefix of their kind, as :class:`PairCollator`
        adds them) and, with ``group_column``, the int64 mask group under that name; rows in
        :class:`IndexBatchSampler`'s order (for the sentence-transformers trainer:
        :mod:`hybrid_fast.integrations.sentence_transformers`)."""
        from datasets import Dataset

        from .samplers import FIELDS

        prefix = PairCollator(query_prefix, passage_prefix)
        anchors, positives, groups = [], [], []
        for g in range(self.num_groups):
            for q in self.languages:
                for p in self.languages:
                    for f in FIELDS:
                        query, passage = prefix.texts(self[PairKey(g, q, p, f)])
                        anchors.append(query)
                        positives.append(passage)
                        groups.append(self._mask[g])
        columns = {"anchor": anchors, "positive": positives}
        if group_column is not None:
            columns[group_column] = groups
        return Dataset.from_dict(columns)


def split_articles(articles: Sequence[str], dev: int, test: int, seed: int = 0) -> dict[str, list[str]]:
    """Split article titles into ``{"train", "dev", "test"}`` (sorted titles shuffled with ``seed``;
    the first ``test`` go to test, the next ``dev`` to dev, the rest to train; each list sorted).

    Raises:
        ValueError: ``dev``/``test`` negative or leaving no training article.
    """
    titles = sorted(set(articles))
    if dev < 0 or test < 0 or dev + test >= len(titles):
        raise ValueError(f"dev/test: expected non-negative counts leaving training articles out of "
                         f"{len(titles)}, got dev={dev}, test={test}")
    random.Random(seed).shuffle(titles)
    return {"train": sorted(titles[test + dev:]), "dev": sorted(titles[test:test + dev]), "test": sorted(titles[:test])}


@dataclass
class PairBatch:
    """A collated batch: texts per side (prefixed), and int64 mask-group ids ``[B]`` per side.

    ``queries[i]``'s positive is ``passages[i]`` (labels = arange(B)).
    """

    queries: list[str]
    passages: list[str]
    q_groups: torch.Tensor
    p_groups: torch.Tensor

    def __len__(self) -> int:
        return len(self.queries)


class PairCollator:
    """Examples (``ParallelQADataset`` items) -> :class:`PairBatch`, prefixes added per kind.

    Args:
        query_prefix / passage_prefix: prepended to texts of kind query / passage (docs/method.md:
            ``"Query: "`` / ``"Passage: "``).

    Raises:
        ValueError: an empty batch, or two examples with the same ``group`` in one batch.
    """

    def __init__(self, query_prefix: str = DEFAULT_PREFIXES["query"], passage_prefix: str = DEFAULT_PREFIXES["passage"]):
        self.prefix = {"query": query_prefix, "passage": passage_prefix}

    def __call__(self, examples: Sequence[dict]) -> PairBatch:
        if not examples:
            raise ValueError("examples: expected a non-empty batch")
        groups = [e["group"] for e in examples]
        if len(set(groups)) != len(groups):
            raise ValueError(f"examples: a group appears twice in one batch: {groups}")
        masks = torch.tensor([e["mask_group"] for e in examples], dtype=torch.int64)
        queries, passages = zip(*(self.texts(e) for e in examples))
        return PairBatch(queries=list(queries), passages=list(passages), q_groups=masks, p_groups=masks.clone())

    def texts(self, example: dict) -> tuple[str, str]:
        """``(query, passage)`` of one example with the prefixes of their kinds."""
        return (self.prefix[example["q_kind"]] + example["query"],
                self.prefix[example["p_kind"]] + example["passage"])
