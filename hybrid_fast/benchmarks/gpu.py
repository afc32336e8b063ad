"""Both ops on the GPU in one run (run by benches/gpu_check.sh): the GPU sweeps of
:mod:`hybrid_fast.benchmarks.infonce` (fused loss vs mm roofline, naive, memeff) and
:mod:`hybrid_fast.benchmarks.topk` (Triton / CUDA top-k vs chunked torch), one table.

Usage: ``python -m hybrid_fast.benchmarks.gpu [--quick] [--out rows.jsonl]``; prints a markdown
table, appends one JSON row per point.
"""
from __future__ import annotations

import argparse
import json

import torch

from . import infonce, topk
from .common import git_sha, gpu_table


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller shapes (smoke run)")
    ap.add_argument("--out", default=None, help="JSON lines output")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("hybrid_fast.benchmarks.gpu: no CUDA device")
    dev = torch.cuda.get_device_name(0)
    rows = []
    for B, d in infonce.GPU_SHAPES["quick" if args.quick else "full"]:
        rows += infonce.gpu_rows(B, d, args.quick)
    N = 1_000_000 if args.quick else 10_000_000
    for Q, k in topk.GPU_POINTS:
        rows += topk.gpu_rows(Q, N, 768, k, args.quick)
    meta = dict(device=dev, torch=torch.__version__, cuda=torch.version.cuda)
    meta["git"] = git_sha()
    if args.out:
        with open(args.out, "a") as f:
            for r in rows:
                f.write(json.dumps({**meta, **r}) + "\n")
    print(f"device: {dev}  torch {torch.__version__}  git {meta.get('git')}")
    print(gpu_table(rows))
    # Exit 1 when a provider failed or ran out of memory (gpu_check.sh records the step);
    # "skipped" rows (memeff or _C_cuda absent) are reported in the table, not failures.
    failed = [r for r in rows if str(r.get("status", "")).startswith(("failed", "OOM"))]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
