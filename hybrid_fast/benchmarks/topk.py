"""Exact top-k search benchmark: FAISS IndexFlatIP vs torch mm + topk vs hybrid_fast.

    python -m hybrid_fast.benchmarks.topk --quick      # N = 20,000 (a minute)
    python -m hybrid_fast.benchmarks.topk --full       # Q in {1, 16, 1000}, N = 200,000, d = 768
    python -m hybrid_fast.benchmarks.topk --tile-widths  # at::mm rate on the CPU kernel's tile widths
    python -m hybrid_fast.benchmarks.topk --device cuda  # Triton / CUDA backends vs torch (a GPU)

Prints a markdown table and writes one JSON row per point (device, threads, versions, git SHA,
dtype, sizes, median seconds, GFLOP/s, GB/s, peak RSS) to ``--out``. Rates: 2 Q N d flops;
bytes = corpus bytes (N d itemsize), read once per search in the memory-bound regime. The
memory-bandwidth bound of a search is corpus bytes / copy bandwidth, with copy bandwidth
measured as (bytes read + bytes written) / time of ``corpus.clone()`` on the same machine.
Providers are timed in interleaved rounds (A B C A B C ...), and so are the two rates the bounds
rest on (a 1 GiB copy and a 4096 x 4096 x 768 fp32 torch.mm), once per round next to the
providers, because this shared machine's speed drifts within a run. Roofline of a point =
max(corpus bytes / copy bandwidth, 2 Q N d / mm rate): the bandwidth bound where the corpus
stream binds (Q = 1), the compute bound where the product does (Q = 16 on 2 cores, Q = 1000). Memory: the peak RSS above the
current RSS during one more call of each provider alone (kernel high-water mark reset before it),
next to the size of one Q x N fp32 score matrix.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from .common import (bf16_gemm_forced, cuda_copy_bandwidth, cuda_median_seconds, cuda_mm_rate, current_rss_bytes,
                     environment, failure_cell, format_table, gpu_table, interleaved_medians, peak_rss_bytes,
                     reset_peak_rss, write_rows)


COPY_BYTES = 1 << 30
MM_SHAPE = (4096, 4096, 768)


def rate_probes() -> dict:
    """Timed like providers, one call per round: a COPY_BYTES copy and a MM_SHAPE fp32 torch.mm."""
    src = torch.ones(COPY_BYTES // 4)
    dst = torch.empty_like(src)
    m, n, kd = MM_SHAPE
    a, b = torch.randn(m, kd), torch.randn(kd, n)
    return {"__copy": lambda: dst.copy_(src), "__mm": lambda: torch.mm(a, b)}


def rates(times: dict) -> tuple[float, float]:
    """(copy bandwidth (read + write) B/s, fp32 mm FLOP/s) from the probes' median times."""
    m, n, kd = MM_SHAPE
    return (2 * COPY_BYTES / statistics.median(times["__copy"]),
            2.0 * m * n * kd / statistics.median(times["__mm"]))


def faiss_index(corpus):
    """A FAISS IndexFlatIP over ``corpus`` (built once per corpus: it copies it), or None."""
    try:
        import faiss
    except ImportError:
        return None
    index = faiss.IndexFlatIP(corpus.shape[1])
    index.add(corpus.numpy())
    return index


def providers(q, corpus, corpus_bf16, k, index=None):
    """The compared searches, name -> zero-argument callable; ``index``: :func:`faiss_index`."""
    import hybrid_fast as hf
    from ..ops.topk.api import search_with_tiles

    def screen_on_bf16_tiles():  # the strategy "auto" picks on CPUs with bf16 units, forced here
        with bf16_gemm_forced("on"):
            return search_with_tiles(q, corpus, k, exact_strategy="screen")

    out = {
        "hybrid_fast exact (fp32)": lambda: hf.topk_search(q, corpus, k),
        "hybrid_fast fp32": lambda: hf.topk_search(q, corpus, k, precision="fp32"),
        "hybrid_fast exact: bf16-tile screen": screen_on_bf16_tiles,
        "hybrid_fast exact (bf16 corpus)": lambda: hf.topk_search(q, corpus_bf16, k),
    }
    if index is not None:
        qn = q.numpy()
        out["faiss IndexFlatIP"] = lambda: index.search(qn, k)
    out["torch mm + topk"] = lambda: torch.topk(q @ corpus.T, k, dim=1)
    return out


def run(Qs, N, d, ks, repeats):
    env = environment()
    torch.manual_seed(0)
    corpus = torch.nn.functional.normalize(torch.randn(N, d), dim=1)
    corpus_bf16 = corpus.to(torch.bfloat16)
    index = faiss_index(corpus)
    probes = rate_probes()
    print(f"threads {env['threads']}; copy bandwidth and fp32 mm rate are measured in every round")
    rows = []
    for Q in Qs:
        q = torch.nn.functional.normalize(torch.randn(Q, d), dim=1)
        for k in ks:
            fns = providers(q, corpus, corpus_bf16, k, index)
            # Interleaved rounds: a shared, noisy machine slows every provider alike.
            all_times = interleaved_medians({**fns, **probes}, repeats=repeats)
            bw, ceiling = rates(all_times)
            print(f"Q={Q} k={k}: copy {bw / 1e9:.1f} GB/s, fp32 mm {ceiling / 1e9:.0f} GFLOP/s")
            for name, fn in fns.items():
                times = all_times[name]
                sec = statistics.median(times)
                # Memory above what is allocated now, during one call of this provider alone.
                base = current_rss_bytes()
                reset_peak_rss()
                fn()
                extra_mib = max(0, peak_rss_bytes() - base) / 2**20
                bf16_corpus = "bf16 corpus" in name  # the stored corpus the provider streams
                itemsize = 2 if bf16_corpus else 4
                nbytes = N * d * itemsize
                rows.append({**env, "op": "topk_search", "provider": name, "Q": Q, "N": N, "d": d, "k": k,
                             "dtype": "bfloat16" if bf16_corpus else "float32", "median_s": sec,
                             "times_s": times, "gflops": 2 * Q * N * d / sec / 1e9, "gbps": nbytes / sec / 1e9,
                             "bw_bound_s": nbytes / bw, "pct_of_bw_bound": (nbytes / bw) / sec * 100,
                             "compute_bound_s": 2 * Q * N * d / ceiling,
                             "pct_of_roofline": max(nbytes / bw, 2 * Q * N * d / ceiling) / sec * 100,
                             "copy_bw_gbps": bw / 1e9, "mm_ceiling_gflops": ceiling / 1e9,
                             "extra_peak_mib": extra_mib, "qxn_fp32_mib": Q * N * 4 / 2**20})
                print(json.dumps({k_: rows[-1][k_] for k_ in ("provider", "Q", "k", "median_s", "gflops", "gbps")}))
            faiss_s = next((r["median_s"] for r in rows[::-1] if r["provider"] == "faiss IndexFlatIP"
                            and r["Q"] == Q and r["k"] == k), None)
            for r in rows:
                if r["Q"] == Q and r["k"] == k and faiss_s:
                    r["speedup_vs_faiss"] = faiss_s / r["median_s"]
    return rows


def tile_widths(N: int = 100_000, d: int = 768, rounds: int = 3) -> None:
    """Single-thread at::mm rate on the CPU kernel's tile shapes (the figures behind the tile-width
    choice in csrc/cpu/topk_ip_cpu.cpp): a 500-query block (Q = 1000 on 2 threads) against a
    streamed corpus cut into tiles of 256, 262 (the former auto width), 512 and 1024 columns;
    medians of ``rounds`` interleaved rounds (about a minute)."""
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


# ------------------------------------------------------------------------ GPU providers
GPU_POINTS = [(1000, 10), (1000, 100), (1, 10)]  # (Q, k) at N = 10M (quick: 1M), d = 768


def gpu_rows(Q, N, d, k, quick):
    """Top-k on the GPU, bf16: providers triton, cuda (when _C_cuda is usable), chunked torch mm +
    topk; Q = 1 also in GB/s of corpus read against the measured copy bandwidth."""
    x = torch.randn(N, d, device="cuda", dtype=torch.bfloat16)
    q = torch.randn(Q, d, device="cuda", dtype=torch.bfloat16)
    flops = 2 * Q * N * d
    peak = cuda_mm_rate(max(Q, 64), min(N, 1 << 20), d)

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

    import hybrid_fast as hf

    rows = []
    providers = {"triton": lambda: hf.topk_search(q, x, k, backend="triton", precision="bf16"),
                 "torch_topk": torch_topk}
    available = hf.backends()["ops"]["topk_search"].get("cuda", {}).get("available", [])
    if "cuda" in available:  # hybrid_fast._C_cuda: cuBLAS tiles + CUDA k-selection
        providers["cuda"] = lambda: hf.topk_search(q, x, k, backend="cuda", precision="bf16")
    else:
        print("topk provider 'cuda' skipped: hybrid_fast._C_cuda is not built/usable", flush=True)
        rows.append(dict(bench="topk", provider="cuda", Q=Q, N=N, d=d, k=k, status="skipped: _C_cuda not usable"))
    bw = cuda_copy_bandwidth() if Q == 1 else None  # once per point, not per provider
    for name, fn in providers.items():
        try:
            t = cuda_median_seconds(fn, repeats=3 if quick else 5, warmup=1)
        except Exception as exc:  # noqa: BLE001 - record and go on (kernels never run before)
            rows.append(dict(bench="topk", provider=name, Q=Q, N=N, d=d, k=k, status=failure_cell(exc)))
            continue
        row = dict(bench="topk", provider=name, Q=Q, N=N, d=d, k=k, seconds=t, tflops=flops / t / 1e12,
                   pct_roofline=100 * flops / t / peak)
        if bw is not None:
            row.update(gbps=N * d * 2 / t / 1e9, pct_copy_bw=100 * N * d * 2 / t / bw)
        rows.append(row)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="N = 20,000, Q in {1, 16, 200}, k in {10, 100}")
    mode.add_argument("--full", action="store_true", help="the issue's sweep: N = 200,000, d = 768")
    mode.add_argument("--tile-widths", action="store_true", help="at::mm rate on the CPU kernel's tile widths")
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                    help="cpu: vs FAISS and torch; cuda: Triton / CUDA vs torch (auto: cuda if present)")
    ap.add_argument("--Qs", help="CPU: comma-separated query counts (overrides the preset's)")
    ap.add_argument("--ks", help="CPU: comma-separated k (overrides the preset's)")
    ap.add_argument("--N", type=int, help="CPU: corpus rows (overrides the preset's)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="benches/results/topk.jsonl")
    args = ap.parse_args(argv)
    if args.tile_widths:
        tile_widths()
        return 0
    if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()):
        N = 1_000_000 if args.quick else 10_000_000
        rows = [r for Q, k in GPU_POINTS for r in gpu_rows(Q, N, 768, k, args.quick)]
        print(gpu_table(rows))
        write_rows(args.out, [{**environment(), **r} for r in rows])
        return 1 if any(str(r.get("status", "")).startswith(("failed", "OOM")) for r in rows) else 0
    Qs, N, ks = ([1000, 16, 1], 200_000, [10, 100, 1000]) if args.full else ([200, 16, 1], 20_000, [10, 100])
    Qs = [int(x) for x in args.Qs.split(",")] if args.Qs else Qs
    ks = [int(x) for x in args.ks.split(",")] if args.ks else ks
    rows = run(Qs, args.N or N, 768, ks, args.repeats)
    write_rows(args.out, rows)
    print(format_table(rows, [("provider", "provider"), ("bf16_units", "bf16 units"), ("Q", "Q"), ("k", "k"),
                              ("median_s", "median s"),
                              ("gflops", "GFLOP/s"), ("gbps", "GB/s"), ("pct_of_bw_bound", "% of BW bound"),
                              ("pct_of_roofline", "% of roofline"),
                              ("speedup_vs_faiss", "x FAISS"), ("extra_peak_mib", "extra peak MiB"),
                              ("qxn_fp32_mib", "Q x N fp32 MiB")]))


if __name__ == "__main__":
    main()
