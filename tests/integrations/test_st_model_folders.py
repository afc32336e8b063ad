"""Model folders in both directions: what hybrid_fast writes loads as a SentenceTransformer with
the same embeddings as hybrid_fast.Encoder (prefixes as prompts, pooling, normalisation), and a
sentence-transformers folder loads in Encoder / BiEncoder with its pooling and prompts."""
from __future__ import annotations

import json
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

st = pytest.importorskip("sentence_transformers")
transformers = pytest.importorskip("transformers")

from hybrid_fast import Encoder  # noqa: E402
from hybrid_fast.data.squad import ParallelQA  # noqa: E402
from hybrid_fast.model import BiEncoder  # noqa: E402
from hybrid_fast.sampling import ParallelQADataset  # noqa: E402
from hybrid_fast.st_folder import read_st_settings  # noqa: E402

TEXTS = ["who wrote hamlet", "capital of france " * 12, "Jupiter is the largest planet of the solar system.",
         "x"]  # one longer than the tiny model's token limit: truncation must agree too


def tiny_biencoder(minilm_path, pooling, normalize):
    torch.manual_seed(0)
    tokenizer = transformers.AutoTokenizer.from_pretrained(minilm_path)
    cfg = transformers.BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    return BiEncoder(transformers.BertModel(cfg), tokenizer, pooling=pooling, normalize=normalize,
                     query_max_length=16, passage_max_length=24)


def assert_same_embeddings(folder, prefixes):
    """SentenceTransformer(folder) == Encoder(folder) == BiEncoder.from_pretrained(folder), per kind."""
    model = st.SentenceTransformer(str(folder), device="cpu")
    ours = Encoder(str(folder), device="cpu")
    loaded = BiEncoder.from_pretrained(str(folder))
    assert (ours.query_prefix, ours.passage_prefix) == (loaded.query_prefix, loaded.passage_prefix) == prefixes
    theirs = {"query": model.encode_query(TEXTS, convert_to_tensor=True),
              "passage": model.encode_document(TEXTS, convert_to_tensor=True)}
    for kind in ("query", "passage"):
        expected = theirs[kind].cpu().float()
        assert (ours.encode(TEXTS, kind) - expected).abs().max() <= 1e-6, kind
        # BiEncoder keeps its own per-kind limits; within them (short texts) it embeds the same
        short = [0, 2, 3]
        assert (loaded.encode([TEXTS[i] for i in short], kind) - expected[short]).abs().max() <= 1e-6, kind
    return model, ours


@pytest.mark.parametrize("pooling, normalize", [("mean", True), ("cls", False)])
def test_trained_folder_is_a_sentence_transformer(minilm_path, tmp_path, pooling, normalize):
    """The folder `hybrid_fast.train.Trainer` (hybrid-fast train / experiment) writes."""
    from hybrid_fast.train import TrainConfig, Trainer

    records = {lang: [ParallelQA(f"q{i}", "a", lang, f"{lang} question {i}", f"{lang} passage {i // 2}", 0, "x",
                                 i // 2) for i in range(8)] for lang in ("en", "de")}
    cfg = TrainConfig(model=minilm_path, languages=["en", "de"], batch_size=2, max_steps=1, warmup_steps=0,
                      val_every=0, save_every=0, log_every=1, output_dir=str(tmp_path), progress=False,
                      query_prefix="query> ", passage_prefix="passage> ")
    Trainer(cfg, model=tiny_biencoder(minilm_path, pooling, normalize),
            train_data=ParallelQADataset(records)).train()
    folder = tmp_path / "model"
    saved = json.loads((folder / "biencoder_config.json").read_text())
    assert saved["query_prefix"] == "query> " and saved["passage_prefix"] == "passage> "
    model, ours = assert_same_embeddings(folder, ("query> ", "passage> "))
    assert model.prompts["query"] == "query> " and model.max_seq_length == 24
    assert (ours.pooling, ours.normalize) == (pooling, normalize)
    assert model.similarity_fn_name == ("cosine" if normalize else "dot")


def test_saved_minilm_is_a_sentence_transformer(minilm_path, tmp_path):
    encoder = BiEncoder.from_pretrained(minilm_path, query_prefix="Query: ", passage_prefix="Passage: ")
    assert_same_embeddings(encoder.save_pretrained(tmp_path / "m"), ("Query: ", "Passage: "))


def test_sentence_transformers_folder_loads_with_its_pooling_and_prompts(minilm_path, tmp_path):
    from sentence_transformers.sentence_transformer import modules

    model = st.SentenceTransformer(modules=[modules.Transformer(minilm_path, max_seq_length=32),
                                            modules.Pooling(384, "cls")],
                                   prompts={"query": "search_query: ", "document": "search_document: "}, device="cpu")
    model.save(str(tmp_path / "st"))
    assert read_st_settings(tmp_path / "st") == {"pooling": "cls", "normalize": False,
                                                 "query_prefix": "search_query: ",
                                                 "passage_prefix": "search_document: "}
    assert_same_embeddings(tmp_path / "st", ("search_query: ", "search_document: "))
    # the sentence-transformers 2.x layout of the offline MiniLM (no prompts: the method's prefixes)
    assert read_st_settings(minilm_path) == {"pooling": "mean", "normalize": True}
    plain = Encoder(minilm_path, device="cpu", query_prefix="")
    expected = st.SentenceTransformer(minilm_path, device="cpu").encode(TEXTS, convert_to_tensor=True)
    assert (plain.encode(TEXTS, "query") - expected).abs().max() <= 1e-6
    assert Encoder(minilm_path, device="cpu").query_prefix == "Query: "


def test_unreproducible_sentence_transformers_folders_are_refused(tmp_path):
    (tmp_path / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}]))
    with pytest.raises(ValueError, match=r"modules\.json: .*Dense"):
        read_st_settings(tmp_path)
    (tmp_path / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({"embedding_dimension": 8, "pooling_mode": "max"}))
    with pytest.raises(ValueError, match="mean or CLS"):
        read_st_settings(tmp_path)
