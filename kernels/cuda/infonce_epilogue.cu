// See infonce_epilogue.cuh. One thread block per tile row; block-wide max/sum reductions
// through warp shuffles. Compiled for sm_90a (H100/H200); plain CUDA, no architecture-specific
// instructions, so any sm_70+ works too.
#include "infonce_epilogue.cuh"

#include <math_constants.h>

namespace hybrid_fast::cuda {
namespace {

constexpr int kThreads = 256;

__device__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
template <bool kMax>
__device__ float block_reduce(float v, float* smem) {
  v = kMax ? warp_max(v) : warp_sum(v);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  v = threadIdx.x < (blockDim.x >> 5) ? smem[threadIdx.x] : (kMax ? -CUDART_INF_F : 0.f);
  if (warp == 0) v = kMax ? warp_max(v) : warp_sum(v);
  if (threadIdx.x == 0) smem[0] = v;
  __syncthreads();
  v = smem[0];
  __syncthreads();
  return v;
}

__device__ __forceinline__ bool masked(int64_t c, int64_t label, int64_t qg, const int64_t* p_groups) {
  return p_groups != nullptr && p_groups[c] == qg && c != label;
}

__global__ void lse_update_kernel(float* tile, int64_t cols, int64_t ld, int64_t r0, int64_t c0, float scale,
                                  const int64_t* labels, const int64_t* q_groups, const int64_t* p_groups, float* m,
                                  float* l, float* pos) {
  __shared__ float smem[32];
  const int64_t row = r0 + blockIdx.x, label = labels[row];
  const int64_t qg = q_groups ? q_groups[row] : 0;
  float* s = tile + blockIdx.x * ld;
  float tmax = -CUDART_INF_F;
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
    const int64_t c = c0 + j;
    if (c == label) pos[row] = s[j];
    const float v = masked(c, label, qg, p_groups) ? -CUDART_INF_F : s[j];
    s[j] = v;
    tmax = fmaxf(tmax, v);
  }
  tmax = block_reduce<true>(tmax, smem);
  const float m_old = m[row], m_new = fmaxf(m_old, scale * tmax);
  if (m_new == -CUDART_INF_F) return;
  float sum = 0.f;
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) sum += __expf(fmaf(s[j], scale, -m_new));
  sum = block_reduce<false>(sum, smem);
  if (threadIdx.x == 0) {
    l[row] = l[row] * __expf(m_old - m_new) + sum;
    m[row] = m_new;
  }
}

__global__ void grad_tile_kernel(float* tile, int64_t cols, int64_t ld, int64_t r0, int64_t c0, float scale,
                                 const int64_t* labels, const int64_t* q_groups, const int64_t* p_groups,
                                 const double* lse, const float* a, const float* b, float* dscale_rows) {
  __shared__ float smem[32];
  const int64_t row = r0 + blockIdx.x, label = labels[row];
  const int64_t qg = q_groups ? q_groups[row] : 0;
  const float coef = a[row] * scale;
  const float lse_hi = static_cast<float>(lse[row]), lse_lo = static_cast<float>(lse[row] - double(lse_hi));
  float* s = tile + blockIdx.x * ld;
  float dsum = 0.f;
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
    const int64_t c = c0 + j;
    const float raw = s[j];
    const float prob = masked(c, label, qg, p_groups) ? 0.f : expf(fmaf(raw, scale, -lse_hi) - lse_lo);
    dsum += prob * (prob > 0.f ? raw : 0.f);
    s[j] = coef * prob - (c == label ? b[row] * scale : 0.f);
  }
  dsum = block_reduce<false>(dsum, smem);
  if (threadIdx.x == 0) dscale_rows[row] += a[row] * dsum;
}

}  // namespace

cudaError_t launch_infonce_lse_update(float* tile, int64_t rows, int64_t cols, int64_t ld, int64_t r0, int64_t c0,
                                      float scale, const int64_t* labels, const int64_t* q_groups,
                                      const int64_t* p_groups, float* m, float* l, float* pos, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  lse_update_kernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(tile, cols, ld, r0, c0, scale, labels,
                                                                          q_groups, p_groups, m, l, pos);
  return cudaGetLastError();
}

cudaError_t launch_infonce_grad_tile(float* tile, int64_t rows, int64_t cols, int64_t ld, int64_t r0, int64_t c0,
                                     float scale, const int64_t* labels, const int64_t* q_groups,
                                     const int64_t* p_groups, const double* lse, const float* a, const float* b,
                                     float* dscale_rows, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  grad_tile_kernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(tile, cols, ld, r0, c0, scale, labels,
                                                                         q_groups, p_groups, lse, a, b, dscale_rows);
  return cudaGetLastError();
}

}  // namespace hybrid_fast::cuda
