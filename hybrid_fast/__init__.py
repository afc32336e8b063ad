"""hybrid_fast: fused kernels and the hybrid batch method for multilingual dense retrieval.

Importing this package loads the compiled kernels when present and never imports
transformers, datasets or matplotlib (those load on use).
"""
from __future__ import annotations

import torch  # noqa: F401  (before the compiled module: one libtorch/libgomp mapped)

from . import reference
from ._ext import MissingExtensionError
from .loss import CachedMultipleNegativesRankingLoss, InfoNCELoss, MultipleNegativesRankingLoss
from .ops import backends, infonce_loss
from .search import ExactIndex, topk_search

__version__ = "0.1.0"

# Public names provided by modules that pull heavy dependencies, imported on first use.
_LAZY = {
    "Encoder": ("hybrid_fast.encoder", "Encoder"),
    "BiEncoder": ("hybrid_fast.model", "BiEncoder"),
    "TextEncoder": ("hybrid_fast.eval.protocol", "TextEncoder"),
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'hybrid_fast' has no attribute {name!r}")


__all__ = ["infonce_loss", "InfoNCELoss", "MultipleNegativesRankingLoss", "CachedMultipleNegativesRankingLoss",
           "backends", "reference", "MissingExtensionError", "Encoder", "BiEncoder", "TextEncoder", "topk_search",
           "ExactIndex"]
