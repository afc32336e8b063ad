"""Training: :class:`TrainConfig` (config.py), :class:`Trainer` (trainer.py), checkpoints
(checkpoint.py), the replication experiment (experiment.py) and the CLI (cli.py). The datasets
come from :mod:`hybrid_fast.data.xquad_split` and the loss curves from
:mod:`hybrid_fast.eval.report` (``build_datasets`` and ``plot_metrics`` are re-exported here).

transformers and matplotlib load when a model is built or a plot drawn.
"""
from ..data.xquad_split import build_datasets
from ..eval.report import plot_metrics
from .config import TrainConfig, config_from_args, load_config_file
from .trainer import Trainer

__all__ = ["TrainConfig", "Trainer", "build_datasets", "plot_metrics", "config_from_args", "load_config_file"]
