"""Retrieval metrics as pure functions (numpy and the standard library; no model code, no torch).

Two families, with the exact definitions used everywhere in the package:

**BEIR / trec_eval** (:func:`beir_metrics`), on a run ``{qid: {docid: score}}`` and graded
qrels ``{qid: {docid: grade}}``. The ranking of a query sorts its run by score descending and
breaks ties by doc id descending (string order), which is what trec_eval (and so
``pytrec_eval``) does. A document is *relevant* when its grade >= ``relevance_level`` (1).

* ``ndcg@k`` = DCG@k / IDCG@k with DCG@k = sum_{i=1..k} g_i / log2(i + 1), ``g_i`` = the grade
  of the document at rank i when > 0 else 0 (linear gain, trec_eval ``ndcg_cut``); IDCG@k = the
  same sum over the qrels' positive grades sorted descending. 0 when IDCG = 0.
* ``recall@k`` = |relevant in top k| / |relevant in qrels| (0 when none is relevant).
* ``mrr@k`` = 1 / rank of the first relevant document within the top k, else 0.
* ``map`` = (1/|relevant|) * sum over relevant retrieved documents of precision at their rank,
  over the whole run (trec_eval ``map``, no cut-off).
* Averages are over the qrels' queries; a query missing from the run scores 0 on everything.

**LAReQA** (XQuAD-R, MLQA-R), on 1-based ranks of each query's relevant candidates in a ranking
of the candidate pool (ranks are distinct: ties broken by candidate index). ``ranks`` is an
int array ``[Q, R]``; entries <= 0 are padding (no relevant item there).

* AP = (1/n) * sum_{j=1..n} j / rank_(j), ranks sorted ascending, n = number of relevant items;
  NaN for a query with none (excluded from means).
* R@k = |{relevant items with rank <= k}| / n (plain recall: with 11 relevant items R@10 <= 10/11).
* rank distance = max rank - min rank over the query's relevant items (0 with one item).
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

import numpy as np

BEIR_DEFAULT_K = (10, 100)


def _validate_run_query(qid: str, doc_scores: Mapping[str, float]) -> None:
    for docid, score in doc_scores.items():
        if not isinstance(score, (int, float, np.floating, np.integer)) or not math.isfinite(float(score)):
            raise ValueError(f"run[{qid!r}][{docid!r}]: expected a finite number, got {score!r}")


def trec_ranking(doc_scores: Mapping[str, float]) -> list[str]:
    """Doc ids ordered as trec_eval ranks them: score descending, ties by doc id descending."""
    return [d for d, _ in sorted(doc_scores.items(), key=lambda kv: (float(kv[1]), kv[0]), reverse=True)]


def _k_values(k_values: Iterable[int]) -> list[int]:
    ks = sorted(set(int(k) for k in k_values) | set(BEIR_DEFAULT_K))
    bad = [k for k in ks if k < 1]
    if bad:
        raise ValueError(f"k_values: expected positive integers, got {bad}")
    return ks


def beir_metrics_per_query(
    qrels: Mapping[str, Mapping[str, int]],
    run: Mapping[str, Mapping[str, float]],
    k_values: Iterable[int] = BEIR_DEFAULT_K,
    *,
    ignore_identical_ids: bool = False,
    relevance_level: int = 1,
) -> dict[str, dict[str, float]]:
    """Per-query BEIR metrics for every query of ``qrels`` (see the module docstring).

    Args:
        qrels: ``{qid: {docid: grade}}`` (int grades; <= 0 = judged non-relevant).
        run: ``{qid: {docid: score}}``; queries not in ``qrels`` are ignored.
        k_values: cut-offs; 10 and 100 are always included. Keys: ``ndcg@k``, ``recall@k``,
            ``mrr@k`` for every k, and ``map``.
        ignore_identical_ids: drop a retrieved document whose id equals the query id (BEIR's
            convention for corpora that contain the queries).
        relevance_level: minimum grade counted as relevant for recall, MRR and MAP.

    Returns:
        ``{qid: {metric: value}}``.

    Raises:
        ValueError: a non-finite or non-numeric score, or a k < 1.
    """
    ks = _k_values(k_values)
    discounts = [1.0 / math.log2(i + 2) for i in range(max(ks))]  # shared by every query
    per_query: dict[str, dict[str, float]] = {}
    for qid, judged in qrels.items():
        doc_scores = dict(run.get(qid, {}))
        _validate_run_query(qid, doc_scores)
        if ignore_identical_ids:
            doc_scores.pop(qid, None)
        ranking = trec_ranking(doc_scores)
        grades = [judged.get(docid, 0) for docid in ranking]
        is_relevant = [g >= relevance_level for g in grades]
        num_relevant = sum(1 for g in judged.values() if g >= relevance_level)
        ideal = sorted((g for g in judged.values() if g > 0), reverse=True)

        values: dict[str, float] = {}
        for k in ks:
            dcg = sum(max(g, 0) * discounts[i] for i, g in enumerate(grades[:k]))
            idcg = sum(g * discounts[i] for i, g in enumerate(ideal[:k]))
            values[f"ndcg@{k}"] = dcg / idcg if idcg > 0 else 0.0
            hits = sum(is_relevant[:k])
            values[f"recall@{k}"] = hits / num_relevant if num_relevant else 0.0
            first = next((i for i, rel in enumerate(is_relevant[:k]) if rel), None)
            values[f"mrr@{k}"] = 1.0 / (first + 1) if first is not None else 0.0
        precision_sum, hits = 0.0, 0
        for i, rel in enumerate(is_relevant):
            if rel:
                hits += 1
                precision_sum += hits / (i + 1)
        values["map"] = precision_sum / num_relevant if num_relevant else 0.0
        per_query[qid] = values
    return per_query


def beir_metrics(
    qrels: Mapping[str, Mapping[str, int]],
    run: Mapping[str, Mapping[str, float]],
    k_values: Iterable[int] = BEIR_DEFAULT_K,
    *,
    ignore_identical_ids: bool = False,
    relevance_level: int = 1,
) -> dict[str, float]:
    """Mean over the qrels' queries of :func:`beir_metrics_per_query`.

    Returns:
        ``{"ndcg@10", "recall@100", "mrr@10", "map", ...}`` plus ``ndcg@k``/``recall@k``/``mrr@k``
        for each other requested k (and ``ndcg@100``, ``recall@10``, ``mrr@100``). Keys in a
        fixed order: per k ascending ndcg, recall, mrr; then map.

    Raises:
        ValueError: empty ``qrels``, or as :func:`beir_metrics_per_query`.
    """
    if not qrels:
        raise ValueError("qrels: expected at least one query, got an empty mapping")
    per_query = beir_metrics_per_query(
        qrels, run, k_values, ignore_identical_ids=ignore_identical_ids, relevance_level=relevance_level
    )
    keys = next(iter(per_query.values())).keys()
    return {key: float(np.mean([v[key] for v in per_query.values()])) for key in keys}


# ----------------------------------------------------------------------------- LAReQA family


def _as_ranks(ranks: np.ndarray) -> np.ndarray:
    ranks = np.asarray(ranks)
    if ranks.ndim != 2 or not np.issubdtype(ranks.dtype, np.integer):
        raise ValueError(f"ranks: expected a 2-D integer array [queries, relevant], got shape {ranks.shape} dtype {ranks.dtype}")
    return ranks


def average_precision_from_ranks(ranks: np.ndarray) -> np.ndarray:
    """AP per query from the 1-based ranks of its relevant items (<= 0 = padding).

    Args:
        ranks: int array ``[Q, R]``; the valid ranks of one row must be distinct.

    Returns:
        float64 ``[Q]``; NaN for rows with no valid rank.
    """
    ranks = _as_ranks(ranks)
    valid = ranks > 0
    big = np.iinfo(np.int64).max
    ordered = np.sort(np.where(valid, ranks, big).astype(np.int64), axis=1)
    count = valid.sum(axis=1)
    position = np.arange(1, ranks.shape[1] + 1, dtype=np.float64)[None, :]
    ordered_valid = position <= count[:, None]
    precision = np.where(ordered_valid, position / np.where(ordered_valid, ordered, 1), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, precision.sum(axis=1) / count, np.nan)


def ndcg_at_k_from_ranks(ranks: np.ndarray, k: int) -> np.ndarray:
    """nDCG@k per query with binary relevance from the 1-based ranks of its relevant items
    (<= 0 = padding; the valid ranks of a row must be distinct): ``sum_{r <= k} 1/log2(1 + r)``
    over the row's ranks over the ideal ``sum_{i=1..min(n, k)} 1/log2(1 + i)``, n = valid ranks
    (``ndcg@k`` above with grades 1 on a full ranking). float64 ``[Q]``; NaN for rows with none."""
    ranks = _as_ranks(ranks)
    if k < 1:
        raise ValueError(f"k: expected a positive integer, got {k}")
    valid = ranks > 0
    count = valid.sum(axis=1)
    gains = np.where(valid & (ranks <= k), 1.0 / np.log2(1.0 + np.maximum(ranks, 1)), 0.0).sum(axis=1)
    ideal = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(2.0 + np.arange(k)))])[np.minimum(count, k)]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, gains / ideal, np.nan)


def recall_at_k_from_ranks(ranks: np.ndarray, k: int) -> np.ndarray:
    """Fraction of each query's relevant items ranked within the top ``k``; NaN with none."""
    ranks = _as_ranks(ranks)
    if k < 1:
        raise ValueError(f"k: expected a positive integer, got {k}")
    valid = ranks > 0
    count = valid.sum(axis=1)
    hits = (valid & (ranks <= k)).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, hits / np.maximum(count, 1), np.nan)


def rank_distance_from_ranks(ranks: np.ndarray) -> np.ndarray:
    """Highest minus lowest rank among each query's relevant items; NaN with none."""
    ranks = _as_ranks(ranks)
    valid = ranks > 0
    count = valid.sum(axis=1)
    high = np.where(valid, ranks, np.iinfo(np.int64).min).max(axis=1)
    low = np.where(valid, ranks, np.iinfo(np.int64).max).min(axis=1)
    return np.where(count > 0, (high - low).astype(np.float64), np.nan)


def nanmean_or_nan(values: Sequence[float] | np.ndarray) -> float:
    """Mean ignoring NaN; NaN (not a warning) when every value is NaN or there are none."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else float("nan")
