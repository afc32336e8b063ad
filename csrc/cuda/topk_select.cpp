// Torch ops of the CUDA k-selection kernels (kernels/cuda/topk_select.cu), written against
// libtorch's stable ABI (torch/csrc/stable) so that this file compiles even against the CPU
// wheel (HF_CUDA=CHECK, see cmake/cuda.cmake). Namespace hybrid_fast_cuda:
//
//   topk_from_scores(Tensor scores, int k, int col_offset=0, Tensor? exclude=None,
//                    int segments=1) -> Tensor
//       scores (R, L) float32 CUDA, unit column stride (row stride >= L: a column slice of a
//       larger tile is fine); column j is corpus id col_offset + j; exclude (R, E) int64 on the
//       same device, -1 = none, E <= 4096. -> (R, k) int64 packed keys (hybrid_fast/ops/_common/keys.py),
//       best first, padded with INT64_MIN. NaN scores are never returned; -0 == +0.
//       segments > 1 (1 <= segments <= L) selects in that many column ranges per row, one thread
//       block each, then merges them: parallelism when R is small.
//   topk_merge_keys(Tensor keys, int k) -> Tensor
//       keys (R, L) int64 CUDA, unit column stride -> the best k keys of each row, best first.
//
// 1 <= k <= L. Rows with k <= 4096 are sorted by the kernel; larger k are sorted here with
// aten::sort (keys are unique, so the order is total and deterministic).
#include <torch/csrc/inductor/aoti_torch/c/shim.h>
#include <torch/csrc/stable/accelerator.h>
#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>
#include <torch/headeronly/core/ScalarType.h>
#include <torch/headeronly/util/Exception.h>

#include <array>
#include <cstdint>
#include <optional>

#include "topk_select.cuh"

namespace {

using torch::headeronly::ScalarType;
using torch::stable::Tensor;
namespace hfc = hybrid_fast::cuda;

cudaStream_t current_stream(const Tensor& t) {
  void* stream = nullptr;
  TORCH_ERROR_CODE_CHECK(aoti_torch_get_current_cuda_stream(t.get_device_index(), &stream));
  return static_cast<cudaStream_t>(stream);
}

void check_cuda(cudaError_t err, const char* what) {
  STD_TORCH_CHECK(err == cudaSuccess, "hybrid_fast_cuda::", what, ": CUDA error: ", cudaGetErrorString(err));
}

void check_matrix(const Tensor& t, const char* op, const char* name, ScalarType dtype, const char* dtype_name) {
  STD_TORCH_CHECK(t.is_cuda(), "hybrid_fast_cuda::", op, ": ", name, " must be a CUDA tensor");
  STD_TORCH_CHECK(t.dim() == 2, "hybrid_fast_cuda::", op, ": ", name, " must be 2-D, got ", t.dim(), "-D");
  STD_TORCH_CHECK(t.scalar_type() == dtype, "hybrid_fast_cuda::", op, ": ", name, " must be ", dtype_name);
  STD_TORCH_CHECK(t.size(1) <= 1 || t.stride(1) == 1, "hybrid_fast_cuda::", op, ": ", name,
                  " must have unit column stride (call .contiguous())");
  STD_TORCH_CHECK(t.size(0) <= 1 || t.stride(0) >= t.size(1), "hybrid_fast_cuda::", op, ": ", name,
                  " rows must not overlap (row stride >= number of columns)");
}

void check_k(int64_t k, int64_t cols, const char* op) {
  STD_TORCH_CHECK(1 <= k && k <= cols, "hybrid_fast_cuda::", op, ": k must satisfy 1 <= k <= L = ", cols,
                  " (columns), got k = ", k);
}

// Rows of (R, k) keys in descending order; the kernel leaves rows with k > kTopkSortMax unsorted.
Tensor sort_rows_desc(Tensor keys) {
  if (keys.size(1) <= hfc::kTopkSortMax) return keys;
  std::array<StableIValue, 3> stack{torch::stable::detail::from(keys), torch::stable::detail::from(int64_t{1}),
                                    torch::stable::detail::from(true)};
  TORCH_ERROR_CODE_CHECK(torch_call_dispatcher("aten::sort", "", stack.data(), TORCH_ABI_VERSION));
  Tensor indices = torch::stable::detail::to<Tensor>(stack[1]);  // owned: freed on scope exit
  return torch::stable::detail::to<Tensor>(stack[0]);
}

Tensor topk_from_scores(Tensor scores, int64_t k, int64_t col_offset, std::optional<Tensor> exclude,
                        int64_t segments) {
  const char* op = "topk_from_scores";
  check_matrix(scores, op, "scores", ScalarType::Float, "float32");
  const int64_t R = scores.size(0), L = scores.size(1);
  check_k(k, L, op);
  STD_TORCH_CHECK(1 <= segments && segments <= L, "hybrid_fast_cuda::", op,
                  ": segments must satisfy 1 <= segments <= L = ", L, ", got ", segments);
  STD_TORCH_CHECK(col_offset >= 0 && col_offset + L < 0xffffffffLL, "hybrid_fast_cuda::", op,
                  ": ids col_offset .. col_offset + L must lie in [0, 2^32 - 1), got col_offset = ", col_offset,
                  ", L = ", L);
  const int64_t* ex_ptr = nullptr;
  int64_t E = 0, ex_ld = 0;
  if (exclude.has_value() && exclude->numel() > 0) {
    const Tensor& ex = *exclude;
    check_matrix(ex, op, "exclude", ScalarType::Long, "int64");
    STD_TORCH_CHECK(ex.get_device_index() == scores.get_device_index(), "hybrid_fast_cuda::", op,
                    ": exclude must be on the device of scores");
    STD_TORCH_CHECK(ex.size(0) == R, "hybrid_fast_cuda::", op, ": exclude must have R = ", R, " rows, got ",
                    ex.size(0));
    STD_TORCH_CHECK(ex.size(1) <= hfc::kTopkMaxExclude, "hybrid_fast_cuda::", op, ": at most ",
                    hfc::kTopkMaxExclude, " exclude ids per row, got ", ex.size(1));
    ex_ptr = static_cast<const int64_t*>(ex.const_data_ptr());
    E = ex.size(1);
    ex_ld = ex.stride(0);
  }
  torch::stable::accelerator::DeviceGuard guard(scores.get_device_index());
  Tensor out = torch::stable::new_empty(scores, {R, k}, ScalarType::Long);
  if (R == 0) return out;
  const cudaStream_t stream = current_stream(scores);
  if (segments == 1) {
    check_cuda(hfc::launch_topk_from_scores(static_cast<const float*>(scores.const_data_ptr()), R, L,
                                            scores.stride(0), col_offset, ex_ptr, E, ex_ld, k, 1,
                                            static_cast<int64_t*>(out.mutable_data_ptr()), stream),
               op);
    return sort_rows_desc(out);
  }
  // Per-range candidates (R * segments, k), merged as the (R, segments * k) view.
  Tensor part = torch::stable::new_empty(scores, {R * segments, k}, ScalarType::Long);
  check_cuda(hfc::launch_topk_from_scores(static_cast<const float*>(scores.const_data_ptr()), R, L,
                                          scores.stride(0), col_offset, ex_ptr, E, ex_ld, k, segments,
                                          static_cast<int64_t*>(part.mutable_data_ptr()), stream),
             op);
  check_cuda(hfc::launch_topk_merge_keys(static_cast<const int64_t*>(part.const_data_ptr()), R, segments * k,
                                         segments * k, k, static_cast<int64_t*>(out.mutable_data_ptr()), stream),
             op);
  return sort_rows_desc(out);
}

Tensor topk_merge_keys(Tensor keys, int64_t k) {
  const char* op = "topk_merge_keys";
  check_matrix(keys, op, "keys", ScalarType::Long, "int64");
  const int64_t R = keys.size(0), L = keys.size(1);
  check_k(k, L, op);
  STD_TORCH_CHECK(L < 0xffffffffLL, "hybrid_fast_cuda::", op, ": rows must have fewer than 2^32 - 1 keys");
  torch::stable::accelerator::DeviceGuard guard(keys.get_device_index());
  Tensor out = torch::stable::new_empty(keys, {R, k}, ScalarType::Long);
  if (R == 0) return out;
  check_cuda(hfc::launch_topk_merge_keys(static_cast<const int64_t*>(keys.const_data_ptr()), R, L, keys.stride(0),
                                         k, static_cast<int64_t*>(out.mutable_data_ptr()), current_stream(keys)),
             op);
  return sort_rows_desc(out);
}

}  // namespace

STABLE_TORCH_LIBRARY(hybrid_fast_cuda, m) {
  m.def("topk_from_scores(Tensor scores, int k, int col_offset=0, Tensor? exclude=None, int segments=1) -> Tensor");
  m.def("topk_merge_keys(Tensor keys, int k) -> Tensor");
}

STABLE_TORCH_LIBRARY_IMPL(hybrid_fast_cuda, CUDA, m) {
  m.impl("topk_from_scores", TORCH_BOX(&topk_from_scores));
  m.impl("topk_merge_keys", TORCH_BOX(&topk_merge_keys));
}
