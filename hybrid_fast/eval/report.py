"""Reports: terminal tables, JSON files, the cross-lingual mAP heatmap and the training loss
curves of ``metrics.jsonl`` files (matplotlib Agg, imported only when a figure is drawn; without
matplotlib a figure is skipped with one warning). Files are written atomically."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

from .._atomic import atomic_path, write_text_atomic

log = logging.getLogger(__name__)
_warned_no_matplotlib = False


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend, or None (one warning per process) when
    matplotlib is not installed: plots are optional, the run's results are not."""
    global _warned_no_matplotlib
    try:
        import matplotlib
    except ModuleNotFoundError:
        if not _warned_no_matplotlib:
            log.warning("matplotlib is not installed: plots are skipped (pip install 'hybrid_fast[all]')")
            _warned_no_matplotlib = True
        return None
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path, dpi: int = 120) -> Path:
    """Save ``fig`` to ``path`` atomically and close it."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi)
    pyplot().close(fig)
    return Path(path)


def _fmt(value: float, digits: int = 3) -> str:
    return "  -  " if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def lareqa_table(result: dict, title: str = "XQuAD-R") -> str:
    """Table-1 style summary (Mo./Cr./Mul. mAP, rank distance) then one row per query language."""
    lines = [
        f"{title}: mAP mono / cross / multi, R@1 mono / cross, R@10 multi, rank distance (lower is better)",
        f"{'':8}{'Mo.':>8}{'Cr.':>8}{'Mul.':>8}{'R@1 Mo':>8}{'R@1 Cr':>8}{'R@10 Mul':>10}{'RankDist':>10}",
    ]

    def row(name: str, v: dict) -> str:
        return (
            f"{name:8}{_fmt(v['mono_map']):>8}{_fmt(v['cross_map']):>8}{_fmt(v['multi_map']):>8}"
            f"{_fmt(v['mono_r@1']):>8}{_fmt(v['cross_r@1']):>8}{_fmt(v['multi_r@10']):>10}"
            f"{_fmt(v['rank_distance'], 1):>10}"
        )

    for lang, values in result["per_language"].items():
        lines.append(row(lang, values))
    overall = {
        "mono_map": result["mono"]["map"], "cross_map": result["cross"]["map"],
        "multi_map": result["multi"]["map"], "mono_r@1": result["mono"]["r@1"],
        "cross_r@1": result["cross"]["r@1"], "multi_r@10": result["multi"]["r@10"],
        "rank_distance": result["rank_distance"],
    }
    lines.append(row("macro", overall))
    if "timing" in result:
        t = result["timing"]
        lines.append(f"encode {t['encode_s']:.1f} s, search {t['search_s']:.1f} s")
    return "\n".join(lines)


def cross_matrix_table(result: dict) -> str:
    """The L x L mAP matrix as text (rows: query language, columns: candidate language)."""
    languages = result["cross_matrix"]["languages"]
    matrix = result["cross_matrix"]["map"]
    lines = ["q \\ c " + "".join(f"{c:>7}" for c in languages)]
    for lang, values in zip(languages, matrix):
        lines.append(f"{lang:6}" + "".join(f"{_fmt(v):>7}" for v in values))
    return "\n".join(lines)


def beir_table(result: dict, title: str = "BEIR") -> str:
    """Metric keys (``ndcg@k``, ``recall@k``, ``mrr@k``, ``map``) as a two-column table."""
    keys = [k for k in result if k not in ("timing", "data", "config")]
    lines = [title] + [f"  {k:<12}{_fmt(result[k], 4)}" for k in keys]
    if "data" in result:
        data = result["data"]
        dropped = ", ".join(f"{n} {what.replace('_', ' ')}" for what, n in data.get("dropped", {}).items() if n)
        lines.append(f"  {data['queries']} queries evaluated, {data['documents']} documents"
                     + (f" (qrels dropped: {dropped})" if dropped else ""))
    if "timing" in result:
        lines.append(f"  encode {result['timing']['encode_s']:.1f} s, search {result['timing']['search_s']:.2f} s")
    return "\n".join(lines)


def write_json(result: dict, path: str | Path) -> Path:
    """Write ``result`` as indented JSON (NaN written as null). Creates parent folders."""

    def clean(value):
        if isinstance(value, float) and math.isnan(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    return write_text_atomic(path, json.dumps(clean(result), indent=2, ensure_ascii=False) + "\n")


def cross_matrix_heatmap(result: dict, path: str | Path, title: str = "Cross-lingual mAP", *,
                         diverging: bool = False) -> Path | None:
    """Save a PNG heatmap of ``result["cross_matrix"]["map"]`` (rows: query language); None
    (nothing drawn) without matplotlib. ``diverging``: a signed difference, on a red-blue scale
    symmetric about 0 (blue positive) instead of viridis on [0, 1]."""
    plt = pyplot()
    if plt is None:
        return None

    languages = result["cross_matrix"]["languages"]
    matrix = result["cross_matrix"]["map"]
    size = max(4.0, 1.0 + 0.55 * len(languages))
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    if diverging:
        finite = [abs(v) for row in matrix for v in row if v is not None and not math.isnan(v)]
        bound = max(finite, default=0.0) or 1e-3
        image = ax.imshow(matrix, vmin=-bound, vmax=bound, cmap="RdBu")
    else:
        image = ax.imshow(matrix, vmin=0.0, vmax=1.0, cmap="viridis")
    ax.set_xticks(range(len(languages)), languages)
    ax.set_yticks(range(len(languages)), languages)
    ax.set_xlabel("candidate language")
    ax.set_ylabel("query language")
    for i, values in enumerate(matrix):
        for j, value in enumerate(values):
            if value is not None and not math.isnan(value):
                dark = abs(value) > 0.6 * bound if diverging else value < 0.6
                ax.text(j, i, f"{value:+.2f}" if diverging else f"{value:.2f}", ha="center", va="center",
                        fontsize=7, color="white" if dark else "black")
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return save_figure(fig, path)


def read_metrics(path: str | Path) -> list[dict]:
    """The records of a trainer's ``metrics.jsonl`` (one JSON object per non-empty line; a
    malformed line raises ValueError naming file and line: :func:`hybrid_fast.data._io.iter_jsonl`)."""
    from ..data._io import iter_jsonl

    return [record for _, record in iter_jsonl(Path(path))]


def plot_metrics(paths, png, *, title: str = "", labels=None) -> Path | None:
    """Training loss (per log window) and validation loss vs step from one or more
    ``metrics.jsonl`` files, into ``png`` (matplotlib Agg); None (nothing drawn) without matplotlib."""
    plt = pyplot()
    if plt is None:
        return None

    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    labels = labels or [Path(p).parent.name for p in paths]
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (path, label) in enumerate(zip(paths, labels)):
        rows = read_metrics(path)
        train = [(r["step"], r["loss"]) for r in rows if "loss" in r]
        val = [(r["step"], r["val_loss"]) for r in rows if "val_loss" in r]
        color = f"C{i}"
        if train:
            ax.plot(*zip(*train), color=color, label=f"{label} train")
        if val:
            ax.plot(*zip(*val), color=color, linestyle="--", marker="o", label=f"{label} val")
    ax.set_xlabel("step")
    ax.set_ylabel("InfoNCE loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, png, dpi=110)
