"""Public functional API of the kernels; backend registry; validation shared by backends."""
from .infonce import infonce_loss
from .registry import backends

__all__ = ["infonce_loss", "backends"]
