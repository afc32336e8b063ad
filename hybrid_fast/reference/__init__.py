"""Pure-PyTorch reference implementations of every hybrid_fast op.

They materialise the full score matrix: simple, slow and memory-hungry on purpose. They are the
oracle of the tests and the "pure PyTorch" baseline of the benchmarks. Each lives beside its op
(``hybrid_fast/ops/<op>/reference.py``); this module re-exports them.
"""
from ..ops.infonce.reference import infonce_loss
from ..ops.topk.reference import topk_search

__all__ = ["infonce_loss", "topk_search"]
