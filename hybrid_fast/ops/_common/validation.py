"""Input checks shared by every op, its backends and its reference.

Errors name the argument, what was expected and what came. Static checks (shape, dtype,
device) always run; data-dependent checks (NaN/Inf, index ranges) run in eager mode and are
skipped while ``torch.compile`` traces (the compiled kernels check index ranges themselves).
"""
from __future__ import annotations

import torch

FLOAT_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulation dtype of every kernel: float64 for float64 inputs, float32 otherwise."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _eager() -> bool:
    return not torch.compiler.is_compiling()


def check_matrix(t, name: str, *, dim_name: str = "rows") -> None:
    """``t`` is a (rows >= 1, dim) floating tensor."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() != 2:
        raise ValueError(f"{name} must be 2-D ({dim_name}, dim), got shape {tuple(t.shape)}")
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32, float64, bfloat16 or float16, got {t.dtype}")
    if t.shape[0] == 0:
        raise ValueError(f"{name} is empty: expected at least one row, got shape {tuple(t.shape)}")
    if t.shape[1] == 0:
        raise ValueError(f"{name} has dim 0: expected dim >= 1, got shape {tuple(t.shape)}")


def check_finite(t: torch.Tensor, name: str) -> None:
    """NaN/Inf check. One fast reduction (NaN/Inf propagate into the sum); the exact elementwise
    scan runs only when that sum is not finite (a bad value, or an overflow of huge values)."""
    if not _eager() or t.numel() == 0:
        return
    if bool(torch.isfinite(t.sum(dtype=torch.float64))):
        return
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        raise ValueError(f"{name} contains NaN or Inf (first at index {bad.nonzero()[0].tolist()}); "
                         f"expected finite values")


def check_same(a: torch.Tensor, b: torch.Tensor, name_a: str, name_b: str) -> None:
    """Same feature dim, dtype and device."""
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"{name_a} and {name_b} must have the same dim, got {name_a} {tuple(a.shape)} "
                         f"and {name_b} {tuple(b.shape)}")
    if a.dtype != b.dtype:
        raise TypeError(f"{name_a} and {name_b} must have the same dtype, got {a.dtype} and {b.dtype}")
    if a.device != b.device:
        raise ValueError(f"{name_a} and {name_b} must be on the same device, got {a.device} and {b.device}")


def check_index_vector(t, name: str, length: int, length_name: str, device: torch.device,
                       upper: int | None = None, upper_name: str = "") -> torch.Tensor:
    """An int64 vector of ``length`` on ``device`` (values in [0, upper) when ``upper`` is given)."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of int64, got {type(t).__name__}")
    if t.dtype != torch.int64:
        raise TypeError(f"{name} must be int64, got {t.dtype}")
    if t.dim() != 1 or t.shape[0] != length:
        raise ValueError(f"{name} must have shape ({length_name}={length},), got {tuple(t.shape)}")
    if t.device != device:
        raise ValueError(f"{name} must be on {device} like the embeddings, got {t.device}")
    if upper is not None and _eager() and length > 0:
        lo, hi = int(t.min()), int(t.max())
        if lo < 0 or hi >= upper:
            bad = lo if lo < 0 else hi
            raise ValueError(f"{name} out of range: expected 0 <= {name} < {upper_name} = {upper}, got {bad}")
    return t.contiguous()


def scale_tensor(scale, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``scale`` (float or 0-d tensor, positive and finite) as a 0-d tensor; keeps a tensor's grad."""
    if isinstance(scale, torch.Tensor):
        if scale.numel() != 1:
            raise ValueError(f"scale must be a number or a 0-d tensor, got shape {tuple(scale.shape)}")
        if not scale.is_floating_point():
            raise TypeError(f"scale must be a floating tensor, got {scale.dtype}")
        s = scale.reshape(())
        if _eager():
            v = float(s.detach())
            if not (v > 0 and v != float("inf")):
                raise ValueError(f"scale must be positive and finite (1/temperature), got {v}")
        return s
    if not isinstance(scale, (int, float)) or isinstance(scale, bool):
        raise TypeError(f"scale must be a float or a 0-d tensor, got {type(scale).__name__}")
    if not (scale > 0 and scale != float("inf")):
        raise ValueError(f"scale must be positive and finite (1/temperature), got {scale}")
    return torch.tensor(float(scale), dtype=compute_dtype(dtype), device=device)
