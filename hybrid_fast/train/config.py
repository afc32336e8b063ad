"""Training arguments: one dataclass, loadable from a YAML/JSON file and overridable by flags.

Precedence: dataclass defaults < preset (``hybrid-fast experiment`` only) < config file
(``--config FILE``) < command-line flags, all merged by :func:`config_from_args`. Every field is a
flag ``--field-name`` (booleans: ``--flag`` / ``--no-flag``).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..model import DEFAULT_PREFIXES
from ..sampling.samplers import SAMPLERS


@dataclass
class TrainConfig:
    """Everything a training run depends on (saved next to its checkpoints as ``config.json``).

    Model: ``model`` (HF id, folder, ``"minilm-offline"`` or ``"me5-small-offline"``), ``pooling``
    (mean|cls), ``similarity`` (cos|dot), ``scale`` (1/temperature), prefixes (None = the model's
    convention, resolved at construction: ``"query: "``/``"passage: "`` for me5-small-offline, else
    ``DEFAULT_PREFIXES``), max lengths.
    Data: ``data_dir`` (folder holding ``xquad/``; None = ``$HYBRID_FAST_DATA``, the download cache,
    else the packaged sample, which holds the default ``languages``: resolved and recorded by the
    trainer, :func:`hybrid_fast.data.xquad_split.resolve_training_data`), ``languages``
    (training), ``eval_languages``
    (the experiment's XQuAD-R test languages; empty = ``languages``), the article split
    (``dev_articles``/``test_articles`` counts shuffled with ``split_seed``).
    Batches: ``sampler`` (``hybrid``, ``x-x-mono``, ``x-y``, ``en-en``, ``x-x``, ``simcse``),
    ``alpha``, ``batch_size`` (the *global* batch: under torchrun each of W ranks embeds
    ``batch_size / W`` of it), ``grad_cache_chunk`` (0 = off; else embed in chunks of that many
    texts without grad, then backpropagate chunk by chunk: batches larger than memory).
    Optimisation: AdamW (``lr``, ``weight_decay``), ``warmup_steps`` then ``schedule``
    (linear|cosine|constant) decay over ``max_steps``, ``max_grad_norm`` (0 = no clipping),
    ``bf16`` autocast, ``gradient_checkpointing``, ``loss_backend`` (``auto`` = fused kernel),
    ``symmetric``. Validation: every ``val_every`` steps on ``val_batches`` dev batches drawn by
    ``val_sampler``; early stopping after ``patience`` validations without improvement (0 = off).
    Data parallelism (torchrun; no effect in one process): ``cross_rank_negatives`` (each rank's
    queries scored against every rank's passages, the single-process loss on the global batch),
    ``dist_backend`` (auto|gloo|nccl), ``dist_timeout_s`` (a dead or hung rank makes the others
    fail after at most this long).
    Bookkeeping: ``output_dir``, ``save_every``, ``log_every``, ``eval_every`` (evaluation hook),
    ``seed``, ``progress``.
    """

    model: str = "minilm-offline"
    pooling: str = "mean"
    similarity: str = "cos"
    scale: float = 20.0
    query_prefix: str | None = None
    passage_prefix: str | None = None
    query_max_length: int = 64
    passage_max_length: int = 128
    data_dir: str | None = None
    languages: list[str] = field(default_factory=lambda: ["de", "en", "es", "tr", "vi"])
    eval_languages: list[str] = field(default_factory=list)
    dev_articles: int = 6
    test_articles: int = 10
    split_seed: int = 0
    sampler: str = "hybrid"
    alpha: float = 0.5
    batch_size: int = 32
    grad_cache_chunk: int = 0
    max_steps: int = 200
    lr: float = 3e-5
    weight_decay: float = 0.01
    warmup_steps: int = 20
    schedule: str = "linear"
    max_grad_norm: float = 1.0
    bf16: bool = False
    gradient_checkpointing: bool = False
    loss_backend: str = "auto"
    symmetric: bool = False
    cross_rank_negatives: bool = True
    dist_backend: str = "auto"
    dist_timeout_s: float = 600.0
    val_every: int = 50
    val_batches: int = 4
    val_sampler: str = "hybrid"
    patience: int = 0
    eval_every: int = 0
    save_every: int = 100
    log_every: int = 10
    seed: int = 0
    output_dir: str = "runs/train"
    progress: bool = True

    def __post_init__(self):
        # None = the model's convention (E5's "query: " for me5-small-offline, else
        # DEFAULT_PREFIXES), recorded resolved in config.json
        from ..models import alias_prefixes

        defaults = alias_prefixes(self.model) or (DEFAULT_PREFIXES["query"], DEFAULT_PREFIXES["passage"])
        self.query_prefix = defaults[0] if self.query_prefix is None else self.query_prefix
        self.passage_prefix = defaults[1] if self.passage_prefix is None else self.passage_prefix
        self.validate()

    def validate(self) -> None:
        """Raises ValueError naming the field for an out-of-range or unknown value."""
        choices = {"pooling": ("mean", "cls"), "similarity": ("cos", "dot"),
                   "schedule": ("linear", "cosine", "constant"), "sampler": tuple(SAMPLERS),
                   "val_sampler": tuple(SAMPLERS), "dist_backend": ("auto", "gloo", "nccl")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}: expected one of {list(allowed)}, got {getattr(self, name)!r}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha: expected a number in [0, 1], got {self.alpha}")
        for name in ("batch_size", "max_steps", "query_max_length", "passage_max_length", "val_batches"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected >= 1, got {getattr(self, name)}")
        for name in ("grad_cache_chunk", "warmup_steps", "val_every", "patience", "eval_every", "save_every",
                     "log_every", "dev_articles", "test_articles"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: expected >= 0, got {getattr(self, name)}")
        if not self.dist_timeout_s > 0:
            raise ValueError(f"dist_timeout_s: expected > 0, got {self.dist_timeout_s}")
        if self.scale <= 0 or self.lr <= 0 or self.max_grad_norm < 0:
            raise ValueError(f"scale/lr: expected > 0 and max_grad_norm >= 0, got {self.scale}, {self.lr}, "
                             f"{self.max_grad_norm}")
        if not self.languages:
            raise ValueError("languages: expected at least one language")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)


# Keys a run's config.json records beside the fields (the parallel layout it ran with); a config
# file may hold them (a run's own config.json), they are not settings and are dropped on reading.
RUN_RECORD_KEYS = ("world_size", "global_batch_size", "per_rank_batch_size")


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML (``.yaml``/``.yml``) or JSON config file into a dict of TrainConfig fields
    (a run's ``config.json`` works: its ``RUN_RECORD_KEYS`` are dropped).

    Raises:
        ValueError: unreadable file, invalid JSON/YAML, not a mapping, or unknown keys (the valid
            ones are listed); messages start with ``config:`` (the CLI shows ``--config:``).
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ValueError(f"config: expected a readable YAML or JSON file, got {str(path)!r} ({err.strerror})") from None
    if path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ModuleNotFoundError:
            raise ValueError(f"config: {path} is YAML, which needs PyYAML (pip install 'hybrid_fast[all]'); "
                             "or give a .json file") from None
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as err:
            raise ValueError(f"config: expected valid YAML in {path}, got {str(err).splitlines()[0]}") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"config: expected valid JSON in {path}, got {err}") from None
    if not isinstance(data, dict):
        raise ValueError(f"config: {path} must hold a mapping, got {type(data).__name__}")
    data = {k: v for k, v in data.items() if k not in RUN_RECORD_KEYS}
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"config: {path} has unknown keys {unknown}; valid keys: {sorted(known)}")
    return data


#: Help of the flags whose default is resolved later (not the field's None).
FLAG_DEFAULT_HELP = {
    "data_dir": "folder holding xquad/ (default: $HYBRID_FAST_DATA, the download cache, else the packaged sample)",
}


def add_config_arguments(parser: argparse.ArgumentParser, exclude: tuple[str, ...] = ()) -> None:
    """Add ``--config`` and one flag per TrainConfig field (default None = not given)."""
    parser.add_argument("--config", help="YAML or JSON file of TrainConfig fields (flags override it)")
    for f in dataclasses.fields(TrainConfig):
        if f.name in exclude:
            continue
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if f.type in ("bool", bool):
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None,
                                help=f"(default {default})")
        elif f.name in ("languages", "eval_languages"):
            parser.add_argument(flag, dest=f.name, nargs="+", default=None, help=f"(default {' '.join(default) or 'the training languages'})")
        else:
            kind = {"int": int, "float": float, "str": str, "str | None": str}[str(f.type)]
            parser.add_argument(flag, dest=f.name, type=kind, default=None,
                                help=FLAG_DEFAULT_HELP.get(f.name, f"(default {default!r})"))


def config_from_args(args: argparse.Namespace, *, preset: Mapping[str, Any] | None = None,
                     **overrides) -> TrainConfig:
    """The one merge of TrainConfig values, for every entry point (``train`` and ``experiment``).

    Precedence, lowest first: dataclass defaults < ``preset`` (e.g. the experiment's ``--quick``
    settings) < ``args.config`` file (if any) < flags given (attributes of ``args`` named like a
    field and not None, so a flag equal to the default still wins) < ``overrides``.

    Raises:
        ValueError: as :func:`load_config_file` and :meth:`TrainConfig.validate`.
    """
    values: dict[str, Any] = dict(preset or {})
    if getattr(args, "config", None):
        values.update(load_config_file(args.config))
    for f in dataclasses.fields(TrainConfig):
        given = getattr(args, f.name, None)
        if given is not None:
            values[f.name] = given
    values.update(overrides)
    return TrainConfig(**values)
