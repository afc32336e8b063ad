"""``hybrid-fast train``, ``experiment`` and ``report`` (also ``python -m hybrid_fast.train.cli``).

    hybrid-fast train --config run.yaml --sampler hybrid --alpha 0.5 --max-steps 300 --output-dir runs/h
    hybrid-fast train --output-dir runs/h --resume          # continue a killed run
    torchrun --nproc_per_node=4 -m hybrid_fast.train.cli train --batch-size 256 ...   # DDP, 64 per rank
    torchrun --nproc_per_node=4 --no-python hybrid-fast train --batch-size 256 ...    # the same
    hybrid-fast experiment --quick                     # packaged sample (or $HYBRID_FAST_DATA), runs/quick/
    hybrid-fast experiment --data ../shared/data --output results/replication/replication.json
    hybrid-fast experiment ... (the same command again)  # after a crash: finished arms/seeds are reused
    hybrid-fast report results/replication/replication.json --work-dir runs/replication  # report.md again
"""
from __future__ import annotations

import argparse
import json
import logging
import sys

from .config import add_config_arguments, config_from_args
from .experiment import ARMS


def run_train(args: argparse.Namespace) -> int:
    """Train; under torchrun (``WORLD_SIZE`` > 1) every rank joins the process group first and
    the trainer runs DDP (``--batch-size`` is the global batch); rank 0 prints the summary."""
    from pathlib import Path

    from ..preflight import UsageError, check_model, check_writable, require_modules

    cfg = config_from_args(args)
    require_modules("train", cfg.model)
    check_model(cfg.model, "--model")
    check_writable(Path(cfg.output_dir) / "config.json", "--output-dir")
    from ..distributed.runtime import init_distributed, shutdown_distributed
    from .trainer import Trainer

    context = init_distributed(cfg.dist_backend, cfg.dist_timeout_s)
    if not context.is_main:
        logging.getLogger().setLevel(logging.WARNING)  # one log: rank 0's
    try:
        try:
            trainer = Trainer(cfg)  # picks up the group joined above; reads the data
        except FileNotFoundError as err:  # the model was checked above: this is the data folder
            raise UsageError(f"--data-dir: expected a folder holding xquad/ (XQuAD, SQuAD JSON per "
                             f"language), got {str(cfg.data_dir)!r} ({err})") from None
        summary = trainer.train(resume=args.resume)
    finally:
        shutdown_distributed()
    summary.pop("losses")
    if context.is_main:
        print(json.dumps(summary, indent=1))
    return 0


def run_experiment(args: argparse.Namespace) -> int:
    from .experiment import main_from_args

    return main_from_args(args)


def register(subparsers) -> None:
    """Add the ``train``, ``experiment`` and ``report`` sub-commands to an argparse ``subparsers``."""
    train = subparsers.add_parser("train", help="train a bi-encoder with hybrid (or baseline) batches",
                                  description="Every TrainConfig field is a flag; --config FILE (YAML/JSON) "
                                              "sets defaults that flags override.")
    add_config_arguments(train)
    train.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --output-dir")
    train.set_defaults(func=run_train)

    exp = subparsers.add_parser("experiment", help="the offline replication: X-X-mono, X-Y, hybrid, SimCSE "
                                                   "and zero-shot on XQuAD-R test articles")
    exp.add_argument("--data", default=None,
                     help="folder holding xquad/ and xquad-r/ (and beir/*); default: $HYBRID_FAST_DATA, the "
                          "download cache, a download (not with --quick), else the packaged sample")
    exp.add_argument("--output", default=None,
                     help="JSON results file; report.md and PNGs go beside it (default runs/quick/results.json, "
                          "without --quick runs/replication/results.json)")
    exp.add_argument("--work-dir", default=None, help="run folders (metrics, models; default: --output's folder)")
    exp.add_argument("--quick", action="store_true", help="reduced preset: one seed, few steps (a few minutes)")
    exp.add_argument("--preset", choices=("small", "quick", "me5", "paper"), default=None,
                     help="settings layer under --config and flags (hybrid_fast/train/presets.py): small "
                          "(default), quick (= --quick), me5 (9 training / 11 test languages, me5-small-offline, "
                          "<= 2 h on 2 cores), paper (GPU: XLM-R, batch 100, lr 3e-5, early stopping)")
    exp.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds (default 0 1 2; --quick: 0)")
    exp.add_argument("--arms", nargs="+", default=None, choices=ARMS, metavar="ARM",
                     help=f"subset of {' '.join(ARMS)}")
    exp.add_argument("--beir", nargs="*", default=None, metavar="DIR",
                     help="BEIR folders every arm is evaluated on (default: the packaged DBpedia sample plus "
                          "beir/* under --data; --beir with no folder: none)")
    exp.add_argument("--report-dir", default=None, help="write report.md and PNG plots there (default: --output's folder)")
    exp.add_argument("--keep-models", action="store_true", help="keep each arm's model folder (<work-dir>/<arm>-seed<s>/model)")
    add_config_arguments(exp, exclude=("sampler", "seed", "output_dir", "data_dir"))
    exp.set_defaults(func=run_experiment)

    report = subparsers.add_parser("report", help="rebuild an experiment's report.md and plots from its files")
    report.add_argument("results", help="the experiment's results JSON")
    report.add_argument("--work-dir", default=None, help="the experiment's run folders (loss curves, "
                                                         "per_query.json; default: the JSON's folder)")
    report.add_argument("--report-dir", default=None, help="where report.md and the plots go (default: the JSON's folder)")
    report.set_defaults(func=run_report)


def run_report(args) -> int:
    """``hybrid-fast report``: :func:`~hybrid_fast.train.experiment_report.rebuild_report`."""
    from .experiment_report import rebuild_report

    print(f"wrote {rebuild_report(args.results, work_dir=args.work_dir, report_dir=args.report_dir)}")
    return 0


def build_parser():
    """The ``hybrid-fast`` parser (it holds ``train`` and ``experiment``)."""
    from ..cli import build_parser as package_parser

    return package_parser()


def main(argv=None) -> int:
    """``python -m hybrid_fast.train.cli train|experiment ...``: the ``hybrid-fast`` entry point
    (same sub-commands, same error handling)."""
    from ..cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
