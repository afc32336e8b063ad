"""The offline replication of the paper's comparison (docs/method.md sections 2-4), small scale.

Arms: ``zero-shot`` (the base model, no training), ``x-x-mono``, ``x-y``, ``hybrid`` (alpha 0.5)
and ``simcse`` (unsupervised), trained with identical settings (steps, batch size, lr, seeds) on
the XQuAD training articles, evaluated on XQuAD-R restricted to the test articles (questions of
test articles and the candidate sentences of their paragraphs), in the training languages:

* Table-1 mAP (mono / cross / multi) and rank distance from
  :func:`hybrid_fast.eval.xquad_r.lareqa_scores_from_embeddings`;
* nDCG@10 per monolingual setting (binary relevance: the query's relevant sentences in its own
  language), macro-averaged over languages, from the same ranks as mono mAP (same function);
* on each BEIR folder (``beir_dirs``; the CLI's default is the packaged DBpedia sample plus
  ``beir/*`` under ``--data``): nDCG@10, Recall@100, MRR@10 and MAP
  (:func:`hybrid_fast.eval.beir.evaluate_beir`), and their mean over folders.

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

from .._atomic import write_text_atomic
from ..data.xquad_split import build_datasets, load_xquad, xquad_r_test_set
from ..eval.report import plot_metrics, write_json
from .config import TrainConfig, config_from_args
from .experiment_report import markdown_tables, per_language_means, report_title, write_report  # noqa: F401
from .presets import PRESET_SEEDS, PRESETS
from .trainer import Trainer, seed_everything

test_lareqa = xquad_r_test_set  # the earlier name

log = logging.getLogger(__name__)

TRAINED_ARMS = ("x-x-mono", "x-y", "hybrid", "simcse")
ARMS = ("zero-shot",) + TRAINED_ARMS

# Presets (--config and flags override them: config_from_args): hybrid_fast/train/presets.py.
FULL, QUICK = PRESETS["small"], PRESETS["quick"]


def evaluate_model(model, dataset, *, query_prefix: str, passage_prefix: str, batch_size: int = 64,
                   desc: str = "") -> dict:
    """Table-1 figures plus monolingual nDCG@10 of a :class:`BiEncoder` (or any object with its
    ``encode(texts, kind, batch_size)``) on a LAReQA dataset, the texts prefixed here as in
    training: :func:`~hybrid_fast.eval.xquad_r.lareqa_scores_from_embeddings`'s dict plus ``eval_s``
    (``desc``: label of the encoding progress bars; none when empty)."""
    from ..eval.xquad_r import lareqa_scores_from_embeddings

    start = time.perf_counter()
    encoder = PrefixedEncoder(model, query_prefix=query_prefix, passage_prefix=passage_prefix,
                              batch_size=batch_size, desc=desc)
    q_emb = encoder.encode([q.text for q in dataset.questions], "query")
    c_emb = encoder.encode([c.sentence for c in dataset.candidates], "passage")
    q_lang, c_lang = dataset.question_lang_ids(), dataset.candidate_lang_ids()
    result = lareqa_scores_from_embeddings(q_emb, c_emb, dataset.relevant, q_lang, c_lang, dataset.languages,
                                           per_query=True)
    # each question's values, labelled for the paired bootstrap (hybrid_fast.eval.stats)
    result["per_query"] = {"qid": [q.qid for q in dataset.questions], "lang": [q.lang for q in dataset.questions],
                           **result["per_query"]}
    result["eval_s"] = time.perf_counter() - start
    return result


BEIR_KEYS = ("ndcg@10", "recall@100", "mrr@10", "map")


def encode_with_progress(model, texts: list[str], kind: str, batch_size: int = 64, desc: str = "") -> "object":
    """``model.encode`` in chunks of 8 batches behind a tqdm bar (``desc``; no bar when empty)."""
    import torch

    if not desc or len(texts) <= 8 * batch_size:
        return model.encode(texts, kind, batch_size)
    from tqdm.auto import tqdm

    chunk = 8 * batch_size
    parts = []
    with tqdm(total=len(texts), desc=desc, unit="text", leave=False) as bar:
        for start in range(0, len(texts), chunk):
            parts.append(model.encode(texts[start:start + chunk], kind, batch_size))
            bar.update(len(parts[-1]))
    return torch.cat(parts)


class PrefixedEncoder:
    """The ``encode(texts, kind)`` of :class:`hybrid_fast.Encoder` over a :class:`BiEncoder`
    (which expects prefixed texts): what :func:`~hybrid_fast.eval.beir.evaluate_beir` calls."""

    def __init__(self, model, *, query_prefix: str, passage_prefix: str, batch_size: int = 64, desc: str = ""):
        self.model, self.batch_size, self.desc = model, batch_size, desc
        self.prefix = {"query": query_prefix, "passage": passage_prefix}

    def encode(self, texts, kind: str = "passage"):
        prefix = self.prefix[kind]
        return encode_with_progress(self.model, [prefix + t for t in texts], kind, self.batch_size,
                                    f"{self.desc} {'queries' if kind == 'query' else 'passages'}" if self.desc else "")


def evaluate_beir_folders(model, beir: dict, *, query_prefix: str, passage_prefix: str, desc: str = "") -> dict:
    """``{name: {metric: value}}`` over ``beir`` (``{name: BeirDataset}``), metrics
    :data:`BEIR_KEYS` (plus ``eval_s`` and ``per_query``: ``{qid: nDCG@10}``)."""
    from ..eval.beir import evaluate_beir

    out = {}
    for name, dataset in beir.items():
        start = time.perf_counter()
        encoder = PrefixedEncoder(model, query_prefix=query_prefix, passage_prefix=passage_prefix,
                                  desc=f"{desc} {name}".strip() if desc else "")
        metrics = evaluate_beir(encoder, dataset, per_query=True)
        out[name] = {**{k: metrics[k] for k in BEIR_KEYS}, "eval_s": time.perf_counter() - start,
                     "per_query": {qid: v["ndcg@10"] for qid, v in metrics["per_query"].items()}}
    return out


def _mean_std(values) -> tuple[float, float]:
    return float(np.mean(values)), (float(np.std(values, ddof=1)) if len(values) > 1 else 0.0)


def summarize_beir(per_seed: list[dict]) -> dict:
    """``{"<folder>": {metric: mean, "<metric>_std": std, "per_seed": [{"seed", metric...}]},
    "mean": {metric: mean over folders of the seed means}}`` from each seed's ``beir`` dict."""
    folders = list(per_seed[0]["beir"])
    out: dict = {}
    for name in folders:
        block: dict = {}
        for key in BEIR_KEYS:
            block[key], block[f"{key}_std"] = _mean_std([r["beir"][name][key] for r in per_seed])
        block["per_seed"] = [{"seed": r["seed"], **{k: r["beir"][name][k] for k in BEIR_KEYS}} for r in per_seed]
        out[name] = block
    out["mean"] = {key: float(np.mean([out[name][key] for name in folders])) for key in BEIR_KEYS}
    return out


SUMMARY_KEYS = (("mono", "map"), ("cross", "map"), ("multi", "map"), ("mono", "ndcg@10"), ("mono", "r@1"),
                ("cross", "r@1"), ("multi", "r@10"))


def beir_folder_names(dirs) -> dict[str, Path]:
    """``{name: folder}``: each folder's own name, ``-2``, ``-3``... appended to repeats
    (``"mean"`` is reserved for the mean over folders)."""
    names: dict[str, Path] = {}
    for folder in dirs:
        folder = Path(folder)
        base = folder.resolve().name
        name, n = base, 1
        while name in names or name == "mean":
            n += 1
            name = f"{base}-{n}"
        names[name] = folder
    return names


def load_beir_folders(dirs) -> dict:
    """``{name: BeirDataset}`` (names from :func:`beir_folder_names`), test qrels."""
    from ..data.beir import load_beir

    return {name: load_beir(folder) for name, folder in beir_folder_names(dirs).items()}


#: Headline metrics compared by paired bootstrap: XQuAD-R per-question values (resampled by XQuAD
#: question: its translations move together) and BEIR nDCG@10 per query (folders = strata).
COMPARED = ("mono_map", "cross_map", "multi_map", "rank_distance")


def strip_per_query(r: dict) -> dict:
    """Remove the per-query values from one seed's evaluation ``r`` (they do not go into the
    summaries) and return them: ``{"seed", "xquad_r": {...}, "beir": {folder: {qid: nDCG@10}}}``."""
    return {"seed": r["seed"], "xquad_r": r.pop("per_query"),
            "beir": {name: v.pop("per_query") for name, v in r.get("beir", {}).items()}}


def compare_arms(per_query: dict[str, list[dict]], *, reference: str = "hybrid", n_resamples: int = 10000,
                 seed: int = 0) -> dict:
    """``{baseline: {metric: paired_bootstrap(...)}}``: 95% CI of ``reference`` minus each other
    arm for :data:`COMPARED` (XQuAD-R, groups = XQuAD question id), ``beir_ndcg@10:<folder>``
    and ``beir_ndcg@10:mean`` (folders as equal-weight strata); each query's value averaged over
    the arm's seeds first (seeds pooled). Rank distance: lower is better, so a negative
    difference favours ``reference``. ``{}`` when ``reference`` was not run."""
    from ..eval.stats import paired_bootstrap

    if reference not in per_query or not per_query[reference]:
        return {}
    ref = per_query[reference]
    out: dict = {}
    for arm, runs in per_query.items():
        if arm == reference or not runs:
            continue
        block: dict = {}
        qids = ref[0]["xquad_r"]["qid"]
        for metric in COMPARED:
            block[metric] = paired_bootstrap([s["xquad_r"][metric] for s in ref], [s["xquad_r"][metric] for s in runs],
                                             groups=qids, n_resamples=n_resamples, seed=seed)
        folders = list(ref[0]["beir"])
        for name in folders:
            ids = list(ref[0]["beir"][name])
            block[f"beir_ndcg@10:{name}"] = paired_bootstrap(
                [[s["beir"][name][q] for q in ids] for s in ref], [[s["beir"][name][q] for q in ids] for s in runs],
                n_resamples=n_resamples, seed=seed)
        if len(folders) > 1:
            keys = [(name, q) for name in folders for q in ref[0]["beir"][name]]
            block["beir_ndcg@10:mean"] = paired_bootstrap(
                [[s["beir"][n][q] for n, q in keys] for s in ref], [[s["beir"][n][q] for n, q in keys] for s in runs],
                strata=[n for n, _ in keys], n_resamples=n_resamples, seed=seed)
        out[arm] = block
    return out


#: Every arm and seed's per-query values (``{arm: [strip_per_query(...) per seed]}``), in the work dir.
PER_QUERY_FILE = "per_query.json"


def shared_queries(query_ids: dict[str, set]) -> dict[str, dict[str, int]]:
    """``{folder: {other folder: number of evaluated query ids both hold}}`` (pairs sharing none
    left out): folders drawn from one collection (the packaged DBpedia sample and the DBpedia
    subset) count those queries twice in the mean over folders."""
    return {a: {b: len(ids & other) for b, other in query_ids.items() if b != a and ids & other}
            for a, ids in query_ids.items()}


#: One arm and seed's evaluation (with its per-query values), written atomically into its run
#: folder when it is done: a rerun of the same experiment after a crash or a kill reuses it.
FINISHED_RUN = "evaluation.json"


def run_fingerprint(base: TrainConfig, arm: str, seed: int, test, beir: dict) -> dict:
    """What one arm and seed's evaluation depends on: the settings (less bookkeeping fields), the
    arm, the seed, the test set and the BEIR folders. A finished run is reused only when its
    recorded fingerprint is equal."""
    settings = {k: v for k, v in base.to_dict().items()
                if k not in ("output_dir", "save_every", "log_every", "progress", "eval_every")}
    return {"settings": settings, "arm": arm, "seed": seed, "test_set": test.summary(),
            "beir": {name: [str(Path(d.folder).resolve()), d.summary()] for name, d in beir.items()}}


def load_finished_run(run_dir: Path, fingerprint: dict) -> dict | None:
    """The evaluation recorded in ``run_dir/``:data:`FINISHED_RUN` when its fingerprint equals
    ``fingerprint`` (JSON round trip: tuples compare as lists), else None (absent, unreadable or
    made with other settings: the run is redone and the file replaced)."""
    path = run_dir / FINISHED_RUN
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        log.warning("%s: unreadable (%s); the run is redone", path, exc)
        return None
    if record.get("fingerprint") != json.loads(json.dumps(fingerprint)):
        log.info("%s: made with other settings; the run is redone", path)
        return None
    return _nan_from_null(record["result"])


def _nan_from_null(value):
    """Undo :func:`~hybrid_fast.eval.report.write_json`'s NaN -> null in metric values."""
    if value is None:
        return float("nan")
    if isinstance(value, dict):
        return {k: _nan_from_null(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_from_null(v) for v in value]
    return value


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
    if per_seed and "cross_matrix" in per_seed[0]:
        matrices = np.array([r["cross_matrix"]["map"] for r in per_seed], dtype=float)
        out["cross_matrix"] = {"languages": per_seed[0]["cross_matrix"]["languages"],
                               "map": np.nanmean(matrices, axis=0).tolist() if matrices.size else []}
    if per_seed and per_seed[0].get("beir"):
        out["beir"] = summarize_beir(per_seed)
    return out


def run_experiment(base: TrainConfig, *, data_dir: str | Path, seeds, arms=ARMS, work_dir: str | Path = "runs/replication",
                   keep_models: bool = False, report_dir: str | Path | None = None,
                   beir_dirs=(), test_articles_available=None, data_label: str | None = None) -> dict:
    """Train every arm for every seed with ``base`` settings, evaluate on the test articles.

    Returns ``{"arms": {arm: summarize(...)}, "settings", "split", "test_set", "beir", "timing_s"}``;
    ``zero-shot`` is evaluated once (it has no seed dependence) and reported with std 0.

    ``beir_dirs``: BEIR folders (``corpus.jsonl``, ``queries.jsonl``, ``qrels/test.tsv``) every
    arm and seed is also evaluated on, read before any training (a malformed folder fails first);
    each arm's summary then has ``"beir": summarize_beir(...)``, keyed by folder name.
    ``keep_models``: each trained arm's model stays in ``work_dir/<arm>-seed<seed>/model``.
    ``test_articles_available``: titles whose XQuAD-R records the data holds (the packaged sample
    holds the quick split's only); a split with other test articles is a ValueError.
    ``data_label``: recorded as ``results["data"]`` (default ``str(data_dir)``), e.g.
    ``"packaged sample"``.

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
    if test_articles_available is not None and not set(split["test"]) <= set(test_articles_available):
        raise ValueError("--split-seed/--dev-articles/--test-articles: the data holds XQuAD-R for the quick split's "
                         f"test articles only ({len(test_articles_available)}), got a split with others; "
                         "pass --data DIR with the full XQuAD-R")
    # XQuAD-R shares XQuAD's question ids: the training languages' records map every test
    # question (in any evaluation language, e.g. el/vi unseen in training) to its article.
    test = xquad_r_test_set(data_dir, tuple(base.eval_languages or base.languages), split["test"],
                            xquad=records[base.languages[0]])
    log.info("test set: %s", test.summary())
    beir = load_beir_folders(beir_dirs)
    started = time.perf_counter()
    shared = shared_queries({name: set(d.qrels) for name, d in beir.items()})
    results: dict = {"data": data_label or str(data_dir), "arms": {}, "split": split, "test_set": test.summary(),
                     "beir": {name: {"folder": str(d.folder), "summary": d.summary(), "shared_queries": shared[name]}
                              for name, d in beir.items()},
                     "settings": {**base.to_dict(), "seeds": list(seeds)}}
    prefixes = dict(query_prefix=base.query_prefix, passage_prefix=base.passage_prefix)
    curves: dict[str, list[Path]] = {}
    per_query: dict[str, list[dict]] = {arm: [] for arm in arms}  # per arm, per seed
    for arm in arms:
        per_seed = []
        for seed in (seeds[:1] if arm == "zero-shot" else seeds):
            run_dir = work_dir / (arm if arm == "zero-shot" else f"{arm}-seed{seed}")
            fingerprint = run_fingerprint(base, arm, seed, test, beir)
            r = load_finished_run(run_dir, fingerprint)
            if r is not None:  # finished by an earlier, interrupted call with the same settings
                log.info("%s seed %d: reusing %s", arm, seed, run_dir / FINISHED_RUN)
                if arm != "zero-shot":
                    curves.setdefault(arm, []).append(run_dir / "metrics.jsonl")
                per_query[arm].append(strip_per_query(r))
                per_seed.append(r)
                continue
            if arm == "zero-shot":
                seed_everything(seed)
                model = BiEncoder.from_pretrained(base.model, pooling=base.pooling, normalize=base.similarity == "cos",
                                                  query_max_length=base.query_max_length,
                                                  passage_max_length=base.passage_max_length,
                                                  query_prefix="", passage_prefix="")  # evaluate_model prefixes
                train_info = None
            else:
                cfg = base.replace(sampler=arm, seed=seed, output_dir=str(work_dir / f"{arm}-seed{seed}"))
                trainer = Trainer(cfg, train_data=train_data, val_data=dev_data, split=split)
                summary = trainer.train(save_model=keep_models)
                model = trainer.model
                train_info = {k: summary[k] for k in ("final_loss", "best_val_loss", "examples_per_s", "wall_s")}
                curves.setdefault(arm, []).append(Path(cfg.output_dir) / "metrics.jsonl")
            r = evaluate_model(model, test, **prefixes, desc=f"{arm} XQuAD-R")
            r["beir"] = evaluate_beir_folders(model, beir, **prefixes, desc=f"{arm} BEIR")
            r["seed"] = seed
            if train_info:
                r["train"] = train_info
            log.info("%s seed %d: mono %.3f cross %.3f multi %.3f rank distance %.1f", arm, seed, r["mono"]["map"],
                     r["cross"]["map"], r["multi"]["map"], r["rank_distance"])
            write_json({"fingerprint": fingerprint, "result": r}, run_dir / FINISHED_RUN)
            per_query[arm].append(strip_per_query(r))
            per_seed.append(r)
        results["arms"][arm] = summarize(per_seed)
    results["timing_s"] = time.perf_counter() - started
    results["comparison"] = compare_arms(per_query)
    results["per_language"] = per_language_means(per_query)
    # The values behind the CIs, for re-analysis: megabytes, so beside the runs, not the report.
    write_text_atomic(work_dir / PER_QUERY_FILE, json.dumps(per_query))
    if report_dir is not None:
        write_report(results, report_dir, curves, title=report_title(results))
    return results


def default_output(quick: bool) -> str:
    """``runs/quick/results.json`` or ``runs/replication/results.json`` (relative to the CWD)."""
    return f"runs/{'quick' if quick else 'replication'}/results.json"


def main_from_args(args: argparse.Namespace) -> int:
    """``hybrid-fast experiment``: defaults < preset (``--quick`` or full) < ``--config`` < flags
    (the merge of ``hybrid-fast train``, :func:`config_from_args`, with the preset as a layer).

    Everything a run needs is checked before training starts (:func:`preflight`): optional
    dependencies, the model, the data (explicit ``--data``, ``$HYBRID_FAST_DATA``, cache,
    download, then the packaged sample: :func:`~hybrid_fast.data.sample.resolve_experiment_data`),
    the BEIR folders and that the output can be written. The JSON, ``report.md`` and the plots
    go next to ``--output`` (default :func:`default_output`), each written atomically."""
    from ..data.sample import SAMPLE_LABEL, sample_beir_folder, sample_manifest
    from ..eval.report import write_json
    from .experiment_report import results_table
    from ..preflight import check_beir_dirs, check_model, check_writable, require_modules

    preset = getattr(args, "preset", None) or ("quick" if args.quick else "small")
    base = config_from_args(args, preset=PRESETS[preset])
    seeds = args.seeds or PRESET_SEEDS[preset]
    arms = tuple(args.arms) if args.arms else ARMS
    output = Path(args.output or default_output(args.quick))
    work_dir = Path(args.work_dir or output.parent)
    require_modules("experiment", base.model)
    check_writable(output, "--output")
    check_writable(work_dir / ".probe", "--work-dir")
    check_model(base.model, "--model")
    from ..data.sample import resolve_experiment_data

    languages = list(dict.fromkeys([*base.languages, *base.eval_languages]))  # training, then test-only
    data_dir, data_label = resolve_experiment_data(args.data, languages, download=False if args.quick else None)
    if args.beir is None:
        beir_dirs = [sample_beir_folder()] + sorted(p for p in (Path(data_dir) / "beir").glob("*") if p.is_dir())
        beir_dirs = list({p.resolve(): p for p in beir_dirs}.values())
    else:
        beir_dirs = [Path(p) for p in args.beir]
    check_beir_dirs(beir_dirs, "--beir")
    available = sample_manifest()["test_articles"] if data_label == SAMPLE_LABEL else None
    report_dir = args.report_dir or str(output.parent)
    results = run_experiment(base, data_dir=data_dir, seeds=seeds, arms=arms, work_dir=work_dir,
                             keep_models=args.keep_models, report_dir=report_dir, beir_dirs=beir_dirs,
                             test_articles_available=available, data_label=data_label)
    write_json(results, output)
    print(results_table(results))
    print(f"wrote {output}, {Path(report_dir) / 'report.md'} and plots ({results['timing_s']:.0f} s; data: {data_label})")
    if not args.keep_models:
        for arm in TRAINED_ARMS:
            for seed in seeds:
                for ckpt in (work_dir / f"{arm}-seed{seed}").glob("checkpoint-*"):
                    shutil.rmtree(ckpt, ignore_errors=True)
    return 0
