"""Encoder.identity(): the embedding-cache key describes the weights the instance loaded.

transformers' loaders are replaced by stand-ins, so no model is needed; the weights file is a
few bytes whose size and mtime the test sets.
"""

import os

import pytest
import torch


@pytest.fixture
def fake_transformers(monkeypatch):
    transformers = pytest.importorskip("transformers")

    class FakeAuto:
        @staticmethod
        def from_pretrained(path, **kwargs):
            return torch.nn.Linear(1, 1)

    monkeypatch.setattr(transformers, "AutoModel", FakeAuto)
    monkeypatch.setattr(transformers, "AutoTokenizer", FakeAuto)


def save_weights(folder, size, mtime):
    weights = folder / "model.safetensors"
    weights.write_bytes(b"w" * size)
    os.utime(weights, (mtime, mtime))


def test_identity_keys_the_weights_as_loaded(fake_transformers, tmp_path):
    from hybrid_fast.encoder import Encoder

    save_weights(tmp_path, 3, 1_700_000_000)
    encoder = Encoder(str(tmp_path), max_length=16, device="cpu", cache_dir=tmp_path / "emb")
    first = encoder.identity()
    assert first["model"] == str(tmp_path.resolve())
    assert first["weights"] == "model.safetensors:3:1700000000"
    cache_folder = encoder._cache_folder()

    # the weights are re-saved after this instance loaded them: its in-memory model (and so its
    # embeddings) are unchanged, so must be its identity and cache folder
    save_weights(tmp_path, 5, 1_700_000_100)
    assert encoder.identity() == first
    assert encoder._cache_folder() == cache_folder
    # a new instance loads (and is keyed by) the new weights
    reloaded = Encoder(str(tmp_path), max_length=16, device="cpu", cache_dir=tmp_path / "emb")
    assert reloaded.identity()["weights"] == "model.safetensors:5:1700000100"
    assert reloaded._cache_folder() != cache_folder

    # the other fields follow the attributes; each call returns a fresh dict
    encoder.max_length = 8
    assert encoder.identity() == {**first, "max_length": 8}
    encoder.identity()["weights"] = "changed"
    assert encoder.identity()["weights"] == first["weights"]


def test_identity_without_local_weights(fake_transformers, tmp_path):
    from hybrid_fast.encoder import Encoder

    encoder = Encoder(str(tmp_path), max_length=16, device="cpu")
    assert encoder.identity()["weights"] == ""
    save_weights(tmp_path, 3, 1_700_000_000)  # appears after loading: not what was loaded
    assert encoder.identity()["weights"] == ""


def test_cache_follows_the_identity_after_a_setting_changes(fake_transformers, tmp_path, monkeypatch):
    # Embeddings depend on pooling: changing it after a first encode must not serve the cached
    # rows of the old pooling (the in-memory cache is keyed by the identity's folder).
    from hybrid_fast.encoder import Encoder

    save_weights(tmp_path, 3, 1_700_000_000)
    encoder = Encoder(str(tmp_path), max_length=16, device="cpu", cache_dir=tmp_path / "emb")
    calls = []

    def fake_encode(firsts, seconds):
        calls.append(encoder.pooling)
        return torch.full((len(firsts), 2), 1.0 if encoder.pooling == "mean" else 2.0)

    monkeypatch.setattr(encoder, "_encode_uncached", fake_encode)
    assert encoder.encode(["text"], "query").tolist() == [[1.0, 1.0]]
    assert encoder.encode(["text"], "query").tolist() == [[1.0, 1.0]] and calls == ["mean"]  # cached
    encoder.pooling = "cls"
    assert encoder.encode(["text"], "query").tolist() == [[2.0, 2.0]] and calls == ["mean", "cls"]
    encoder.pooling = "mean"  # back: served from the first folder, on disk and in memory
    assert encoder.encode(["text"], "query").tolist() == [[1.0, 1.0]] and calls == ["mean", "cls"]


def test_cache_shard_is_written_atomically(fake_transformers, tmp_path, monkeypatch):
    """A crash while a shard is saved leaves no shard file and no temporary file the cache reads;
    the next encode computes and stores the rows."""
    from hybrid_fast.encoder import Encoder

    save_weights(tmp_path, 3, 1_700_000_000)
    encoder = Encoder(str(tmp_path), max_length=16, device="cpu", cache_dir=tmp_path / "emb")
    monkeypatch.setattr(encoder, "_encode_uncached", lambda firsts, seconds: torch.ones(len(firsts), 2))
    real_save = torch.save

    def crashing_save(obj, path):
        real_save(obj, path)
        with open(path, "r+b") as f:
            f.truncate(5)  # half written
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crashing_save)
    with pytest.raises(OSError, match="disk full"):
        encoder.encode(["text"], "query")
    folder = encoder._cache_folder()
    assert sorted(p.name for p in folder.iterdir()) == ["identity.json"]
    monkeypatch.setattr(torch, "save", real_save)
    reloaded = Encoder(str(tmp_path), max_length=16, device="cpu", cache_dir=tmp_path / "emb")
    monkeypatch.setattr(reloaded, "_encode_uncached", lambda firsts, seconds: torch.ones(len(firsts), 2))
    assert reloaded.encode(["text"], "query").tolist() == [[1.0, 1.0]]
    assert [p.name for p in folder.glob("shard-*.pt")] and all(not p.name.startswith(".") for p in folder.iterdir())
