"""The ``hybrid-fast`` console script.

Sub-commands are registered by the modules that own them (``register(subparsers)``), imported
only when the command line is parsed, so ``import hybrid_fast`` stays light:

    hybrid-fast info                      what is compiled, which backend each op uses
    hybrid-fast bench infonce [--quick]   fused loss vs pure PyTorch (benchmarks/infonce.py)
    hybrid-fast bench topk [--quick]      exact top-k vs FAISS and torch (benchmarks/topk.py)
    hybrid-fast bench distributed         cross-rank negatives on W gloo ranks (benchmarks/distributed.py)
    hybrid-fast eval ...                  retrieval evaluation (eval/cli.py)
    hybrid-fast train / experiment ...    hybrid batch training (train/cli.py)
    hybrid-fast report RESULTS.json       an experiment's report.md and plots again (train/cli.py)
"""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys

# Modules that add sub-commands; a missing optional dependency only disables its commands.
_COMMAND_MODULES = ("hybrid_fast.eval.cli", "hybrid_fast.train.cli")
_BENCHMARKS = ("infonce", "topk", "distributed")


def _info(args) -> int:
    import hybrid_fast

    print(json.dumps(hybrid_fast.backends(), indent=2))
    return 0


def _bench(args) -> int:
    module = importlib.import_module(f"hybrid_fast.benchmarks.{args.op}")
    return module.main(args.rest)


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse with a one-line error (``prog: error: argument --flag: ...``), exit status 2.
    Sub-parsers inherit the class."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog="hybrid-fast", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="compiled modules and the backend each op uses")
    info.set_defaults(func=_info)
    bench = sub.add_parser("bench", help="speed/memory benchmarks (pass --help after the op for options)")
    bench.add_argument("op", choices=_BENCHMARKS)
    bench.add_argument("rest", nargs=argparse.REMAINDER, help="options of the benchmark, e.g. --quick")
    bench.set_defaults(func=_bench)
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("hybrid_fast"):
                continue  # that part of the package is not there (yet)
            raise
        module.register(sub)
    return parser


# Libraries that print through a handler of their own and may still propagate to the root
# (transformers sets ``propagate = CI`` when it is imported, after configure_logging ran).
_OWN_HANDLER_LIBRARIES = ("huggingface_hub", "transformers")


def _not_from_own_handler_libraries(record: logging.LogRecord) -> bool:
    return not any(record.name == lib or record.name.startswith(lib + ".") for lib in _OWN_HANDLER_LIBRARIES)


def configure_logging(level: int = logging.INFO) -> None:
    """Root handler for every entry point; it drops the records of ``_OWN_HANDLER_LIBRARIES``
    (their own handler prints them), whatever those libraries later set, so no line prints twice."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        if _not_from_own_handler_libraries not in handler.filters:
            handler.addFilter(_not_from_own_handler_libraries)


def _flag_message(err: BaseException) -> str:
    """The error's message, a leading TrainConfig field name (``pooling: ...``) written as its
    flag (``--pooling: ...``): the user typed flags."""
    message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if isinstance(err, KeyError):
        message = f"{type(err).__name__}: {message}"
    field, sep, rest = message.partition(":")
    if sep and field.isidentifier() and not field[0].isupper():
        message = f"--{field.replace('_', '-')}:{rest}"
    return message


def main(argv=None) -> int:
    """Run a command. Bad input (``ValueError``, ``FileNotFoundError``, a missing optional
    dependency) prints one line ``hybrid-fast: error: ...`` and returns 2; ``--debug`` re-raises
    (traceback)."""
    from .preflight import UsageError

    args = build_parser().parse_args(argv)
    configure_logging(logging.DEBUG if args.verbose else logging.INFO)
    try:
        return int(args.func(args) or 0)
    except (UsageError, ValueError, FileNotFoundError, NotADirectoryError, PermissionError) as err:
        if args.debug:
            raise
        print(f"hybrid-fast: error: {_flag_message(err)} (--debug for the traceback)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
