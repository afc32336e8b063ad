"""BEIR-format evaluation: encode corpus and queries, exact top-k search, trec_eval metrics."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Iterable

from .metrics import BEIR_DEFAULT_K, beir_metrics
from .ranking import search_topk

if TYPE_CHECKING:
    from ..data.beir import BeirDataset
    from .protocol import TextEncoder


def document_text(doc: dict[str, str]) -> str:
    """``"title text"`` (title and a space first when the title is non-empty), as BEIR does."""
    title = doc.get("title") or ""
    return f"{title} {doc['text']}" if title else doc["text"]


def evaluate_beir(
    encoder: "TextEncoder",
    dataset: "BeirDataset",
    *,
    k_values: Iterable[int] = BEIR_DEFAULT_K,
    top_k: int = 100,
    ignore_identical_ids: bool = False,
) -> dict:
    """Encode with any :class:`~hybrid_fast.eval.protocol.TextEncoder`, retrieve the top
    ``max(top_k, max k)`` documents per query, score with trec_eval definitions.

    Returns:
        :func:`beir_metrics` keys plus ``"timing": {"encode_s", "search_s"}`` and
        ``"data": {"queries", "documents", "dropped"}``: ``queries`` = the queries evaluated,
        ``dropped`` = what the loader left out of the qrels (:attr:`BeirDataset.dropped`).
    """
    k_values = tuple(k_values)
    depth = max((top_k,) + k_values)
    doc_ids = list(dataset.corpus)
    query_ids = list(dataset.queries)
    start = time.perf_counter()
    query_emb = encoder.encode([dataset.queries[q] for q in query_ids], "query")
    doc_emb = encoder.encode([document_text(dataset.corpus[d]) for d in doc_ids], "passage")
    encoded = time.perf_counter()
    scores, indices = search_topk(query_emb, doc_emb, depth + (1 if ignore_identical_ids else 0))
    run = {
        qid: {doc_ids[j]: float(s) for s, j in zip(scores[i].tolist(), indices[i].tolist())}
        for i, qid in enumerate(query_ids)
    }
    searched = time.perf_counter()
    result: dict = dict(beir_metrics(dataset.qrels, run, k_values, ignore_identical_ids=ignore_identical_ids))
    result["timing"] = {"encode_s": encoded - start, "search_s": searched - encoded}
    result["data"] = {"queries": len(query_ids), "documents": len(doc_ids), "dropped": dict(dataset.dropped)}
    return result
