"""Single-thread at::mm rate on the top-k kernel's tile shapes (the figures behind the tile-width
choice in csrc/cpu/topk_ip_cpu.cpp): a 500-query block (Q = 1000 on 2 threads) against a
streamed corpus cut into tiles of 256, 262 (the former auto width), 512 and 1024 columns.

    python benches/topk_tile_widths.py        # about a minute; medians of 3 interleaved rounds
"""
import statistics
import time

import torch


def main(N: int = 100_000, d: int = 768, rounds: int = 3) -> None:
    torch.set_num_threads(1)  # the kernel runs one product per thread
    torch.manual_seed(0)
    x, q = torch.randn(N, d), torch.randn(500, d)
    times: dict[int, list[float]] = {}
    for _ in range(rounds):
        for nt in (256, 262, 512, 1024):
            out = torch.empty(500, nt)
            t0 = time.perf_counter()
            for c0 in range(0, N - nt + 1, nt):
                torch.mm(q, x[c0:c0 + nt].t(), out=out)
            times.setdefault(nt, []).append((time.perf_counter() - t0) / ((N // nt) * nt))
    for nt, v in times.items():
        print(f"tile {nt:5d} columns: {2 * 500 * d / statistics.median(v) / 1e9:6.1f} GFLOP/s (1 thread)")


if __name__ == "__main__":
    main()
