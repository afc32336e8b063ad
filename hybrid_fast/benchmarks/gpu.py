"""GPU benchmarks of the Triton backend against the issue's targets (run by benches/gpu_check.sh).

Providers, all measured in the same run on the same device:
* ``mm``: torch bf16 matmul of the same shape (the tensor-core roofline used for % of roofline);
* ``triton``: hybrid_fast fused loss / fused top-k;
* ``naive``: ``F.cross_entropy(scale * q @ p.T)`` fwd+bwd (skipped when B x N does not fit);
* ``memeff``: the ``memeff`` package's (PyPI, Apache-2.0, Triton) ``MemoryEfficientQwen3Loss``
  configured as the same one-direction InfoNCE (see :func:`memeff_loss`); when it is not
  importable a "skipped" row is printed, never silently dropped;
* ``torch_topk``: chunked ``mm`` + ``topk`` + merge.

Flop counts: loss fwd+bwd counted as 3 x 2BNd "useful" flops (forward product, dq, dp: what the
roofline needs; the kernel itself performs ``hybrid_fast.ops.infonce.triton_kernel.passes(d)`` x 2BNd, 4 at
d = 512/768 bf16, reported as ``kernel_passes``); all loss providers get the same unit-norm bf16
inputs, scale 20 (temperature 0.05), forward + backward;
top-k 2QNd. Q = 1 top-k is reported in GB/s of corpus read (N d 2 bytes) against a measured
device-to-device copy bandwidth.

Usage: ``python -m hybrid_fast.benchmarks.gpu [--quick] [--out rows.jsonl]``; prints a markdown
table, writes one JSON row per point.
"""
from __future__ import annotations

import argparse
import json

import torch
import torch.nn.functional as F

import hybrid_fast as hf
from hybrid_fast.benchmarks.common import git_sha


def _time(fn, repeats=5, warmup=2):
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


def _mm_rate(M, N, K):
    a = torch.randn(M, K, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(N, K, device="cuda", dtype=torch.bfloat16)
    t = _time(lambda: a @ b.T)
    return 2 * M * N * K / t


def _copy_bandwidth(nbytes=4 << 30):
    x = torch.empty(nbytes // 2, dtype=torch.bfloat16, device="cuda")
    y = torch.empty_like(x)
    t = _time(lambda: y.copy_(x))
    return 2 * nbytes / t


SCALE = 20.0


def memeff_loss(scale):
    """(loss_fn(q, p), status): memeff's one-direction InfoNCE, the same function as ours
    (``hybrid_fast.infonce_loss(q, p, scale=scale)``, q -> p, in-batch negatives, B = N, mean):
    ``MemoryEfficientQwen3Loss`` with temperature = 1/scale, margin = 2 (disables its
    false-negative mask), no q-q/d-d negatives, ``normalized_inputs=True`` (no extra normalisation:
    the benchmark feeds unit-norm rows to every provider) and ``stable=False`` (textbook gradient
    scale). Checked against the float64 reference in tests/test_memeff_baseline.py. (None, why)
    when memeff is not importable."""
    try:
        import memeff
    except ImportError as e:
        return None, f"memeff is not installed ({e}); bash benches/gpu_check.sh installs benches/wheels/memeff-*.whl"
    cls = getattr(memeff, "MemoryEfficientQwen3Loss", None)
    if cls is None:
        return None, f"memeff {getattr(memeff, '__version__', '?')} has no MemoryEfficientQwen3Loss"
    fn = cls(temperature=1.0 / scale, margin=2.0, use_qq_negatives=False, use_dd_negatives=False,
             normalized_inputs=True, stable=False)
    return (lambda a, b: fn(a, b)), f"memeff {getattr(memeff, '__version__', '?')} MemoryEfficientQwen3Loss"


def _failure(exc: BaseException) -> str:
    """A table cell for a provider that raised (the first line of the error)."""
    print(f"provider failed: {type(exc).__name__}: {exc}", flush=True)
    torch.cuda.empty_cache()
    return f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}"


def _loss_rows(B, d, quick):
    rows = []
    # unit-norm rows (memeff's kernels assume them: exp2(S/T - 1/T)); the same inputs for all
    q = F.normalize(torch.randn(B, d, device="cuda"), dim=1).to(torch.bfloat16)
    p = F.normalize(q.float() + 0.5 * torch.randn(B, d, device="cuda") / d ** 0.5, dim=1).to(torch.bfloat16)
    useful = 3 * 2 * B * B * d
    peak = _mm_rate(B, min(B, 16384), d)

    def run(loss_fn):
        qq, pp = q.clone().requires_grad_(), p.clone().requires_grad_()

        def step():
            qq.grad = pp.grad = None
            loss_fn(qq, pp).backward()
        torch.cuda.reset_peak_memory_stats()
        t = _time(step, repeats=3 if quick else 5)
        return t, torch.cuda.max_memory_allocated()

    providers = {"triton": lambda a, b: hf.infonce_loss(a, b, scale=SCALE, backend="triton")}
    if B * B * 4 * 3 < torch.cuda.get_device_properties(0).total_memory * 0.6:
        providers["naive"] = lambda a, b: F.cross_entropy(SCALE * a @ b.T, torch.arange(B, device="cuda"))
    memeff_fn, memeff_status = memeff_loss(SCALE)
    if memeff_fn is not None:
        providers["memeff"] = memeff_fn
    else:
        print(f"memeff baseline skipped: {memeff_status}", flush=True)
        rows.append(dict(bench="loss_fwd_bwd", provider="memeff", B=B, N=B, d=d, status=f"skipped: {memeff_status}"))
    for name, fn in providers.items():
        try:
            t, mem = run(fn)
        except torch.OutOfMemoryError:
            rows.append(dict(bench="loss_fwd_bwd", provider=name, B=B, N=B, d=d, status="OOM"))
            torch.cuda.empty_cache()
            continue
        except Exception as exc:  # noqa: BLE001 - a first GPU run must record failures and go on
            rows.append(dict(bench="loss_fwd_bwd", provider=name, B=B, N=B, d=d, status=_failure(exc)))
            continue
        row = dict(bench="loss_fwd_bwd", provider=name, B=B, N=B, d=d, seconds=t, tflops=useful / t / 1e12,
                   pct_roofline=100 * useful / t / peak, mm_tflops=peak / 1e12, peak_mem_gib=mem / 2 ** 30)
        if name == "triton":
            from hybrid_fast.ops.infonce import triton_kernel

            row["kernel_passes"] = triton_kernel.passes(d, grad=True, dtype=torch.bfloat16)
        rows.append(row)
    return rows


def _topk_rows(Q, N, d, k, quick):
    x = torch.randn(N, d, device="cuda", dtype=torch.bfloat16)
    q = torch.randn(Q, d, device="cuda", dtype=torch.bfloat16)
    flops = 2 * Q * N * d
    peak = _mm_rate(max(Q, 64), min(N, 1 << 20), d)

    def torch_topk():
        chunk = max(k, (1 << 31) // (4 * Q))
        best_s = best_i = None
        for n0 in range(0, N, chunk):
            s, i = torch.topk((q @ x[n0:n0 + chunk].T).float(), min(k, min(chunk, N - n0)), dim=1)
            i += n0
            if best_s is not None:
                s, j = torch.topk(torch.cat([best_s, s], 1), k, dim=1)
                i = torch.cat([best_i, i], 1).gather(1, j)
            best_s, best_i = s, i
        return best_s, best_i

    rows = []
    providers = {"triton": lambda: hf.topk_search(q, x, k, backend="triton", precision="bf16"),
                 "torch_topk": torch_topk}
    available = hf.backends()["ops"]["topk_search"].get("cuda", {}).get("available", [])
    if "cuda" in available:  # hybrid_fast._C_cuda: cuBLAS tiles + CUDA k-selection
        providers["cuda"] = lambda: hf.topk_search(q, x, k, backend="cuda", precision="bf16")
    else:
        print("topk provider 'cuda' skipped: hybrid_fast._C_cuda is not built/usable", flush=True)
        rows.append(dict(bench="topk", provider="cuda", Q=Q, N=N, d=d, k=k, status="skipped: _C_cuda not usable"))
    bw = _copy_bandwidth() if Q == 1 else None  # once per point, not per provider
    for name, fn in providers.items():
        try:
            t = _time(fn, repeats=3 if quick else 5, warmup=1)
        except Exception as exc:  # noqa: BLE001 - record and go on (kernels never run before)
            rows.append(dict(bench="topk", provider=name, Q=Q, N=N, d=d, k=k, status=_failure(exc)))
            continue
        row = dict(bench="topk", provider=name, Q=Q, N=N, d=d, k=k, seconds=t, tflops=flops / t / 1e12,
                   pct_roofline=100 * flops / t / peak)
        if bw is not None:
            row.update(gbps=N * d * 2 / t / 1e9, pct_copy_bw=100 * N * d * 2 / t / bw)
        rows.append(row)
    return rows


def _table(rows):
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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller shapes (smoke run)")
    ap.add_argument("--out", default=None, help="JSON lines output")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("hybrid_fast.benchmarks.gpu: no CUDA device")
    dev = torch.cuda.get_device_name(0)
    rows = []
    loss_shapes = [(8192, 768)] if args.quick else [(32768, 768), (65536, 768), (32768, 512), (65536, 512)]
    for B, d in loss_shapes:
        rows += _loss_rows(B, d, args.quick)
    N = 1_000_000 if args.quick else 10_000_000
    for Q, k in [(1000, 10), (1000, 100), (1, 10)]:
        rows += _topk_rows(Q, N, 768, k, args.quick)
    meta = dict(device=dev, torch=torch.__version__, cuda=torch.version.cuda)
    meta["git"] = git_sha()
    if args.out:
        with open(args.out, "a") as f:
            for r in rows:
                f.write(json.dumps({**meta, **r}) + "\n")
    print(f"device: {dev}  torch {torch.__version__}  git {meta.get('git')}")
    print(_table(rows))
    # Exit 1 when a provider failed or ran out of memory (gpu_check.sh records the step);
    # "skipped" rows (memeff or _C_cuda absent) are reported in the table, not failures.
    failed = [r for r in rows if str(r.get("status", "")).startswith(("failed", "OOM"))]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
