// See topk_select.cuh. One thread block per row. Keys are handled as unsigned integers
// u = key ^ 2^63 (same order as the signed key; the padding key INT64_MIN is u = 0).
// Plain CUDA (sm_70+: __match_any_sync); compiled for sm_90a by cmake/cuda.cmake.
#include "topk_select.cuh"

namespace hybrid_fast::cuda {
namespace {

constexpr uint64_t kSign = 1ull << 63;
constexpr unsigned kFull = 0xffffffffu;
constexpr int kMaxThreads = 1024;

struct SelectParams {
  const float* scores;    // kFromScores
  const int64_t* keys;    // !kFromScores
  int64_t cols, ld, col_offset;
  int64_t segments, seg_len;  // a row is split into `segments` blocks of seg_len columns
  const int64_t* exclude;  // may be null
  int64_t ex_cols, ex_ld;
  int64_t k;
  int64_t sort_elems;  // power of two >= min(k, cols) when sorting, else 0
  int64_t* out;
};

// Unsigned key of column j of a row.
template <bool kFromScores>
__device__ __forceinline__ uint64_t key_at(const float* srow, const int64_t* krow, int64_t id0, int64_t j) {
  if constexpr (kFromScores) {
    const float s = srow[j];
    if (s != s) return 0;  // NaN: the padding key, never returned as a candidate
    const int32_t b = __float_as_int(s == 0.f ? 0.f : s);  // -0 -> +0: equal scores tie on the id
    // The signed key of keys.py, ^ 2^63: the ordered high half gets its sign bit flipped.
    const uint32_t ord = static_cast<uint32_t>(b >= 0 ? b : b ^ kTopkKeyOrderFlip) ^ 0x80000000u;
    return (static_cast<uint64_t>(ord) << kTopkKeyIdBits) | (kTopkKeyIdMask - static_cast<uint64_t>(id0 + j));
  } else {
    return static_cast<uint64_t>(krow[j]) ^ kSign;
  }
}

template <bool kFromScores, bool kSorted>
__global__ void __launch_bounds__(kMaxThreads) topk_select_kernel(SelectParams p) {
  extern __shared__ __align__(16) unsigned char dyn_smem[];
  __shared__ unsigned hist[256];
  __shared__ unsigned s_digit, s_rem, s_cnt, s_nex, s_ngt, s_neq;

  const int64_t row = blockIdx.x / p.segments;
  const int64_t c_begin = (blockIdx.x % p.segments) * p.seg_len;
  const int64_t L = max(int64_t{0}, min(p.cols - c_begin, p.seg_len));  // columns of this block
  const int64_t id0 = p.col_offset + c_begin;                           // corpus id of column 0
  const int lane = threadIdx.x & 31;
  const float* srow = kFromScores ? p.scores + row * p.ld + c_begin : nullptr;
  const int64_t* krow = kFromScores ? nullptr : p.keys + row * p.ld + c_begin;
  int64_t* out = p.out + static_cast<int64_t>(blockIdx.x) * p.k;
  uint64_t* buf = reinterpret_cast<uint64_t*>(dyn_smem);  // sort buffer (kSorted)
  int64_t* exl = reinterpret_cast<int64_t*>(dyn_smem + (kSorted ? p.sort_elems * 8 : 0));

  if (threadIdx.x == 0) s_nex = s_ngt = s_neq = 0;
  __syncthreads();
  // Stage this row's exclude ids that fall in the tile, de-duplicated, as tile columns.
  if (kFromScores && p.exclude != nullptr) {
    const int64_t* ex = p.exclude + row * p.ex_ld;
    for (int64_t e = threadIdx.x; e < p.ex_cols; e += blockDim.x) {
      const int64_t id = ex[e];
      bool ok = id >= id0 && id < id0 + L;
      for (int64_t f = 0; ok && f < e; ++f) ok = ex[f] != id;
      if (ok) exl[atomicAdd(&s_nex, 1u)] = id - id0;
    }
  }
  __syncthreads();
  const unsigned nex = s_nex;
  const int64_t kk = min(p.k, L - static_cast<int64_t>(nex));  // keys this row returns

  if (kk > 0) {
    // ---- radix select: find the bucket (prefix, shift) holding the kk-th largest key.
    uint64_t prefix = 0;
    unsigned rem = static_cast<unsigned>(kk);  // rank of the wanted key inside the bucket
    bool take_bucket = false;                  // every key of the bucket is selected
    for (int shift = 56; shift >= 0; shift -= 8) {
      for (int i = threadIdx.x; i < 256; i += blockDim.x) hist[i] = 0;
      __syncthreads();
      const uint64_t hi_mask = shift == 56 ? 0 : (~0ull << (shift + 8));
      for (int64_t base = 0; base < L; base += blockDim.x) {  // uniform trip count: full warps
        const int64_t j = base + threadIdx.x;
        unsigned digit = 256;
        if (j < L) {
          const uint64_t u = key_at<kFromScores>(srow, krow, id0, j);
          if ((u & hi_mask) == prefix) digit = static_cast<unsigned>(u >> shift) & 255u;
        }
        const unsigned peers = __match_any_sync(kFull, digit);
        if (digit < 256 && lane == __ffs(peers) - 1) atomicAdd(&hist[digit], static_cast<unsigned>(__popc(peers)));
      }
      for (unsigned e = threadIdx.x; e < nex; e += blockDim.x) {  // excluded ids do not count
        const uint64_t u = key_at<kFromScores>(srow, krow, id0, exl[e]);
        if ((u & hi_mask) == prefix) atomicSub(&hist[static_cast<unsigned>(u >> shift) & 255u], 1u);
      }
      __syncthreads();
      if (threadIdx.x < 32) {  // warp 0: lane l owns digits 255 - 8l .. 248 - 8l (descending)
        unsigned c[8], sum = 0;
#pragma unroll
        for (int i = 0; i < 8; ++i) {
          c[i] = hist[255 - 8 * lane - i];
          sum += c[i];
        }
        unsigned incl = sum;
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
          const unsigned v = __shfl_up_sync(kFull, incl, o);
          if (lane >= o) incl += v;
        }
        unsigned above = incl - sum;
        if (above < rem && rem <= incl) {  // exactly one lane
          int i = 0;
          while (above + c[i] < rem) above += c[i++];
          s_digit = 255u - 8u * lane - i;
          s_rem = rem - above;
          s_cnt = c[i];
        }
      }
      __syncthreads();
      prefix |= static_cast<uint64_t>(s_digit) << shift;
      rem = s_rem;
      // s_* are rewritten only after the next pass's histogram barrier: no barrier needed here.
      if (s_cnt == rem) {
        take_bucket = true;
        break;
      }
    }

    // ---- compaction: keys above the threshold (n_above of them), then rem copies of it.
    // take_bucket: select u >= prefix (the bucket's lower bound), exactly kk keys. Otherwise
    // prefix is the kk-th key itself, repeated only for duplicates (padding keys).
    const unsigned n_above = take_bucket ? static_cast<unsigned>(kk) : static_cast<unsigned>(kk) - rem;
    for (int64_t base = 0; base < L; base += blockDim.x) {
      const int64_t j = base + threadIdx.x;
      bool gt = false, eq = false;
      uint64_t u = 0;
      if (j < L) {
        u = key_at<kFromScores>(srow, krow, id0, j);
        gt = take_bucket ? u >= prefix : u > prefix;
        eq = !take_bucket && u == prefix;
        if ((gt || eq) && nex > 0) {
          for (unsigned e = 0; e < nex; ++e)
            if (exl[e] == j) gt = eq = false;
        }
      }
      const unsigned m = __ballot_sync(kFull, gt);
      unsigned slot0 = 0;
      if (lane == 0 && m != 0) slot0 = atomicAdd(&s_ngt, static_cast<unsigned>(__popc(m)));
      slot0 = __shfl_sync(kFull, slot0, 0);
      int64_t slot = -1;
      if (gt) slot = slot0 + __popc(m & ((1u << lane) - 1u));
      if (eq) {
        const unsigned e = atomicAdd(&s_neq, 1u);
        if (e < rem) slot = n_above + e;
      }
      if (slot >= 0) {
        if constexpr (kSorted) buf[slot] = u;
        else out[slot] = static_cast<int64_t>(u ^ kSign);
      }
    }
  }

  if constexpr (kSorted) {
    // ---- bitonic sort (descending) of the kk survivors, padded with 0 to a power of two.
    const int64_t n = kk > 0 ? kk : 0;
    unsigned P = 1;
    while (P < n) P <<= 1;
    for (int64_t i = n + threadIdx.x; i < P; i += blockDim.x) buf[i] = 0;
    __syncthreads();
    for (unsigned size = 2; size <= P; size <<= 1) {
      for (unsigned stride = size >> 1; stride > 0; stride >>= 1) {
        for (unsigned t = threadIdx.x; t < P / 2; t += blockDim.x) {
          const unsigned lo = 2 * t - (t & (stride - 1)), hi = lo + stride;
          const bool desc = (lo & size) == 0;
          const uint64_t a = buf[lo], b = buf[hi];
          if (desc ? a < b : a > b) {
            buf[lo] = b;
            buf[hi] = a;
          }
        }
        __syncthreads();
      }
    }
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) out[i] = static_cast<int64_t>(buf[i] ^ kSign);
  }
  for (int64_t i = (kk > 0 ? kk : 0) + threadIdx.x; i < p.k; i += blockDim.x) out[i] = kTopkPadKey;
}

template <bool kFromScores>
cudaError_t launch_select(SelectParams p, int64_t rows, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  if (p.segments < 1 || rows * p.segments > 0x7fffffff || p.k < 1 || p.cols < 0 || p.cols >= 0xffffffffLL ||
      p.ex_cols > kTopkMaxExclude)
    return cudaErrorInvalidValue;
  p.seg_len = (p.cols + p.segments - 1) / p.segments;
  const int threads = p.seg_len >= (1 << 16) ? 1024 : p.seg_len >= 4096 ? 512 : 256;
  // Per-segment partials are re-selected by the merge: only whole rows need sorting.
  const bool sorted = p.k <= kTopkSortMax && p.segments == 1;
  const int64_t kk = p.k < p.seg_len ? p.k : p.seg_len;
  int64_t P = 1;
  while (P < kk) P <<= 1;
  p.sort_elems = sorted ? P : 0;
  const size_t smem = static_cast<size_t>(p.sort_elems * 8 + (p.exclude != nullptr ? p.ex_cols * 8 : 0));
  auto run = [&](auto kernel) -> cudaError_t {
    if (smem > 48 * 1024) {
      const cudaError_t err =
          cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
      if (err != cudaSuccess) return err;
    }
    kernel<<<static_cast<unsigned>(rows * p.segments), threads, smem, stream>>>(p);
    return cudaGetLastError();
  };
  return sorted ? run(topk_select_kernel<kFromScores, true>) : run(topk_select_kernel<kFromScores, false>);
}

}  // namespace

cudaError_t launch_topk_from_scores(const float* scores, int64_t rows, int64_t cols, int64_t ld,
                                    int64_t col_offset, const int64_t* exclude, int64_t ex_cols, int64_t ex_ld,
                                    int64_t k, int64_t segments, int64_t* out_keys, cudaStream_t stream) {
  if (col_offset < 0 || col_offset + cols >= 0xffffffffLL) return cudaErrorInvalidValue;
  SelectParams p{scores, nullptr, cols, ld, col_offset, segments, 0, ex_cols > 0 ? exclude : nullptr, ex_cols,
                 ex_ld, k, 0, out_keys};
  return launch_select<true>(p, rows, stream);
}

cudaError_t launch_topk_merge_keys(const int64_t* keys, int64_t rows, int64_t cols, int64_t ld, int64_t k,
                                   int64_t* out_keys, cudaStream_t stream) {
  SelectParams p{nullptr, keys, cols, ld, 0, 1, 0, nullptr, 0, 0, k, 0, out_keys};
  return launch_select<false>(p, rows, stream);
}

}  // namespace hybrid_fast::cuda
