"""What ``hybrid-fast experiment`` shows and writes besides its JSON: the terminal table (arms as
rows), the Markdown report and its plots (loss curves, cross-lingual heatmap, headline bar chart).

Plots need matplotlib; without it they are skipped with one warning and the report says so.
Every file is written atomically.
"""
from __future__ import annotations

import math
from pathlib import Path

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
        beir_std = None
        if arm.get("beir"):
            folders = [k for k in arm["beir"] if k != "mean"]
            beir_std = arm["beir"][folders[0]]["ndcg@10_std"] if len(folders) == 1 else None
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
    lines = ["| Model | " + " | ".join(f"{f} nDCG@10 / R@100 / MRR@10" for f in folders) + " |",
             "|---|" + "---|" * len(folders)]
    for arm, beir in arms.items():
        cells = [f"{beir[f]['ndcg@10']:.3f} / {beir[f]['recall@100']:.3f} / {beir[f]['mrr@10']:.3f}" for f in folders]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


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
    from ..eval.report import cross_matrix_heatmap, plot_metrics

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
    heat_arm = "hybrid" if "hybrid" in results["arms"] else next(iter(results["arms"]), None)
    if heat_arm and results["arms"][heat_arm].get("cross_matrix"):
        plots.append((f"Cross-lingual mAP of {heat_arm} (rows: query language)",
                      cross_matrix_heatmap(results["arms"][heat_arm], report_dir / f"heatmap-{heat_arm}.png",
                                           title=f"{heat_arm}: cross-lingual mAP (XQuAD-R test articles)")))
    lines = [f"# {title}", "", f"Data: {results.get('data', '?')}; test set: {results['test_set']}.", "",
             "```", results_table(results), "```", "", "## XQuAD-R (mean ± std over seeds)", "",
             markdown_tables(results)]
    beir = beir_markdown(results)
    if beir:
        lines += ["## BEIR (mean over seeds)", "", beir]
    comparison = comparison_markdown(results)
    if comparison:
        lines += ["## Hybrid minus each baseline (paired bootstrap, 95% CI)", "", comparison]
    lines.append("## Plots\n")
    for caption, path in plots:
        lines.append(f"![{caption}]({path.name})\n" if path else f"({caption}: not drawn, matplotlib is not installed)\n")
    return write_text_atomic(report_dir / "report.md", "\n".join(lines))
