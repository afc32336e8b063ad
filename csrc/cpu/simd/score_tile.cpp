// Per-ISA dot-product score tile for skinny query blocks; contract in score_tile.h.
// AVX2/AVX512 builds: a 3-query x 4-row register block (12 fp32 accumulators of 8 lanes, 3 query
// vectors and 1 row vector live: all 16 ymm registers, no spills) walks d in steps of 8 with FMAs;
// per step 7 loads feed 12 FMAs, so the block is FMA-bound from L1/L2 (benches/score_tile_rate.cpp,
// in L2: 53-83 GFLOP/s a core for Q = 6-32, 98 peak) and, for Q = 1..16, the corpus stream is the limit. The d tail
// (d % 8) uses masked loads, which never touch memory past a row. 16-bit rows are widened to fp32
// in registers when one register block covers all queries (Q <= 3: each element is widened once
// anyway), else into an L1 scratch once per 4-row block, reused by every query triple.
// Rows two blocks ahead are prefetched a line at a time over the d loop, so the corpus stream
// overlaps the FMAs (Q = 16 is at the compute/bandwidth ridge on this 2-core machine).
// The DEFAULT build is the scalar loop.
#include "cpu/simd/score_tile.h"

#include <algorithm>
#include <type_traits>

#if defined(CPU_CAPABILITY_AVX2) || defined(CPU_CAPABILITY_AVX512)
#include <immintrin.h>
#define HF_DOT_SIMD 1
#endif

namespace hybrid_fast::cpu::HF_ISA {
namespace {

#ifdef HF_DOT_SIMD
// Prefetch distance in 4-row blocks (12 KiB ahead for bf16 rows of d = 768, 24 KiB for fp32).
// Measured in A/Bs with a temporary build switch (N = 200k, d = 768, 2 threads): with one burst
// per register block, Q = 16 fp32 took 57-59 ms aimed at the current block, 38-40 ms at 2 ahead,
// no better at 4 or 6; with the lines spread over the d loop (PrefetchStream), 1, 3 and 4 blocks
// ahead were no better than 2 in 2 alternating rounds (4 was 10-50% slower).
constexpr int64_t kPrefetchBlocks = 2;

inline __m256i lanes_below(int64_t n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// Horizontal sum in the tree ((v0+v1)+(v2+v3)) + ((v4+v5)+(v6+v7)), the one hsum8 computes: every
// register block must reduce alike, or a row's score depends on where it sits in a tile (a
// duplicate row in a tile's tail would not tie exactly with its twin in a full block).
inline float hsum(__m256 v) {
  __m128 s = _mm_hadd_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));  // v0+v1, v2+v3, v4+v5, v6+v7
  s = _mm_hadd_ps(s, s);
  return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

// Horizontal sums of 8 vectors in one vector: lane i = sum of v[i] (same tree as hsum).
inline __m256 hsum8(const __m256* v) {
  const __m256 s01 = _mm256_hadd_ps(v[0], v[1]), s23 = _mm256_hadd_ps(v[2], v[3]);
  const __m256 s45 = _mm256_hadd_ps(v[4], v[5]), s67 = _mm256_hadd_ps(v[6], v[7]);
  const __m256 s0123 = _mm256_hadd_ps(s01, s23), s4567 = _mm256_hadd_ps(s45, s67);
  return _mm256_add_ps(_mm256_permute2f128_ps(s0123, s4567, 0x20), _mm256_permute2f128_ps(s0123, s4567, 0x31));
}

// 8 consecutive elements as fp32 (16-bit: widened in registers).
inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 load8(const c10::BFloat16* p) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
inline __m256 load8(const c10::Half* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }

// The first n < 8 elements as fp32, the other lanes 0, reading nothing past p + n.
inline __m256 load_tail(const float* p, int64_t, __m256i mask) { return _mm256_maskload_ps(p, mask); }
template <typename TC>
inline __m256 load_tail(const TC* p, int64_t n, __m256i) {
  TC tmp[8] = {};
  std::copy(p, p + n, tmp);
  return load8(tmp);
}

// The rows of a later 4-row block, prefetched a line at a time, spread evenly over the d steps
// of the current block's register blocks (Bresenham: `lines` prefetches over `steps` calls of
// step()). Bursts stall on the miss buffers: with one burst per block, Q = 1 on a bf16 corpus
// streamed 5-7 GB/s a core; spread over the d loop, 9-11 GB/s, as fast as fp32 (throwaway C++
// harness with both variants, N = 200k, d = 768); 2 threads: 11-14 -> 16-20 GB/s.
struct PrefetchStream {
  const char* next;
  const char* end;
  int64_t lines, steps, credit = 0;
  PrefetchStream(const char* begin, int64_t bytes, int64_t n_steps)
      : next(begin), end(begin + bytes), lines((bytes + 63) / 64), steps(std::max<int64_t>(1, n_steps)) {}
  inline void step() {
    for (credit += lines; credit >= steps; credit -= steps, next += 64) {
      if (next < end) _mm_prefetch(next, _MM_HINT_T0);
    }
  }
  inline void drain() {
    for (; next < end; next += 64) _mm_prefetch(next, _MM_HINT_T0);
  }
};

// Register blocks of qb queries: triples, then pairs for a remainder (qb = 3t + 1 >= 4 ends in
// two pairs, not a triple and a lone query, which runs at a third of the rate), then a single.
inline int64_t query_triples(int64_t qb) { return qb % 3 == 1 && qb >= 4 ? qb / 3 - 1 : qb / 3; }
inline int64_t register_blocks(int64_t qb) { return query_triples(qb) + (qb - 3 * query_triples(qb) + 1) / 2; }

// RQ queries (q + a * d) x RJ rows (xr[b], fp32 or 16-bit) -> out[a * ld + b].
template <int RQ, int RJ, typename TC>
inline void micro(const float* q, int64_t d, const TC* const* xr, float* out, int64_t ld, int64_t dfull,
                  __m256i tail, PrefetchStream& pf) {
  __m256 acc[RQ * RJ];
  for (int i = 0; i < RQ * RJ; ++i) acc[i] = _mm256_setzero_ps();
  for (int64_t t = 0; t < dfull; t += 8) {
    pf.step();
    __m256 qv[RQ];
    for (int a = 0; a < RQ; ++a) qv[a] = _mm256_loadu_ps(q + a * d + t);
    for (int b = 0; b < RJ; ++b) {
      __m256 xv = load8(xr[b] + t);
      // Pin xv to a register: otherwise GCC folds the load into each FMA (RQ loads per row
      // vector instead of one), and the loop becomes load-bound (10 loads per 8 FMAs).
      asm("" : "+x"(xv));
      for (int a = 0; a < RQ; ++a) acc[a * RJ + b] = _mm256_fmadd_ps(qv[a], xv, acc[a * RJ + b]);
    }
  }
  if (dfull < d) {
    __m256 qv[RQ];
    for (int a = 0; a < RQ; ++a) qv[a] = _mm256_maskload_ps(q + a * d + dfull, tail);
    for (int b = 0; b < RJ; ++b) {
      const __m256 xv = load_tail(xr[b] + dfull, d - dfull, tail);
      for (int a = 0; a < RQ; ++a) acc[a * RJ + b] = _mm256_fmadd_ps(qv[a], xv, acc[a * RJ + b]);
    }
  }
  if constexpr (RQ == 2 && RJ == 4) {
    const __m256 s = hsum8(acc);  // lanes 0-3: query 0, rows 0-3; lanes 4-7: query 1
    _mm_storeu_ps(out, _mm256_castps256_ps128(s));
    _mm_storeu_ps(out + ld, _mm256_extractf128_ps(s, 1));
  } else {
    for (int a = 0; a < RQ; ++a)
      for (int b = 0; b < RJ; ++b) out[a * ld + b] = hsum(acc[a * RJ + b]);
  }
}

// All qb queries against RJ rows, prefetching pf's lines over the d steps of its register blocks.
template <int RJ, typename TC>
inline void rows_block(const float* q, int64_t qb, int64_t d, const TC* const* xr, float* out, int64_t ld,
                       int64_t dfull, __m256i tail, PrefetchStream& pf) {
  const int64_t triples = query_triples(qb);
  int64_t r = 0;
  for (; r < 3 * triples; r += 3) micro<3, RJ, TC>(q + r * d, d, xr, out + r * ld, ld, dfull, tail, pf);
  for (; r + 2 <= qb; r += 2) micro<2, RJ, TC>(q + r * d, d, xr, out + r * ld, ld, dfull, tail, pf);
  if (r < qb) micro<1, RJ, TC>(q + r * d, d, xr, out + r * ld, ld, dfull, tail, pf);
  pf.drain();
}

inline void widen_row(const float* src, int64_t d, float* dst) { std::copy(src, src + d, dst); }

inline void widen_row(const c10::BFloat16* src, int64_t d, float* dst) {
  int64_t t = 0;
  for (; t + 8 <= d; t += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + t));
    _mm256_storeu_ps(dst + t, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)));
  }
  for (; t < d; ++t) dst[t] = static_cast<float>(src[t]);
}

inline void widen_row(const c10::Half* src, int64_t d, float* dst) {
  int64_t t = 0;
  for (; t + 8 <= d; t += 8) {
    _mm256_storeu_ps(dst + t, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + t))));
  }
  for (; t < d; ++t) dst[t] = static_cast<float>(src[t]);
}
#endif  // HF_DOT_SIMD

}  // namespace

template <typename TC>
void dot_scores(const float* q, int64_t qb, const TC* x, int64_t nc, int64_t readable_rows, int64_t d, float* out,
                int64_t ld, float* scratch) {
#ifdef HF_DOT_SIMD
  const int64_t dfull = d / 8 * 8, stride = dot_scratch_floats(d) / kDotRows;
  const __m256i tail = lanes_below(d - dfull);
  // 16-bit rows: widened in registers when one register block holds every query, else once
  // into the scratch (then every register block reads fp32).
  const bool widen = !std::is_same_v<TC, float> && qb > 3;
  for (int64_t j0 = 0; j0 < nc; j0 += kDotRows) {
    const int64_t nj = std::min(kDotRows, nc - j0);
    const int64_t pf_row = j0 + kPrefetchBlocks * kDotRows;
    const int64_t pf_end = std::max(nc, readable_rows);
    const char* pf = reinterpret_cast<const char*>(x + std::min(pf_row, pf_end) * d);
    const int64_t pf_bytes = std::max<int64_t>(0, std::min(kDotRows, pf_end - pf_row)) * d * int64_t(sizeof(TC));
    auto run = [&](auto* const* xr) {
      if (nj == kDotRows) {
        PrefetchStream stream(pf, pf_bytes, register_blocks(qb) * (dfull / 8));
        rows_block<kDotRows>(q, qb, d, xr, out + j0, ld, dfull, tail, stream);
      } else {
        PrefetchStream none(pf, 0, 1);
        for (int64_t b = 0; b < nj; ++b) rows_block<1>(q, qb, d, xr + b, out + j0 + b, ld, dfull, tail, none);
      }
    };
    if (widen) {
      const float* xr[kDotRows];
      for (int64_t b = 0; b < nj; ++b) {
        widen_row(x + (j0 + b) * d, d, scratch + b * stride);
        xr[b] = scratch + b * stride;
      }
      run(xr);
    } else {
      const TC* xr[kDotRows];
      for (int64_t b = 0; b < nj; ++b) xr[b] = x + (j0 + b) * d;
      run(xr);
    }
  }
#else
  (void)scratch;
  (void)readable_rows;
  for (int64_t j = 0; j < nc; ++j) {
    const TC* xj = x + j * d;
    for (int64_t r = 0; r < qb; ++r) {
      const float* qr = q + r * d;
      float s = 0.f;
      for (int64_t t = 0; t < d; ++t) s += qr[t] * static_cast<float>(xj[t]);
      out[r * ld + j] = s;
    }
  }
#endif
}

template void dot_scores<float>(const float*, int64_t, const float*, int64_t, int64_t, int64_t, float*, int64_t,
                                float*);
template void dot_scores<c10::BFloat16>(const float*, int64_t, const c10::BFloat16*, int64_t, int64_t, int64_t,
                                        float*, int64_t, float*);
template void dot_scores<c10::Half>(const float*, int64_t, const c10::Half*, int64_t, int64_t, int64_t, float*,
                                    int64_t, float*);

}  // namespace hybrid_fast::cpu::HF_ISA
