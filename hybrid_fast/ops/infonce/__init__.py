"""Fused InfoNCE loss with in-batch negatives:

* :mod:`.api`: :func:`infonce_loss` (the public function and its contract), backend choice,
  the symmetric term; :func:`.api.loss_with_tiles` for tests;
* :mod:`.inputs`: argument validation (also used by the reference);
* :mod:`.formulas`: fake and autograd formulas of the torch ops, registered once per namespace;
* :mod:`.reference`, :mod:`.cpu`, :mod:`.triton`: the backends, each registering itself;
  :mod:`.triton_kernel`: the Triton kernels and their launchers.
"""
# Each backend registers itself on import; this order is the order `backends()` lists them in.
from . import reference, cpu, triton  # noqa: F401,I001
from .api import infonce_loss

__all__ = ["infonce_loss"]
