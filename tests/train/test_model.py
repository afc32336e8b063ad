"""The one encoder class: BiEncoder (training) and Encoder (evaluation by name) share model
resolution, pooling, prefixes and batched encoding."""
from __future__ import annotations

import pytest
import torch


def test_encoder_is_the_biencoder_loaded_by_name(tiny_model, tmp_path, monkeypatch):
    """An alias added to MODEL_ALIASES serves both entry points, and both embed identically
    (same prefixes, pooling, token limits, batching)."""
    from hybrid_fast import model as model_module
    from hybrid_fast.encoder import Encoder
    from hybrid_fast.model import BiEncoder, resolve_model_name

    trained = tiny_model(dropout=0.0)
    folder = trained.save_pretrained(tmp_path / "tiny")
    monkeypatch.setitem(model_module.MODEL_ALIASES, "tiny-test", lambda: folder)
    assert resolve_model_name("tiny-test") == str(folder)
    enc = Encoder("tiny-test", max_length=24, device="cpu", batch_size=2)
    assert isinstance(enc, BiEncoder) and enc.model_path == str(folder)
    bi = BiEncoder.from_pretrained("tiny-test", query_max_length=24, passage_max_length=24,
                                   query_prefix="Query: ", passage_prefix="Passage: ", batch_size=2)
    texts = ["a question", "another, longer question about rivers", "x"]
    for kind in ("query", "passage"):
        torch.testing.assert_close(enc.encode(texts, kind), bi.encode(texts, kind), rtol=0, atol=0)


def test_biencoder_encode_is_the_batched_forward_with_prefixes(tiny_model):
    model = tiny_model(dropout=0.1)
    model.query_prefix, model.passage_prefix = "Q: ", "P: "
    texts = ["short", "a much longer text than the others", "middle text here"]
    model.train()
    got = model.encode(texts, "query", batch_size=2)
    assert model.training  # restored
    model.eval()
    with torch.no_grad():
        expected = model(model.tokenize(["Q: " + t for t in texts], "query"))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model.encode(texts, "query", 1), got, rtol=1e-5, atol=1e-6)
    assert model.encode([], "passage").shape == (0, 32)
    with pytest.raises(ValueError, match="kind"):
        model.encode(texts, "document")
    with pytest.raises(ValueError, match="contexts"):
        model.encode(texts, "passage", contexts=["one"])


def test_missing_alias_package_is_named(monkeypatch):
    from hybrid_fast import model as model_module

    monkeypatch.setitem(model_module.MODEL_ALIASES, "absent",
                        lambda: model_module.packaged_model_path("no_such_module_hf", "no-such-package"))
    with pytest.raises(FileNotFoundError, match="pip install no-such-package"):
        model_module.resolve_model_name("absent")
    with pytest.raises(ValueError, match="pooling"):
        model_module.BiEncoder(None, None, pooling="max")


def test_preflight_reads_the_alias_package_from_the_alias_table(monkeypatch):
    """One table says which package an alias needs: an alias added to MODEL_ALIASES is checked
    by preflight (before any work) and resolved by the model with the same names."""
    from hybrid_fast import model as model_module
    from hybrid_fast import preflight

    monkeypatch.setitem(model_module.MODEL_ALIASES, "absent",
                        model_module.ModelAlias("no_such_module_hf", "no-such-package"))
    with pytest.raises(preflight.MissingDependencyError, match="no-such-package"):
        preflight.require_modules("eval", "absent")
    with pytest.raises(FileNotFoundError, match="pip install no-such-package"):
        model_module.resolve_model_name("absent")
    for name, alias in model_module.MODEL_ALIASES.items():
        assert alias.module and alias.distribution, name
    preflight.require_modules("eval", "a-hub-id-not-an-alias")  # no alias: only the command's packages
