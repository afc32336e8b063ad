"""Cost of one me5-small-offline training step and of encoding, in CPU seconds and wall seconds.

Sizes the ``me5`` experiment preset (hybrid_fast/train/presets.py). CPU time (process_time, all
threads) is less sensitive than wall time to other processes on a shared machine; the projected
wall time on a dedicated 2-core machine is CPU seconds / 2 (perfect 2-thread scaling: optimistic).

    PYTHONPATH=. python3 benches/me5_step_cost.py --output benches/results/me5_step_cost.json
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--query-max-length", type=int, default=32)
    parser.add_argument("--passage-max-length", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--encode-texts", type=int, default=256)
    parser.add_argument("--output", default="benches/results/me5_step_cost.json")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from hybrid_fast.model import BiEncoder

    torch.manual_seed(0)
    model = BiEncoder.from_pretrained("me5-small-offline", query_max_length=args.query_max_length,
                                      passage_max_length=args.passage_max_length)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    words = "the of a river city was in 1920 which people called and government music system".split()
    texts = [" ".join(words[(i * 7 + j) % len(words)] for j in range(60)) for i in range(args.batch_size)]
    steps = []
    for _ in range(args.steps):
        w0, c0 = time.perf_counter(), time.process_time()
        q = model(model.tokenize(["query: " + t[:150] for t in texts], "query"))
        p = model(model.tokenize(["passage: " + t for t in texts], "passage"))
        # plain InfoNCE (the loss kernel's cost is negligible next to the encoder's)
        loss = torch.nn.functional.cross_entropy(20.0 * q @ p.T, torch.arange(len(texts)))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        steps.append({"wall_s": time.perf_counter() - w0, "cpu_s": time.process_time() - c0})
    model.eval()
    enc = {}
    for kind, length in (("query", 80), ("passage", 200)):
        sample = [" ".join(words[(i + j) % len(words)] for j in range(length // 6)) for i in range(args.encode_texts)]
        w0, c0 = time.perf_counter(), time.process_time()
        model.encode(sample, kind, 64)
        enc[kind] = {"texts": len(sample), "wall_s": time.perf_counter() - w0, "cpu_s": time.process_time() - c0}
    out = {"settings": vars(args), "threads": torch.get_num_threads(), "load_avg_1min": os.getloadavg()[0],
           "steps": steps, "encode": enc,
           "note": "shared 2-core machine (up to 8 helpers); steps after the first are the steady state"}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
