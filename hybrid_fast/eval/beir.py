"""BEIR-format evaluation: encode corpus and queries, exact top-k search, trec_eval metrics."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Iterable

from .metrics import BEIR_DEFAULT_K, beir_metrics, beir_metrics_per_query
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
    distributed: bool = False,
    process_group=None,
    per_query: bool = False,
) -> dict | None:
    """Encode with any :class:`~hybrid_fast.eval.protocol.TextEncoder`, retrieve the top
    ``max(top_k, max k)`` documents per query, score with trec_eval definitions.

    ``distributed=True`` under an initialised ``torch.distributed`` group (``process_group``,
    default the world; a collective: every rank calls it): each rank encodes one contiguous
    shard of the queries and of the corpus, the queries are all-gathered, the search is sharded
    (:func:`hybrid_fast.distributed.sharded_topk_search`, merged on rank 0 under the
    single-process tie rule) and rank 0 scores the run: the figures of the single-process run
    when the encoder embeds a text independently of its batch. Other ranks return None.

    Returns:
        :func:`beir_metrics` keys plus ``"timing": {"encode_s", "search_s"}`` (rank 0's clock) and
        ``"data": {"queries", "documents", "dropped"}``: ``queries`` = the queries evaluated,
        ``dropped`` = what the loader left out of the qrels (:attr:`BeirDataset.dropped`).
        ``per_query=True`` adds ``"per_query": {qid: {metric: value}}`` (the values the means
        are taken over: :func:`beir_metrics_per_query`; for a paired bootstrap over queries).
    """
    k_values = tuple(k_values)
    depth = max((top_k,) + k_values)
    doc_ids = list(dataset.corpus)
    query_ids = list(dataset.queries)
    start = time.perf_counter()
    query_texts = [dataset.queries[q] for q in query_ids]
    doc_texts = [document_text(dataset.corpus[d]) for d in doc_ids]
    k = depth + (1 if ignore_identical_ids else 0)
    if distributed:
        from ..distributed import sharded_topk_search
        from ..distributed.shards import encode_gathered, encode_shard

        query_emb = encode_gathered(encoder, query_texts, "query", process_group=process_group)
        doc_local, _ = encode_shard(encoder, doc_texts, "passage", process_group=process_group)
        encoded = time.perf_counter()
        if doc_local is None:  # fewer documents than ranks
            doc_local = query_emb.new_empty((0, query_emb.shape[1]))
        found = sharded_topk_search(query_emb, doc_local, min(k, len(doc_ids)), result_on=0,
                                    process_group=process_group)
        if found is None:
            return None
        scores, indices = found
    else:
        query_emb = encoder.encode(query_texts, "query")
        doc_emb = encoder.encode(doc_texts, "passage")
        encoded = time.perf_counter()
        scores, indices = search_topk(query_emb, doc_emb, k)
    run = {
        qid: {doc_ids[j]: float(s) for s, j in zip(scores[i].tolist(), indices[i].tolist())}
        for i, qid in enumerate(query_ids)
    }
    searched = time.perf_counter()
    result: dict = dict(beir_metrics(dataset.qrels, run, k_values, ignore_identical_ids=ignore_identical_ids))
    result["timing"] = {"encode_s": encoded - start, "search_s": searched - encoded}
    result["data"] = {"queries": len(query_ids), "documents": len(doc_ids), "dropped": dict(dataset.dropped)}
    if per_query:
        result["per_query"] = beir_metrics_per_query(dataset.qrels, run, k_values,
                                                     ignore_identical_ids=ignore_identical_ids)
    return result
