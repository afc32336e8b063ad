"""Bi-encoder over any Hugging Face encoder: one shared transformer for queries and passages.

``BiEncoder`` = ``AutoModel`` + pooling (mean over non-padding tokens or CLS; the pooling of
:class:`hybrid_fast.encoder.Encoder`, reused) + optional L2 normalisation. It holds no loss: the
trainer feeds its embeddings to :func:`hybrid_fast.infonce_loss`. transformers is imported when a
model is built, never at ``import hybrid_fast``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

BIENCODER_CONFIG = "biencoder_config.json"


def enable_gradient_checkpointing(model) -> None:
    """Recompute activations in backward (non-reentrant), under either transformers API name."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def saved_biencoder_config(path: str | os.PathLike) -> dict:
    """The settings :meth:`BiEncoder.save_pretrained` wrote in the folder ``path``
    (``BIENCODER_CONFIG``: pooling, normalize, max lengths); ``{}`` when there is none."""
    saved = Path(path) / BIENCODER_CONFIG
    return json.loads(saved.read_text()) if saved.is_file() else {}


class BiEncoder(nn.Module):
    """Shared-weight dual encoder.

    Args:
        model: a ``transformers.PreTrainedModel`` (encoder returning ``last_hidden_state``).
        tokenizer: its tokenizer.
        pooling: ``"mean"`` (default) or ``"cls"``.
        normalize: L2-normalise embeddings (cosine similarity); False = dot product.
        query_max_length / passage_max_length: token limits per kind (truncation).

    ``forward(features) -> [B, hidden]`` float32 embeddings for tokenized ``features``
    (``tokenize(texts, kind)``); texts are expected already prefixed (the collator adds prefixes).

    Raises:
        ValueError: unknown ``pooling`` or non-positive max lengths.
    """

    def __init__(self, model, tokenizer, *, pooling: str = "mean", normalize: bool = True,
                 query_max_length: int = 64, passage_max_length: int = 256):
        super().__init__()
        if pooling not in ("mean", "cls"):
            raise ValueError(f"pooling: expected 'mean' or 'cls', got {pooling!r}")
        for name, value in (("query_max_length", query_max_length), ("passage_max_length", passage_max_length)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        self.model, self.tokenizer = model, tokenizer
        self.pooling, self.normalize = pooling, normalize
        self.max_length = {"query": query_max_length, "passage": passage_max_length}

    @classmethod
    def from_pretrained(cls, name_or_path: str, *, gradient_checkpointing: bool = False, **kwargs) -> "BiEncoder":
        """Load a Hugging Face model (id, local folder, or ``"minilm-offline"``); ``kwargs`` as the
        constructor; a folder written by :meth:`save_pretrained` restores its pooling/normalisation
        unless overridden."""
        from transformers import AutoModel, AutoTokenizer

        from .encoder import resolve_model

        path = resolve_model(name_or_path)
        kwargs = {**saved_biencoder_config(path), **kwargs}
        model = AutoModel.from_pretrained(path)
        if gradient_checkpointing:
            enable_gradient_checkpointing(model)
        return cls(model, AutoTokenizer.from_pretrained(path), **kwargs)

    def config_dict(self) -> dict:
        return {"pooling": self.pooling, "normalize": self.normalize,
                "query_max_length": self.max_length["query"], "passage_max_length": self.max_length["passage"]}

    def save_pretrained(self, folder: str | os.PathLike) -> Path:
        """Write the transformer, tokenizer and ``biencoder_config.json`` (loadable by
        :meth:`from_pretrained` and by :class:`hybrid_fast.Encoder`)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
        (folder / BIENCODER_CONFIG).write_text(json.dumps(self.config_dict(), indent=1))
        return folder

    def tokenize(self, texts: Sequence[str], kind: str) -> dict[str, torch.Tensor]:
        """Tokenize with the limit of ``kind`` (``"query"`` or ``"passage"``), padded to the longest.

        Raises:
            ValueError: unknown ``kind``.
        """
        if kind not in self.max_length:
            raise ValueError(f"kind: expected 'query' or 'passage', got {kind!r}")
        return dict(self.tokenizer(list(texts), padding=True, truncation=True,
                                   max_length=self.max_length[kind], return_tensors="pt"))

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        from .encoder import pool

        hidden = self.model(**features).last_hidden_state
        # The evaluation Encoder's pooling function, so training and evaluation embed alike.
        return pool(hidden.float(), features["attention_mask"], self.pooling, self.normalize)

    @torch.inference_mode()
    def encode(self, texts: Sequence[str], kind: str, batch_size: int = 64) -> torch.Tensor:
        """Embed already-prefixed ``texts`` in eval mode -> float32 ``[len(texts), hidden]`` on the
        CPU, in input order (batches of similar length internally)."""
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))  # little padding per batch
        out = torch.zeros(len(texts), self.model.config.hidden_size)
        for start in range(0, len(texts), batch_size):
            rows = order[start:start + batch_size]
            features = self.tokenize([texts[i] for i in rows], kind)
            out[rows] = self({k: v.to(device) for k, v in features.items()}).float().cpu()
        self.train(was_training)
        return out
