"""Spawn small ``torch.distributed`` process groups for tests and benchmarks (CPU, gloo).

:func:`run_workers` starts ``world_size`` processes (spawn), initialises a process group in each
through a file store (no TCP port to pick, so no port races between concurrent test runs), runs
``fn(rank, world_size, *args)`` and returns the per-rank return values. A worker that raises
fails the call with its traceback; a run that exceeds ``timeout`` is killed and raises
:class:`TimeoutError`, so a collective mismatch never hangs a test session.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import torch


def _entry(rank, fn, world_size, init_file, out_dir, backend, collective_timeout_s, threads, args):
    import torch.distributed as dist

    if sys.platform.startswith("linux"):
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")  # single host: loopback, no DNS lookup
    torch.set_num_threads(threads)
    dist.init_process_group(backend, init_method=f"file://{init_file}", rank=rank, world_size=world_size,
                            timeout=timedelta(seconds=collective_timeout_s))
    try:
        result = fn(rank, world_size, *args)
        tmp = Path(out_dir) / f"rank{rank}.pt.tmp"
        torch.save(result, tmp)
        os.replace(tmp, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def run_workers(fn, world_size: int, *args, backend: str = "gloo", timeout: float = 120.0,
                collective_timeout: float = 60.0, threads: int = 1) -> list:
    """Run ``fn(rank, world_size, *args)`` on ``world_size`` spawned ranks; return their results.

    ``fn`` must be importable by the children (a module-level function). Results travel through
    ``torch.save``. ``timeout`` bounds the whole run (seconds); ``collective_timeout`` is the
    process group's timeout, so a rank blocked in a collective fails instead of waiting forever.
    """
    import torch.multiprocessing as mp

    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    with tempfile.TemporaryDirectory(prefix="hf_dist_") as tmp:
        init_file = os.path.join(tmp, "store")
        ctx = mp.start_processes(_entry, args=(fn, world_size, init_file, tmp, backend, collective_timeout, threads,
                                               args), nprocs=world_size, join=False, start_method="spawn")
        deadline = time.monotonic() + timeout
        try:
            while not ctx.join(timeout=max(0.1, min(1.0, deadline - time.monotonic()))):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{world_size} ranks running {getattr(fn, '__name__', fn)} did not finish "
                                       f"within {timeout} s")
        finally:
            for proc in ctx.processes:
                if proc.is_alive():
                    proc.kill()
                    proc.join(5)
        return [torch.load(Path(tmp) / f"rank{r}.pt", weights_only=False) for r in range(world_size)]
