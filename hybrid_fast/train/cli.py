"""``hybrid-fast train`` and ``hybrid-fast experiment`` (also ``python -m hybrid_fast.train.cli``).

    hybrid-fast train --config run.yaml --sampler hybrid --alpha 0.5 --max-steps 300 --output-dir runs/h
    hybrid-fast train --output-dir runs/h --resume          # continue a killed run
    hybrid-fast experiment --quick --data ../shared/data --output quick.json
    hybrid-fast experiment --data ../shared/data --output results/replication/replication.json
"""
from __future__ import annotations

import argparse
import json
import logging
import sys

from ..cli import configure_logging
from .config import add_config_arguments, config_from_args


def run_train(args: argparse.Namespace) -> int:
    from .trainer import Trainer

    cfg = config_from_args(args)
    summary = Trainer(cfg).train(resume=args.resume)
    summary.pop("losses")
    print(json.dumps(summary, indent=1))
    return 0


def run_experiment(args: argparse.Namespace) -> int:
    from .experiment import main_from_args

    return main_from_args(args)


def register(subparsers) -> None:
    """Add the ``train`` and ``experiment`` sub-commands to an argparse ``subparsers``."""
    train = subparsers.add_parser("train", help="train a bi-encoder with hybrid (or baseline) batches",
                                  description="Every TrainConfig field is a flag; --config FILE (YAML/JSON) "
                                              "sets defaults that flags override.")
    add_config_arguments(train)
    train.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --output-dir")
    train.set_defaults(func=run_train)

    exp = subparsers.add_parser("experiment", help="the offline replication: X-X-mono, X-Y, hybrid, SimCSE "
                                                   "and zero-shot on XQuAD-R test articles")
    exp.add_argument("--data", default="../shared/data", help="folder holding xquad/ and xquad-r/")
    exp.add_argument("--output", default="results/replication/replication.json", help="JSON results file")
    exp.add_argument("--work-dir", default="runs/replication", help="run folders (checkpoints, models, metrics)")
    exp.add_argument("--quick", action="store_true", help="reduced preset: one seed, few steps (a few minutes)")
    exp.add_argument("--preset", choices=("small", "quick", "me5", "paper"), default=None,
                     help="settings layer under --config and flags (hybrid_fast/train/presets.py): small "
                          "(default), quick (= --quick), me5 (9 training / 11 test languages, me5-small-offline, "
                          "<= 2 h on 2 cores), paper (GPU: XLM-R, batch 100, lr 3e-5, early stopping)")
    exp.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds (default 0 1 2; --quick: 0)")
    exp.add_argument("--arms", nargs="+", default=None, help="subset of zero-shot x-x-mono x-y hybrid simcse")
    exp.add_argument("--report-dir", default=None, help="write README tables and PNG curves there")
    exp.add_argument("--keep-models", action="store_true", help="keep trained model folders")
    add_config_arguments(exp, exclude=("sampler", "seed", "output_dir", "data_dir"))
    exp.set_defaults(func=run_experiment)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m hybrid_fast.train.cli", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    register(parser.add_subparsers(dest="command", required=True))
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(logging.INFO)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
