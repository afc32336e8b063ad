"""Benchmark of the fused InfoNCE loss (forward + backward) against pure PyTorch.

Providers:
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
import sys

import torch
import torch.nn.functional as F

import statistics

from .common import (bf16_gemm_forced, current_rss_bytes, environment, format_table, interleaved_medians,
                     matmul_ceiling, peak_rss_bytes, reset_peak_rss, run_in_fresh_process, write_rows)

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
