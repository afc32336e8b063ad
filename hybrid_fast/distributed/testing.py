"""Spawn small ``torch.distributed`` process groups for tests and benchmarks (CPU, gloo).

:func:`run_workers` starts ``world_size`` processes (spawn), initialises a process group in each
through a file store (no TCP port to pick, so no port races between concurrent test runs), runs
``fn(rank, world_size, *args)`` and returns the per-rank return values. A worker that raises
fails the call with its traceback; a run that exceeds ``timeout`` is killed and raises
:class:`TimeoutError`, so a collective mismatch never hangs a test session.

``init="env"`` instead sets the torchrun environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``) and leaves the process group to ``fn`` (e.g.
:func:`hybrid_fast.distributed.init_distributed`), so the code under test starts as under
torchrun. ``expect_exit`` names ranks allowed to die without a result (a rank killed on purpose:
their result is None).
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import torch


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank, fn, world_size, init, out_dir, backend, collective_timeout_s, threads, args):
    import traceback

    import torch.distributed as dist

    if sys.platform.startswith("linux"):
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")  # single host: loopback, no DNS lookup
    torch.set_num_threads(threads)
    if init.startswith("file://"):
        dist.init_process_group(backend, init_method=init, rank=rank, world_size=world_size,
                                timeout=timedelta(seconds=collective_timeout_s))
    else:  # "env:<port>": the torchrun environment; fn creates the group
        os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
                          LOCAL_WORLD_SIZE=str(world_size), MASTER_ADDR="127.0.0.1", MASTER_PORT=init[4:])
    try:
        result = ("ok", fn(rank, world_size, *args))
    except BaseException:  # noqa: BLE001 - the traceback goes to the parent
        result = ("error", traceback.format_exc())
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    tmp = Path(out_dir) / f"rank{rank}.pt.tmp"
    torch.save(result, tmp)
    os.replace(tmp, Path(out_dir) / f"rank{rank}.pt")


def run_workers(fn, world_size: int, *args, backend: str = "gloo", timeout: float = 120.0,
                collective_timeout: float = 60.0, threads: int = 1, init: str = "file",
                expect_exit: tuple[int, ...] = ()) -> list:
    """Run ``fn(rank, world_size, *args)`` on ``world_size`` spawned ranks; return their results.

    ``fn`` must be importable by the children (a module-level function). Results travel through
    ``torch.save``. ``timeout`` bounds the whole run (seconds); ``collective_timeout`` is the
    process group's timeout, so a rank blocked in a collective fails instead of waiting forever.
    ``init``: ``"file"`` (the group is created here) or ``"env"`` (torchrun variables; ``fn``
    creates the group). ``expect_exit``: ranks that may die without a result (None for them).
    """
    import torch.multiprocessing as mp

    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    if init not in ("file", "env"):
        raise ValueError(f"init: expected 'file' or 'env', got {init!r}")
    with tempfile.TemporaryDirectory(prefix="hf_dist_") as tmp:
        how = f"file://{os.path.join(tmp, 'store')}" if init == "file" else f"env:{_free_port()}"
        ctx = mp.start_processes(_entry, args=(fn, world_size, how, tmp, backend, collective_timeout, threads, args),
                                 nprocs=world_size, join=False, start_method="spawn")
        deadline = time.monotonic() + timeout
        try:
            while any(proc.is_alive() for proc in ctx.processes):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{world_size} ranks running {getattr(fn, '__name__', fn)} did not finish "
                                       f"within {timeout} s")
                time.sleep(0.1)
        finally:
            for proc in ctx.processes:
                if proc.is_alive():
                    proc.kill()
                    proc.join(5)
        results, errors = [], []
        for rank, proc in enumerate(ctx.processes):
            file = Path(tmp) / f"rank{rank}.pt"
            if not file.is_file():
                results.append(None)
                if rank not in expect_exit:
                    errors.append(f"rank {rank} exited with code {proc.exitcode} without a result")
                continue
            status, value = torch.load(file, weights_only=False)
            results.append(value)
            if status == "error":
                errors.append(f"rank {rank} raised:\n{value}")
        if errors:
            raise RuntimeError(f"{getattr(fn, '__name__', fn)} on {world_size} ranks failed:\n" + "\n".join(errors))
        return results
