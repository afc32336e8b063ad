// Per-ISA threshold filter for the fused top-k search; contract in topk_filter.h.
// AVX2/AVX512 builds: 8 (float) or 4 (double) compares per instruction, a movemask and a
// branch per vector; positions are extracted with tzcnt only for vectors with a survivor.
// After the first few tiles almost no element beats the running k-th best, so the loop runs
// at load bandwidth. The DEFAULT build is the plain scalar loop.
#include "cpu/simd/topk_filter.h"

#if defined(CPU_CAPABILITY_AVX2) || defined(CPU_CAPABILITY_AVX512)
#include <immintrin.h>
#endif

namespace hybrid_fast::cpu::HF_ISA {

namespace {
template <typename T>
inline int64_t filter_scalar(const T* s, int64_t j, int64_t n, T theta, int32_t* pos, int64_t m) {
  for (; j < n; ++j) {
    pos[m] = static_cast<int32_t>(j);
    m += s[j] > theta ? 1 : 0;  // branch-free: NaN compares false
  }
  return m;
}

#if defined(CPU_CAPABILITY_AVX2) || defined(CPU_CAPABILITY_AVX512)
inline int64_t emit_bits(unsigned bits, int64_t base, int32_t* pos, int64_t m) {
  while (bits) {
    pos[m++] = static_cast<int32_t>(base + __builtin_ctz(bits));
    bits &= bits - 1;
  }
  return m;
}
#endif
}  // namespace

template <>
int64_t filter_greater<float>(const float* s, int64_t n, float theta, int32_t* pos) {
  int64_t j = 0, m = 0;
#if defined(CPU_CAPABILITY_AVX2) || defined(CPU_CAPABILITY_AVX512)
  const __m256 vt = _mm256_set1_ps(theta);
  // Two vectors per step: one branch per 16 scores in the common (nothing passes) case.
  for (; j + 16 <= n; j += 16) {
    const __m256 a = _mm256_loadu_ps(s + j), b = _mm256_loadu_ps(s + j + 8);
    const unsigned ma = _mm256_movemask_ps(_mm256_cmp_ps(a, vt, _CMP_GT_OQ));
    const unsigned mb = _mm256_movemask_ps(_mm256_cmp_ps(b, vt, _CMP_GT_OQ));
    if (__builtin_expect((ma | mb) != 0, 0)) {
      m = emit_bits(ma, j, pos, m);
      m = emit_bits(mb, j + 8, pos, m);
    }
  }
  for (; j + 8 <= n; j += 8) {
    const unsigned ma = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(s + j), vt, _CMP_GT_OQ));
    m = emit_bits(ma, j, pos, m);
  }
#endif
  return filter_scalar(s, j, n, theta, pos, m);
}

template <>
int64_t filter_greater<double>(const double* s, int64_t n, double theta, int32_t* pos) {
  int64_t j = 0, m = 0;
#if defined(CPU_CAPABILITY_AVX2) || defined(CPU_CAPABILITY_AVX512)
  const __m256d vt = _mm256_set1_pd(theta);
  for (; j + 4 <= n; j += 4) {
    const unsigned ma = _mm256_movemask_pd(_mm256_cmp_pd(_mm256_loadu_pd(s + j), vt, _CMP_GT_OQ));
    if (__builtin_expect(ma != 0, 0)) m = emit_bits(ma, j, pos, m);
  }
#endif
  return filter_scalar(s, j, n, theta, pos, m);
}

}  // namespace hybrid_fast::cpu::HF_ISA
