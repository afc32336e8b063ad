"""Exact search on top of the fused top-k op: an index (add/search/save/load, memory-mapped
corpora streamed in chunks) and BEIR-style results."""
from ..ops.topk import topk_search
from .index import ExactIndex, to_beir

__all__ = ["ExactIndex", "to_beir", "topk_search"]
