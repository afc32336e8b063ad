"""Public functional API of the kernels; backend registry; validation shared by backends."""
from .infonce import infonce_loss
from .registry import backends
from .topk import topk_search

__all__ = ["infonce_loss", "backends", "topk_search"]
from . import triton_backend  # noqa: F401
from . import cuda_backend  # noqa: F401
