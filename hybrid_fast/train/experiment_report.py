"""What ``hybrid-fast experiment`` shows and writes besides its JSON: the terminal table (arms as
rows), the Markdown report (headline, per-language and BEIR tables, bootstrap comparison) and its
plots (loss curves, each arm's cross-lingual heatmap and hybrid's difference to each baseline,
headline bar chart). ``hybrid-fast report`` rebuilds the report from a finished run's files.

Plots need matplotlib; without it they are skipped with one warning and the report says so.
Every file is written atomically.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from .._atomic import write_text_atomic

HEADLINE = (("mono", "map", "Mono mAP"), ("cross", "map", "Cross mAP"), ("multi", "map", "Multi mAP"))


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


def _beir_ndcg(arm: dict) -> float | None:
    return arm["beir"]["mean"]["ndcg@10"] if arm.get("beir") else None


def beir_mean_std(arm: dict, metric: str = "ndcg@10") -> float | None:
    """Sample std over seeds of each seed's mean over the BEIR folders (the spread of the
    ``beir.mean`` figure); None without BEIR or with one seed."""
    folders = [k for k in arm.get("beir") or {} if k != "mean"]
    if not folders:
        return None
    by_seed = np.array([[r[metric] for r in arm["beir"][f]["per_seed"]] for f in folders], dtype=float)
    return float(np.std(by_seed.mean(axis=0), ddof=1)) if by_seed.shape[1] > 1 else None


def _cell(mean: float | None, std: float | None = None, digits: int = 3) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "-"
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std else "")


def results_table(results: dict) -> str:
    """One aligned text table: arms as rows; mono / cross / multi mAP, rank distance and BEIR
    nDCG@10 (mean over the BEIR folders) as columns; ``mean ± std`` over seeds when several."""
    header = ["arm"] + [label for _, _, label in HEADLINE] + ["Rank dist. (lower better)", "BEIR nDCG@10"]
    rows = []
    for name, arm in results["arms"].items():
        beir_std = beir_mean_std(arm)
        rows.append([name] + [_cell(arm[s][m], arm[s].get(f"{m}_std")) for s, m, _ in HEADLINE]
                    + [_cell(arm["rank_distance"], arm.get("rank_distance_std"), 1), _cell(_beir_ndcg(arm), beir_std)])
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    fmt = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    lines = [fmt(header), "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows]
    beir = results.get("beir") or {}
    if beir:
        lines.append("BEIR: " + "; ".join(f"{n} ({v['summary']})" for n, v in beir.items()))
    return "\n".join(lines)


def beir_markdown(results: dict) -> str:
    """Per-folder BEIR table (nDCG@10 / Recall@100 / MRR@10 per arm); empty without BEIR."""
    arms = {a: v["beir"] for a, v in results["arms"].items() if v.get("beir")}
    if not arms:
        return ""
    folders = [k for k in next(iter(arms.values())) if k != "mean"]
    mean = ["mean nDCG@10"] if len(folders) > 1 else []
    lines = ["| Model | " + " | ".join([f"{f} nDCG@10 / R@100 / MRR@10" for f in folders] + mean) + " |",
             "|---|" + "---|" * (len(folders) + len(mean))]
    for arm, beir in arms.items():
        cells = [f"{_cell(beir[f]['ndcg@10'], beir[f].get('ndcg@10_std'))} / {beir[f]['recall@100']:.3f} / "
                 f"{beir[f]['mrr@10']:.3f}" for f in folders]
        if mean:
            cells.append(_cell(beir["mean"]["ndcg@10"], beir_mean_std(results["arms"][arm])))
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def beir_overlap_note(results: dict) -> str:
    """A warning line for each pair of BEIR folders that evaluate the same queries
    (``results["beir"][folder]["shared_queries"]``): the mean over folders then counts those
    queries twice. Empty when no folders share queries."""
    beir = results.get("beir") or {}
    names = list(beir)
    notes = [f"`{a}` and `{b}` share {n} evaluated queries: the mean over folders counts them twice; "
             "read the folders' own columns."
             for i, a in enumerate(names) for b, n in (beir[a].get("shared_queries") or {}).items()
             if b in names[i + 1:]]
    return "".join(f"Note: {n}\n" for n in notes)


def comparison_markdown(results: dict) -> str:
    """The ``comparison`` block (:func:`hybrid_fast.train.experiment.compare_arms`) as a table:
    per baseline and metric, hybrid minus baseline, its 95% CI, p and whether the CI excludes 0."""
    comparison = results.get("comparison") or {}
    if not comparison:
        return ""
    lines = ["Queries resampled (XQuAD-R: whole XQuAD questions, all their languages; BEIR: per folder), "
             "each query's value averaged over seeds first. Rank distance: lower is better (negative favours "
             "hybrid).", "", "| Baseline | Metric | Hybrid − baseline | 95% CI | p | Significant |",
             "|---|---|---|---|---|---|"]
    for arm, block in comparison.items():
        for metric, r in block.items():
            digits = 1 if metric == "rank_distance" else 4
            lines.append(f"| {arm} | {metric} | {r['diff']:+.{digits}f} | [{r['ci_low']:+.{digits}f}, "
                         f"{r['ci_high']:+.{digits}f}] | {r['p_value']:.4f} | {'yes' if r['significant'] else 'no'} |")
    return "\n".join(lines) + "\n"


#: Per-question XQuAD-R values shown per language (keys of ``per_query.json``'s ``xquad_r``).
PER_LANGUAGE_METRICS = (("mono_map", "Mono mAP"), ("cross_map", "Cross mAP (query language vs the others)"),
                        ("multi_map", "Multi mAP"), ("rank_distance", "Rank distance (lower is better)"))


def per_language_means(per_query: dict[str, list[dict]]) -> dict[str, dict[str, dict[str, float]]]:
    """``{arm: {lang: {metric: value}}}`` from the per-question values of every seed
    (``per_query.json``): each seed's mean over the language's questions, then the mean over
    seeds (a question without relevant candidates in a setting has NaN there and is left out)."""
    out: dict = {}
    for arm, runs in per_query.items():
        if not runs:
            continue
        langs = np.asarray(runs[0]["xquad_r"]["lang"])
        out[arm] = {}
        for lang in dict.fromkeys(runs[0]["xquad_r"]["lang"]):
            rows = langs == lang
            out[arm][lang] = {}
            for metric, _ in PER_LANGUAGE_METRICS:
                with np.errstate(all="ignore"):
                    seeds = [np.nanmean(np.asarray(r["xquad_r"][metric], dtype=float)[rows]) for r in runs]
                out[arm][lang][metric] = float(np.mean(seeds))
    return out


def per_language_markdown(results: dict) -> str:
    """One table per metric: arms as rows, XQuAD-R languages as columns (``*``: not a training
    language), then the macro mean; empty without ``results["per_language"]``."""
    per_language = results.get("per_language") or {}
    if not per_language:
        return ""
    trained = set(results.get("settings", {}).get("languages") or [])
    langs = list(next(iter(per_language.values())))
    header = [f"{lang}*" if trained and lang not in trained else lang for lang in langs]
    blocks = []
    for metric, label in PER_LANGUAGE_METRICS:
        digits = 1 if metric == "rank_distance" else 3
        lines = [f"**{label}**", "", "| Model | " + " | ".join(header) + " | macro |", "|---|" + "---|" * (len(langs) + 1)]
        for arm, values in per_language.items():
            row = [values[lang][metric] for lang in langs]
            lines.append(f"| {arm} | " + " | ".join(_cell(v, digits=digits) for v in row)
                         + f" | {_cell(float(np.nanmean(row)), digits=digits)} |")
        blocks.append("\n".join(lines))
    note = "\n\n`*`: not a training language (unseen in training)." if trained and any(h.endswith("*") for h in header) else ""
    return "\n\n".join(blocks) + note + "\n"


def heatmaps(results: dict, report_dir: Path, reference: str = "hybrid") -> list[tuple[str, Path | None]]:
    """Every arm's L x L cross-lingual mAP heatmap, then ``reference`` minus each other arm."""
    from ..eval.report import cross_matrix_heatmap

    arms = {a: v for a, v in results["arms"].items() if v.get("cross_matrix")}
    plots = [(f"Cross-lingual mAP of {arm} (rows: query language, columns: candidate language)",
              cross_matrix_heatmap(v, report_dir / f"heatmap-{arm}.png",
                                   title=f"{arm}: mAP per query x candidate language (XQuAD-R test articles)"))
             for arm, v in arms.items()]
    if reference in arms:
        ref = np.asarray(arms[reference]["cross_matrix"]["map"], dtype=float)
        for arm, v in arms.items():
            if arm == reference:
                continue
            diff = {"cross_matrix": {"languages": v["cross_matrix"]["languages"],
                                     "map": (ref - np.asarray(v["cross_matrix"]["map"], dtype=float)).tolist()}}
            plots.append((f"{reference} minus {arm}, mAP per language pair (blue: {reference} higher)",
                          cross_matrix_heatmap(diff, report_dir / f"heatmap-{reference}-minus-{arm}.png",
                                               title=f"{reference} minus {arm}: mAP difference", diverging=True)))
    return plots


def bar_chart(results: dict, path: str | Path) -> Path | None:
    """Grouped bars: the headline metrics (mono / cross / multi mAP, BEIR nDCG@10) per arm."""
    from ..eval.report import pyplot, save_figure

    plt = pyplot()
    if plt is None:
        return None
    arms = list(results["arms"])
    metrics = [(label, [results["arms"][a][s][m] for a in arms]) for s, m, label in HEADLINE]
    if all(results["arms"][a].get("beir") for a in arms):
        metrics.append(("BEIR nDCG@10", [_beir_ndcg(results["arms"][a]) for a in arms]))
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    width = 0.8 / len(arms)
    for i, arm in enumerate(arms):
        values = [v[i] for _, v in metrics]
        bars = ax.bar([j + (i - (len(arms) - 1) / 2) * width for j in range(len(metrics))], values, width,
                      label=arm, color=f"C{i}")
        ax.bar_label(bars, fmt="%.2f", fontsize=6, padding=1)
    ax.set_xticks(range(len(metrics)), [label for label, _ in metrics])
    ax.set_ylabel("score (higher is better)")
    ax.set_ylim(0, 1.05 * max(1e-9, max(max(v) for _, v in metrics)) + 0.05)
    seeds = results.get("settings", {}).get("seeds", [])
    ax.set_title(f"XQuAD-R test articles and BEIR, mean over {len(seeds)} seed(s)", fontsize=9)
    ax.legend(fontsize=7, ncol=len(arms), loc="upper center", bbox_to_anchor=(0.5, -0.12), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)


def write_report(results: dict, report_dir: str | Path, curves: dict[str, list[Path]], *, title: str) -> Path:
    """Plots and ``report.md`` into ``report_dir``; returns the report's path."""
    from ..eval.report import plot_metrics

    report_dir = Path(report_dir)
    plots: list[tuple[str, Path | None]] = [("Headline metrics per arm", bar_chart(results, report_dir / "metrics.png"))]
    firsts = [paths[0] for paths in curves.values()]
    if firsts:
        plots.append(("Training (per log window) and validation loss, first seed of each arm",
                      plot_metrics(firsts, report_dir / "loss-all-arms.png", title="all arms, first seed",
                                   labels=[p.parent.name for p in firsts])))
    for arm, paths in curves.items():
        if len(paths) > 1:
            plots.append((f"{arm}: every seed", plot_metrics(paths, report_dir / f"loss-{arm}.png", title=arm,
                                                             labels=[p.parent.name for p in paths])))
    plots += heatmaps(results, report_dir)
    lines = [f"# {title}", "", f"Data: {results.get('data', '?')}; test set: {results['test_set']}.", "",
             "```", results_table(results), "```", "", "## XQuAD-R (mean ± std over seeds)", "",
             markdown_tables(results)]
    per_language = per_language_markdown(results)
    if per_language:
        lines += ["## XQuAD-R per language (mean over seeds; rows: arms, columns: query language)", "", per_language]
    beir = beir_markdown(results)
    if beir:
        lines += ["## BEIR (mean ± std over seeds)", "", beir]
        overlap = beir_overlap_note(results)
        if overlap:
            lines += [overlap]
    comparison = comparison_markdown(results)
    if comparison:
        lines += ["## Hybrid minus each baseline (paired bootstrap, 95% CI)", "", comparison]
    lines.append("## Plots\n")
    for caption, path in plots:
        lines.append(f"![{caption}]({path.name})\n" if path else f"({caption}: not drawn, matplotlib is not installed)\n")
    return write_text_atomic(report_dir / "report.md", "\n".join(lines))


def report_title(results: dict) -> str:
    settings = results.get("settings", {})
    return f"hybrid-fast experiment ({len(settings.get('seeds', []))} seed(s), {settings.get('max_steps', '?')} steps)"


def rebuild_report(results_path: str | Path, *, work_dir: str | Path | None = None,
                   report_dir: str | Path | None = None) -> Path:
    """``hybrid-fast report``: ``report.md`` and plots again from a finished experiment's files:
    the results JSON and each run's ``metrics.jsonl`` under ``work_dir`` (default: the JSON's
    folder). A JSON without ``per_language`` (older runs) takes it from ``work_dir/per_query.json``
    when that is there; otherwise the per-language tables are left out."""
    results_path = Path(results_path)
    if not results_path.is_file():
        raise FileNotFoundError(f"results: expected the JSON file of a finished experiment, got {results_path} "
                                "(no such file)")
    results = json.loads(results_path.read_text())
    if "arms" not in results or "test_set" not in results:
        raise ValueError(f"results: expected an experiment's results JSON (keys 'arms', 'test_set'), got "
                         f"{results_path} with keys {sorted(results)[:8]}")
    work_dir = Path(work_dir) if work_dir else results_path.parent
    per_query_path = work_dir / "per_query.json"
    if not results.get("per_language") and per_query_path.is_file():
        results["per_language"] = per_language_means(json.loads(per_query_path.read_text()))
    seeds = results.get("settings", {}).get("seeds", [])
    curves: dict[str, list[Path]] = {}
    for arm in results["arms"]:
        paths = [p for p in (work_dir / f"{arm}-seed{seed}" / "metrics.jsonl" for seed in seeds) if p.is_file()]
        if paths:
            curves[arm] = paths
    return write_report(results, Path(report_dir) if report_dir else results_path.parent, curves,
                        title=report_title(results))
