"""Training: :class:`TrainConfig` (config.py), :class:`Trainer` (trainer.py), checkpoints
(checkpoint.py), the replication experiment (experiment.py) and the CLI (cli.py).

transformers and matplotlib load when a model is built or a plot drawn.
"""
from .config import TrainConfig, config_from_args, load_config_file
from .trainer import Trainer, build_datasets, plot_metrics

__all__ = ["TrainConfig", "Trainer", "build_datasets", "plot_metrics", "config_from_args", "load_config_file"]
