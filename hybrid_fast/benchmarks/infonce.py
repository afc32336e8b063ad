"""Benchmark of the fused InfoNCE loss (forward + backward) against pure PyTorch, on the CPU or
the GPU (``--device``, default: the GPU when there is one).

CPU providers:
  hybrid_fast           hybrid_fast.infonce_loss(backend="cpu"): fused, no (B, N) matrix
  hybrid_fast_bf16_tiles, hybrid_fast_upcast
                        the same with HYBRID_FAST_BF16_GEMM=on / off: bf16 inputs as bf16 x bf16
                        -> fp32 GEMM tiles / upcast to fp32 (bf16 rows only; "hybrid_fast" runs
                        what "auto" picks on this CPU; every row records bf16_units and the path)
  reference             hybrid_fast.reference.infonce_loss: F.cross_entropy(scale * q @ p.T)
                        (bf16/fp16 inputs upcast to fp32 first, as the fused kernel does)
  naive                 F.cross_entropy(q @ p.T * scale) in the input dtype, as users write it
  linear_cross_entropy  torch.nn.functional.linear_cross_entropy, chunked (LinearCrossEntropyOptions)

Derived figures: effective rate = 3 * 2BNd / time (the three matrix products a fused fwd+bwd
needs). Roofline: the time of exactly those three fp32 torch.mm calls (q p^T, S p, S^T q at these
shapes), timed in the same interleaved rounds as the providers, so a loaded machine slows both
alike; "x roofline" = roofline time / provider time. bf16 rows add the bf16 roofline: the same
three products as bf16 torch.mm calls (oneDNN's bf16 kernels, bf16 outputs), "x bf16 roofline".
Peak memory: a fresh process per case; extra = peak RSS - RSS with inputs allocated - the
gradients' bytes.

    python -m hybrid_fast.benchmarks.infonce --full --output benches/results/infonce_cpu.jsonl
    hybrid-fast bench infonce --quick
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys

import torch
import torch.nn.functional as F

from .common import (bf16_gemm_forced, cuda_median_seconds, cuda_mm_rate, current_rss_bytes, environment,
                     failure_cell, format_table, gpu_table, interleaved_medians, matmul_ceiling, peak_rss_bytes,
                     reset_peak_rss, run_in_fresh_process, write_rows)

SCALE = 20.0
PROVIDERS = ("hybrid_fast", "hybrid_fast_bf16_tiles", "hybrid_fast_upcast", "reference", "naive",
             "linear_cross_entropy")
# Providers that run the fused kernel with HYBRID_FAST_BF16_GEMM forced (bf16 inputs only).
FORCED_BF16_GEMM = {"hybrid_fast_bf16_tiles": "on", "hybrid_fast_upcast": "off"}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def setup(B: int, N: int, d: int, dtype: torch.dtype, seed: int = 0):
    """Unit-norm embeddings (the scale then gives realistic logits), labels = arange(B)."""
    g = torch.Generator().manual_seed(seed)
    q = F.normalize(torch.randn(B, d, generator=g), dim=-1).to(dtype).requires_grad_()
    p = F.normalize(torch.randn(N, d, generator=g), dim=-1).to(dtype).requires_grad_()
    return q, p, torch.arange(B)


def loss_fn(provider: str):
    import hybrid_fast as hf

    if provider == "hybrid_fast" or provider in FORCED_BF16_GEMM:
        return lambda q, p, y: hf.infonce_loss(q, p, y, scale=SCALE, backend="cpu")
    if provider == "reference":
        return lambda q, p, y: hf.reference.infonce_loss(q, p, y, scale=SCALE)
    if provider == "naive":
        return lambda q, p, y: F.cross_entropy(q @ p.T * SCALE, y)
    if provider == "linear_cross_entropy":
        opts = torch.nn.LinearCrossEntropyOptions()
        return lambda q, p, y: F.linear_cross_entropy(q * SCALE, p, y, options=opts)
    raise ValueError(f"provider must be one of {PROVIDERS}, got {provider!r}")


def step(fn, q, p, y, mode: str, provider: str | None = None):
    """One timed call (forward, or forward + backward); ``provider`` applies its forced bf16 GEMM
    setting (:data:`FORCED_BF16_GEMM`) to the whole call."""
    with bf16_gemm_forced(FORCED_BF16_GEMM.get(provider)):
        if mode == "fwd":
            with torch.no_grad():
                return fn(q, p, y)
        q.grad = p.grad = None
        loss = fn(q, p, y)
        loss.backward()
        return loss


def gemm_dtype(provider: str, dtype: torch.dtype) -> torch.dtype:
    """The dtype the provider's matrix products run in."""
    if provider in ("naive", "linear_cross_entropy") or (provider in FORCED_BF16_GEMM and dtype == torch.bfloat16):
        return dtype
    return torch.float32 if dtype != torch.float64 else dtype


def bf16_path(provider: str, dtype: torch.dtype) -> str | None:
    """Which fused-kernel path a hybrid_fast row ran: "bf16 tiles" or "upcast" (None otherwise)."""
    if provider != "hybrid_fast" and provider not in FORCED_BF16_GEMM:
        return None
    if dtype != torch.bfloat16:
        return "upcast" if dtype != torch.float64 else None
    from .. import _ext

    with bf16_gemm_forced(FORCED_BF16_GEMM.get(provider)):
        return "bf16 tiles" if _ext.cpu.available and _ext.cpu.module.bf16_gemm() else "upcast"


def child(payload: dict) -> dict:
    """One fwd+bwd in this (fresh) process; report the memory above inputs and gradients."""
    torch.set_num_threads(payload["threads"])
    fn = loss_fn(payload["provider"])
    # Warm up on a small problem (thread pools, BLAS buffers, lazy imports): their one-off
    # memory is not the provider's.
    step(fn, *setup(256, 256, payload["d"], DTYPES[payload["dtype"]]), "full", payload["provider"])
    q, p, y = setup(payload["B"], payload["N"], payload["d"], DTYPES[payload["dtype"]])
    base = current_rss_bytes()
    if not reset_peak_rss():
        raise RuntimeError("cannot reset the peak-RSS counter (/proc/self/clear_refs): peak memory not measurable")
    step(fn, q, p, y, "full", payload["provider"])
    grads = q.grad.numel() * q.grad.element_size() + p.grad.numel() * p.grad.element_size()
    return {"extra_peak_bytes": max(0, peak_rss_bytes() - base - grads)}


def run(sizes, dtypes, providers, d=768, repeats=3, measure_memory=True, max_seconds=120.0, mode="full"):
    env = environment()
    ceilings = {}
    for name in set(dtypes) | {"fp32"}:
        # A smaller GEMM for slow dtypes keeps the ceiling measurement itself short.
        ceilings[name] = matmul_ceiling(DTYPES[name], *((4096, 4096, 768) if name == "fp32" else (512, 512, 768)))
    rows = []
    for B in sizes:
        for dname in dtypes:
            dtype = DTYPES[dname]
            N = B
            flops = (3 if mode == "full" else 1) * 2.0 * B * N * d
            q, p, y = setup(B, N, d, dtype)
            qf, pf = q.detach().float(), p.detach().float()

            def roofline(a=qf, b=pf):  # the products a fused kernel cannot avoid, at torch.mm speed
                s = a @ b.T
                if mode == "full":
                    s @ b, s.T @ a

            fns, group = {"roofline": roofline}, []
            if dtype == torch.bfloat16:
                fns["roofline_bf16"] = lambda: roofline(q.detach(), p.detach())
            for provider in providers:
                rate = ceilings[dname] if gemm_dtype(provider, dtype) == dtype else ceilings["fp32"]
                estimate = flops / rate
                row = dict(env, op="infonce_loss", mode=mode, provider=provider, B=B, N=N, d=d, dtype=dname,
                           flops=flops, matmul_ceiling_gflops=ceilings["fp32"] / 1e9,
                           dtype_matmul_ceiling_gflops=ceilings[dname] / 1e9, bf16_path=bf16_path(provider, dtype))
                group.append(row)
                if provider in FORCED_BF16_GEMM and dtype != torch.bfloat16:
                    row["skipped"] = "bf16 inputs only (the hybrid_fast row runs this kernel)"
                    continue
                if estimate * (repeats + 1) > max_seconds:
                    row["skipped"] = (f"estimated {estimate:.0f} s per call at the measured "
                                      f"{gemm_dtype(provider, dtype)} GEMM rate {rate / 1e9:.2f} GFLOP/s")
                    print(f"  {provider:22s} B={B:6d} {dname}: skipped ({row['skipped']})", file=sys.stderr)
                    continue
                fns[provider] = (lambda fn, name: lambda: step(fn, q, p, y, mode, name))(loss_fn(provider), provider)
            times = interleaved_medians(fns, repeats=repeats)
            t_roof = statistics.median(times["roofline"])
            for row in group:
                if row["provider"] not in times:
                    continue
                sec = statistics.median(times[row["provider"]])
                row.update(seconds=sec, times=times[row["provider"]], gflops=flops / sec / 1e9,
                           roofline_seconds=t_roof, roofline_gflops=flops / t_roof / 1e9,
                           roofline_fraction=t_roof / sec, roofline_fraction_dtype=flops / sec / ceilings[dname])
                if "roofline_bf16" in times:
                    t_bf16 = statistics.median(times["roofline_bf16"])
                    row.update(roofline_bf16_seconds=t_bf16, roofline_bf16_fraction=t_bf16 / sec)
                if measure_memory and mode == "full":
                    mem = run_in_fresh_process("hybrid_fast.benchmarks.infonce", dict(
                        provider=row["provider"], B=B, N=N, d=d, dtype=dname, threads=torch.get_num_threads()))
                    row["extra_peak_mib"] = mem["extra_peak_bytes"] / 2**20
                print(f"  {row['provider']:22s} B={B:6d} {dname}: {sec:.3f} s  {row['gflops']:.1f} GFLOP/s  "
                      f"{100 * row['roofline_fraction']:.0f}% of the fp32 roofline ({t_roof:.3f} s)"
                      + (f"  extra peak {row['extra_peak_mib']:.0f} MiB" if "extra_peak_mib" in row else ""),
                      file=sys.stderr)
            rows.extend(group)
            del q, p, qf, pf
    # Ratios against the baselines, within this run.
    for r in rows:
        mine = next((x for x in rows if x["provider"] == "hybrid_fast" and x["B"] == r["B"] and x["dtype"] == r["dtype"]
                     and "seconds" in x), None)
        if mine and "seconds" in r:
            r["hybrid_fast_speedup"] = r["seconds"] / mine["seconds"]
            if "extra_peak_mib" in r and "extra_peak_mib" in mine and r["extra_peak_mib"] > 0:
                r["hybrid_fast_memory_fraction"] = mine["extra_peak_mib"] / r["extra_peak_mib"]
    return rows


# ------------------------------------------------------------------------ GPU providers
# mm: torch bf16 matmul of the same shape (the roofline); triton: the fused loss; naive:
# F.cross_entropy(scale * q @ p.T) fwd+bwd (skipped when B x N does not fit); memeff: the
# memeff package's MemoryEfficientQwen3Loss as the same one-direction InfoNCE. The kernel
# performs triton_kernel.passes(d) x 2BNd (4 at d = 512/768 bf16, reported as kernel_passes).
GPU_SHAPES = {"quick": [(8192, 768)], "full": [(32768, 768), (65536, 768), (32768, 512), (65536, 512)]}


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


def gpu_rows(B, d, quick):
    """Fused loss fwd+bwd on the GPU: bf16 unit-norm rows, B = N, scale 20; providers triton,
    naive (when B x N fits), memeff, against the measured bf16 mm rate (3 x 2BNd useful flops)."""
    import hybrid_fast as hf

    rows = []
    # unit-norm rows (memeff's kernels assume them: exp2(S/T - 1/T)); the same inputs for all
    q = F.normalize(torch.randn(B, d, device="cuda"), dim=1).to(torch.bfloat16)
    p = F.normalize(q.float() + 0.5 * torch.randn(B, d, device="cuda") / d ** 0.5, dim=1).to(torch.bfloat16)
    useful = 3 * 2 * B * B * d
    peak = cuda_mm_rate(B, min(B, 16384), d)

    def run(loss_fn):
        qq, pp = q.clone().requires_grad_(), p.clone().requires_grad_()

        def step():
            qq.grad = pp.grad = None
            loss_fn(qq, pp).backward()
        torch.cuda.reset_peak_memory_stats()
        t = cuda_median_seconds(step, repeats=3 if quick else 5)
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
            rows.append(dict(bench="loss_fwd_bwd", provider=name, B=B, N=B, d=d, status=failure_cell(exc)))
            continue
        row = dict(bench="loss_fwd_bwd", provider=name, B=B, N=B, d=d, seconds=t, tflops=useful / t / 1e12,
                   pct_roofline=100 * useful / t / peak, mm_tflops=peak / 1e12, peak_mem_gib=mem / 2 ** 30)
        if name == "triton":
            from ..ops.infonce import triton_kernel

            row["kernel_passes"] = triton_kernel.passes(d, grad=True, dtype=torch.bfloat16)
        rows.append(row)
    return rows


TABLE = [("provider", "provider"), ("B", "B=N"), ("dtype", "dtype"), ("bf16_units", "bf16 units"),
         ("bf16_path", "path"), ("seconds", "median s"),
         ("gflops", "GFLOP/s (6BNd/t)"), ("roofline_seconds", "roofline s (3 fp32 mm)"),
         ("roofline_fraction", "x roofline"), ("roofline_bf16_fraction", "x bf16 roofline"),
         ("roofline_fraction_dtype", "x dtype mm ceiling"), ("extra_peak_mib", "extra peak MiB"),
         ("hybrid_fast_speedup", "hybrid_fast speedup"), ("hybrid_fast_memory_fraction", "hybrid_fast mem / this"),
         ("skipped", "note")]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="hybrid-fast bench infonce", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                    help="cpu: the C++ kernel vs PyTorch baselines; cuda: Triton vs baselines (auto: cuda if present)")
    preset = ap.add_mutually_exclusive_group()
    preset.add_argument("--quick", action="store_true", help="B=N=2048, fp32, no memory runs (~30 s)")
    preset.add_argument("--full", action="store_true", help="B=N=4096 and 8192, fp32 and bf16, peak memory")
    ap.add_argument("--sizes", default=None, help="comma-separated B (= N)")
    ap.add_argument("--dtypes", default=None, help="comma-separated: fp32,bf16,fp16")
    ap.add_argument("--providers", default=",".join(PROVIDERS))
    ap.add_argument("--d", type=int, default=768)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--mode", choices=("full", "fwd"), default="full")
    ap.add_argument("--max-seconds", type=float, default=300.0,
                    help="skip a provider whose estimated time for all repeats exceeds this")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--output", help="JSON lines, one row per point")
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()):
        rows = [r for B, d in GPU_SHAPES["quick" if args.quick else "full"] for r in gpu_rows(B, d, args.quick)]
        print(gpu_table(rows))
        if args.output:
            write_rows(args.output, [{**environment(), **r} for r in rows])
        return 1 if any(str(r.get("status", "")).startswith(("failed", "OOM")) for r in rows) else 0
    sizes = [2048] if args.quick else [4096, 8192]
    dtypes = ["fp32"] if args.quick else ["fp32", "bf16"]
    if args.sizes:
        sizes = [int(s) for s in args.sizes.split(",")]
    if args.dtypes:
        dtypes = args.dtypes.split(",")
    rows = run(sizes, dtypes, args.providers.split(","), d=args.d, repeats=args.repeats,
               measure_memory=not (args.no_memory or args.quick), max_seconds=args.max_seconds, mode=args.mode)
    env = rows[0]
    ceil = {r["dtype"]: r["dtype_matmul_ceiling_gflops"] for r in rows}
    print(f"\nInfoNCE fwd+bwd, d={args.d}, scale={SCALE}; {env['machine']}, {env['threads']} threads, torch "
          f"{env['torch']}, ISA {env['hybrid_fast_isa']}, bf16 units {env['bf16_units']} "
          f"(HYBRID_FAST_BF16_GEMM={env['bf16_gemm_mode']}), git {env['git_sha']}; torch.mm ceiling (4096x4096x768) fp32 "
          f"{env['matmul_ceiling_gflops']:.0f} GFLOP/s, {', '.join(f'{k} {v:.2f}' for k, v in sorted(ceil.items()))}; "
          f"medians of {args.repeats} interleaved rounds\n")
    print(format_table(rows, TABLE))
    if args.output:
        write_rows(args.output, rows)
        print(f"\nrows written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
