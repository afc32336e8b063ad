"""Fused InfoNCE (every backend available here) against the pure-PyTorch reference in float64."""
from __future__ import annotations

import pytest
import torch

import hybrid_fast as hf
from hybrid_fast.ops._common.registry import op as registry_op
from hybrid_fast.ops.infonce.api import loss_with_tiles
from oracle_utils import assert_close

BACKENDS = [b for b in registry_op("infonce_loss").available_for(torch.device("cpu")) if b != "reference"]
DTYPES = [torch.float64, torch.float32, torch.bfloat16, torch.float16]


def make_inputs(B, N, d, dtype, *, groups=0, labels="diag"):
    """Random unit-norm-ish embeddings (never zeros) and labels/groups in the common layouts."""
    q = torch.randn(B, d, dtype=torch.float64) / d**0.5 * 2
    p = torch.randn(N, d, dtype=torch.float64) / d**0.5 * 2
    if labels == "diag":  # sentence-transformers: positives first, hard negatives in column blocks
        lab = torch.arange(B)
    elif labels == "grouped":  # Tevatron: [pos_i, neg_i1, ..., neg_ih] per query
        lab = torch.arange(B) * (N // B)
    else:
        lab = torch.randint(0, N, (B,))
    qg = pg = None
    if groups:
        pg = torch.randint(0, groups, (N,))
        qg = pg[lab].clone()
    return q.to(dtype), p.to(dtype), lab, qg, pg


def grads_of(fn, q, p, scale):
    qq = q.detach().clone().requires_grad_()
    pp = p.detach().clone().requires_grad_()
    ss = scale.detach().clone().requires_grad_() if isinstance(scale, torch.Tensor) else scale
    loss = fn(qq, pp, ss)
    # Drawn in float64 so both calls get the same weights whatever the loss dtype.
    weights = (torch.rand(loss.shape, dtype=torch.float64) + 0.5).to(loss.dtype)
    (loss * weights).sum().backward()
    return loss.detach(), qq.grad, pp.grad, (ss.grad if isinstance(ss, torch.Tensor) else None)


def check_against_reference(backend, q, p, lab, qg, pg, *, scale=20.0, symmetric=False, reduction="mean",
                            row_block=0, col_block=0):
    dtype = q.dtype
    torch.manual_seed(1234)  # the same upstream weights for both calls
    got = grads_of(lambda a, b, s: loss_with_tiles(a, b, lab, scale=s, q_groups=qg, p_groups=pg, symmetric=symmetric,
                                                   reduction=reduction, backend=backend, row_block=row_block,
                                                   col_block=col_block), q, p, scale)
    torch.manual_seed(1234)
    # The oracle: float64 on the same (already rounded) input values.
    s64 = scale.double() if isinstance(scale, torch.Tensor) else scale
    want = grads_of(lambda a, b, s: hf.reference.infonce_loss(a, b, lab, scale=s, q_groups=qg, p_groups=pg,
                                                              symmetric=symmetric, reduction=reduction),
                    q.double(), p.double(), s64)
    loss_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    for name, g, w in zip(("loss", "dq", "dp", "dscale"), got, want):
        if w is None:
            continue
        assert g is not None, f"{name} missing"
        if name in ("dq", "dp"):
            assert g.dtype == dtype, f"{name} has dtype {g.dtype}, expected the input dtype {dtype}"
            assert_close(g, w, dtype, name, output_in_dtype=True)
        elif name == "dscale":
            assert g.dtype == scale.dtype, f"dscale has dtype {g.dtype}, expected the scale's {scale.dtype}"
            # Returned in the scale's dtype: compare at the coarser of the two resolutions.
            coarser = dtype if dtype != torch.float64 else scale.dtype
            assert_close(g, w, coarser, name, output_in_dtype=True)
        else:
            assert g.dtype == loss_dtype, f"loss has dtype {g.dtype}, expected {loss_dtype}"
            assert_close(g, w, dtype, name)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1, 1), (5, 5, 3), (37, 53, 19), (64, 64, 32), (65, 129, 24)])
def test_matches_reference_shapes(backend, dtype, shape, seed):
    B, N, d = shape
    q, p, lab, qg, pg = make_inputs(B, N, d, dtype)
    check_against_reference(backend, q, p, lab, qg, pg)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("blocks", [(1, 1), (4, 7), (16, 16), (15, 17), (64, 0), (0, 31)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_tiles_and_reductions(backend, blocks, reduction, seed):
    """Forced small tiles run the two-pass and multi-row-block paths on small inputs."""
    q, p, lab, qg, pg = make_inputs(33, 47, 13, torch.float64, groups=9, labels="random")
    check_against_reference(backend, q, p, lab, qg, pg, reduction=reduction, row_block=blocks[0], col_block=blocks[1],
                            scale=torch.tensor(7.5, dtype=torch.float64))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layout", ["diag", "grouped", "random"])
@pytest.mark.parametrize("hard_negatives", [1, 3])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_hard_negative_layouts(backend, layout, hard_negatives, dtype, seed):
    B = 21
    N = B * (hard_negatives + 1)
    q, p, lab, qg, pg = make_inputs(B, N, 17, dtype, labels=layout)
    check_against_reference(backend, q, p, lab, qg, pg, col_block=16)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_masks_symmetric_learnable_scale(backend, symmetric, reduction, dtype, seed):
    q, p, lab, qg, pg = make_inputs(29, 58, 11, dtype, groups=6, labels="random")
    scale = torch.tensor(13.0, dtype=torch.float32)  # a learnable temperature
    check_against_reference(backend, q, p, lab, qg, pg, scale=scale, symmetric=symmetric, reduction=reduction,
                            row_block=8, col_block=20)


@pytest.mark.parametrize("backend", BACKENDS)
def test_parallel_duplicates_are_masked(backend, seed):
    """Parallel data: the same passage in 3 languages is one group; only the labelled one is positive."""
    B, d = 12, 16
    unit = lambda x: torch.nn.functional.normalize(x, dim=-1)  # noqa: E731
    base = unit(torch.randn(B, d, dtype=torch.float64))
    p = torch.cat([unit(base + 0.01 * torch.randn(B, d, dtype=torch.float64)) for _ in range(3)])
    pg = torch.arange(B).repeat(3)
    q = unit(base + 0.05 * torch.randn(B, d, dtype=torch.float64))
    masked = hf.infonce_loss(q, p, p_groups=pg, backend=backend, reduction="none")
    unmasked = hf.infonce_loss(q, p, backend=backend, reduction="none")
    # Unmasked, the two translations of the positive score like it and dilute it: ~log(3) more.
    assert ((unmasked - masked) > 0.5).all(), (unmasked - masked)
    expected = hf.reference.infonce_loss(q, p, p_groups=pg, reduction="none")
    assert_close(masked, expected, torch.float64, "masked loss")


@pytest.mark.parametrize("backend", BACKENDS)
def test_large_scale_is_stable(backend, seed):
    """Online log-sum-exp: scale 1e3 on unnormalised inputs overflows a naive exp."""
    q, p, lab, _, _ = make_inputs(19, 40, 8, torch.float32)
    loss = hf.infonce_loss(q * 10, p * 10, scale=1000.0, backend=backend)
    ref = hf.reference.infonce_loss((q * 10).double(), (p * 10).double(), scale=1000.0)
    assert torch.isfinite(loss)
    torch.testing.assert_close(loss.double(), ref, rtol=1e-4, atol=1e-2)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("symmetric", [False, True])
def test_gradcheck(backend, reduction, symmetric, seed):
    q, p, lab, qg, pg = make_inputs(6, 9, 4, torch.float64, groups=4, labels="random")
    q.requires_grad_()
    p.requires_grad_()
    scale = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)

    def fn(q, p, scale):
        return loss_with_tiles(q, p, lab, scale=scale, q_groups=qg, p_groups=pg, symmetric=symmetric,
                               reduction=reduction, backend=backend, row_block=4, col_block=4)

    assert torch.autograd.gradcheck(fn, (q, p, scale))


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_grad_path_matches(backend, seed):
    q, p, lab, qg, pg = make_inputs(30, 45, 10, torch.float32, groups=5, labels="random")
    with torch.no_grad():
        a = hf.infonce_loss(q, p, lab, q_groups=qg, p_groups=pg, backend=backend)
    b = hf.reference.infonce_loss(q.double(), p.double(), lab, q_groups=qg, p_groups=pg)
    assert_close(a, b, torch.float32, "no-grad loss")


@pytest.mark.parametrize("backend", BACKENDS)
def test_noncontiguous_inputs(backend, seed):
    q = torch.randn(20, 24, dtype=torch.float64)[:, ::2]
    p = torch.randn(12, 26, dtype=torch.float64).T  # (26, 12), column-major
    got = hf.infonce_loss(q, p, backend=backend)
    assert_close(got, hf.reference.infonce_loss(q, p), torch.float64, "loss")
