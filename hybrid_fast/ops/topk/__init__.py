"""Exact top-k search by inner product, one module per concern:

* :mod:`.api`: :func:`topk_search` (the public function and its contract), the precision
  strategy and backend choice; :func:`.api.search_with_tiles` for tests and benchmarks;
* :mod:`.inputs`: argument validation (also used by the reference and ``ExactIndex``);
* :mod:`.cpu_features`: the CPU capability probe (is bf16 matmul fast here?);
* :mod:`.screen`: the bf16 error bound and the certified bf16 screen + fp32 rescore;
* :mod:`.merge`: merging top-k lists under the tie rule, chunk by chunk;
* :mod:`.formulas`: fake kernels of the torch ops (registered once);
* :mod:`.reference`, :mod:`.cpu`, :mod:`.triton`, :mod:`.cuda`: the backends, each registering
  itself; :mod:`.triton_kernel`: the Triton kernel and its launcher.

The packed (score, id) key format of the GPU backends is ``hybrid_fast/ops/_common/keys.py``.
"""
# Each backend registers itself on import; this order is the order `backends()` lists them in.
from . import reference, cpu, triton, cuda  # noqa: F401,I001
from .api import topk_search
from .cpu_features import fast_bf16_matmul
from .inputs import METRICS, PRECISIONS, normalize_rows
from .screen import bf16_screen_bound

__all__ = ["topk_search", "bf16_screen_bound", "fast_bf16_matmul", "normalize_rows", "METRICS", "PRECISIONS"]
