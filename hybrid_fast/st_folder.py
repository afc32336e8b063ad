"""sentence-transformers model folders: read their encoder settings, write ours in their format.

A model folder written by :meth:`hybrid_fast.model.BiEncoder.save_pretrained` also holds the
files sentence-transformers reads, so ``SentenceTransformer(folder)`` embeds exactly as
:class:`hybrid_fast.Encoder` does: ``modules.json`` (Transformer -> Pooling [-> Normalize]),
``sentence_bert_config.json`` (``max_seq_length``), ``1_Pooling/config.json`` (mean or CLS) and
``config_sentence_transformers.json`` (``prompts`` = the trained prefixes: ``query``, and
``document`` / ``passage`` for passages; ``similarity_fn_name``). The module type names are those
sentence-transformers 2.x wrote, which every later version (6.x included) still loads.

Reading (:func:`read_st_settings`) accepts both that layout and sentence-transformers 6's
(``pooling_mode`` key, ``sentence_transformers.base.modules...`` type names).

Pure JSON: no sentence-transformers import; this module imports nothing of hybrid_fast.
"""
from __future__ import annotations

import json
from pathlib import Path

MODULES = "modules.json"
ST_CONFIG = "config_sentence_transformers.json"
POOLING_DIR = "1_Pooling"
#: sentence-transformers' ``encode_document`` takes the first of these prompts that exists.
DOCUMENT_PROMPTS = ("document", "passage", "corpus")


def _kind(module_type: str) -> str:
    return module_type.rsplit(".", 1)[-1]


def read_st_settings(folder) -> dict:
    """The encoder settings of a sentence-transformers folder: ``{"pooling", "normalize"}`` from
    ``modules.json`` and its Pooling config, plus ``{"query_prefix", "passage_prefix"}`` when
    ``config_sentence_transformers.json`` has prompts (passage: the first of ``document``,
    ``passage``, ``corpus``, as ``encode_document`` chooses); ``{}`` when the folder has no
    ``modules.json``.

    Raises:
        ValueError (naming the file): modules other than Transformer / Pooling / Normalize
            (e.g. Dense: hybrid_fast's encoder would embed differently), a pooling mode other
            than mean or CLS, or ``include_prompt: false``.
    """
    folder = Path(folder)
    if not (folder / MODULES).is_file():
        return {}
    modules = json.loads((folder / MODULES).read_text())
    kinds = [_kind(m["type"]) for m in modules]
    if not kinds or kinds[0] != "Transformer" or not set(kinds[1:]) <= {"Pooling", "Normalize"}:
        raise ValueError(f"{folder / MODULES}: hybrid_fast encodes Transformer -> Pooling [-> Normalize] models, "
                         f"this one has {kinds}")
    settings: dict = {"pooling": "mean", "normalize": "Normalize" in kinds}
    for module in modules:
        if _kind(module["type"]) == "Pooling":
            config_path = folder / module["path"] / "config.json"
            config = json.loads(config_path.read_text())
            mode = config.get("pooling_mode")
            if mode is None:  # the sentence-transformers < 6 keys
                modes = [k[len("pooling_mode_"):] for k, on in config.items() if k.startswith("pooling_mode_") and on]
                mode = {"cls_token": "cls", "mean_tokens": "mean"}.get(modes[0]) if len(modes) == 1 else None
            mode = "mean" if mode == "mean_tokens" else "cls" if mode == "cls_token" else mode
            if mode not in ("mean", "cls"):
                raise ValueError(f"{config_path}: hybrid_fast pools by mean or CLS, this Pooling is {config}")
            if config.get("include_prompt", True) is False:
                raise ValueError(f"{config_path}: include_prompt=false (prompt tokens left out of the pooling) is "
                                 "not how hybrid_fast pools")
            settings["pooling"] = mode
    prompts = {}
    if (folder / ST_CONFIG).is_file():
        prompts = json.loads((folder / ST_CONFIG).read_text()).get("prompts") or {}
    if "query" in prompts:
        settings["query_prefix"] = prompts["query"]
    document = next((prompts[name] for name in DOCUMENT_PROMPTS if name in prompts), None)
    if document is not None:
        settings["passage_prefix"] = document
    return settings


def write_st_files(folder, *, hidden_size: int, pooling: str, normalize: bool, max_seq_length: int,
                   query_prefix: str, passage_prefix: str) -> None:
    """Write the sentence-transformers files of an encoder next to its transformer and tokenizer
    in ``folder`` (see the module docstring); ``prompts`` = ``{"query": query_prefix, "document":
    passage_prefix, "passage": passage_prefix}``."""
    folder = Path(folder)
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": POOLING_DIR, "type": "sentence_transformers.models.Pooling"}]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    pooling_config = {"word_embedding_dimension": hidden_size, "pooling_mode_cls_token": pooling == "cls",
                      "pooling_mode_mean_tokens": pooling == "mean", "pooling_mode_max_tokens": False,
                      "pooling_mode_mean_sqrt_len_tokens": False}
    st_config = {"prompts": {"query": query_prefix, "document": passage_prefix, "passage": passage_prefix},
                 "default_prompt_name": None, "similarity_fn_name": "cosine" if normalize else "dot"}
    (folder / POOLING_DIR).mkdir(parents=True, exist_ok=True)
    (folder / POOLING_DIR / "config.json").write_text(json.dumps(pooling_config, indent=1))
    (folder / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": max_seq_length, "do_lower_case": False}, indent=1))
    (folder / ST_CONFIG).write_text(json.dumps(st_config, indent=1))
    (folder / MODULES).write_text(json.dumps(modules, indent=1))  # last: a folder with modules.json is complete
