"""The offline replication of the paper's comparison (docs/method.md sections 2-4), small scale.

Arms: ``zero-shot`` (the base model, no training), ``x-x-mono``, ``x-y``, ``hybrid`` (alpha 0.5)
and ``simcse`` (unsupervised), trained with identical settings (steps, batch size, lr, seeds) on
the XQuAD training articles, evaluated on XQuAD-R restricted to the test articles (questions of
test articles and the candidate sentences of their paragraphs), in the training languages:

* Table-1 mAP (mono / cross / multi) and rank distance from
  :func:`hybrid_fast.eval.xquad_r.lareqa_scores_from_embeddings`;
* nDCG@10 per monolingual setting (binary relevance: the query's relevant sentences in its own
  language), macro-averaged over languages, from the same ranks as mono mAP (same function).

The article split (:func:`hybrid_fast.sampling.split_articles`) is on XQuAD titles; XQuAD-R
shares XQuAD's question ids, so the restriction is by question id, and a candidate belongs to the
test set when its paragraph holds the answer of a test question (every XQuAD paragraph has
questions, so no paragraph is left unassigned: checked).
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np

from .config import TrainConfig, config_from_args
from .presets import PRESET_SEEDS, PRESETS, QUICK, SMALL  # noqa: F401 (QUICK: public name)
from .trainer import Trainer, build_datasets, load_xquad, plot_metrics, seed_everything

log = logging.getLogger(__name__)

TRAINED_ARMS = ("x-x-mono", "x-y", "hybrid", "simcse")
ARMS = ("zero-shot",) + TRAINED_ARMS

# Presets (--config and flags override them: config_from_args): hybrid_fast/train/presets.py.
FULL = SMALL  # the name this module used before presets.py


def test_lareqa(data_dir: str | Path, languages, test_articles, *, xquad) -> "object":
    """XQuAD-R in ``languages`` restricted to the questions of ``test_articles`` (XQuAD titles)
    and the candidate sentences of their paragraphs (a :class:`LareqaDataset`).

    ``xquad``: the XQuAD records (``[ParallelQA]``) of ``languages[0]``, already parsed (they map
    question ids to titles).

    Raises:
        ValueError: a test question missing from XQuAD-R, or a paragraph assigned to no split.
    """
    from ..data import LareqaDataset, load_lareqa

    data_dir = Path(data_dir)
    full = load_lareqa(data_dir / "xquad-r", languages)
    article_of = {r.group_id: r.article for r in xquad}
    missing = [q.qid for q in full.questions if q.qid not in article_of]
    if missing:
        raise ValueError(f"xquad-r: {len(missing)} question ids not in XQuAD (e.g. {missing[:3]})")
    test = set(test_articles)
    keep_q = [i for i, q in enumerate(full.questions) if article_of[q.qid] in test]
    paragraph_split = {}
    for i, q in enumerate(full.questions):
        for c in full.relevant[i]:
            cand = full.candidates[c]
            paragraph_split.setdefault((cand.lang, cand.paragraph_index), set()).add(article_of[q.qid] in test)
    unassigned = {(c.lang, c.paragraph_index) for c in full.candidates} - set(paragraph_split)
    if unassigned or any(len(v) != 1 for v in paragraph_split.values()):
        raise ValueError(f"xquad-r: {len(unassigned)} paragraphs without questions or paragraphs in two splits")
    keep_c = [i for i, c in enumerate(full.candidates) if paragraph_split[(c.lang, c.paragraph_index)] == {True}]
    new_index = {old: new for new, old in enumerate(keep_c)}
    return LareqaDataset(languages=full.languages, questions=[full.questions[i] for i in keep_q],
                         candidates=[full.candidates[i] for i in keep_c],
                         relevant=[sorted(new_index[c] for c in full.relevant[i]) for i in keep_q])


def evaluate_model(model, dataset, *, query_prefix: str, passage_prefix: str, batch_size: int = 64) -> dict:
    """Table-1 figures plus monolingual nDCG@10 of a :class:`BiEncoder` on a LAReQA dataset:
    :func:`~hybrid_fast.eval.xquad_r.lareqa_scores_from_embeddings`'s dict plus ``eval_s``."""
    from ..eval.xquad_r import lareqa_scores_from_embeddings

    start = time.perf_counter()
    q_emb = model.encode([query_prefix + q.text for q in dataset.questions], "query", batch_size)
    c_emb = model.encode([passage_prefix + c.sentence for c in dataset.candidates], "passage", batch_size)
    q_lang, c_lang = dataset.question_lang_ids(), dataset.candidate_lang_ids()
    result = lareqa_scores_from_embeddings(q_emb, c_emb, dataset.relevant, q_lang, c_lang, dataset.languages)
    result["eval_s"] = time.perf_counter() - start
    return result


SUMMARY_KEYS = (("mono", "map"), ("cross", "map"), ("multi", "map"), ("mono", "ndcg@10"), ("mono", "r@1"),
                ("cross", "r@1"), ("multi", "r@10"))


def summarize(per_seed: list[dict]) -> dict:
    """Means over seeds (and ``*_std`` sample standard deviations) of the headline figures, plus
    ``per_seed`` (each seed's headline figures)."""
    out: dict = {}
    for setting, metric in SUMMARY_KEYS:
        values = [r[setting][metric] for r in per_seed]
        out.setdefault(setting, {})[metric] = float(np.mean(values))
        out[setting][f"{metric}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    rd = [r["rank_distance"] for r in per_seed]
    out["rank_distance"] = float(np.mean(rd))
    out["rank_distance_std"] = float(np.std(rd, ddof=1)) if len(rd) > 1 else 0.0
    out["per_seed"] = [{"seed": r["seed"], **{f"{s}_{m}": r[s][m] for s, m in SUMMARY_KEYS},
                        "rank_distance": r["rank_distance"], **({"train": r["train"]} if "train" in r else {})}
                       for r in per_seed]
    return out


def markdown_tables(results: dict) -> str:
    """The report tables (mean +- std over seeds) from :func:`run_experiment`'s dict."""
    arms = results["arms"]
    lines = ["| Model | Mono mAP | Cross mAP | Multi mAP | Mono nDCG@10 | Rank distance (lower is better) |",
             "|---|---|---|---|---|---|"]
    for arm, v in arms.items():
        cell = lambda s, m: f"{v[s][m]:.3f} ± {v[s][m + '_std']:.3f}"  # noqa: E731
        lines.append(f"| {arm} | {cell('mono', 'map')} | {cell('cross', 'map')} | {cell('multi', 'map')} | "
                     f"{cell('mono', 'ndcg@10')} | {v['rank_distance']:.1f} ± {v['rank_distance_std']:.1f} |")
    lines += ["", "Per seed (mono / cross / multi mAP, rank distance):", "",
              "| Model | Seed | Mono | Cross | Multi | Mono nDCG@10 | Rank distance |", "|---|---|---|---|---|---|---|"]
    for arm, v in arms.items():
        for r in v["per_seed"]:
            lines.append(f"| {arm} | {r['seed']} | {r['mono_map']:.3f} | {r['cross_map']:.3f} | {r['multi_map']:.3f} | "
                         f"{r['mono_ndcg@10']:.3f} | {r['rank_distance']:.1f} |")
    return "\n".join(lines) + "\n"


def run_experiment(base: TrainConfig, *, data_dir: str | Path, seeds, arms=ARMS, work_dir: str | Path = "runs/replication",
                   keep_models: bool = False, report_dir: str | Path | None = None) -> dict:
    """Train every arm for every seed with ``base`` settings, evaluate on the test articles.

    Returns ``{"arms": {arm: summarize(...)}, "settings", "split", "test_set", "timing_s"}``;
    ``zero-shot`` is evaluated once (it has no seed dependence) and reported with std 0.

    XQuAD is parsed and split once per call: every arm and seed trains on the same
    :class:`ParallelQADataset` pair (what ``Trainer(cfg)`` would build for itself, since arms and
    seeds change no data field), and the test set comes from the same records.
    """
    from ..model import BiEncoder

    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        raise ValueError(f"arms: expected a subset of {list(ARMS)}, got unknown {unknown}")
    work_dir = Path(work_dir)
    base = base.replace(data_dir=str(data_dir))
    records = load_xquad(base)
    train_data, dev_data, split = build_datasets(base, records)
    # XQuAD-R shares XQuAD's question ids: the training languages' records map every test
    # question (in any of the evaluation languages) to its article.
    test = test_lareqa(data_dir, tuple(base.eval_languages or base.languages), split["test"],
                       xquad=records[base.languages[0]])
    log.info("test set: %s", test.summary())
    started = time.perf_counter()
    results: dict = {"arms": {}, "split": split, "test_set": test.summary(),
                     "settings": {**base.to_dict(), "seeds": list(seeds)}}
    prefixes = dict(query_prefix=base.query_prefix, passage_prefix=base.passage_prefix)
    curves: dict[str, list[Path]] = {}
    for arm in arms:
        per_seed = []
        for seed in (seeds[:1] if arm == "zero-shot" else seeds):
            if arm == "zero-shot":
                seed_everything(seed)
                model = BiEncoder.from_pretrained(base.model, pooling=base.pooling, normalize=base.similarity == "cos",
                                                  query_max_length=base.query_max_length,
                                                  passage_max_length=base.passage_max_length)
                train_info = None
            else:
                cfg = base.replace(sampler=arm, seed=seed, output_dir=str(work_dir / f"{arm}-seed{seed}"))
                trainer = Trainer(cfg, train_data=train_data, val_data=dev_data, split=split)
                summary = trainer.train(save_model=keep_models)
                model = trainer.model
                train_info = {k: summary[k] for k in ("final_loss", "best_val_loss", "examples_per_s", "wall_s")}
                curves.setdefault(arm, []).append(Path(cfg.output_dir) / "metrics.jsonl")
            r = evaluate_model(model, test, **prefixes)
            r["seed"] = seed
            if train_info:
                r["train"] = train_info
            log.info("%s seed %d: mono %.3f cross %.3f multi %.3f rank distance %.1f", arm, seed, r["mono"]["map"],
                     r["cross"]["map"], r["multi"]["map"], r["rank_distance"])
            per_seed.append(r)
        results["arms"][arm] = summarize(per_seed)
    results["timing_s"] = time.perf_counter() - started
    if report_dir is not None:
        report_dir = Path(report_dir)
        report_dir.mkdir(parents=True, exist_ok=True)
        (report_dir / "tables.md").write_text(markdown_tables(results))
        for arm, paths in curves.items():
            plot_metrics(paths, report_dir / f"loss-{arm}.png", title=f"{arm}: train (per log window) and dev loss",
                         labels=[p.parent.name for p in paths])
        firsts = [paths[0] for paths in curves.values()]
        if firsts:
            plot_metrics(firsts, report_dir / "loss-all-arms.png", title="all arms, first seed",
                         labels=[p.parent.name for p in firsts])
    return results


def main_from_args(args: argparse.Namespace) -> int:
    """``hybrid-fast experiment``: defaults < preset (``--quick`` or full) < ``--config`` < flags
    (the merge of ``hybrid-fast train``, :func:`config_from_args`, with the preset as a layer)."""
    preset = getattr(args, "preset", None) or ("quick" if args.quick else "small")
    base = config_from_args(args, preset=PRESETS[preset])
    seeds = args.seeds or PRESET_SEEDS[preset]
    arms = tuple(args.arms) if args.arms else ARMS
    report_dir = args.report_dir or str(Path(args.output).parent)
    results = run_experiment(base, data_dir=args.data, seeds=seeds, arms=arms, work_dir=args.work_dir,
                             keep_models=args.keep_models, report_dir=report_dir)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(results, indent=1))
    print(markdown_tables(results))
    print(f"wrote {args.output} ({results['timing_s']:.0f} s)")
    if not args.keep_models:
        for arm in TRAINED_ARMS:
            for seed in seeds:
                for ckpt in (Path(args.work_dir) / f"{arm}-seed{seed}").glob("checkpoint-*"):
                    shutil.rmtree(ckpt, ignore_errors=True)
    return 0
