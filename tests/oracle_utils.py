"""Oracle comparison helpers shared by the kernel tests: the tolerance table and assert_close."""
from __future__ import annotations

import torch

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
