"""Build the packaged sample (hybrid_fast/data/sample/sample.tar.xz) from the full data sets.

    python scripts/build_sample.py --data ../shared/data

Contents (the languages of the quick preset, TrainConfig's default ``languages``):

* ``xquad/xquad.{lang}.json``: XQuAD, every article (the quick run trains and validates on the
  train/dev articles; the test articles map XQuAD-R question ids to titles, and the article
  split is computed over all titles, so the sample gives the same split as the full set);
* ``xquad-r/{lang}.json``: XQuAD-R, only the articles of the quick preset's test split;
* ``beir/dbpedia-sample/``: a slice of the BEIR DBpedia-Entity subset (queries with 2 to 30
  relevant documents, their judged documents, capped, and random unjudged distractors);
* ``LICENSE`` (CC BY-SA 4.0) and ``NOTICE.md`` (sources and attribution), also beside the archive.

Deterministic: the same inputs give the same archive bytes (sorted members, fixed mtimes).
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import random
import sys
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hybrid_fast.train.config import TrainConfig  # noqa: E402
from hybrid_fast.data.xquad_split import build_datasets, load_xquad  # noqa: E402

TARGET = REPO / "hybrid_fast" / "data" / "sample"
BEIR_NAME = "dbpedia-sample"
BEIR_QUERIES = 24          # queries kept
BEIR_MAX_POSITIVES = 20    # relevant documents kept per query
BEIR_JUDGED_NEGATIVES = 6  # grade-0 documents kept per query
BEIR_DISTRACTORS = 200     # unjudged documents


def _dump_json(obj) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def xquad_r_test_articles(data: Path, languages, test_qids: set[str]) -> dict[str, bytes]:
    out = {}
    for lang in languages:
        doc = json.loads((data / "xquad-r" / f"{lang}.json").read_text())
        kept = [article for article in doc["data"]
                if any(qa["id"] in test_qids for p in article["paragraphs"] for qa in p["qas"])]
        out[f"xquad-r/{lang}.json"] = _dump_json({**doc, "data": kept})
    return out


def beir_slice(folder: Path, seed: int = 0) -> dict[str, bytes]:
    rng = random.Random(seed)
    qrels: dict[str, dict[str, int]] = {}
    with (folder / "qrels" / "test.tsv").open() as fh:
        rows = csv.reader(fh, delimiter="\t")
        next(rows)
        for qid, did, grade in rows:
            qrels.setdefault(qid, {})[did] = int(grade)
    eligible = sorted(q for q, d in qrels.items() if 2 <= sum(g > 0 for g in d.values()) <= 30)
    chosen = sorted(rng.sample(eligible, min(BEIR_QUERIES, len(eligible))))
    kept_qrels: dict[str, dict[str, int]] = {}
    for qid in chosen:
        positives = sorted(d for d, g in qrels[qid].items() if g > 0)[:BEIR_MAX_POSITIVES]
        negatives = sorted(d for d, g in qrels[qid].items() if g == 0)[:BEIR_JUDGED_NEGATIVES]
        kept_qrels[qid] = {d: qrels[qid][d] for d in positives + negatives}
    docs = {d for v in kept_qrels.values() for d in v}
    corpus_lines = (folder / "corpus.jsonl").read_text().splitlines()
    all_ids = [json.loads(line)["_id"] for line in corpus_lines]
    judged_anywhere = {d for v in qrels.values() for d in v}
    unjudged = sorted(set(all_ids) - judged_anywhere)
    docs |= set(rng.sample(unjudged, min(BEIR_DISTRACTORS, len(unjudged))))
    corpus = "\n".join(line for line, i in zip(corpus_lines, all_ids) if i in docs) + "\n"
    queries = "\n".join(line for line in (folder / "queries.jsonl").read_text().splitlines()
                        if json.loads(line)["_id"] in kept_qrels) + "\n"
    tsv = "query-id\tcorpus-id\tscore\n" + "".join(
        f"{q}\t{d}\t{g}\n" for q in chosen for d, g in kept_qrels[q].items())
    base = f"beir/{BEIR_NAME}"
    return {f"{base}/corpus.jsonl": corpus.encode(), f"{base}/queries.jsonl": queries.encode(),
            f"{base}/qrels/test.tsv": tsv.encode()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    args = parser.parse_args()
    data = Path(args.data)
    cfg = TrainConfig(data_dir=str(data))
    records = load_xquad(cfg)
    _, _, split = build_datasets(cfg, records)
    test = set(split["test"])
    test_qids = {r.group_id for r in records[cfg.languages[0]] if r.article in test}
    files: dict[str, bytes] = {}
    for lang in cfg.languages:
        files[f"xquad/xquad.{lang}.json"] = (data / "xquad" / f"xquad.{lang}.json").read_bytes()
    files.update(xquad_r_test_articles(data, cfg.languages, test_qids))
    files.update(beir_slice(data / "beir" / "dbpedia-subset"))
    files["LICENSE"] = (TARGET / "LICENSE").read_bytes()
    files["NOTICE.md"] = (TARGET / "NOTICE.md").read_bytes()
    files["manifest.json"] = _dump_json({
        "languages": list(cfg.languages), "split_seed": cfg.split_seed, "dev_articles": cfg.dev_articles,
        "test_articles": sorted(test), "xquad_r_articles": "test split only", "beir": [BEIR_NAME]})
    archive = TARGET / "sample.tar.xz"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:xz", preset=9) as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(files[name]), 0, 0o644
            tar.addfile(info, io.BytesIO(files[name]))
    archive.write_bytes(buffer.getvalue())
    raw = sum(len(v) for v in files.values())
    print(f"wrote {archive}: {archive.stat().st_size / 1e6:.2f} MB ({raw / 1e6:.1f} MB uncompressed, {len(files)} files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
