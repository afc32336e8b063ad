"""Package hygiene: light import, dependency edges between layers, console script."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "hybrid_fast"


def test_import_is_light():
    code = ("import sys, hybrid_fast\n"
            "heavy = [m for m in ('transformers', 'datasets', 'matplotlib', 'sentence_transformers', 'faiss', 'triton')"
            " if m in sys.modules]\n"
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", f"import hybrid_fast pulled heavy modules: {out.stdout}"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_ops_import_only_torch_and_stdlib():
    # Third-party: torch, triton and numpy only (the standard library is free).
    allowed = {"torch", "triton", "numpy", "hybrid_fast", *sys.stdlib_module_names}
    for path in (PACKAGE / "ops").rglob("*.py"):
        extra = _imports(path) - allowed
        assert not extra, f"{path.relative_to(PACKAGE)} imports {extra}: ops/ must depend on torch only"


def test_metrics_know_no_model_code():
    path = PACKAGE / "eval" / "metrics.py"
    if path.exists():
        assert not _imports(path) & {"transformers", "sentence_transformers"}, "metrics must be pure functions"


def test_console_script_info():
    out = subprocess.run([sys.executable, "-m", "hybrid_fast.cli", "info"], capture_output=True, text=True, check=True)
    assert '"infonce_loss"' in out.stdout


def test_logging_prints_library_lines_once_under_ci():
    # transformers sets propagate = (CI is set) when imported, after configure_logging ran: its
    # records must still not reach the root handler (its own handler prints them).
    code = """
import logging, sys
from hybrid_fast.cli import configure_logging
configure_logging()
import transformers  # noqa: F401  (resets propagation under CI)
assert logging.getLogger("transformers").propagate
logging.getLogger("transformers.modeling_utils").warning("LIBLINE")
logging.getLogger("huggingface_hub.file_download").warning("HUBLINE")
logging.getLogger("hybrid_fast.train").warning("OURLINE")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "CI": "true"},
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stderr.count("LIBLINE") == 1 and out.stderr.count("OURLINE") == 1
    assert out.stderr.count("HUBLINE") <= 1
