"""BEIR metrics against pytrec_eval (trec_eval) on random graded qrels and runs with ties."""

import random

import pytest

from hybrid_fast.eval import beir_metrics, beir_metrics_per_query, trec_ranking

pytrec_eval = pytest.importorskip("pytrec_eval", reason="pytrec-eval-terrier is not installed")


def random_case(seed, num_queries=30, num_docs=150, tie_levels=7):
    rng = random.Random(seed)
    qrels, run = {}, {}
    for q in range(num_queries):
        qid = f"q{q}"
        judged = rng.sample(range(num_docs), rng.randint(1, 25))
        qrels[qid] = {f"d{d}": rng.choice([0, 0, 1, 1, 2, 3]) for d in judged}
        retrieved = rng.sample(range(num_docs), rng.randint(0, 140))
        # few distinct score levels -> many ties (trec_eval breaks them by doc id, descending)
        run[qid] = {f"d{d}": float(rng.randint(0, tie_levels)) / tie_levels for d in retrieved}
    return qrels, run


def trec_reference(qrels, run):
    """pytrec_eval per query; MRR@10 = recip_rank on the run cut to its trec_eval top 10."""
    measures = {"ndcg_cut.10,100", "recall.10,100", "map"}
    reference = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
    cut = {q: {d: run[q][d] for d in trec_ranking(run[q])[:10]} for q in run}
    rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(cut)
    return reference, rr


@pytest.mark.parametrize("seed", range(5))
def test_per_query_metrics_match_pytrec_eval(seed):
    qrels, run = random_case(seed)
    ours = beir_metrics_per_query(qrels, run)
    reference, rr = trec_reference(qrels, run)
    for qid, ref in reference.items():
        assert ours[qid]["ndcg@10"] == pytest.approx(ref["ndcg_cut_10"], abs=1e-6)
        assert ours[qid]["ndcg@100"] == pytest.approx(ref["ndcg_cut_100"], abs=1e-6)
        assert ours[qid]["recall@100"] == pytest.approx(ref["recall_100"], abs=1e-6)
        assert ours[qid]["recall@10"] == pytest.approx(ref["recall_10"], abs=1e-6)
        assert ours[qid]["map"] == pytest.approx(ref["map"], abs=1e-6)
        assert ours[qid]["mrr@10"] == pytest.approx(rr.get(qid, {"recip_rank": 0.0})["recip_rank"], abs=1e-6)


def test_mean_matches_pytrec_eval_when_run_covers_all_queries():
    qrels, run = random_case(11)
    run = {q: (docs or {"d0": 0.5}) for q, docs in run.items()}
    ours = beir_metrics(qrels, run)
    reference, _ = trec_reference(qrels, run)
    for our_key, ref_key in [("ndcg@10", "ndcg_cut_10"), ("recall@100", "recall_100"), ("map", "map")]:
        mean = sum(r[ref_key] for r in reference.values()) / len(reference)
        assert ours[our_key] == pytest.approx(mean, abs=1e-6)


def test_hand_computed_graded_ndcg_and_ties():
    qrels = {"q": {"a": 2, "b": 1, "c": 0, "z": 1}}
    # a and b tie: trec_eval order is doc id descending -> b (rank 1), a (rank 2), then c.
    run = {"q": {"a": 0.5, "b": 0.5, "c": 0.1}}
    import math

    dcg = 1 / math.log2(2) + 2 / math.log2(3)
    idcg = 2 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    result = beir_metrics(qrels, run, k_values=(1, 10))
    assert result["ndcg@10"] == pytest.approx(dcg / idcg)
    assert result["mrr@10"] == 1.0
    assert result["recall@1"] == pytest.approx(1 / 3)
    assert result["map"] == pytest.approx((1 / 1 + 2 / 2) / 3)
    assert set(result) >= {"ndcg@10", "recall@100", "mrr@10", "map", "ndcg@1", "recall@1", "mrr@1"}


def test_missing_query_in_run_scores_zero_and_identical_ids_removed():
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}}
    run = {"q1": {"q1": 9.0, "d1": 1.0}}
    assert beir_metrics(qrels, run)["mrr@10"] == pytest.approx((0.5 + 0) / 2)
    assert beir_metrics(qrels, run, ignore_identical_ids=True)["mrr@10"] == pytest.approx((1.0 + 0) / 2)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="empty"):
        beir_metrics({}, {})
    with pytest.raises(ValueError, match=r"run\['q'\]\['d'\]"):
        beir_metrics({"q": {"d": 1}}, {"q": {"d": float("nan")}})
    with pytest.raises(ValueError, match="k_values"):
        beir_metrics({"q": {"d": 1}}, {"q": {"d": 1.0}}, k_values=(0,))
