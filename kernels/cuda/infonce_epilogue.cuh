// Raw-pointer CUDA epilogues of the fused InfoNCE loss: the GPU counterparts of
// csrc/cpu/simd/infonce_epilogue.cpp. They consume a (rows x cols) fp32 score tile produced by a
// GEMM (raw dot products, row-major, leading dimension ld) while it is resident, so the B x N
// matrix is never stored whole. No torch headers: launchers take a cudaStream_t.
#pragma once
#include <cstdint>
#include <cuda_runtime.h>

namespace hybrid_fast::cuda {

// Per row i of the tile (global row r0 + i, columns c0 .. c0 + cols):
//   mask false negatives (p_groups[c] == q_groups[row] and c != labels[row]) to -inf,
//   capture the raw positive score, and merge the tile into the running (m, l) log-sum-exp.
// q_groups/p_groups may be null (no masking). m, l, pos: (B,) fp32, global rows.
cudaError_t launch_infonce_lse_update(float* tile, int64_t rows, int64_t cols, int64_t ld, int64_t r0, int64_t c0,
                                      float scale, const int64_t* labels, const int64_t* q_groups,
                                      const int64_t* p_groups, float* m, float* l, float* pos, cudaStream_t stream);

// In place tile := scale * (a[row] * softmax - b[row] * onehot(label)) given lse (B,) float64
// (split into hi + lo floats so exp(scale*raw - lse) keeps full precision near the row max), and
// dscale_rows[row] += a[row] * sum_j softmax_j * raw_j. Masking as above.
cudaError_t launch_infonce_grad_tile(float* tile, int64_t rows, int64_t cols, int64_t ld, int64_t r0, int64_t c0,
                                     float scale, const int64_t* labels, const int64_t* q_groups,
                                     const int64_t* p_groups, const double* lse, const float* a, const float* b,
                                     float* dscale_rows, cudaStream_t stream);

}  // namespace hybrid_fast::cuda
