"""Training checkpoints: model, optimiser, scheduler, sampler, RNG states and trainer state.

One folder per checkpoint (``<output_dir>/checkpoint-<step>/state.pt``), written to a temporary
name and renamed, so a run killed while saving leaves the previous checkpoint intact.
:func:`latest_checkpoint` finds the newest complete one for ``resume``.

Data-parallel runs: rank 0 alone writes (model, optimiser, scheduler and sampler states are the
same on every rank); the RNG states of all W ranks are stored (``rng_ranks``), so each rank of a
resumed W-rank run continues its own dropout stream. Resumed with another world size, the
per-rank streams cannot continue: every rank then reseeds Python, numpy and torch from
``(step, rank, world_size)`` (deterministic, but dropout masks differ from the uninterrupted run).
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
                    keep: int = 2, rng_states: list[dict] | None = None) -> Path:
    """Write ``folder/checkpoint-<step>/state.pt`` (step = ``trainer_state["step"]``); keep the
    newest ``keep`` checkpoints. ``rng_states``: every rank's :func:`rng_state` in rank order
    (default: this process's only). Returns the checkpoint folder."""
    rng_states = [rng_state()] if rng_states is None else list(rng_states)
    folder = Path(folder)
    target = folder / f"checkpoint-{trainer_state['step']:07d}"
    partial = folder / (target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    torch.save({
        "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
        "sampler": sampler.state_dict(), "rng_ranks": rng_states, "trainer": trainer_state,
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


def load_checkpoint(path: str | os.PathLike, *, model, optimizer, scheduler, sampler, rank: int = 0,
                    world_size: int = 1) -> dict:
    """Restore every state from ``path`` (a checkpoint folder) and return the trainer state.

    ``rank``/``world_size``: this process's place in a data-parallel run; it restores its own RNG
    stream when the checkpoint was written by a run of the same world size, else reseeds from
    ``(step, rank, world_size)`` (module docstring).

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
    streams = state["rng_ranks"] if "rng_ranks" in state else [state["rng"]]  # "rng": older checkpoints
    if len(streams) == world_size:
        set_rng_state(streams[rank])
    else:
        reseed_for_rank(int(state["trainer"]["step"]), rank, world_size)
    return state["trainer"]


def reseed_for_rank(step: int, rank: int, world_size: int) -> None:
    """Seed Python, numpy and torch from ``(step, rank, world_size)``: each rank its own stream."""
    seeds = np.random.SeedSequence([step, rank, world_size]).generate_state(2, dtype=np.uint64)
    random.seed(int(seeds[0]))
    np.random.seed(int(seeds[0]) % 2**32)
    torch.manual_seed(int(seeds[1]) % 2**63)
