"""Process groups for data-parallel runs under ``torchrun``: init, context, failure detection.

``torchrun --nproc_per_node=W ...`` starts W processes with ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` in their environment.
:func:`init_distributed` turns that environment into an initialised default process group
(NCCL when the process drives a CUDA device, gloo on CPUs) and returns a :class:`DistContext`,
the one object the trainer and evaluators consult for rank, world size, device and the few
collectives of their bookkeeping. Without those variables (or with ``WORLD_SIZE=1``) nothing is
initialised and the context is the single-process one, so every entry point runs unchanged with
and without ``torchrun``.

Failure detection: the process group is created with a finite ``timeout`` (default
:data:`DEFAULT_TIMEOUT_S`). A rank that dies closes its sockets, so the others' next collective
fails at once (gloo) or when the NCCL watchdog notices; a rank that hangs makes the others'
collectives time out after ``timeout_s``. :meth:`DistContext.guard` turns those failures into a
:class:`DistributedError` naming the rank, the operation, the timeout and the likely cause, so a
run never waits forever. The timeout must exceed the longest stretch one rank can spend outside
collectives while the others wait (for example rank 0 writing a checkpoint).
"""
from __future__ import annotations

import contextlib
import datetime
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 600.0
BACKENDS = ("auto", "gloo", "nccl")

# Fragments of the messages gloo and NCCL raise (as plain RuntimeError on gloo) when a peer died
# or a collective timed out; torch's own Dist*Error types are recognised by class.
_COLLECTIVE_FAILURE_MARKS = ("gloo", "nccl", "timed out", "connection closed by peer", "connection reset",
                             "broken pipe", "watchdog")


class DistributedError(RuntimeError):
    """A collective failed or timed out: another rank died, hung, or lost its connection."""


def _is_collective_failure(error: BaseException) -> bool:
    if isinstance(error, dist.DistError):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and any(mark in text for mark in _COLLECTIVE_FAILURE_MARKS)


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a data-parallel run.

    ``world_size == 1`` is the single-process context (no process group; every collective below
    is the identity). ``group`` is the process group collectives use (None = the default group).
    ``device`` is the device this rank computes on (``cuda:LOCAL_RANK`` under NCCL, else CPU).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    timeout_s: float | None = None
    group: Any = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def enabled(self) -> bool:
        """True when there is more than one rank (collectives communicate)."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that logs and writes files."""
        return self.rank == 0

    @contextlib.contextmanager
    def guard(self, what: str) -> Iterator[None]:
        """Re-raise a collective failure inside the block as :class:`DistributedError` naming
        this rank, ``what`` was running and the timeout; other errors pass unchanged."""
        try:
            yield
        except DistributedError:
            raise
        except Exception as error:  # noqa: BLE001 - filtered by _is_collective_failure
            if not self.enabled or not _is_collective_failure(error):
                raise
            raise DistributedError(
                f"rank {self.rank}/{self.world_size}: a collective failed during {what} "
                f"({type(error).__name__}: {str(error).splitlines()[0][:300]}). Another rank most likely died or "
                f"hung (collective timeout {self._timeout_text()}); see the first failing rank's log. Resume from the last "
                f"complete checkpoint.") from error

    def _timeout_text(self) -> str:
        return "unknown" if self.timeout_s is None else f"{self.timeout_s:g} s"

    # ------------------------------------------------------------------ bookkeeping collectives
    def all_reduce_mean(self, value: float) -> float:
        """Mean of a Python float over the ranks (identity on one rank)."""
        if not self.enabled:
            return float(value)
        t = torch.tensor([float(value)], dtype=torch.float64, device=self._comm_device())
        with self.guard("all_reduce_mean"):
            dist.all_reduce(t, group=self.group)
        return float(t.item()) / self.world_size

    def all_gather_object(self, obj) -> list:
        """``[obj of rank 0, obj of rank 1, ...]`` (picklable objects; ``[obj]`` on one rank)."""
        if not self.enabled:
            return [obj]
        out = [None] * self.world_size
        with self.guard("all_gather_object"):
            dist.all_gather_object(out, obj, group=self.group)
        return out

    def broadcast_object(self, obj, src: int = 0):
        """Rank ``src``'s ``obj`` on every rank."""
        if not self.enabled:
            return obj
        box = [obj]
        with self.guard("broadcast_object"):
            dist.broadcast_object_list(box, src=src, group=self.group)
        return box[0]

    def barrier(self) -> None:
        if self.enabled:
            with self.guard("barrier"):
                dist.barrier(group=self.group)

    def _comm_device(self) -> torch.device:
        return self.device if self.backend == "nccl" else torch.device("cpu")


def _env_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name}: expected an integer in the environment, got {raw!r}") from None


def _resolve_backend(backend: str, local_rank: int) -> tuple[str, torch.device]:
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {list(BACKENDS)}, got {backend!r}")
    if backend == "auto":
        backend = "nccl" if torch.cuda.is_available() and dist.is_nccl_available() else "gloo"
    if backend == "nccl":
        if not torch.cuda.is_available():
            raise ValueError("backend: 'nccl' needs CUDA devices, none is available (use 'gloo' on CPUs)")
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK: {local_rank} but only {torch.cuda.device_count()} CUDA devices are visible")
        return backend, torch.device("cuda", local_rank)
    return backend, torch.device("cpu")


def context_of_current_group(group=None) -> DistContext:
    """The context of an already initialised process group (``group`` or the default one), or
    the single-process context when none is initialised. Backend and device are read from the
    group; the timeout is unknown (None) unless :func:`init_distributed` created it."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistContext()
    if _OWN.get("context") is not None and group is None:
        return _OWN["context"]
    backend = str(dist.get_backend(group))
    local_rank = int(os.environ.get("LOCAL_RANK", 0) or 0)
    device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
    return DistContext(rank=dist.get_rank(group), world_size=dist.get_world_size(group), local_rank=local_rank,
                       backend=backend, group=group, device=device)


_OWN: dict[str, DistContext | None] = {"context": None}


def init_distributed(backend: str = "auto", timeout_s: float = DEFAULT_TIMEOUT_S, *,
                     env: Mapping[str, str] | None = None) -> DistContext:
    """Initialise the default process group from the ``torchrun`` environment.

    Args:
        backend: ``"auto"`` (NCCL when CUDA is available, else gloo), ``"gloo"`` or ``"nccl"``.
        timeout_s: seconds a collective (and the rendezvous) may wait before failing; > 0.
        env: the environment to read (default ``os.environ``): ``WORLD_SIZE``, ``RANK``,
            ``LOCAL_RANK``, plus ``MASTER_ADDR``/``MASTER_PORT`` used by the ``env://`` init.

    Returns:
        The :class:`DistContext`. ``WORLD_SIZE`` unset or 1: the single-process context, nothing
        initialised. An already initialised default group is reused, not re-created.

    Raises:
        ValueError: bad ``backend``/``timeout_s``/environment values (named, with what came).
    """
    env = os.environ if env is None else env
    if not isinstance(timeout_s, (int, float)) or not timeout_s > 0:
        raise ValueError(f"timeout_s: expected a number > 0, got {timeout_s!r}")
    world_size = _env_int(env, "WORLD_SIZE", 1)
    if world_size < 1:
        raise ValueError(f"WORLD_SIZE: expected >= 1, got {world_size}")
    if dist.is_available() and dist.is_initialized():
        return context_of_current_group()
    if world_size == 1:
        return DistContext()
    rank, local_rank = _env_int(env, "RANK", -1), _env_int(env, "LOCAL_RANK", 0)
    if not 0 <= rank < world_size:
        raise ValueError(f"RANK: expected an integer in [0, {world_size}) with WORLD_SIZE={world_size}, "
                         f"got {env.get('RANK')!r} (start the run with torchrun)")
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if not env.get(name):
            raise ValueError(f"{name}: not set in the environment (start the run with torchrun)")
    backend, device = _resolve_backend(backend, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    init_method = f"tcp://{env['MASTER_ADDR']}:{env['MASTER_PORT']}"
    kwargs = {"device_id": device} if device.type == "cuda" else {}
    dist.init_process_group(backend, init_method=init_method, rank=rank, world_size=world_size,
                            timeout=datetime.timedelta(seconds=float(timeout_s)), **kwargs)
    context = DistContext(rank=rank, world_size=world_size, local_rank=local_rank, backend=backend,
                          timeout_s=float(timeout_s), device=device)
    _OWN["context"] = context
    log.info("process group: rank %d/%d, backend %s, device %s, timeout %g s", rank, world_size, backend, device,
             timeout_s)
    return context


def shutdown_distributed() -> None:
    """Destroy the default process group if :func:`init_distributed` created it."""
    if _OWN["context"] is not None and dist.is_initialized():
        dist.destroy_process_group()
    _OWN["context"] = None
