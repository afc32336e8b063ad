"""The one helper module of the op tests (tests/ops/, and the tests of what sits on the ops):
backend lists, input makers, the tolerance table and the oracle comparisons. Test files import
from here, never from each other."""
from __future__ import annotations

import pytest
import torch

import hybrid_fast as hf
from hybrid_fast import _ext
from hybrid_fast.ops._common.registry import op as registry_op
from hybrid_fast.ops.infonce.api import loss_with_tiles

# Tolerance per input dtype, for a kernel result against the float64 reference evaluated on the
# same (already rounded) input values. Reasons:
#   float64: same maths, only summation order differs.
#   float32/bfloat16/float16: the kernels upcast low-precision inputs to fp32 and accumulate in
#   fp32, so all three see fp32 rounding of d-term dot products (~1e-6 relative) amplified by the
#   scale (20) inside exp; Sleef exp adds <= 1 ulp.
TOLERANCES = {
    torch.float64: dict(rtol=1e-9, atol=1e-10),
    torch.float32: dict(rtol=2e-4, atol=2e-5),
    torch.bfloat16: dict(rtol=2e-4, atol=2e-5),
    torch.float16: dict(rtol=2e-4, atol=2e-5),
}


# Extra tolerance when the result itself is returned in the input dtype (gradients): its rounding
# (bf16: 8 mantissa bits, fp16: 11).
OUTPUT_ROUNDING = {
    torch.float64: dict(rtol=1e-9, atol=1e-10),
    torch.float32: dict(rtol=2e-4, atol=2e-5),
    torch.bfloat16: dict(rtol=1.6e-2, atol=1e-4),
    torch.float16: dict(rtol=2e-3, atol=1e-5),
}


def assert_close(actual, expected, dtype, what="", *, output_in_dtype=False):
    tol = (OUTPUT_ROUNDING if output_in_dtype else TOLERANCES)[dtype]
    # Absolute errors scale with the largest entry (e.g. softmax - onehot cancels to ~eps * scale
    # on confident rows while other rows' gradients are O(scale)): norm-wise atol.
    atol = tol["atol"] + tol["rtol"] * float(expected.detach().abs().max()) if expected.numel() else tol["atol"]
    torch.testing.assert_close(actual.double(), expected.double(), rtol=tol["rtol"], atol=atol,
                               msg=lambda m: f"{what}: {m}")


# ----------------------------------------------------------------------------- backends
needs_cpu_module = pytest.mark.skipif(not _ext.cpu.available, reason=f"compiled module unusable: {_ext.cpu.error}")
# Triton on CPU tensors: tests/conftest.py imports triton in interpreter mode and sets
# TRITON_INTERPRET=1 while a test marked `interpreter` runs.
interpreter = pytest.mark.interpreter


def gpu(fn):
    """Marker ``gpu`` (deselected by default; ``pytest -m gpu``), skipped without a CUDA device."""
    return pytest.mark.gpu(pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")(fn))


def compiled_cpu_backends(op: str) -> list[str]:
    """The compiled backends of ``op`` that serve CPU tensors in this process (not the reference)."""
    return [b for b in registry_op(op).available_for(torch.device("cpu")) if b != "reference"]


def backend_cases(**cases) -> list:
    """pytest params ``(backend, *case)`` from ``{backend: [case tuples]}``: "cpu" cases are skipped
    without the compiled module, "triton" cases run on CPU tensors under the interpreter
    (marked ``interpreter``), "reference" always runs. Each backend keeps its own case list
    (the interpreter is ~1000x slower than the C++ kernels: it gets fewer, smaller cases)."""
    marks = {"cpu": [needs_cpu_module], "triton": [interpreter], "reference": []}
    out = []
    for backend, rows in cases.items():
        for row in rows:
            row = row if isinstance(row, tuple) else (row,)
            out.append(pytest.param(backend, *row, marks=marks[backend]))
    return out


# ----------------------------------------------------------------------------- InfoNCE
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


# -------------------------------------------------------------------------------- top-k
def integer_data(Q, N, d, dtype, dup=True):
    q = torch.randint(-3, 4, (Q, d)).to(dtype)
    c = torch.randint(-3, 4, (N, d)).to(dtype)
    if dup:  # duplicate vectors: exact ties in every position of the corpus
        c[N // 2::7] = c[1]
        c[N - 1] = c[0]
    return q, c


def assert_valid_topk(scores, indices, q, c, k, exclude_rows=None, atol=1e-4):
    """Tie-aware: a valid top-k of the float64 scores, up to atol, sorted under the tie rule."""
    S = q.double() @ c.double().T
    if exclude_rows is not None:
        for i, ids in enumerate(exclude_rows):
            S[i, [j for j in ids if j >= 0]] = float("-inf")
    assert scores.shape == indices.shape == (q.shape[0], k)
    for i in range(q.shape[0]):
        idx = indices[i]
        valid = idx >= 0
        n_valid = int(torch.isfinite(S[i]).sum())
        assert int(valid.sum()) == min(k, n_valid), f"row {i}: expected {min(k, n_valid)} results"
        got = idx[valid]
        assert got.unique().numel() == got.numel(), f"row {i}: duplicate ids"
        assert torch.isfinite(S[i, got]).all(), f"row {i}: returned an excluded id"
        torch.testing.assert_close(scores[i, valid].double(), S[i, got], atol=atol, rtol=0)
        s = scores[i, valid]
        assert bool((s[:-1] >= s[1:]).all()), f"row {i}: not sorted"
        same = s[:-1] == s[1:]
        assert bool((got[:-1][same] < got[1:][same]).all()), f"row {i}: equal scores not by ascending id"
        rest = torch.ones(S.shape[1], dtype=torch.bool)
        rest[got] = False
        if rest.any() and got.numel():
            assert float(S[i, got].min()) >= float(S[i, rest].max()) - 2 * atol, f"row {i}: missed a better id"
        assert bool((scores[i, ~valid] == float("-inf")).all())


def grid_inputs(Q, N, d, dtype=torch.float32, dup=True):
    """Values on a 1/4 grid: every fp32 dot product is exact, so scores and ids must match the
    reference exactly (ties included)."""
    q = (torch.randint(-4, 5, (Q, d)) / 4).to(dtype)
    x = (torch.randint(-4, 5, (N, d)) / 4).to(dtype)
    if dup:
        x[N // 2] = x[1]
        x[N - 1] = x[1]
    return q, x


def near_tie_data(d=64, N=400, cluster=64, Q=5):
    """A cluster of near-tied rows v + gap * j * w (j a permutation of 0..cluster-1) scoring
    high, the rest far below. v is exactly representable in bf16 with |v_i| in [1, 2) and the
    perturbations stay below half its bf16 spacing (2^-8), so bf16 rounds every cluster row to v
    (exact ties in bf16: the order is lost), while neighbouring fp32 scores (~150) differ by
    gap * q.w >= ~6e-4, i.e. ~40 fp32 ulps: fp32 resolves the order."""
    gap = 3e-3 / cluster
    v = (torch.sign(torch.randn(d)) * (1 + torch.rand(d))).bfloat16().float()
    w = torch.rand(d) * 2 - 1
    c = torch.randn(N, d) * 0.1
    c[:cluster] = v + gap * torch.randperm(cluster).float()[:, None] * w
    q = v + w + 0.01 * torch.randn(Q, d)
    return q, c[torch.randperm(N)]


def tiny_parallel_data(n=24, langs=("en", "de", "es")):
    """``n`` synthetic parallel QA examples in ``langs`` (a ParallelQADataset); pairs of examples
    share a paragraph (a false-negative mask group), so masking acts inside and across batches."""
    from hybrid_fast.data.squad import ParallelQA
    from hybrid_fast.sampling import ParallelQADataset

    records = {lang: [ParallelQA(f"q{i}", f"a{i // 6}", lang, f"{lang} question number {i} about topic {i % 5}",
                                 f"{lang} passage {i // 2} says something about {i % 7} and more", 0, "x", i // 2)
                      for i in range(n)] for lang in langs}
    return ParallelQADataset(records, langs)
