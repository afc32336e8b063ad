"""Shared test fixtures: fresh seeds, paths to ../shared/data. Tolerances: oracle_utils.py."""
from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("HYBRID_FAST_DATA", REPO.parent / "shared" / "data"))


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
