"""The ops of hybrid_fast, one package each: :mod:`.infonce` and :mod:`.topk` (public function,
validation, formulas, reference and one module per backend); :mod:`._common`, the leaf they
share (validation helpers, backend registry, packed keys, Triton helpers).
"""
from __future__ import annotations

import torch

from .. import _ext
from ._common import registry
from .infonce import infonce_loss
from .topk import topk_search


def backends() -> dict:
    """Report what is compiled and which backend each op uses on each device.

    Returns ``{"build": {...}, "ops": {op: {"cpu": {"auto": b, "available": [...]}, "cuda": ...}}}``.
    """
    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    report = {"build": _ext.build_info(), "ops": {}}
    for name, entry in sorted(registry.ops().items()):
        report["ops"][name] = {dev.type: {"auto": entry.auto_choice(dev), "available": entry.available_for(dev)}
                               for dev in devices}
    return report


__all__ = ["infonce_loss", "backends", "topk_search"]
