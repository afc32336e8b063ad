"""Print Quick start command N (1 or 2) of README.md: the N-th fenced ``bash`` block of the
section ``## Quick start``, which must hold exactly one command line.

    python3 scripts/quickstart_commands.py 1      # what .ci/run executes (so the README cannot drift)

Exit status 1 with a one-line message when the README does not have that shape.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def quickstart_commands(text: str) -> list[str]:
    """The one-line commands of the first two ``bash`` blocks under ``## Quick start``.

    Raises:
        ValueError: no such section, fewer than two bash blocks, or a block that is not exactly
            one non-empty line.
    """
    match = re.search(r"^## Quick start\n(.*?)(?=^## )", text, flags=re.S | re.M)
    if not match:
        raise ValueError("README.md: expected a section '## Quick start', got none")
    blocks = re.findall(r"^```bash\n(.*?)^```", match.group(1), flags=re.S | re.M)
    if len(blocks) < 2:
        raise ValueError(f"README.md ## Quick start: expected two ```bash blocks, got {len(blocks)}")
    commands = []
    for number, block in enumerate(blocks[:2], start=1):
        lines = [line for line in block.splitlines() if line.strip()]
        if len(lines) != 1 or lines[0].rstrip().endswith("\\"):
            raise ValueError(f"README.md ## Quick start: expected block {number} to hold one command line, "
                             f"got {len(lines)} lines")
        commands.append(lines[0].strip())
    return commands


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in ("1", "2"):
        print("usage: quickstart_commands.py 1|2", file=sys.stderr)
        return 2
    try:
        print(quickstart_commands(README.read_text())[int(argv[0]) - 1])
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
