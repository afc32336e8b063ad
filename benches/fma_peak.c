/* FMA peak of one core (the hard compute ceiling quoted in benches/RESULTS_topk.md): 12
 * independent 8-lane fp32 FMA chains, register-only, so nothing but the FMA units limits it.
 *   gcc -O3 -mavx2 -mfma benches/fma_peak.c -o /tmp/fma_peak && /tmp/fma_peak
 * Measured on the project's 2-core AMD EPYC: 93-100 GFLOP/s per core. */
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

int main(void) {
  __m256 acc[12];
  for (int i = 0; i < 12; i++) acc[i] = _mm256_set1_ps(i * 0.001f);
  const __m256 a = _mm256_set1_ps(0.9999f), b = _mm256_set1_ps(0.0001f);
  const long iters = 200000000;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (long it = 0; it < iters; it++)
    for (int i = 0; i < 12; i++) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  const double s = (t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec);
  float sum = 0, lanes[8];
  for (int i = 0; i < 12; i++) {
    _mm256_storeu_ps(lanes, acc[i]);
    sum += lanes[0];
  }
  printf("%.1f GFLOP/s per core (checksum %f)\n", iters * 12.0 * 16 / s / 1e9, sum);
  return 0;
}
