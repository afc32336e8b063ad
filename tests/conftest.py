"""Shared test fixtures: fresh seeds, paths to ../shared/data, Triton's interpreter mode.
Backend lists, input makers and tolerances of the op tests: oracle_utils.py."""
from __future__ import annotations

import importlib.util
import os
import random
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("HYBRID_FAST_DATA", REPO.parent / "shared" / "data"))


def _import_triton_interpreted() -> bool:
    """Import triton and hybrid_fast's Triton helpers in interpreter mode when this machine has no
    CUDA device (or TRITON_INTERPRET=1 was set for the run); True when that happened.

    triton.jit fixes interpreter mode when a function is decorated (triton.language's own
    helpers at ``import triton``) and hybrid_fast/ops/_common/triton_helpers.py reads it at
    import, so both are imported here, before any test module, whatever the collection order.
    The variable is restored at once; tests marked ``interpreter`` set it while they run (the
    registry reads it per call)."""
    if importlib.util.find_spec("triton") is None:
        return False
    if os.environ.get("TRITON_INTERPRET") != "1" and torch.cuda.is_available():
        return False  # a GPU run: triton compiles for the device
    old = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    try:
        import triton  # noqa: F401

        from hybrid_fast.ops._common import triton_helpers
    finally:
        if old is None:
            del os.environ["TRITON_INTERPRET"]
        else:
            os.environ["TRITON_INTERPRET"] = old
    return triton_helpers.INTERPRET


TRITON_INTERPRETED = _import_triton_interpreted()


@pytest.fixture(autouse=True)
def _triton_mode(request, monkeypatch):
    """``interpreter`` tests: TRITON_INTERPRET=1 while they run (skipped in a GPU run, where
    triton was imported for the device); ``gpu`` tests skip when triton was imported in
    interpreter mode (``TRITON_INTERPRET=1 pytest -m gpu``)."""
    if request.node.get_closest_marker("interpreter"):
        if not TRITON_INTERPRETED:
            pytest.skip("triton runs in compiled mode in this process (CUDA present): run TRITON_INTERPRET=1 "
                        "pytest -m interpreter for the interpreter tests")
        monkeypatch.setenv("TRITON_INTERPRET", "1")
    elif request.node.get_closest_marker("gpu") and TRITON_INTERPRETED:
        pytest.skip("the Triton kernels were imported in interpreter mode in this process")


@pytest.fixture
def seed() -> int:
    """A fresh seed per test, printed on failure so the case can be replayed."""
    s = int(os.environ.get("HYBRID_FAST_SEED", random.SystemRandom().randrange(2**31)))
    torch.manual_seed(s)
    print(f"seed={s}")
    return s


@pytest.fixture
def offline_data_env(monkeypatch, tmp_path):
    """No network, an empty download cache (under tmp_path) and no ``$HYBRID_FAST_DATA``."""
    monkeypatch.setenv("HYBRID_FAST_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HYBRID_FAST_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HYBRID_FAST_DATA", raising=False)
