"""Backend registry: which implementation of an op runs for a given device.

Backend choice is explicit per call (``backend=`` argument); ``"auto"`` is resolved here from
the tensors' device and what each backend says about itself. Nothing is switched globally or
at import.

Each backend module registers itself (``hybrid_fast/ops/<op>/{reference,cpu,triton,cuda}.py``)
with the device types it serves and a ``why_unavailable(device)`` probe that returns ``None``
when it can run, else the exception to raise (its own message: "module not built", "needs
TRITON_INTERPRET=1 on CPU tensors", ...). The registry has no special case for any backend.

Backends: ``"reference"`` (pure PyTorch, materialises scores; the oracle), ``"cpu"`` (C++
kernels in ``hybrid_fast._C``), ``"triton"`` (GPU, or CPU tensors under ``TRITON_INTERPRET=1``),
``"cuda"`` (CUDA C++ in ``hybrid_fast._C_cuda``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable

import torch

BACKENDS = ("reference", "cpu", "triton", "cuda")
# Preference order of "auto" per device type. The reference is never chosen by "auto".
AUTO_ORDER = {"cpu": ("cpu",), "cuda": ("cuda", "triton")}


def always_available(device: torch.device) -> None:
    return None


@dataclass(frozen=True)
class Backend:
    """One implementation of an op: the device types it serves, its availability probe
    (``None`` = usable, else the exception explaining why not) and the implementation."""

    name: str
    devices: tuple[str, ...]
    impl: Callable
    why_unavailable: Callable[[torch.device], Exception | None] = always_available


@dataclass
class OpBackends:
    """The registered backends of one op."""

    name: str
    impls: dict[str, Backend] = field(default_factory=dict)

    def register(self, backend: str, devices: tuple[str, ...], impl: Callable,
                 why_unavailable: Callable[[torch.device], Exception | None] = always_available) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
        self.impls[backend] = Backend(backend, tuple(devices), impl, why_unavailable)

    def _problem(self, backend: str, device: torch.device) -> Exception | None:
        entry = self.impls.get(backend)
        if entry is None or device.type not in entry.devices:
            serves = entry.devices if entry is not None else ()
            return RuntimeError(f"backend {backend!r} of {self.name} does not serve {device.type} tensors "
                                f"(it serves: {list(serves)})")
        return entry.why_unavailable(device)

    def available_for(self, device: torch.device) -> list[str]:
        return [b for b in self.impls if self._problem(b, device) is None]

    def auto_choice(self, device: torch.device) -> str | None:
        available = self.available_for(device)
        return next((b for b in AUTO_ORDER.get(device.type, ()) if b in available), None)

    def resolve(self, backend: str, device: torch.device) -> tuple[str, Callable]:
        """``(backend name, implementation)`` for a call on ``device``; raises the backend's own
        error (extended with the list of available backends) when it cannot run."""
        if backend != "auto" and backend not in BACKENDS:
            raise ValueError(f"backend must be 'auto' or one of {BACKENDS}, got {backend!r}")
        if backend == "auto":
            chosen = self.auto_choice(device)
            if chosen is not None:
                return chosen, self.impls[chosen].impl
            candidates = AUTO_ORDER.get(device.type, ())
            problem = self._problem(candidates[0], device) if candidates else None
            reason = f": {problem}" if problem is not None else ""
            raise _with_context(problem, RuntimeError(
                f"hybrid_fast: no compiled backend of {self.name} for device {device}{reason}; available: "
                f"{self.available_for(device)}. Pass backend='reference' for the pure-PyTorch implementation."))
        problem = self._problem(backend, device)
        if problem is not None:
            raise _with_context(problem, RuntimeError(
                f"hybrid_fast: backend {backend!r} of {self.name} is not available for device {device}: "
                f"{problem}; available: {self.available_for(device)}"))
        return backend, self.impls[backend].impl


def _with_context(problem: Exception | None, generic: RuntimeError) -> Exception:
    """The backend's own exception type (e.g. MissingExtensionError) carrying the registry's
    message (which quotes the backend's reason), or the generic RuntimeError."""
    if problem is None or type(problem) is RuntimeError:
        return generic
    try:
        return type(problem)(str(generic))
    except TypeError:  # an exception type with another constructor: keep it as it is
        return problem


_OPS: dict[str, OpBackends] = {}


def op(name: str) -> OpBackends:
    """The registry entry of op ``name`` (created on first use)."""
    return _OPS.setdefault(name, OpBackends(name))


def ops() -> dict[str, OpBackends]:
    """Every op registered so far, by name."""
    return dict(_OPS)


def triton_unavailable(device: torch.device) -> Exception | None:
    """Availability probe of every "triton" backend: CUDA tensors, or CPU tensors under
    ``TRITON_INTERPRET=1``, with triton installed."""
    if device.type == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        return RuntimeError("Triton runs CPU tensors only under TRITON_INTERPRET=1 (set before triton is imported)")
    try:
        import triton  # noqa: F401
    except ImportError as exc:
        return RuntimeError(f"triton is not installed ({exc}); pip install triton")
    return None
