"""Backend registry: which implementation of an op runs for a given device.

Backend choice is explicit per call (``backend=`` argument); ``"auto"`` is resolved here from
the tensors' device and what is compiled. Nothing is switched globally or at import.

Backends: ``"reference"`` (pure PyTorch, materialises scores; the oracle), ``"cpu"`` (C++
kernels in ``hybrid_fast._C``), ``"triton"`` (GPU, or CPU tensors under ``TRITON_INTERPRET=1``),
``"cuda"`` (CUDA C++ in ``hybrid_fast._C_cuda``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable

import torch

from .. import _ext

BACKENDS = ("reference", "cpu", "triton", "cuda")


def _triton_usable(device: torch.device) -> bool:
    if device.type == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        return False
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass
class OpBackends:
    """The implementations of one op and the device types each one serves."""

    name: str
    # backend -> (device types served, availability check, implementation)
    impls: dict[str, tuple[tuple[str, ...], Callable[[torch.device], bool], Callable]] = field(default_factory=dict)
    # device type -> preference order for "auto"
    auto_order: dict[str, tuple[str, ...]] = field(
        default_factory=lambda: {"cpu": ("cpu",), "cuda": ("cuda", "triton")}
    )

    def register(self, backend: str, devices: tuple[str, ...], available: Callable[[torch.device], bool], fn: Callable):
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
        self.impls[backend] = (devices, available, fn)

    def available_for(self, device: torch.device) -> list[str]:
        return [b for b, (devs, ok, _) in self.impls.items() if device.type in devs and ok(device)]

    def resolve(self, backend: str, device: torch.device) -> tuple[str, Callable]:
        if backend != "auto" and backend not in BACKENDS:
            raise ValueError(
                f"backend must be 'auto' or one of {BACKENDS}, got {backend!r}")
        available = self.available_for(device)
        if backend == "auto":
            for b in self.auto_order.get(device.type, ()):
                if b in available:
                    return b, self.impls[b][2]
            if device.type == "cpu":
                _ext.cpu.require(f"{self.name} on the CPU")
            raise RuntimeError(
                f"hybrid_fast: no compiled backend of {self.name} for device {device}; available: {available}. "
                f"Pass backend='reference' for the pure-PyTorch implementation.")
        if backend not in available:
            if backend == "cpu" and device.type == "cpu":
                _ext.cpu.require(f"{self.name}(backend='cpu')")
            raise RuntimeError(
                f"hybrid_fast: backend {backend!r} of {self.name} is not available for device {device}; "
                f"available: {available}")
        return backend, self.impls[backend][2]


_OPS: dict[str, OpBackends] = {}


def op(name: str) -> OpBackends:
    """The registry entry of op ``name`` (created on first use)."""
    return _OPS.setdefault(name, OpBackends(name))


def cpu_module_available(device: torch.device) -> bool:
    return _ext.cpu.available


def cuda_module_available(device: torch.device) -> bool:
    return _ext.cuda is not None and _ext.cuda.available


def triton_available(device: torch.device) -> bool:
    return _triton_usable(device)


def backends() -> dict:
    """Report what is compiled and which backend each op uses on each device.

    Returns ``{"build": {...}, "ops": {op: {"cpu": {"auto": b, "available": [...]}, "cuda": ...}}}``.
    """
    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    report = {"build": _ext.build_info(), "ops": {}}
    for name, entry in sorted(_OPS.items()):
        per_device = {}
        for dev in devices:
            avail = entry.available_for(dev)
            auto = next((b for b in entry.auto_order.get(dev.type, ()) if b in avail), None)
            per_device[dev.type] = {"auto": auto, "available": avail}
        report["ops"][name] = per_device
    return report
