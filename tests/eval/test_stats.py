"""Paired bootstrap CIs and seed spread (hybrid_fast.eval.stats) against brute force / known cases."""
import itertools

import numpy as np
import pytest

from hybrid_fast.eval.stats import paired_bootstrap, seed_spread


def test_constant_difference_has_a_degenerate_interval():
    a = np.array([0.3, 0.5, 0.9, 0.1])
    r = paired_bootstrap(a + 0.25, a, n_resamples=500)
    assert r["diff"] == pytest.approx(0.25) and r["ci_low"] == pytest.approx(0.25) and r["ci_high"] == pytest.approx(0.25)
    assert r["significant"] and r["p_value"] == pytest.approx(1 / 500)


def test_matches_the_exact_bootstrap_distribution():
    """Q = 5: all 5^5 equally likely resamples enumerated; the Monte-Carlo quantiles must match."""
    a = np.array([0.9, 0.2, 0.6, 0.4, 0.75])
    b = np.array([0.5, 0.3, 0.1, 0.45, 0.2])
    d = a - b
    exact = np.array([d[list(idx)].mean() for idx in itertools.product(range(5), repeat=5)])
    r = paired_bootstrap(a, b, n_resamples=200_000, seed=1)
    low, high = np.quantile(exact, [0.025, 0.975])
    assert r["diff"] == pytest.approx(d.mean())
    assert r["ci_low"] == pytest.approx(low, abs=0.01) and r["ci_high"] == pytest.approx(high, abs=0.01)
    assert r["p_value"] == pytest.approx(2 * min((exact <= 0).mean(), (exact >= 0).mean()), abs=0.005)


def test_seeds_are_pooled_per_query():
    rng = np.random.default_rng(0)
    a, b = rng.random((3, 40)), rng.random((1, 40))
    assert paired_bootstrap(a, b, n_resamples=300) == paired_bootstrap(a.mean(0), b[0], n_resamples=300)


def test_groups_resample_clusters_whole():
    """Two identical copies of each query, grouped, give exactly the ungrouped result on one copy."""
    rng = np.random.default_rng(2)
    a, b = rng.random(30), rng.random(30)
    grouped = paired_bootstrap(np.repeat(a, 2), np.repeat(b, 2), groups=np.repeat(np.arange(30), 2), n_resamples=400)
    single = paired_bootstrap(a, b, n_resamples=400)
    for key in ("diff", "ci_low", "ci_high", "p_value"):
        assert grouped[key] == pytest.approx(single[key])
    ungrouped = paired_bootstrap(np.repeat(a, 2), np.repeat(b, 2), n_resamples=400)
    assert ungrouped["ci_high"] - ungrouped["ci_low"] < single["ci_high"] - single["ci_low"]  # too narrow


def test_strata_average_stratum_means_and_nan_is_dropped():
    a = np.array([1.0, 1.0, 1.0, 0.0, np.nan])
    b = np.zeros(5)
    r = paired_bootstrap(a, b, strata=["x", "x", "x", "y", "y"], n_resamples=200)
    assert r["diff"] == pytest.approx(0.5) and r["n_queries"] == 4  # mean(1, 0), not 3/4
    assert r["ci_low"] == pytest.approx(0.5) and r["ci_high"] == pytest.approx(0.5)


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="a and b"):
        paired_bootstrap([0.1, 0.2], [0.1])
    with pytest.raises(ValueError, match="groups"):
        paired_bootstrap([0.1, 0.2], [0.1, 0.3], groups=[1])
    with pytest.raises(ValueError, match="spans two strata"):
        paired_bootstrap([0.1, 0.2], [0.1, 0.3], groups=[1, 1], strata=["x", "y"])
    with pytest.raises(ValueError, match="values"):
        seed_spread([])


def test_seed_spread():
    s = seed_spread([0.2, 0.4, 0.6])
    assert s == {"mean": pytest.approx(0.4), "std": pytest.approx(0.2), "min": 0.2, "max": 0.6, "n": 3}
    assert seed_spread([0.5])["std"] == 0.0


def test_compare_arms_known_case():
    """hybrid = baseline + 0.1 on every XQuAD-R value and BEIR query: every CI is [0.1, 0.1]
    (rank distance: -3), seeds of different counts pooled, folders as strata."""
    from hybrid_fast.train.experiment import COMPARED, compare_arms

    rng = np.random.default_rng(0)
    qids = [f"q{i // 3}" for i in range(12)]  # 4 questions x 3 languages

    def run(seed, shift, rd_shift):
        xq = {m: (rng.random(12) * 0 + np.linspace(0, 1, 12) + shift).tolist() for m in COMPARED}
        xq["rank_distance"] = (np.arange(12.0) + rd_shift).tolist()
        return {"seed": seed, "xquad_r": {"qid": qids, "lang": ["en", "de", "zh"] * 4, **xq},
                "beir": {"a": {"x": 0.5 + shift, "y": 0.2 + shift}, "b": {"z": 0.9 + shift}}}

    per_query = {"zero-shot": [run(0, 0.0, 0.0)], "hybrid": [run(s, 0.1, -3.0) for s in range(3)]}
    out = compare_arms(per_query, n_resamples=200)
    assert list(out) == ["zero-shot"]
    block = out["zero-shot"]
    for metric in ("mono_map", "cross_map", "multi_map", "beir_ndcg@10:a", "beir_ndcg@10:b", "beir_ndcg@10:mean"):
        assert (block[metric]["diff"], block[metric]["ci_low"], block[metric]["ci_high"]) == pytest.approx((0.1,) * 3)
    assert block["rank_distance"]["diff"] == pytest.approx(-3.0) and block["rank_distance"]["significant"]
    assert block["mono_map"]["n_queries"] == 12 and compare_arms({"x-y": per_query["zero-shot"]}) == {}
