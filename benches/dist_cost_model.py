"""Cost model of cross-rank negatives at W = 8..512 GPUs: all-gather design (this package) vs a
ring exchange (Inf-CL, arXiv 2410.17243). Prints the markdown tables of docs/distributed.md.

    python benches/dist_cost_model.py

Per rank: B = B_local queries, N = B (1 + h) candidates, d, s bytes per element (bf16: 2), dp
accumulated in fp32 (4 bytes) by the kernels. Symmetric loss: the queries travel too (M = N + B).

gather (hybrid_fast.distributed.gather, one all-gather forward, one reduce-scatter backward):
  bus bytes/rank/step = 2 (W - 1) M d s          (nccl-tests busbw convention, (W-1)/W of W M d s)
  loss memory/rank    = W M d s (gathered rows) + W N d 4 (fp32 dp accumulator of the kernel)
                        + W M d s (gradient of the gathered rows, reduce-scatter input)
ring (Inf-CL's multi-level scheme): within a node (W <= 8) a flat ring over NVLink, W - 1 steps,
  one N x d block computed per step; across nodes a ring per rail (GPU g of node i sends to GPU g
  of node i + 1 over its own NIC), W / 8 - 1 steps, each step's 8 node blocks shared over NVLink
  so a rank computes against G = 8 blocks per step. Forward shifts candidates; backward shifts them
  again with their fp32 gradient accumulator:
  bytes/rank/step     = (W - 1) N d s (fwd) + (W - 1) N d (s + 4) (bwd)   (every block reaches
                        every rank once per direction, NVLink and NIC hops together)
  loss memory/rank    = (2 G + 1) N d s (blocks in use and in flight, own rows) + (G + 1) N d 4
  a step's shift hides behind its compute when fwd: 2 B G N d / F >= N d s / p2p and
  bwd: 4 B G N d / F >= N d (s + 4) / p2p
compute/rank/step (both) = 3 x 2 B (W N) d flops (fused forward + backward, scores never stored).

Bandwidths (busbw, GB/s): 1 node of 8 H100 SXM: 360 (NVLink 4 line rate 450 per direction, ~370
effective for all-gather / reduce-scatter: NVIDIA/nccl-tests#212 and #326, NCCL maintainer);
multi-node (8 NDR 400G NICs per node): 200, as measured for a 2 GB all_gather on 256 H100s
(NVIDIA/nccl#1218); one NDR NIC gives 46-48 GB/s (NVIDIA/nccl-tests#290), the ring's per-link rate
when its peer sits on another node. Compute: 400 TFLOP/s achieved bf16 (H100 SXM dense peak 989).
"""
from __future__ import annotations

D, S, ACC = 768, 2, 4
FLOPS = 400e12
BUSBW = {8: 360e9, 64: 200e9, 512: 200e9}
P2P_INTER = 46e9


def model(W: int, B: int, h: int = 0, symmetric: bool = False) -> dict:
    N = B * (1 + h)
    M = N + (B if symmetric else 0)
    gather_bytes = 2 * (W - 1) * M * D * S
    ring_bytes = (W - 1) * N * D * S + (W - 1) * N * D * (S + ACC)
    flops = 6.0 * B * W * N * D
    t_comp = flops / FLOPS
    bw = BUSBW[W]
    G, steps, p2p = (1, W - 1, BUSBW[8]) if W <= 8 else (8, W // 8 - 1, P2P_INTER)
    return {
        "W": W, "B_local": B, "global": W * B,
        "gather_GB": gather_bytes / 1e9, "ring_GB": ring_bytes / 1e9,
        "gather_mem_GB": (2 * W * M * D * S + W * N * D * ACC) / 1e9,
        "ring_mem_GB": ((2 * G + 1) * N * D * S + (G + 1) * N * D * ACC) / 1e9,
        "compute_s": t_comp,
        "gather_comm_s": gather_bytes / bw,
        "gather_ratio": (gather_bytes / bw) / t_comp,
        "ring_exposed_s": steps * (max(0.0, N * D * S / p2p - 2 * B * G * N * D / FLOPS)
                                   + max(0.0, N * D * (S + ACC) / p2p - 4 * B * G * N * D / FLOPS)),
        "ring_overlap_B": max(S * FLOPS / (2 * G * p2p), (S + ACC) * FLOPS / (4 * G * p2p)),
    }


def table(rows, cols):
    out = ["| " + " | ".join(h for _, h, _ in cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        out.append("| " + " | ".join(f(r[k]) for k, _, f in cols) + " |")
    return "\n".join(out)


def main():
    g3 = lambda v: f"{v:.3g}"  # noqa: E731
    rows = [model(W, B) for W in (8, 64, 512) for B in (1024, 8192)]
    print(table(rows, [("W", "W", str), ("B_local", "B_local = N_local", str), ("global", "global batch", str),
                       ("compute_s", "loss compute s", g3), ("gather_GB", "gather GB sent/rank", g3),
                       ("gather_comm_s", "gather comm s", g3), ("gather_ratio", "gather comm / compute", g3),
                       ("gather_mem_GB", "gather loss mem GB", g3), ("ring_GB", "ring GB sent/rank", g3),
                       ("ring_exposed_s", "ring exposed comm s", g3), ("ring_mem_GB", "ring loss mem GB", g3),
                       ("ring_overlap_B", "ring: B_local to hide a shift", lambda v: f"{v:.0f}")]))


if __name__ == "__main__":
    main()
