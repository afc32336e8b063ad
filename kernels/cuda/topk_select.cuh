// Exact per-row top-k selection on packed int64 keys: the k-selection part of the "cuda"
// backend of hybrid_fast.topk_search (glue: csrc/cuda/topk_select.cpp). No torch headers:
// launchers take raw pointers and a cudaStream_t and return the launch's cudaError_t.
//
// Key: the format defined once in hybrid_fast/ops/_common/keys.py (also used by the Triton
// kernel; tests/ops/test_topk_keys.py checks the constants below against it):
// key = ordered_int32(score) << kTopkKeyIdBits | (kTopkKeyIdMask - id),
// ordered_int32(b) = b >= 0 ? b : b ^ kTopkKeyOrderFlip on the fp32 bits b, so that signed
// integer order is (score desc, id asc). INT64_MIN (kTopkPadKey) is padding; ids must be
// < kTopkKeyIdMask.
//
// Algorithm, one thread block per row: radix select of the k-th largest key (8 passes of 8 bits
// over the 64-bit key, 256-bin shared-memory histograms with warp-aggregated atomics; a pass
// stops early once every key of the current bucket is selected), then compaction of the keys
// above the threshold (exactly k survive: ids are unique), then, for k <= kTopkSortMax, a
// bitonic sort of the survivors in shared memory. Rows with k > kTopkSortMax are written
// UNSORTED; the caller sorts them (the glue does, with aten::sort).
#pragma once
#include <cstdint>
#include <cuda_runtime.h>

namespace hybrid_fast::cuda {

constexpr int64_t kTopkPadKey = INT64_MIN;
constexpr int kTopkKeyIdBits = 32;
constexpr uint64_t kTopkKeyIdMask = 0xFFFFFFFFull;
constexpr int32_t kTopkKeyOrderFlip = 0x7FFFFFFF;
// Rows with k up to this are sorted in shared memory (next_pow2(k) * 8 bytes <= 32 KiB).
constexpr int64_t kTopkSortMax = 4096;
// Exclude lists are staged in shared memory (E * 8 bytes <= 32 KiB).
constexpr int64_t kTopkMaxExclude = 4096;

// From an fp32 score tile: scores is (rows x cols) row-major with leading dimension ld; column j
// of the tile is corpus id col_offset + j. exclude (rows x ex_cols, leading dimension ex_ld,
// int64, -1 = none; ids outside [col_offset, col_offset + cols) are ignored) may be null.
// NaN scores are never returned, -0 counts as +0. out_keys: (rows x k) int64, row-major, the
// best min(k, candidates) keys, then kTopkPadKey; descending when k <= kTopkSortMax and
// segments == 1 (the per-range lists of segments > 1 are unsorted: the merge re-selects).
// segments > 1 splits each row into that many column ranges of ceil(cols / segments) columns,
// one thread block each (parallelism for few rows); out_keys is then (rows * segments x k), the
// best k of each range (row r, range s at row r * segments + s), to be merged by
// launch_topk_merge_keys on the (rows x segments * k) view.
// Requires 1 <= k, segments >= 1, col_offset + cols < 2^32 - 1, ex_cols <= kTopkMaxExclude.
cudaError_t launch_topk_from_scores(const float* scores, int64_t rows, int64_t cols, int64_t ld,
                                    int64_t col_offset, const int64_t* exclude, int64_t ex_cols, int64_t ex_ld,
                                    int64_t k, int64_t segments, int64_t* out_keys, cudaStream_t stream);

// From candidate keys (rows x cols int64, leading dimension ld), e.g. per-split candidates of
// the Triton kernel or the running best k concatenated with a chunk's best k. Padding keys are
// kept only where fewer than k real keys exist. Output as above.
cudaError_t launch_topk_merge_keys(const int64_t* keys, int64_t rows, int64_t cols, int64_t ld, int64_t k,
                                   int64_t* out_keys, cudaStream_t stream);

}  // namespace hybrid_fast::cuda
