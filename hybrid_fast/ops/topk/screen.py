"""Exact fp32 top-k through a bf16 screen: the error bound of a bf16 dot product and the
certified screen-then-rescore strategy of ``precision="exact"`` (chosen where bf16 matmul is
fast: :func:`hybrid_fast.ops.topk.cpu_features.fast_bf16_matmul`)."""
from __future__ import annotations

import torch

from .merge import sort_rows

BF16_UNIT_ROUNDOFF = 2.0 ** -8
FP32_UNIT_ROUNDOFF = 2.0 ** -24


def bf16_screen_bound(d: int) -> float:
    r"""Constant c_d with ``|s_bf16 - s_fp32| <= c_d * ||q|| * ||x||`` for one dot product.

    s_bf16 = fl32(sum_i bf16(q_i) bf16(x_i)) (bf16 inputs, fp32 accumulation in any order),
    s_fp32 = fl32(sum_i q_i x_i). With u = 2^-8 (bf16 unit roundoff), |bf16(a) - a| <= u|a|, so
    |bf16(q_i) bf16(x_i) - q_i x_i| <= (2u + u^2)|q_i x_i|; fp32 summation of d terms adds at most
    gamma_d sum|terms| with gamma_d = d 2^-24 / (1 - d 2^-24) (Higham, Thm 3.1; FMA only
    tightens it), and sum_i |q_i x_i| <= ||q|| ||x|| (Cauchy-Schwarz). Hence
    c_d = 2u + u^2 + gamma_d ((1 + u)^2 + 1). Subnormal underflow is ignored (its absolute error,
    < 2^-133 per product, is far below every other term for non-degenerate data).
    """
    u = BF16_UNIT_ROUNDOFF
    gamma = d * FP32_UNIT_ROUNDOFF / (1.0 - d * FP32_UNIT_ROUNDOFF)
    return 2 * u + u * u + gamma * ((1 + u) ** 2 + 1)


def exact_by_screen(run, queries, corpus, k, exclude, rescore_bytes=64 << 20):
    """Exact fp32 top-k via a bf16 screen of a certified candidate set, then an fp32 rescore.

    Screen: top-kk by s~ (bf16 inputs, fp32 accumulation). With delta_i = c_d ||q_i|| max_j ||x_j||
    (:func:`bf16_screen_bound`), query i is certified when s~_(k) - s~_(kk) > 2 delta_i: the k best
    screened candidates then have fp32 scores >= s~_(k) - delta_i > s~_(kk) + delta_i >= the fp32
    score of every unscreened id, so the fp32 top-k lies in the screened set. Uncertified
    queries are screened again with kk x 4 (kk = N certifies trivially).
    """
    Q, d = queries.shape
    N = corpus.shape[0]
    q32 = queries.float()
    qb, cb = queries.to(torch.bfloat16), corpus.to(torch.bfloat16)
    qn = torch.linalg.vector_norm(queries, dim=1, dtype=torch.float64)
    xmax = float(torch.linalg.vector_norm(corpus, dim=1, dtype=torch.float64).max())
    # (1 + 1e-6): the norms above are computed in fp64 from the same inputs, then rounded to fp32
    delta = (bf16_screen_bound(d) * qn * xmax * (1 + 1e-6)).float()
    out_s = torch.empty(Q, k, dtype=torch.float32, device=queries.device)
    out_i = torch.empty(Q, k, dtype=torch.int64, device=queries.device)
    pending = torch.arange(Q, device=queries.device)
    kk = min(N, max(2 * k, k + 16))
    while pending.numel() > 0:
        ex = exclude.index_select(0, pending) if exclude is not None else None
        s, i = run(qb.index_select(0, pending), cb, kk, ex)
        if kk == N:
            ok = torch.ones(pending.numel(), dtype=torch.bool, device=queries.device)
        else:
            ok = (s[:, k - 1] - s[:, kk - 1] > 2 * delta[pending]) | (s[:, k - 1] == float("-inf"))
        rows, cand = pending[ok], i[ok]
        chunk = max(1, rescore_bytes // max(1, kk * d * 4))
        for r0 in range(0, rows.numel(), chunk):
            r, c = rows[r0:r0 + chunk], cand[r0:r0 + chunk]
            vecs = corpus.index_select(0, c.clamp_min(0).reshape(-1)).float().view(c.shape[0], kk, d)
            exact = torch.bmm(vecs, q32.index_select(0, r)[:, :, None]).squeeze(2)
            out_s[r], out_i[r] = sort_rows(exact, c, k)
        pending = pending[~ok]
        kk = min(N, 4 * kk)
    return out_s, out_i
