"""Cross-rank negatives on W processes (gloo, CPU): time per training step split into
communication and compute, and bytes moved per step.

Each rank holds B_local queries and N_local = B_local * (1 + hard_negatives) candidates (d = 768,
unit norm, scale 20, mean reduction) and runs forward + backward of
``infonce_loss(..., gather_across_devices=True)``. Communication = wall time inside the
collectives of :mod:`hybrid_fast.distributed.gather` (the metadata and row all-gathers of the
forward, the reduce-scatter of the backward), timed by wrapping them; it includes waiting for a
slower rank, so the table gives the smallest rank's figure (closest to the transfer itself) and
the largest (with the wait). Compute = step - smallest communication. The "local" column times the same step without
the gather (each rank's own B_local x N_local problem), in interleaved rounds with the gathered
step, so a loaded machine slows both alike.

Bytes per step and rank: what a ring all-gather / reduce-scatter sends (and receives) per
rank: (W - 1) / W of the gathered buffer for each collective (the bus-bytes convention of
nccl-tests). The buffer holds W x max(N_r) x d elements in the input dtype.

    python -m hybrid_fast.benchmarks.distributed --world 2 --batches 1024,2048,4096,8192 \
        --output benches/results/dist_infonce_gloo.jsonl
    python -m hybrid_fast.benchmarks.distributed --table-from benches/results/dist_infonce_gloo.jsonl
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from .common import environment, format_table, write_rows

SCALE = 20.0
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def _worker(rank, world, batches, d, hard_negatives, dtype_name, repeats):
    import hybrid_fast as hf
    from hybrid_fast.distributed import gather

    dtype = DTYPES[dtype_name]
    clock = {"comm_s": 0.0, "bytes": 0}
    real_ag, real_rs = gather.all_gather_blocks, gather.reduce_scatter_blocks

    def timed(fn, out_of):
        def wrapped(t, group=None):
            t0 = time.perf_counter()
            out = fn(t, group)
            clock["comm_s"] += time.perf_counter() - t0
            clock["bytes"] += (world - 1) * out_of(t, out).nbytes // world
            return out
        return wrapped

    gather.all_gather_blocks = timed(real_ag, lambda t, out: out)
    gather.reduce_scatter_blocks = timed(real_rs, lambda t, out: t)
    rows = []
    try:
        for B in batches:
            g = torch.Generator().manual_seed(1000 * rank + B)
            N = B * (1 + hard_negatives)
            q = F.normalize(torch.randn(B, d, generator=g), dim=-1).to(dtype).requires_grad_()
            p = F.normalize(torch.randn(N, d, generator=g), dim=-1).to(dtype).requires_grad_()

            def step(gathered):
                q.grad = p.grad = None
                hf.infonce_loss(q, p, scale=SCALE, gather_across_devices=gathered).backward()

            times = {"gathered": [], "local": [], "comm": [], "bytes": []}
            for rep in range(repeats + 1):  # the first round warms up
                for mode in ("gathered", "local"):
                    torch.distributed.barrier()
                    clock["comm_s"], clock["bytes"] = 0.0, 0
                    t0 = time.perf_counter()
                    step(mode == "gathered")
                    dt = time.perf_counter() - t0
                    if rep:
                        times[mode].append(dt)
                        if mode == "gathered":
                            times["comm"].append(clock["comm_s"])
                            times["bytes"].append(clock["bytes"])
            med = {k: statistics.median(v) for k, v in times.items()}
            rows.append({"W": world, "B_local": B, "N_local": N, "d": d, "dtype": dtype_name, "rank": rank,
                         "step_s": med["gathered"], "comm_s": med["comm"], "local_step_s": med["local"],
                         "bytes_per_step": int(med["bytes"]), "times": times})
    finally:
        gather.all_gather_blocks, gather.reduce_scatter_blocks = real_ag, real_rs
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hybrid_fast.benchmarks.distributed", description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=int, default=2)
    parser.add_argument("--batches", default="1024,2048,4096,8192", help="B_local values, comma-separated")
    parser.add_argument("--d", type=int, default=768)
    parser.add_argument("--hard-negatives", type=int, default=0)
    parser.add_argument("--dtype", choices=tuple(DTYPES), default="fp32")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per rank")
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--output", default=None, metavar="FILE.jsonl")
    parser.add_argument("--table-from", default=None, metavar="FILE.jsonl", help="only print the table of a past run")
    args = parser.parse_args(argv)
    if args.table_from:
        with open(args.table_from) as f:
            rows = [json.loads(line) for line in f if line.strip()]
    else:
        from hybrid_fast.distributed.testing import run_workers

        batches = [int(b) for b in args.batches.split(",")]
        per_rank = run_workers(_worker, args.world, batches, args.d, args.hard_negatives, args.dtype, args.repeats,
                               threads=args.threads, timeout=args.timeout, collective_timeout=args.timeout)
        env = dict(environment(), threads_per_rank=args.threads, backend="gloo")
        rows = [dict(r, **env) for rank_rows in per_rank for r in rank_rows]
        if args.output:
            write_rows(args.output, rows)
    print(format_table(summary(rows), [
        ("W", "W"), ("B_local", "B_local"), ("N_local", "N_local"), ("dtype", "dtype"), ("step_s", "step s"),
        ("comm_min_s", "comm s (min rank)"), ("comm_max_s", "comm s (max rank)"), ("comm_pct", "comm % (min)"),
        ("compute_s", "compute s"), ("compute_gflops", "compute GFLOP/s/rank"), ("local_step_s", "local-only step s"),
        ("mib", "MiB sent/rank/step")]))
    return 0


def summary(rows: list[dict]) -> list[dict]:
    """One line per (W, B_local): the slowest rank's step, the smallest and largest rank's time in
    the collectives, compute = step - smallest communication."""
    out = []
    for key in sorted({(r["W"], r["B_local"]) for r in rows}):
        rs = [r for r in rows if (r["W"], r["B_local"]) == key]
        worst = max(rs, key=lambda r: r["step_s"])
        cmin, cmax = min(r["comm_s"] for r in rs), max(r["comm_s"] for r in rs)
        compute = worst["step_s"] - cmin
        flops = 3 * 2.0 * worst["B_local"] * worst["W"] * worst["N_local"] * worst["d"]
        out.append(dict(worst, comm_min_s=cmin, comm_max_s=cmax, comm_pct=100.0 * cmin / worst["step_s"],
                        compute_s=compute, compute_gflops=flops / compute / 1e9,
                        local_step_s=max(r["local_step_s"] for r in rs), mib=worst["bytes_per_step"] / 2**20))
    return out


if __name__ == "__main__":
    sys.exit(main())
