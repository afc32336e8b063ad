import os
from pathlib import Path

import pytest


def shared_data_dir() -> Path:
    """``$HYBRID_FAST_DATA`` or ``<repo>/../shared/data``."""
    if os.environ.get("HYBRID_FAST_DATA"):
        return Path(os.environ["HYBRID_FAST_DATA"])
    return Path(__file__).resolve().parents[2].parent / "shared" / "data"


SHARED_DATA = shared_data_dir()  # read before the autouse fixture clears the variable


@pytest.fixture
def shared_data() -> Path:
    folder = SHARED_DATA
    if not folder.is_dir():
        pytest.skip(f"shared data folder not found at {folder} (set HYBRID_FAST_DATA to run these tests)")
    return folder


@pytest.fixture(autouse=True)
def offline(offline_data_env):
    """No network and an empty download cache in every data test."""
