"""Pure-PyTorch reference implementations of every hybrid_fast op.

They materialise the full score matrix: simple, slow and memory-hungry on purpose. They are the
oracle of the tests and the "pure PyTorch" baseline of the benchmarks.
"""
from .infonce import infonce_loss
from .topk import topk_search

__all__ = ["infonce_loss", "topk_search"]
