"""Checks a command runs before any work: optional dependencies, the model, output paths, data.

Each raises :class:`UsageError` (a ``ValueError``) whose one-line message names the flag, what
was expected and what came; the CLI prints it as ``error: ...`` and exits with status 2. Nothing
here imports transformers (only ``importlib.util.find_spec``), except :func:`check_model` for a
Hugging Face id that is not a local folder (it reads the model's config: a cheap, early failure
instead of one after the data was parsed).
"""
from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path
from typing import Iterable

EXTRA = "all"
INSTALL_HINT = f"pip install 'hybrid_fast[{EXTRA}]'"

# Module -> PyPI distribution, per command (matplotlib is optional everywhere: plots are skipped).
REQUIRED = {
    "experiment": {"transformers": "transformers", "tqdm": "tqdm"},
    "train": {"transformers": "transformers", "tqdm": "tqdm"},
    "eval": {"transformers": "transformers", "tqdm": "tqdm"},
}


class UsageError(ValueError):
    """Bad command-line input or a missing optional dependency (CLI exit status 2)."""


class MissingDependencyError(UsageError, ModuleNotFoundError):
    """An optional dependency a command needs is not installed."""


def missing_modules(modules: Iterable[str]) -> list[str]:
    """The names in ``modules`` that cannot be imported (checked without importing them)."""
    return [m for m in modules if importlib.util.find_spec(m) is None]


def require_modules(command: str, model: str | None = None) -> None:
    """Raise :class:`MissingDependencyError` naming the extra when ``command`` (a key of
    :data:`REQUIRED`) or the ``model`` alias (its :class:`hybrid_fast.model.ModelAlias` names the
    package) lacks a package."""
    from .model import MODEL_ALIASES  # the alias table says which package each alias needs

    needed = dict(REQUIRED.get(command, {}))
    alias = MODEL_ALIASES.get(model) if model is not None else None
    if getattr(alias, "module", None):
        needed[alias.module] = alias.distribution
    missing = missing_modules(needed)
    if missing:
        raise MissingDependencyError(f"hybrid-fast {command}: expected the packages {[needed[m] for m in missing]}, "
                                     f"got them not installed; run {INSTALL_HINT}")


def check_writable(path: str | os.PathLike, flag: str) -> Path:
    """Create the parent folder of ``path`` and probe that a file can be written there."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{flag}: expected a file path, got the folder {str(path)!r}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".probe-"):
            pass
    except OSError as err:
        raise UsageError(f"{flag}: expected a writable path, got {str(path)!r} ({err.strerror or err})") from None
    return path


def check_model(name: str, flag: str = "--model") -> None:
    """``name`` must be an offline alias (``minilm-offline``, ``me5-small-offline``: its package
    installed), a local model folder, or a Hugging Face
    id whose config loads (offline: from the local Hugging Face cache)."""
    from .model import MODEL_ALIASES

    if name in MODEL_ALIASES:
        try:
            MODEL_ALIASES[name]()  # me5-small-offline: converted here on first use (~15 s)
        except (FileNotFoundError, ValueError) as err:
            raise UsageError(f"{flag}: {err}") from None
        return
    folder = Path(name).expanduser()
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise UsageError(f"{flag}: expected a model folder holding config.json, got {name!r}")
        return
    if folder.suffix or name.startswith((".", "/", "~")):
        raise UsageError(f"{flag}: expected 'minilm-offline', a model folder or a Hugging Face id, "
                         f"got {name!r} (no such folder)")
    try:
        import transformers

        transformers.AutoConfig.from_pretrained(name)
    except (OSError, ValueError) as err:
        reason = str(err).splitlines()[0][:160]
        raise UsageError(f"{flag}: expected 'minilm-offline', a model folder or a Hugging Face id that can be "
                         f"loaded, got {name!r} ({reason})") from None


def check_beir_dirs(dirs: Iterable[str | os.PathLike], flag: str = "--beir", split: str = "test") -> None:
    """Every folder must hold the BEIR files of ``split`` (the loader's check:
    :func:`hybrid_fast.data.beir.missing_beir_files`)."""
    from .data.beir import beir_files, missing_beir_files

    expected = ", ".join(beir_files(split))
    for folder in dirs:
        missing = missing_beir_files(folder, split)
        if missing is None:
            raise UsageError(f"{flag}: expected a BEIR folder ({expected}), got {str(folder)!r} (not a folder)")
        if missing:
            raise UsageError(f"{flag}: expected a BEIR folder ({expected}), got {str(folder)!r} (missing {missing})")
