"""Bad input to infonce_loss gives a clear error naming the argument, expected vs got (every backend)."""
from __future__ import annotations

import pytest
import torch

import hybrid_fast as hf
from oracle_utils import compiled_cpu_backends, make_inputs

BACKENDS = compiled_cpu_backends("infonce_loss")
ALL = ["reference", *BACKENDS]


@pytest.fixture
def qp():
    q, p, *_ = make_inputs(6, 9, 5, torch.float32)
    return q, p


@pytest.mark.parametrize("backend", ALL)
def test_shape_dtype_device(backend, qp):
    q, p = qp
    with pytest.raises(ValueError, match=r"q and p must have the same dim.*\(6, 5\).*\(9, 4\)"):
        hf.infonce_loss(q, p[:, :4], backend=backend)
    with pytest.raises(ValueError, match=r"q must be 2-D \(B, dim\), got shape \(6, 5, 1\)"):
        hf.infonce_loss(q[..., None], p, backend=backend)
    with pytest.raises(TypeError, match="q must be float32, float64, bfloat16 or float16, got torch.int64"):
        hf.infonce_loss(q.long(), p.long(), backend=backend)
    with pytest.raises(TypeError, match="same dtype, got torch.float32 and torch.float64"):
        hf.infonce_loss(q, p.double(), backend=backend)
    with pytest.raises(ValueError, match="same device, got cpu and meta"):
        hf.infonce_loss(q, p.to("meta"), backend=backend)


@pytest.mark.parametrize("backend", ALL)
def test_empty_batch_and_default_labels(backend, qp):
    q, p = qp
    with pytest.raises(ValueError, match=r"q is empty: expected at least one row, got shape \(0, 5\)"):
        hf.infonce_loss(q[:0], p, backend=backend)
    with pytest.raises(ValueError, match=r"p is empty"):
        hf.infonce_loss(q, p[:0], labels=torch.zeros(6, dtype=torch.long), backend=backend)
    with pytest.raises(ValueError, match="default labels arange\\(B\\) need N >= B: got B = 6 queries and N = 3"):
        hf.infonce_loss(q, p[:3], backend=backend)


@pytest.mark.parametrize("backend", ALL)
def test_labels(backend, qp):
    q, p = qp
    with pytest.raises(ValueError, match=r"labels out of range: expected 0 <= labels < N \(rows of p\) = 9, got 9"):
        hf.infonce_loss(q, p, torch.tensor([0, 1, 2, 3, 4, 9]), backend=backend)
    with pytest.raises(ValueError, match="labels out of range.*got -1"):
        hf.infonce_loss(q, p, torch.tensor([0, 1, 2, 3, 4, -1]), backend=backend)
    with pytest.raises(TypeError, match="labels must be int64, got torch.int32"):
        hf.infonce_loss(q, p, torch.arange(6, dtype=torch.int32), backend=backend)
    with pytest.raises(ValueError, match=r"labels must have shape \(B=6,\), got \(5,\)"):
        hf.infonce_loss(q, p, torch.arange(5), backend=backend)


@pytest.mark.parametrize("backend", ALL)
def test_groups(backend, qp):
    q, p = qp
    with pytest.raises(ValueError, match=r"p_groups must have shape \(N=9,\), got \(8,\)"):
        hf.infonce_loss(q, p, p_groups=torch.arange(8), backend=backend)
    with pytest.raises(ValueError, match=r"q_groups must have shape \(B=6,\), got \(9,\)"):
        hf.infonce_loss(q, p, q_groups=torch.arange(9), p_groups=torch.arange(9), backend=backend)
    with pytest.raises(ValueError, match="q_groups was given without p_groups"):
        hf.infonce_loss(q, p, q_groups=torch.arange(6), backend=backend)


@pytest.mark.parametrize("backend", ALL)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite(backend, bad, qp):
    q, p = qp
    q2 = q.clone()
    q2[2, 3] = bad
    with pytest.raises(ValueError, match=r"q contains NaN or Inf \(first at index \[2, 3\]\)"):
        hf.infonce_loss(q2, p, backend=backend)
    p2 = p.clone()
    p2[7, 0] = bad
    with pytest.raises(ValueError, match=r"p contains NaN or Inf \(first at index \[7, 0\]\)"):
        hf.infonce_loss(q, p2, backend=backend)


@pytest.mark.parametrize("backend", ALL)
def test_scale_and_reduction(backend, qp):
    q, p = qp
    for bad in (0.0, -1.0, float("inf")):
        with pytest.raises(ValueError, match="scale must be positive and finite"):
            hf.infonce_loss(q, p, scale=bad, backend=backend)
    with pytest.raises(ValueError, match="scale must be a number or a 0-d tensor, got shape \\(2,\\)"):
        hf.infonce_loss(q, p, scale=torch.ones(2), backend=backend)
    with pytest.raises(ValueError, match="reduction must be one of \\('mean', 'sum', 'none'\\), got 'avg'"):
        hf.infonce_loss(q, p, reduction="avg", backend=backend)


@pytest.mark.skipif(not BACKENDS, reason="no compiled backend")
def test_op_level_checks_in_cpp():
    """The raw op validates too (it is callable directly, e.g. from torch.ops)."""
    q, p, *_ = make_inputs(6, 9, 5, torch.float32)
    lab = torch.tensor([0, 1, 2, 3, 4, 12])
    s = torch.tensor(20.0)
    with pytest.raises(ValueError, match=r"labels\[5\] = 12 is out of range: expected 0 <= labels < N \(rows of p\) = 9"):
        torch.ops.hybrid_fast.infonce_fwd(q, p, lab, s, None, None)
    with pytest.raises(ValueError, match="p must be contiguous"):
        torch.ops.hybrid_fast.infonce_fwd(q, p.T.contiguous().T, lab.clamp(max=8), s, None, None)
    with pytest.raises(ValueError, match="scale must be positive and finite"):
        torch.ops.hybrid_fast.infonce_fwd(q, p, lab.clamp(max=8), torch.tensor(-2.0), None, None)
