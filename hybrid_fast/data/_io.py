"""Shared file readers that turn malformed input into errors naming the file and line.

Every loader in :mod:`hybrid_fast.data` reads through these helpers, so a truncated or
malformed file always raises ``ValueError("<file>:<line>: ...")`` (never a silent skip).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator


def read_json(path: Path) -> Any:
    """Parse one JSON document.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is not valid JSON (message: ``file:line:column: reason``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"expected a JSON file at {path}, found nothing")
    text = path.read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(
            f"{path}:{err.lineno}:{err.colno}: malformed or truncated JSON ({err.msg})"
        ) from None


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, object)`` for every non-blank line of a JSON-lines file.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: a line is not valid JSON or not a JSON object (names file and line).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"expected a JSON-lines file at {path}, found nothing")
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(
                    f"{path}:{line_number}: malformed or truncated JSON line ({err.msg})"
                ) from None
            if not isinstance(record, dict):
                raise ValueError(
                    f"{path}:{line_number}: expected a JSON object, got {type(record).__name__}"
                )
            yield line_number, record


def iter_lines(path: Path, what: str = "text") -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, line without its line break)`` for every non-blank line.

    Raises:
        FileNotFoundError: ``path`` does not exist (``what`` names the expected kind of file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"expected a {what} file at {path}, found nothing")
    with path.open(encoding="utf-8", newline="") as handle:
        for line_number, line in enumerate(handle, start=1):
            line = line.rstrip("\r\n")
            if line.strip():
                yield line_number, line


def require(mapping: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """Return ``mapping[key]`` after checking it exists and has type ``kind``.

    ``where`` names the file and record (e.g. ``"xquad-r/en.json: data[3].paragraphs[0]"``)
    and is put in the error message.

    Raises:
        ValueError: ``mapping`` is not a dict, the key is missing, or the value has the wrong type.
    """
    if not isinstance(mapping, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(mapping).__name__}")
    if key not in mapping:
        raise ValueError(f"{where}: missing field {key!r} (fields present: {sorted(mapping)})")
    value = mapping[key]
    if not isinstance(value, kind):
        expected = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise ValueError(f"{where}.{key}: expected {expected}, got {type(value).__name__}")
    return value
