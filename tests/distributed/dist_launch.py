"""Run a function on W spawned processes joined in a gloo process group, with a hard timeout.

``run_workers(fn, world_size, *args, timeout_s=...)`` starts W processes (``spawn``: a fresh
interpreter each, as torchrun gives), sets the torchrun environment (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``, one thread each), calls
``fn(rank, world_size, *args)`` in each and returns the W return values in rank order. ``fn``
must be a module-level function (pickled by name) and creates its process group itself
(:func:`hybrid_fast.distributed.init_distributed`), so the code under test runs as under torchrun.

A worker that raises fails the call with its traceback; processes still running at the
deadline are killed and the call fails with :class:`TimeoutError`, so a test can never hang.
``expect_exit`` maps ranks allowed to die (e.g. a rank killed on purpose) to ``True``; their
result is ``None``.
"""
from __future__ import annotations

import multiprocessing
import os
import queue
import socket
import time
import traceback


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(fn, rank: int, world_size: int, port: int, args: tuple, results) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world_size),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1",
                      HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    import torch

    torch.set_num_threads(1)
    try:
        results.put((rank, "ok", fn(rank, world_size, *args)))
    except BaseException:  # noqa: BLE001 - reported to the parent with the traceback
        results.put((rank, "error", traceback.format_exc()))
    finally:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def run_workers(fn, world_size: int, *args, timeout_s: float = 60.0, expect_exit: dict[int, bool] | None = None) -> list:
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=_entry, args=(fn, rank, world_size, port, args, results), daemon=True)
             for rank in range(world_size)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + timeout_s
    out: dict[int, tuple[str, object]] = {}
    expect_exit = expect_exit or {}
    try:
        while len(out) < world_size:
            try:
                rank, status, value = results.get(timeout=0.2)
                out[rank] = (status, value)
                continue
            except queue.Empty:
                pass
            for rank, p in enumerate(procs):
                if rank not in out and p.exitcode is not None and results.empty():
                    if expect_exit.get(rank):
                        out[rank] = ("ok", None)
                    else:
                        out[rank] = ("error", f"rank {rank} exited with code {p.exitcode} without a result")
            if time.monotonic() > deadline:
                missing = [r for r in range(world_size) if r not in out]
                raise TimeoutError(f"ranks {missing} still running after {timeout_s:g} s (killed)")
    finally:
        for p in procs:
            p.join(timeout=max(0.0, min(5.0, deadline - time.monotonic())))
            if p.is_alive():
                p.kill()
                p.join()
    errors = [f"--- rank {r} ---\n{v}" for r, (s, v) in sorted(out.items()) if s == "error"]
    if errors:
        raise AssertionError("worker failure:\n" + "\n".join(errors))
    return [out[r][1] for r in range(world_size)]
