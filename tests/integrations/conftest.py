"""Shared pieces of the integration tests: the offline MiniLM folder (skip when not installed)."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def minilm_path() -> str:
    try:
        from hybrid_fast.model import offline_minilm_path

        return str(offline_minilm_path())
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
