"""LAReQA-style evaluation (XQuAD-R, MLQA-R): mono, cross and multilingual mAP, R@k and
language bias (rank distance). Definitions: :mod:`hybrid_fast.eval.metrics` and docs/evaluation.md.

Settings, for languages L (11 on XQuAD-R), ranking candidates by inner product (ties: lower
candidate index first):

* mono (X, X): queries in X ranked against the candidates of X; mAP, R@1 and nDCG@10 (binary
  relevance, BEIR's definition) per X; ``mono`` = mean over X.
* cross (X, Y), Y != X: queries in X against the candidates of Y; relevant = the answer sentence
  in Y. ``cross`` = mean over X of (mean over Y != X), i.e. macro per query language then
  overall (110 settings on XQuAD-R).
* multi: queries in X against the pool of all languages' candidates (relevant: one per
  language); mAP and R@10 per X; ``multi`` = mean over X.
* rank distance: in the multi setting, per query max - min rank of its relevant candidates;
  mean per query language; macro mean over languages.

A query with no relevant candidate in a setting (possible on MLQA-R) is left out of that
setting's mean.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np
import torch

from .metrics import (
    average_precision_from_ranks,
    nanmean_or_nan,
    ndcg_at_k_from_ranks,
    rank_distance_from_ranks,
    recall_at_k_from_ranks,
)
from .ranking import count_outranking_per_group

if TYPE_CHECKING:
    from ..data.lareqa import LareqaDataset
    from .protocol import TextEncoder


#: The per-question values ``lareqa_scores_from_embeddings(..., per_query=True)`` returns.
PER_QUERY_KEYS = ("mono_map", "cross_map", "multi_map", "mono_ndcg@10", "rank_distance")


def relevant_matrix(relevant: list[list[int]]) -> torch.Tensor:
    """Pad per-question relevant lists into int64 ``[Q, R_max]`` with -1."""
    width = max((len(r) for r in relevant), default=0)
    out = torch.full((len(relevant), max(width, 1)), -1, dtype=torch.int64)
    for i, items in enumerate(relevant):
        out[i, : len(items)] = torch.tensor(items, dtype=torch.int64)
    return out


def lareqa_scores_from_embeddings(
    question_embeddings: torch.Tensor,
    candidate_embeddings: torch.Tensor,
    relevant: list[list[int]],
    question_lang: list[int],
    candidate_lang: list[int],
    languages: list[str] | tuple[str, ...],
    *,
    chunk_size: int = 256,
    process_group=None,
    per_query: bool = False,
) -> dict | None:
    """All LAReQA figures from embeddings.

    Args:
        question_embeddings: ``[Q, d]``; candidate_embeddings: ``[N, d]`` (same dtype).
        relevant: per question, candidate indices of its relevant candidates.
        question_lang / candidate_lang: language index (into ``languages``) per row.
        languages: language codes.
        chunk_size: queries per ranking chunk.
        per_query: also return ``"per_query"``: each question's own value (question order) of
            ``mono_map``, ``cross_map`` (its AP mean over the other languages' settings),
            ``multi_map``, ``mono_ndcg@10`` and ``rank_distance``; their per-language means are
            the figures above (what a paired bootstrap over queries resamples:
            :mod:`hybrid_fast.eval.stats`).
        process_group: under an initialised ``torch.distributed`` group, a collective: every
            rank passes the full embeddings and ranks one contiguous shard of the questions;
            the counts are gathered and rank 0 returns the figures (others None). Exact: the
            same per-question counts as one process.

    Returns:
        ``{"mono": {"map", "r@1", "ndcg@10"}, "cross": {"map", "r@1"}, "multi": {"map", "r@10"},
        "rank_distance": float, "per_language": {lang: {...}}, "cross_matrix": {"languages",
        "map": [[...]], "r@1": [[...]]}}``; ``cross_matrix[...][x][y]`` = queries in x,
        candidates in y (the diagonal is the mono setting).

    Raises:
        ValueError: inconsistent lengths.
    """
    num_q, num_c = question_embeddings.shape[0], candidate_embeddings.shape[0]
    if not (len(relevant) == len(question_lang) == num_q):
        raise ValueError(f"expected {num_q} relevant lists and question languages, got {len(relevant)} and {len(question_lang)}")
    if len(candidate_lang) != num_c:
        raise ValueError(f"candidate_lang: expected {num_c} entries, got {len(candidate_lang)}")
    num_langs = len(languages)
    rel = relevant_matrix(relevant)
    cand_lang_t = torch.tensor(candidate_lang, dtype=torch.int64)
    if process_group is None:
        outranking = count_outranking_per_group(
            question_embeddings, candidate_embeddings, rel, cand_lang_t, num_langs, chunk_size=chunk_size
        ).numpy()  # [Q, R, G]
    else:
        from ..distributed.shards import all_gather_varlen, shard_range, world

        W, rank = world(process_group)
        lo, hi = shard_range(num_q, W, rank)
        local = count_outranking_per_group(question_embeddings[lo:hi], candidate_embeddings, rel[lo:hi], cand_lang_t,
                                           num_langs, chunk_size=chunk_size)
        outranking = all_gather_varlen(local, process_group).numpy()
        if rank != 0:
            return None
    rel_np = rel.numpy()
    valid = rel_np >= 0
    rel_lang = np.where(valid, cand_lang_t.numpy()[np.clip(rel_np, 0, None)], -1)  # [Q, R]
    own_group_rank = np.take_along_axis(outranking, np.clip(rel_lang, 0, None)[:, :, None], axis=2)[:, :, 0] + 1
    pooled_rank = np.where(valid, outranking.sum(axis=2) + 1, 0)
    q_lang = np.asarray(question_lang)

    map_matrix = np.full((num_langs, num_langs), np.nan)
    r1_matrix = np.full((num_langs, num_langs), np.nan)
    per_language: dict[str, dict[str, float]] = {}
    query_values = {k: np.full(num_q, np.nan) for k in PER_QUERY_KEYS}
    for x, lang in enumerate(languages):
        rows = q_lang == x
        ap_per_setting = np.full((int(rows.sum()), num_langs), np.nan)
        for y in range(num_langs):
            ranks = np.where(rel_lang[rows] == y, own_group_rank[rows], 0)
            ap_per_setting[:, y] = average_precision_from_ranks(ranks)
            map_matrix[x, y] = nanmean_or_nan(ap_per_setting[:, y])
            r1_matrix[x, y] = nanmean_or_nan(recall_at_k_from_ranks(ranks, 1))
        mono_ranks = np.where(rel_lang[rows] == x, own_group_rank[rows], 0)
        others = [y for y in range(num_langs) if y != x]
        multi_ranks = pooled_rank[rows]
        if per_query:
            query_values["mono_map"][rows] = ap_per_setting[:, x]
            if others:
                with np.errstate(all="ignore"):  # a question without relevant candidates there: NaN
                    query_values["cross_map"][rows] = np.nanmean(ap_per_setting[:, others], axis=1)
            query_values["multi_map"][rows] = average_precision_from_ranks(multi_ranks)
            query_values["mono_ndcg@10"][rows] = ndcg_at_k_from_ranks(mono_ranks, 10)
            query_values["rank_distance"][rows] = rank_distance_from_ranks(multi_ranks)
        per_language[lang] = {
            "mono_map": float(map_matrix[x, x]),
            "mono_r@1": float(r1_matrix[x, x]),
            "mono_ndcg@10": nanmean_or_nan(ndcg_at_k_from_ranks(mono_ranks, 10)),
            "cross_map": nanmean_or_nan(map_matrix[x, others]) if others else float("nan"),
            "cross_r@1": nanmean_or_nan(r1_matrix[x, others]) if others else float("nan"),
            "multi_map": nanmean_or_nan(average_precision_from_ranks(multi_ranks)),
            "multi_r@10": nanmean_or_nan(recall_at_k_from_ranks(multi_ranks, 10)),
            "rank_distance": nanmean_or_nan(rank_distance_from_ranks(multi_ranks)),
            "num_queries": int(rows.sum()),
        }

    def macro(key: str) -> float:
        return nanmean_or_nan([per_language[lang][key] for lang in languages])

    out = {
        "mono": {"map": macro("mono_map"), "r@1": macro("mono_r@1"), "ndcg@10": macro("mono_ndcg@10")},
        "cross": {"map": macro("cross_map"), "r@1": macro("cross_r@1")},
        "multi": {"map": macro("multi_map"), "r@10": macro("multi_r@10")},
        "rank_distance": macro("rank_distance"),
        "per_language": per_language,
        "cross_matrix": {
            "languages": list(languages),
            "map": map_matrix.tolist(),
            "r@1": r1_matrix.tolist(),
        },
    }
    if per_query:
        out["per_query"] = {k: v.tolist() for k, v in query_values.items()}
    return out


def encode_lareqa(
    encoder: "TextEncoder", dataset: "LareqaDataset", *, candidate_context: str = "none",
    distributed: bool = False, process_group=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Encode questions (kind ``"query"``) and candidates (kind ``"passage"``) with any
    :class:`~hybrid_fast.eval.protocol.TextEncoder`.

    ``candidate_context``: ``"none"`` encodes the sentence alone; ``"paragraph"`` encodes the
    pair (sentence, paragraph), only the paragraph truncated. ``distributed=True``: each rank
    of ``process_group`` encodes one contiguous shard and every rank gets all rows (a collective).

    Raises:
        ValueError: unknown ``candidate_context``.
    """
    if candidate_context not in ("none", "paragraph"):
        raise ValueError(f"candidate_context: expected 'none' or 'paragraph', got {candidate_context!r}")
    question_texts = [q.text for q in dataset.questions]
    sentences = [c.sentence for c in dataset.candidates]
    # no contexts keyword unless asked: an encoder without pair support serves here (TextEncoder)
    contexts = [c.context for c in dataset.candidates] if candidate_context == "paragraph" else None
    if distributed:
        from ..distributed.shards import encode_gathered

        return (encode_gathered(encoder, question_texts, "query", process_group=process_group),
                encode_gathered(encoder, sentences, "passage", contexts=contexts, process_group=process_group))
    questions = encoder.encode(question_texts, "query")
    if contexts is not None:
        candidates = encoder.encode(sentences, "passage", contexts=contexts)
    else:
        candidates = encoder.encode(sentences, "passage")
    return questions, candidates


def evaluate_lareqa(
    encoder: "TextEncoder",
    dataset: "LareqaDataset",
    *,
    candidate_context: str = "none",
    chunk_size: int = 256,
    distributed: bool = False,
    process_group=None,
) -> dict | None:
    """Encode ``dataset`` with ``encoder`` and compute every LAReQA figure.

    ``distributed=True`` under an initialised ``torch.distributed`` group (a collective: every
    rank calls it): each rank encodes one contiguous shard of the questions and of the
    candidates, the embeddings are all-gathered (O(N d) per rank), each rank ranks its shard of
    the questions against all candidates, rank 0 computes the figures (others return None):
    those of the single-process run when the encoder embeds a text independently of its batch.

    Returns:
        :func:`lareqa_scores_from_embeddings`'s dict plus ``"timing": {"encode_s", "search_s"}``
        and ``"data": {"questions", "candidates", "languages"}``.
    """
    start = time.perf_counter()
    question_emb, candidate_emb = encode_lareqa(encoder, dataset, candidate_context=candidate_context,
                                                distributed=distributed, process_group=process_group)
    encoded = time.perf_counter()
    if distributed and process_group is None:
        import torch.distributed as dist

        process_group = dist.group.WORLD
    result = lareqa_scores_from_embeddings(
        question_emb, candidate_emb, dataset.relevant,
        dataset.question_lang_ids(), dataset.candidate_lang_ids(), dataset.languages,
        chunk_size=chunk_size, process_group=process_group if distributed else None,
    )
    if result is None:
        return None
    searched = time.perf_counter()
    result["timing"] = {"encode_s": encoded - start, "search_s": searched - encoded}
    result["data"] = {
        "questions": len(dataset.questions), "candidates": len(dataset.candidates),
        "languages": list(dataset.languages),
    }
    return result
