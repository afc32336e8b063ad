"""The one benchmark harness of every op (CPU and GPU): environment description, timing (CPU wall
clock; CUDA events on a device), matmul ceilings, copy bandwidth, peak memory, result tables.

Timing rule: warm-up call(s), then ``repeats`` timed calls; we report the median. Ratios are
only meaningful between providers measured in the same run.
"""
from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import torch

BF16_GEMM_ENV = "HYBRID_FAST_BF16_GEMM"  # csrc/common/isa.h


def git_sha() -> str:
    try:
        root = Path(__file__).resolve().parents[2]
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment() -> dict:
    """Where a row was measured: machine, threads, versions, git SHA, SIMD in use."""
    import hybrid_fast

    build = hybrid_fast.backends()["build"]
    cpu_module = build.get("cpu_module") or {}
    return {
        "machine": cpu_model(),
        "device": "cuda:" + torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "hybrid_fast_isa": cpu_module.get("isa_in_use"),
        # bf16 matrix units and the HYBRID_FAST_BF16_GEMM setting "auto" resolves against
        "bf16_units": cpu_module.get("bf16_units"),
        "bf16_gemm_mode": cpu_module.get("bf16_gemm_mode"),
        "python": platform.python_version(),
        "git_sha": git_sha(),
    }


@contextmanager
def bf16_gemm_forced(mode: str | None):
    """HYBRID_FAST_BF16_GEMM set to ``mode`` ("on" | "off"; None: as it is) inside the block: the
    compiled kernels read it at every call, so two providers can run both paths in one run."""
    if mode is None:
        yield
        return
    old = os.environ.get(BF16_GEMM_ENV)
    os.environ[BF16_GEMM_ENV] = mode
    try:
        yield
    finally:
        if old is None:
            del os.environ[BF16_GEMM_ENV]
        else:
            os.environ[BF16_GEMM_ENV] = old


def median_seconds(fn: Callable[[], object], repeats: int = 3, warmup: int = 1) -> tuple[float, list[float]]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def interleaved_medians(fns: dict[str, Callable[[], object]], repeats: int = 3, warmup: int = 1) -> dict[str, list[float]]:
    """Time several providers in interleaved rounds (A B C A B C ...) so that a shared, noisy
    machine slows them alike; returns every provider's times (take the median)."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def matmul_ceiling(dtype: torch.dtype, m: int = 4096, n: int = 4096, k: int = 768, repeats: int = 5) -> float:
    """Measured GEMM rate (FLOP/s) of torch.mm for this dtype: the roofline the kernels are held to."""
    a = torch.randn(m, k, dtype=dtype)
    b = torch.randn(k, n, dtype=dtype)
    sec, _ = median_seconds(lambda: torch.mm(a, b), repeats=repeats)
    return 2.0 * m * n * k / sec


def current_rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    """Peak RSS since the last :func:`reset_peak_rss` (VmHWM), else since the process started."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (Linux: write 5 to /proc/self/clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def run_in_fresh_process(module: str, payload: dict, timeout: float = 3600) -> dict:
    """Run ``python -m module --child JSON`` and return the JSON dict it prints last (peak-RSS cases)."""
    out = subprocess.run([sys.executable, "-m", module, "--child", json.dumps(payload)], capture_output=True,
                         text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"benchmark child failed ({module} {payload}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- CUDA timing
def cuda_median_seconds(fn, repeats=5, warmup=2):
    """Median seconds of ``fn`` on the current CUDA device (CUDA events around each call)."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(repeats):
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return sorted(times)[len(times) // 2]


def cuda_mm_rate(M, N, K):
    """Measured bf16 torch.mm rate (FLOP/s) on the device: the tensor-core roofline."""
    a = torch.randn(M, K, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(N, K, device="cuda", dtype=torch.bfloat16)
    t = cuda_median_seconds(lambda: a @ b.T)
    return 2 * M * N * K / t


def cuda_copy_bandwidth(nbytes=4 << 30):
    """Device-to-device copy bandwidth (bytes read + written per second)."""
    x = torch.empty(nbytes // 2, dtype=torch.bfloat16, device="cuda")
    y = torch.empty_like(x)
    t = cuda_median_seconds(lambda: y.copy_(x))
    return 2 * nbytes / t


def failure_cell(exc: BaseException) -> str:
    """A table cell for a provider that raised (the first line of the error)."""
    print(f"provider failed: {type(exc).__name__}: {exc}", flush=True)
    torch.cuda.empty_cache()
    return f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}"


def gpu_table(rows):
    """Markdown table of the GPU rows of both ops (loss and top-k), failures and skips included."""
    lines = ["| bench | provider | shape | seconds | TFLOP/s | % roofline | extra |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        shape = (f"B=N={r['B']} d={r['d']}" if r["bench"].startswith("loss")
                 else f"Q={r['Q']} N={r['N']} d={r['d']} k={r['k']}")
        if "seconds" not in r:
            lines.append(f"| {r['bench']} | {r['provider']} | {shape} | {r.get('status')} | | | |")
            continue
        extra = (f"peak mem {r['peak_mem_gib']:.2f} GiB" if "peak_mem_gib" in r else "")
        if "gbps" in r:
            extra = f"{r['gbps']:.0f} GB/s ({r['pct_copy_bw']:.0f}% of copy)"
        lines.append(f"| {r['bench']} | {r['provider']} | {shape} | {r['seconds']:.4f} | {r['tflops']:.1f} | "
                     f"{r['pct_roofline']:.0f}% | {extra} |")
    return "\n".join(lines)


def format_table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    """Markdown table: ``columns`` = [(key, header)]; floats get 3 significant digits."""
    def cell(v):
        if isinstance(v, float):
            return f"{v:.3g}"
        return "" if v is None else str(v)

    lines = ["| " + " | ".join(h for _, h in columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        lines.append("| " + " | ".join(cell(r.get(k)) for k, _ in columns) + " |")
    return "\n".join(lines)


def write_rows(path: str | Path, rows: list[dict]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
