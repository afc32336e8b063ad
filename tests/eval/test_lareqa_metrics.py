"""LAReQA mAP, R@k and rank distance: hand-computed cases and a brute-force oracle."""

import numpy as np
import pytest
import torch

from hybrid_fast.eval.metrics import (
    average_precision_from_ranks,
    beir_metrics_per_query,
    ndcg_at_k_from_ranks,
    rank_distance_from_ranks,
    recall_at_k_from_ranks,
)
from hybrid_fast.eval.ranking import count_outranking_per_group, search_topk
from hybrid_fast.eval.xquad_r import lareqa_scores_from_embeddings


def test_hand_computed_average_precision_recall_distance():
    ranks = np.array([[1, 3, 0], [2, 0, 0], [0, 0, 0], [5, 2, 10]])
    ap = average_precision_from_ranks(ranks)
    assert ap[0] == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert ap[1] == pytest.approx(1 / 2)
    assert np.isnan(ap[2])
    assert ap[3] == pytest.approx((1 / 2 + 2 / 5 + 3 / 10) / 3)
    r1 = recall_at_k_from_ranks(ranks, 1)
    assert r1[0] == 0.5 and r1[1] == 0.0 and np.isnan(r1[2])
    assert recall_at_k_from_ranks(ranks, 5)[3] == pytest.approx(2 / 3)
    dist = rank_distance_from_ranks(ranks)
    assert dist[0] == 2 and dist[1] == 0 and np.isnan(dist[2]) and dist[3] == 8


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ndcg_from_ranks_matches_the_beir_definition(seed):
    # Random rankings of 30 docs with 0-12 relevant each (some past the cut-off, some rows empty):
    # the rank-based nDCG@k equals the BEIR/trec_eval one computed from a scored run.
    rng = np.random.default_rng(seed)
    ranks, run, qrels = [], {}, {}
    for q in range(20):
        rel = sorted(rng.choice(30, size=int(rng.integers(0, 13)), replace=False) + 1)
        ranks.append(rel + [0] * (12 - len(rel)))
        run[str(q)] = {f"d{r}": float(100 - r) for r in range(1, 31)}
        qrels[str(q)] = {f"d{r}": 1 for r in rel}
    ranks = np.array(ranks)
    for k in (1, 5, 10):
        got = ndcg_at_k_from_ranks(ranks, k)
        per_query = beir_metrics_per_query({q: v for q, v in qrels.items() if v}, run, k_values=[k])
        for q in range(20):
            if qrels[str(q)]:
                assert got[q] == pytest.approx(per_query[str(q)][f"ndcg@{k}"], abs=1e-12)
            else:
                assert np.isnan(got[q])


def test_rank_errors():
    with pytest.raises(ValueError, match="2-D integer"):
        average_precision_from_ranks(np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="k: expected a positive"):
        recall_at_k_from_ranks(np.array([[1]]), 0)
    with pytest.raises(ValueError, match="k: expected a positive"):
        ndcg_at_k_from_ranks(np.array([[1]]), 0)


def test_hand_computed_two_language_case():
    # 2 languages, 2 candidates each (0,1 = lang 0; 2,3 = lang 1), 1-D embeddings.
    candidates = torch.tensor([[1.0], [3.0], [2.0], [3.0]])
    questions = torch.tensor([[1.0], [1.0]])  # score = candidate value
    relevant = [[0, 2], [1, 3]]  # question 0 (lang 0) and its translation question 1 (lang 1)
    result = lareqa_scores_from_embeddings(
        questions, candidates, relevant, [0, 1], [0, 0, 1, 1], ["a", "b"]
    )
    # Pool order: 1 (3.0), 3 (3.0, tie -> higher index later), 2 (2.0), 0 (1.0).
    # q0: relevant 0 -> mono rank 2 (AP .5); cross in b: 2 -> rank 2 (AP .5); pooled ranks 4, 3.
    # q1: relevant 3 -> mono rank 1; cross in a: 1 -> rank 1; pooled ranks 1, 2.
    per = result["per_language"]
    assert per["a"]["mono_map"] == 0.5 and per["a"]["cross_map"] == 0.5
    assert per["b"]["mono_map"] == 1.0 and per["b"]["cross_map"] == 1.0
    assert per["a"]["multi_map"] == pytest.approx((1 / 3 + 2 / 4) / 2)
    assert per["b"]["multi_map"] == 1.0
    assert per["a"]["rank_distance"] == 1 and per["b"]["rank_distance"] == 1
    assert result["mono"]["map"] == 0.75 and result["rank_distance"] == 1
    assert result["cross_matrix"]["map"] == [[0.5, 0.5], [1.0, 1.0]]
    assert result["mono"]["r@1"] == 0.5 and result["multi"]["r@10"] == 1.0


def brute_force(questions, candidates, relevant, q_lang, c_lang, num_langs):
    """Independent oracle: full sort per query with numpy (score desc, index asc)."""
    scores = (questions @ candidates.T).numpy()  # same float32 scores: same ties as the fast path
    c_lang = np.asarray(c_lang)
    ap_matrix = np.zeros((num_langs, num_langs))
    counts = np.zeros((num_langs, num_langs))
    multi_ap = np.zeros(num_langs)
    dist = np.zeros(num_langs)
    n_q = np.zeros(num_langs)
    for i in range(len(questions)):
        x = q_lang[i]
        n_q[x] += 1
        for y in range(num_langs):
            pool = np.flatnonzero(c_lang == y)
            order = pool[np.lexsort((pool, -scores[i, pool]))]
            rel = [r for r in relevant[i] if c_lang[r] == y]
            ranks = sorted(int(np.flatnonzero(order == r)[0]) + 1 for r in rel)
            ap_matrix[x, y] += np.mean([(j + 1) / rank for j, rank in enumerate(ranks)])
            counts[x, y] += 1
        order = np.lexsort((np.arange(len(candidates)), -scores[i]))
        ranks = sorted(int(np.flatnonzero(order == r)[0]) + 1 for r in relevant[i])
        multi_ap[x] += np.mean([(j + 1) / rank for j, rank in enumerate(ranks)])
        dist[x] += ranks[-1] - ranks[0]
    return ap_matrix / counts, multi_ap / n_q, dist / n_q


@pytest.mark.parametrize("seed,quantize", [(0, False), (1, True), (2, True)])
def test_matches_brute_force_on_random_embeddings(seed, quantize):
    gen = torch.Generator().manual_seed(seed)
    num_langs, per_lang_q, per_lang_c, dim = 3, 7, 9, 4
    q_lang = [x for x in range(num_langs) for _ in range(per_lang_q)]
    c_lang = [y for y in range(num_langs) for _ in range(per_lang_c)]
    questions = torch.randn(len(q_lang), dim, generator=gen)
    candidates = torch.randn(len(c_lang), dim, generator=gen)
    if quantize:  # coarse values -> many exact ties
        questions, candidates = questions.round(), candidates.round()
    # question k of every language shares relevant candidates: one random sentence per language
    relevant_of_group = [
        sorted(y * per_lang_c + int(torch.randint(per_lang_c, (1,), generator=gen))
               for y in range(num_langs))
        for _ in range(per_lang_q)
    ]
    relevant = [relevant_of_group[i % per_lang_q] for i in range(len(q_lang))]
    ap_matrix, multi_ap, dist = brute_force(questions, candidates, relevant, q_lang, c_lang, num_langs)
    result = lareqa_scores_from_embeddings(
        questions, candidates, relevant, q_lang, c_lang, ["a", "b", "c"], chunk_size=5
    )
    np.testing.assert_allclose(np.array(result["cross_matrix"]["map"]), ap_matrix, atol=1e-12)
    for x, lang in enumerate("abc"):
        assert result["per_language"][lang]["multi_map"] == pytest.approx(multi_ap[x], abs=1e-12)
        assert result["per_language"][lang]["rank_distance"] == pytest.approx(dist[x], abs=1e-12)
    off_diagonal = ap_matrix[~np.eye(num_langs, dtype=bool)].reshape(num_langs, -1).mean(1).mean()
    assert result["cross"]["map"] == pytest.approx(off_diagonal, abs=1e-12)
    assert result["mono"]["map"] == pytest.approx(np.diag(ap_matrix).mean(), abs=1e-12)
    assert 0.0 < result["mono"]["ndcg@10"] <= 1.0  # value: test_ndcg_from_ranks_matches_the_beir_definition


def test_outranking_groups_in_any_order_and_padding():
    gen = torch.Generator().manual_seed(3)
    q, c = torch.randn(4, 3, generator=gen).round(), torch.randn(10, 3, generator=gen).round()
    groups = torch.tensor([1, 0, 1, 0, 2, 2, 0, 1, 2, 0])
    relevant = torch.tensor([[0, 5, -1], [9, -1, -1], [3, 4, 7], [2, 2, -1]])
    out = count_outranking_per_group(q, c, relevant, groups, chunk_size=3)
    scores = (q @ c.T)
    for i in range(4):
        for j in range(3):
            r = int(relevant[i, j])
            if r < 0:
                assert out[i, j].sum() == 0
                continue
            for g in range(3):
                members = (groups == g).nonzero().flatten().tolist()
                expected = sum(1 for m in members if scores[i, m] > scores[i, r] or (scores[i, m] == scores[i, r] and m < r))
                assert out[i, j, g] == expected


def test_outranking_errors():
    with pytest.raises(ValueError, match="embedding sizes differ"):
        count_outranking_per_group(torch.zeros(2, 3), torch.zeros(4, 2), torch.zeros(2, 1, dtype=torch.long), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="relevant: expected indices"):
        count_outranking_per_group(torch.zeros(2, 3), torch.zeros(4, 3), torch.full((2, 1), 4), torch.zeros(4, dtype=torch.long))


@pytest.mark.parametrize("backend", ["auto", "torch"])
def test_search_topk_ties_by_ascending_index(backend):
    corpus = torch.tensor([[1.0], [2.0], [2.0], [0.0], [2.0], [3.0]])
    queries = torch.tensor([[1.0], [-1.0]])
    scores, indices = search_topk(queries, corpus, 3, backend=backend, chunk_size=1)
    assert indices.tolist() == [[5, 1, 2], [3, 0, 1]]
    assert scores.tolist() == [[3.0, 2.0, 2.0], [0.0, -1.0, -2.0]]
    with pytest.raises(ValueError, match="k: expected"):
        search_topk(torch.zeros(1, 1), corpus, 0, backend=backend)


def test_search_topk_unknown_backend():
    with pytest.raises(ValueError, match="backend: expected 'auto' or 'torch'"):
        search_topk(torch.zeros(1, 1), torch.zeros(2, 1), 1, backend="faiss")


@pytest.mark.parametrize("quantize", [False, True])
def test_per_query_values_average_to_the_reported_figures(quantize):
    """per_query=True: each question's values; their per-language means are the per-language figures
    (the bootstrap in hybrid_fast.eval.stats resamples them), and the multi AP of one question
    matches the brute-force oracle."""
    gen = torch.Generator().manual_seed(3)
    num_langs, per_lang_q, per_lang_c = 3, 6, 8
    q_lang = [x for x in range(num_langs) for _ in range(per_lang_q)]
    c_lang = [y for y in range(num_langs) for _ in range(per_lang_c)]
    questions, candidates = torch.randn(len(q_lang), 4, generator=gen), torch.randn(len(c_lang), 4, generator=gen)
    if quantize:
        questions, candidates = questions.round(), candidates.round()
    groups = [sorted(y * per_lang_c + int(torch.randint(per_lang_c, (1,), generator=gen)) for y in range(num_langs))
              for _ in range(per_lang_q)]
    relevant = [groups[i % per_lang_q] for i in range(len(q_lang))]
    plain = lareqa_scores_from_embeddings(questions, candidates, relevant, q_lang, c_lang, ["a", "b", "c"])
    result = lareqa_scores_from_embeddings(questions, candidates, relevant, q_lang, c_lang, ["a", "b", "c"],
                                           per_query=True)
    assert "per_query" not in plain and {k: v for k, v in result.items() if k != "per_query"} == plain
    values = {k: np.asarray(v) for k, v in result["per_query"].items()}
    assert all(v.shape == (len(q_lang),) for v in values.values())
    for x, lang in enumerate("abc"):
        rows = np.asarray(q_lang) == x
        for key in ("mono_map", "cross_map", "multi_map", "mono_ndcg@10", "rank_distance"):
            assert values[key][rows].mean() == pytest.approx(result["per_language"][lang][key], abs=1e-12), key
    # question 0 alone through the oracle
    with np.errstate(invalid="ignore"):  # languages without questions: 0/0 in the oracle
        _, multi_ap, dist = brute_force(questions[:1], candidates, relevant[:1], [0], c_lang, num_langs)
    assert values["multi_map"][0] == pytest.approx(multi_ap[0]) and values["rank_distance"][0] == pytest.approx(dist[0])
