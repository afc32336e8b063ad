"""Training checkpoints: model, optimiser, scheduler, sampler, RNG states and trainer state.

One folder per checkpoint (``<output_dir>/checkpoint-<step>/state.pt``), written to a temporary
name and renamed, so a run killed while saving leaves the previous checkpoint intact.
:func:`latest_checkpoint` finds the newest complete one for ``resume``.
"""
from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch


def rng_state() -> dict:
    """Python, numpy and torch (CPU and every CUDA device) RNG states."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(folder: str | os.PathLike, *, model, optimizer, scheduler, sampler, trainer_state: dict,
                    keep: int = 2) -> Path:
    """Write ``folder/checkpoint-<step>/state.pt`` (step = ``trainer_state["step"]``); keep the
    newest ``keep`` checkpoints. Returns the checkpoint folder."""
    folder = Path(folder)
    target = folder / f"checkpoint-{trainer_state['step']:07d}"
    partial = folder / (target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    torch.save({
        "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
        "sampler": sampler.state_dict(), "rng": rng_state(), "trainer": trainer_state,
    }, partial / "state.pt")
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    for old in sorted(folder.glob("checkpoint-???????"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def latest_checkpoint(folder: str | os.PathLike) -> Path | None:
    """The newest complete ``checkpoint-*`` folder under ``folder``, or None."""
    found = sorted(p for p in Path(folder).glob("checkpoint-???????") if (p / "state.pt").is_file())
    return found[-1] if found else None


def load_checkpoint(path: str | os.PathLike, *, model, optimizer, scheduler, sampler) -> dict:
    """Restore every state from ``path`` (a checkpoint folder) and return the trainer state.

    Raises:
        FileNotFoundError: no ``state.pt`` there.
    """
    file = Path(path) / "state.pt"
    if not file.is_file():
        raise FileNotFoundError(f"checkpoint: {file} does not exist")
    state = torch.load(file, weights_only=False)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    sampler.load_state_dict(state["sampler"])
    set_rng_state(state["rng"])
    return state["trainer"]
