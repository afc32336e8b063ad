"""Loading of the compiled modules (``hybrid_fast._C``, optional ``hybrid_fast._C_cuda``).

``import hybrid_fast`` always works. When a compiled module is missing, fails to load, or was
built against another torch, the backends it provides are unavailable and every op that needs
one raises :class:`MissingExtensionError` naming both torch versions and the rebuild command
(torchvision's ``_assert_has_ops`` is the model).
"""
from __future__ import annotations

import importlib

import torch

REBUILD_COMMAND = "pip install --no-build-isolation -e .  (from the hybrid_fast source tree)"


class MissingExtensionError(RuntimeError):
    """A compiled backend was asked for but is not usable in this installation."""


class _Extension:
    def __init__(self, module_name: str):
        self.module_name = module_name
        self.module = None
        self.built_for: str | None = None
        self.error: str | None = None
        try:
            # torch is imported first so that one libgomp / libtorch is mapped.
            module = importlib.import_module(module_name)
        except (ImportError, OSError) as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            return
        self.built_for = module.build_info().get("torch_version")
        if self.built_for != torch.__version__:
            self.error = f"built against torch {self.built_for}"
            return
        self.module = module

    @property
    def available(self) -> bool:
        return self.module is not None

    def unavailable_error(self, what: str) -> MissingExtensionError | None:
        """``None`` when the module is usable, else the error a call of ``what`` raises: both
        torch versions and the rebuild command (the registry's availability probe of the
        compiled backends)."""
        if self.module is not None:
            return None
        return MissingExtensionError(
            f"hybrid_fast: {what} needs the compiled module {self.module_name}, which is not usable: "
            f"{self.error}. Installed torch is {torch.__version__}; the module was built for torch "
            f"{self.built_for or 'unknown (not built or not loadable)'}. Rebuild with: {REBUILD_COMMAND}. "
            f"backend='reference' runs the pure-PyTorch implementation meanwhile."
        )

    def require(self, what: str) -> None:
        error = self.unavailable_error(what)
        if error is not None:
            raise error


cpu = _Extension("hybrid_fast._C")
# The CUDA module links the CUDA runtime and libtorch_cuda: only try it on a CUDA build of torch.
cuda = _Extension("hybrid_fast._C_cuda") if torch.version.cuda else None


def build_info() -> dict:
    """What was compiled and for which torch; used by :func:`hybrid_fast.backends`."""
    info = {"torch": torch.__version__, "cpu_module": None, "cuda_module": None}
    if cpu.available:
        m = cpu.module
        # bf16_gemm: whether bf16 inputs run as bf16 GEMM tiles now (HYBRID_FAST_BF16_GEMM, bf16_units)
        info["cpu_module"] = dict(m.build_info(), isa_in_use=m.cpu_isa(), bf16_units=m.bf16_units(),
                                  bf16_gemm_engine=m.bf16_gemm_engine(), bf16_gemm_mode=m.bf16_gemm_mode(),
                                  bf16_gemm=m.bf16_gemm())
    else:
        info["cpu_module_error"] = cpu.error
    if cuda is not None:
        if cuda.available:
            info["cuda_module"] = dict(cuda.module.build_info())
        else:
            info["cuda_module_error"] = cuda.error
    return info
