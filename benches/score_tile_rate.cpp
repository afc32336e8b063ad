/* Rate of the top-k dot-product score kernel (csrc/cpu/simd/score_tile.cpp, AVX2 build) alone,
 * without the filter/selection: GFLOP/s and corpus GB/s for a query block of Q rows (d = 768),
 * on a corpus that stays in L2 (128 rows, re-scored 3125 times) and on a streamed 200,000-row
 * one, with 1 and 2 threads (each thread scores a disjoint half, in the driver's 4096-row tiles).
 * The figures behind "in cache one core runs the kernel at 53-71 GFLOP/s" in
 * benches/RESULTS_topk.md.
 *   T=$(python -c 'import torch, os; print(os.path.dirname(torch.__file__))')
 *   g++ -O3 -fopenmp -std=c++17 -mavx2 -mfma -mf16c -mbmi2 -DCPU_CAPABILITY=AVX2 \
 *       -DCPU_CAPABILITY_AVX2 -DHF_ISA=AVX2 -Icsrc -I$T/include benches/score_tile_rate.cpp \
 *       csrc/cpu/simd/score_tile.cpp -L$T/lib -lc10 -Wl,-rpath,$T/lib -o /tmp/score_tile_rate
 *   for Q in 1 6 16 32; do /tmp/score_tile_rate $Q; done      # median of 5 runs per line */
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "cpu/simd/score_tile.h"

using hybrid_fast::cpu::dot_scratch_floats;

int main(int argc, char** argv) {
  const long d = 768, tile = 4096, Q = argc > 1 ? std::atol(argv[1]) : 16;
  std::vector<float> q(Q * d);
  for (long i = 0; i < Q * d; ++i) q[i] = (i % 13) * 0.1f;
  for (long N : {128L, 200000L}) {
    std::vector<float> x(N * d);
    for (long i = 0; i < N * d; ++i) x[i] = (i % 97) * 0.01f;
    const long passes = std::max(1L, 400000L / N);  // corpus passes per timed run
    for (int threads : {1, 2}) {
      std::vector<double> seconds;
      for (int run = 0; run < 5; ++run) {
        const auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel num_threads(threads)
        {
          const int t = omp_get_thread_num();
          std::vector<float> out(Q * tile), scratch(dot_scratch_floats(d));
          const long lo = N * t / threads, hi = N * (t + 1) / threads;
          for (long pass = 0; pass < passes; ++pass)
            for (long c0 = lo; c0 < hi; c0 += tile) {
              const long nc = std::min(tile, hi - c0);
              hybrid_fast::cpu::AVX2::dot_scores<float>(q.data(), Q, x.data() + c0 * d, nc, hi - c0, d, out.data(),
                                                        nc, scratch.data());
            }
        }
        seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      }
      std::sort(seconds.begin(), seconds.end());
      const double s = seconds[2];
      std::printf("Q=%ld N=%6ld threads=%d  %6.1f GFLOP/s  %5.1f GB/s\n", Q, N, threads,
                  2.0 * Q * N * d * passes / s / 1e9, 4.0 * N * d * passes / s / 1e9);
    }
  }
  return 0;
}
