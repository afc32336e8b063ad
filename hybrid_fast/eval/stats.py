"""Seed spread and paired bootstrap confidence intervals for differences between two models.

The experiment compares arms on the same test queries, several seeds per arm. The unit of
variation we resample is the *query* (the test set is a sample of possible queries); seeds are
pooled by averaging each query's value over the arm's seeds first, so the interval covers test-set
sampling with training noise averaged in (it is not a test across seeds: those are reported
separately as mean and spread, :func:`seed_spread`).

* ``groups``: queries that must be resampled together (XQuAD-R: the translations of one XQuAD
  question, which are not independent); default each query alone.
* ``strata``: independent sub-collections resampled separately whose means are averaged with
  equal weight (BEIR: one stratum per folder, matching "mean nDCG@10 over folders").
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def seed_spread(values: Sequence[float]) -> dict:
    """``{"mean", "std" (sample, ddof 1; 0 for one seed), "min", "max", "n"}`` of per-seed values."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size == 0:
        raise ValueError(f"values: expected a non-empty 1-D sequence, got shape {v.shape}")
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
            "min": float(v.min()), "max": float(v.max()), "n": int(v.size)}


def _per_query(name: str, values) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 1:
        v = v[None]
    if v.ndim != 2 or v.shape[0] == 0 or v.shape[1] == 0:
        raise ValueError(f"{name}: expected per-query values [queries] or [seeds, queries], got shape {v.shape}")
    return v.mean(axis=0)  # seeds pooled: each query's mean over seeds


def _codes(name: str, labels, n: int, default: np.ndarray) -> np.ndarray:
    if labels is None:
        return default
    labels = list(labels)
    if len(labels) != n:
        raise ValueError(f"{name}: expected {n} labels (one per query), got {len(labels)}")
    first_seen: dict = {}
    return np.array([first_seen.setdefault(label, len(first_seen)) for label in labels], dtype=np.int64)


def paired_bootstrap(a, b, *, groups=None, strata=None, n_resamples: int = 10000, confidence: float = 0.95,
                     seed: int = 0) -> dict:
    """Percentile bootstrap CI of ``mean(a) - mean(b)`` over queries, paired (same resample for both).

    Args:
        a, b: per-query values ``[queries]`` or ``[seeds, queries]`` (seed counts may differ; each
            query's values are averaged over seeds). Queries where either is NaN are dropped.
        groups: per-query cluster label, resampled as a whole (default: each query alone).
        strata: per-query stratum label; each stratum is resampled on its own and the statistic is
            the unweighted mean of the stratum means (groups must not cross strata).
        n_resamples, confidence, seed: bootstrap size, CI level, RNG seed (deterministic).

    Returns:
        ``{"diff", "ci_low", "ci_high", "p_value", "significant", "n_queries", "n_resamples",
        "confidence"}``: ``diff`` is the observed statistic; ``p_value`` the two-sided bootstrap
        p (twice the smaller tail beyond 0, at least 1/n_resamples); ``significant`` = the CI
        excludes 0.

    Raises:
        ValueError: shapes/labels inconsistent, no query left, or a group spanning two strata.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence: expected a number in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples: expected >= 1, got {n_resamples}")
    qa, qb = _per_query("a", a), _per_query("b", b)
    if qa.shape != qb.shape:
        raise ValueError(f"a and b: expected the same queries, got {qa.size} and {qb.size}")
    n = qa.size
    group_codes = _codes("groups", groups, n, np.arange(n))  # default: each query alone
    stratum_codes = _codes("strata", strata, n, np.zeros(n, dtype=np.int64))  # default: one stratum
    keep = ~(np.isnan(qa) | np.isnan(qb))
    if not keep.any():
        raise ValueError("a and b: no query with a value in both")
    diff, group_codes, stratum_codes = (qa - qb)[keep], group_codes[keep], stratum_codes[keep]

    rng = np.random.default_rng(seed)
    observed, boot = [], []
    for s in np.unique(stratum_codes):
        rows = stratum_codes == s
        g_in = np.unique(group_codes[rows], return_inverse=True)
        gids, inverse = g_in
        if np.isin(gids, np.unique(group_codes[~rows])).any():
            raise ValueError("groups: a group spans two strata")
        sums = np.bincount(inverse, weights=diff[rows], minlength=gids.size)
        counts = np.bincount(inverse, minlength=gids.size).astype(np.float64)
        observed.append(sums.sum() / counts.sum())
        idx = rng.integers(0, gids.size, size=(n_resamples, gids.size))
        boot.append(sums[idx].sum(axis=1) / counts[idx].sum(axis=1))
    stat = float(np.mean(observed))
    dist = np.mean(boot, axis=0)
    tail = (1 - confidence) / 2
    low, high = np.quantile(dist, [tail, 1 - tail])
    p = 2 * min((dist <= 0).mean(), (dist >= 0).mean())
    return {"diff": stat, "ci_low": float(low), "ci_high": float(high),
            "p_value": float(min(1.0, max(p, 1.0 / n_resamples))), "significant": bool(low > 0 or high < 0),
            "n_queries": int(keep.sum()), "n_resamples": int(n_resamples), "confidence": confidence}
