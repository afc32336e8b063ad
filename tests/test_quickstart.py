"""The README's Quick start commands: the shape .ci/run relies on (it runs them verbatim)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def extractor():
    spec = importlib.util.spec_from_file_location("quickstart_commands", REPO / "scripts" / "quickstart_commands.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.quickstart_commands


def test_readme_has_two_one_line_commands_that_make_their_own_environment():
    main_job, tests = extractor()((REPO / "README.md").read_text())
    for command in (main_job, tests):
        assert command.startswith("python3 -m venv .venv && ")  # system Python may be externally managed
    assert main_job.endswith("hybrid-fast experiment --quick")  # no --data: the packaged sample
    assert "--no-build-isolation \".[all]\"" in main_job  # a non-editable install: the wheel's package data
    assert "-m pytest" in tests and "[all,test]" in tests


def test_ci_runs_the_extracted_commands():
    ci = (REPO / ".ci" / "run").read_text()
    assert "scripts/quickstart_commands.py 1" in ci and "scripts/quickstart_commands.py 2" in ci
    assert "pytest" not in ci.replace("test_memeff", "").split("quickstart_commands.py 2")[1].split("tests_rc=$?")[0]


@pytest.mark.parametrize("readme, message", [
    ("# x\n", "expected a section"),
    ("## Quick start\n```bash\na\n```\n## Next\n", "expected two"),
    ("## Quick start\n```bash\na\nb\n```\n```bash\nc\n```\n## Next\n", "block 1 to hold one command line"),
    ("## Quick start\n```bash\na \\\n```\n```bash\nc\n```\n## Next\n", "block 1 to hold one command line"),
])
def test_extractor_rejects_other_shapes(readme, message):
    with pytest.raises(ValueError, match=message):
        extractor()(readme)
