"""Cross-rank negatives (``infonce_loss(..., gather_across_devices=True)``) at W = 2 on gloo/CPU
equal the single-process fused loss on the concatenated batch, in float64.

All cases run in ONE spawn of two ranks (module fixture: process start dominates the cost); each
test then checks one case against the single-process oracle computed here. Per rank: the local
loss, the gradients of its local q and p (which the reduce-scatter makes the gradients of
``sum_r loss_r``) and of the scale (an ordinary parameter: DDP averages it).
"""
from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

import hybrid_fast as hf
from hybrid_fast.distributed.testing import run_workers

TOL = dict(rtol=1e-10, atol=1e-12)
W = 2


def _close(actual, expected, what):
    torch.testing.assert_close(actual, expected, **TOL, msg=lambda m: f"{what}: {m}")


def _make_case(name, gen, sizes, hn=0, groups=False, symmetric=False, reduction="mean", dup_across=False,
               interleave=False, d=6):
    """Per-rank local batches: ``sizes`` = B_r per rank; N_r = B_r * (1 + hn) candidates."""
    ranks = []
    gid = 0
    for B in sizes:
        N = B * (1 + hn)
        # unit rows and a moderate scale: every candidate (a masked duplicate too) weighs in the loss
        q = torch.nn.functional.normalize(torch.randn(B, d, generator=gen, dtype=torch.float64), dim=1)
        p = torch.nn.functional.normalize(torch.randn(N, d, generator=gen, dtype=torch.float64), dim=1)
        if interleave:  # query i's positive at row i*(1+hn), its hard negatives right after it
            labels = torch.arange(B) * (1 + hn)
        else:  # positives first, then hard-negative blocks
            labels = torch.arange(B)
        r = dict(q=q, p=p, labels=labels)
        if groups:
            pg = torch.arange(gid, gid + N, dtype=torch.int64)
            gid += N
            r["p_groups"] = pg
            r["q_groups"] = pg[labels].clone()
        ranks.append(r)
    if dup_across:
        # rank 1 holds a duplicate of rank 0's first positive (same group id) as a hard negative:
        # masked for rank 0's query 0 (cross-rank) and never for its own positive.
        r0, r1 = ranks[0], ranks[1]
        j = r1["p"].shape[0] - 1
        r1["p"][j] = r0["p"][r0["labels"][0]]
        r1["p_groups"][j] = r0["p_groups"][r0["labels"][0]]
        r0["q"][0] = r0["p"][r0["labels"][0]]  # a confident query: the duplicate weighs ~ log 2
    up = torch.rand(sum(sizes), generator=gen, dtype=torch.float64) + 0.5  # upstream grads for "none"
    return dict(name=name, ranks=ranks, symmetric=symmetric, reduction=reduction, upstream=up, scale=7.5)


def _cases():
    gen = torch.Generator().manual_seed(1234)
    cases = []
    for red in ("mean", "sum", "none"):
        for sym in (False, True):
            cases.append(_make_case(f"hn0-{red}-sym{int(sym)}", gen, [5, 5], symmetric=sym, reduction=red))
            cases.append(_make_case(f"hn2-groups-{red}-sym{int(sym)}", gen, [4, 4], hn=2, groups=True,
                                    symmetric=sym, reduction=red, dup_across=True))
    cases.append(_make_case("hn2-interleaved", gen, [4, 4], hn=2, interleave=True))
    cases.append(_make_case("ragged-mean", gen, [3, 6], hn=1, groups=True, symmetric=True))
    cases.append(_make_case("ragged-sum", gen, [6, 2], hn=2, reduction="sum"))
    cases.append(dict(_make_case("fallback-collectives", gen, [4, 4], hn=2, groups=True, symmetric=True),
                      fallback=True))
    return cases


def _local_loss(case, r, **kw):
    loc = case["ranks"][r]
    q = loc["q"].clone().requires_grad_(True)
    p = loc["p"].clone().requires_grad_(True)
    s = torch.tensor(case["scale"], dtype=torch.float64, requires_grad=True)
    loss = hf.infonce_loss(q, p, loc["labels"], scale=s, q_groups=loc.get("q_groups"), p_groups=loc.get("p_groups"),
                           symmetric=case["symmetric"], reduction=case["reduction"], **kw)
    return q, p, s, loss


def _worker(rank, world, cases):
    from hybrid_fast.distributed import gather

    out = {}
    for case in cases:
        gather.FORCE_FALLBACK = bool(case.get("fallback"))
        q, p, s, loss = _local_loss(case, rank, gather_across_devices=True)
        if case["reduction"] == "none":
            sizes = [c["q"].shape[0] for c in case["ranks"]]
            lo = sum(sizes[:rank])
            loss.backward(case["upstream"][lo:lo + sizes[rank]])
        else:
            loss.backward()
        out[case["name"]] = dict(loss=loss.detach(), dq=q.grad, dp=p.grad, ds=s.grad)
    gather.FORCE_FALLBACK = False

    # W = 1 (a one-rank subgroup per rank; also exercises process_group=): equals the plain op exactly.
    groups = [dist.new_group([r]) for r in range(world)]
    w1 = {}
    for case in cases:
        if case["ranks"][0]["q"].shape[0] != case["ranks"][1]["q"].shape[0]:
            continue
        plain = _local_loss(case, rank)
        gathered = _local_loss(case, rank, gather_across_devices=True, process_group=groups[rank])
        for res in (plain, gathered):
            res[3].sum().backward()
        w1[case["name"]] = [(a.grad if a.grad is not None else a).clone() for a in plain[:3]] + [plain[3].detach()], \
            [(a.grad if a.grad is not None else a).clone() for a in gathered[:3]] + [gathered[3].detach()]

    # Ranks that disagree get the same clear error on every rank (no hang).
    errors = []
    loc = cases[0]["ranks"][rank]
    for kw in (dict(symmetric=rank == 0), dict(scale=20.0 + rank)):
        try:
            hf.infonce_loss(loc["q"], loc["p"], gather_across_devices=True, **kw)
            errors.append(None)
        except ValueError as err:
            errors.append(str(err))
    return dict(cases=out, w1=w1, errors=errors)


CASES = _cases()


@pytest.fixture(scope="module")
def results():
    return run_workers(_worker, W, CASES, timeout=180)


def _global(case):
    """The single-process problem on the concatenated batch: candidates of rank r follow those of
    ranks < r, labels offset by the preceding ranks' candidate counts."""
    ranks = case["ranks"]
    q = torch.cat([r["q"] for r in ranks]).requires_grad_(True)
    p = torch.cat([r["p"] for r in ranks]).requires_grad_(True)
    offs = torch.tensor([0] + [r["p"].shape[0] for r in ranks]).cumsum(0)
    labels = torch.cat([r["labels"] + offs[i] for i, r in enumerate(ranks)])
    qg = torch.cat([r["q_groups"] for r in ranks]) if "q_groups" in ranks[0] else None
    pg = torch.cat([r["p_groups"] for r in ranks]) if "p_groups" in ranks[0] else None
    s = torch.tensor(case["scale"], dtype=torch.float64, requires_grad=True)
    return q, p, labels, qg, pg, s


def _single_process_rows(case, labels=None):
    q, p, glabels, qg, pg, s = _global(case)
    rows = hf.infonce_loss(q, p, glabels if labels is None else labels, scale=s, q_groups=qg, p_groups=pg,
                           symmetric=case["symmetric"], reduction="none")
    return q, p, s, rows


@pytest.mark.parametrize("name", [c["name"] for c in CASES])
def test_cross_rank_loss_equals_single_process(results, name):
    case = next(c for c in CASES if c["name"] == name)
    sizes = [r["q"].shape[0] for r in case["ranks"]]
    csizes = [r["p"].shape[0] for r in case["ranks"]]
    Bg = sum(sizes)
    q, p, s, rows = _single_process_rows(case)
    red = case["reduction"]
    # Row weights of T = sum_r loss_r (what the reduce-scatter differentiates).
    weights = {"mean": torch.full((Bg,), W / Bg, dtype=torch.float64), "sum": torch.ones(Bg, dtype=torch.float64),
               "none": case["upstream"]}[red]
    (rows * weights).sum().backward()
    for r in range(W):
        got = results[r]["cases"][name]
        lo, hi = sum(sizes[:r]), sum(sizes[:r + 1])
        plo, phi = sum(csizes[:r]), sum(csizes[:r + 1])
        local_rows = rows.detach()[lo:hi]
        want = {"mean": local_rows.sum() * W / Bg, "sum": local_rows.sum(), "none": local_rows}[red]
        _close(got["loss"], want, f"{name} rank {r} loss")
        _close(got["dq"], q.grad[lo:hi], f"{name} rank {r} dq")
        _close(got["dp"], p.grad[plo:phi], f"{name} rank {r} dp")
    _close(sum(results[r]["cases"][name]["ds"] for r in range(W)), s.grad, f"{name} sum of scale grads")


@pytest.mark.parametrize("name", [c["name"] for c in CASES if c["reduction"] == "mean"])
def test_ddp_average_is_single_process_gradient(results, name):
    """What DDP does with the per-rank gradients (average) equals the single-process gradient of
    the global mean loss; the average of the per-rank losses is the global loss."""
    case = next(c for c in CASES if c["name"] == name)
    q, p, glabels, qg, pg, s = _global(case)
    loss = hf.infonce_loss(q, p, glabels, scale=s, q_groups=qg, p_groups=pg, symmetric=case["symmetric"])
    loss.backward()
    res = [results[r]["cases"][name] for r in range(W)]
    _close(sum(x["loss"] for x in res) / W, loss.detach(), "average loss")
    _close(sum(x["ds"] for x in res) / W, s.grad, "DDP-averaged scale grad")
    # an embedding's parameter gradient flows only through its owner: DDP divides it by W
    _close(torch.cat([x["dq"] for x in res]) / W, q.grad, "dq / W")
    _close(torch.cat([x["dp"] for x in res]) / W, p.grad, "dp / W")


def test_wrong_offset_changes_the_loss():
    """Layout regression (sentence-transformers PR #3453): with hard negatives, offsetting labels
    by rank * B_local instead of the gathered candidate counts points at a hard negative."""
    case = next(c for c in CASES if c["name"] == "hn2-groups-mean-sym0")
    B = case["ranks"][0]["q"].shape[0]
    wrong = torch.cat([r["labels"] + i * B for i, r in enumerate(case["ranks"])])
    right = _single_process_rows(case)[3].detach()
    bad = _single_process_rows(case, wrong)[3].detach()
    assert (right - bad).abs().max() > 1e-3


def test_cross_rank_duplicate_is_masked():
    """The dup_across cases would differ without the gathered group ids (the test can fail)."""
    case = next(c for c in CASES if c["name"] == "hn2-groups-mean-sym0")
    q, p, labels, qg, pg, s = _global(case)
    with torch.no_grad():
        masked = hf.infonce_loss(q, p, labels, scale=s, q_groups=qg, p_groups=pg, reduction="none")
        unmasked = hf.infonce_loss(q, p, labels, scale=s, reduction="none")
    assert abs(float(masked[0] - unmasked[0])) > 0.1  # rank 0's query 0 sees its duplicate on rank 1


def test_world_size_one_equals_plain_op_exactly(results):
    for r in range(W):
        assert results[r]["w1"], "no W = 1 case ran"
        for name, (plain, gathered) in results[r]["w1"].items():
            for a, b, what in zip(plain, gathered, ("dq", "dp", "ds", "loss")):
                assert torch.equal(a, b), f"{name} rank {r}: {what} differs from the plain op"


def test_disagreeing_ranks_get_a_clear_error(results):
    for r in range(W):
        sym_err, scale_err = results[r]["errors"]
        assert sym_err is not None and "symmetric" in sym_err
        assert scale_err is not None and "scale" in scale_err


def test_not_initialised_is_local():
    """Without a process group the flag is a no-op (single-process scripts keep working)."""
    assert not dist.is_initialized()
    q, p = torch.randn(4, 3, dtype=torch.float64), torch.randn(6, 3, dtype=torch.float64)
    assert torch.equal(hf.infonce_loss(q, p, gather_across_devices=True), hf.infonce_loss(q, p))
