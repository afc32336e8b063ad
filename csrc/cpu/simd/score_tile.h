// Score tile of the fused top-k search for skinny query blocks: S[r, j] = <q_r, x_j>, fp32
// accumulation, computed as blocked dot products that read each corpus row once and never pack
// it. For few queries (Q = 1 .. ~32) this is memory-bound and at::mm's packing of the corpus
// tile costs as much as the product; for many queries at::mm (packed GEMM) wins and the driver
// (csrc/cpu/topk_ip_cpu.cpp) uses that instead. Compiled once per ISA (CMakeLists.txt), picked
// with HF_ISA_DISPATCH.
#pragma once
#include <cstdint>

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

namespace hybrid_fast::cpu {
// Corpus rows converted to fp32 per block when the corpus is 16-bit: kDotRows rows of
// round_up(d, 8) floats (L1-resident for d <= 768), so conversion happens once per element.
constexpr int64_t kDotRows = 4;
inline int64_t dot_scratch_floats(int64_t d) { return kDotRows * ((d + 7) / 8) * 8; }
}  // namespace hybrid_fast::cpu

#define HF_DECLARE_SCORE_TILE(ISA)                                                                       \
  namespace hybrid_fast::cpu::ISA {                                                                      \
  /* out[r * ld + j] = sum_t q[r * d + t] * float(x[j * d + t]) for r < qb, j < nc (fp32 accumulation;   \
     summation order: 8 interleaved partial sums, then a fixed tree). q: qb x d fp32 contiguous; x: nc   \
     x d contiguous rows of TC in {float, BFloat16, Half}; scratch: dot_scratch_floats(d) floats (used   \
     only for 16-bit TC). Reads x once: O(nc d) bytes, 2 qb nc d flops. Rows of x below readable_rows    \
     (>= nc: the rest of the caller's range) may be prefetched, so the stream does not stall at the      \
     end of every tile. */                                                                               \
  template <typename TC>                                                                                 \
  void dot_scores(const float* q, int64_t qb, const TC* x, int64_t nc, int64_t readable_rows, int64_t d, \
                  float* out, int64_t ld, float* scratch);                                               \
  }

HF_DECLARE_SCORE_TILE(DEFAULT)
HF_DECLARE_SCORE_TILE(AVX2)
HF_DECLARE_SCORE_TILE(AVX512)
