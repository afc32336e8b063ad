// Argument checks shared by every CPU op. User errors name the argument, what was expected
// and what came (ValueError / TypeError in Python); internal invariants use TORCH_INTERNAL_ASSERT.
#pragma once
#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#define HF_CHECK_VALUE(cond, ...) TORCH_CHECK_VALUE(cond, "hybrid_fast: ", __VA_ARGS__)
#define HF_CHECK_TYPE(cond, ...) TORCH_CHECK_TYPE(cond, "hybrid_fast: ", __VA_ARGS__)

namespace hybrid_fast {

// A floating-point matrix (rows, dim) on the CPU, contiguous.
inline void check_embeddings(const at::Tensor& t, const char* name) {
  HF_CHECK_VALUE(t.dim() == 2, name, " must be 2-D (rows, dim), got shape ", t.sizes());
  HF_CHECK_TYPE(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble ||
                    t.scalar_type() == at::kBFloat16 || t.scalar_type() == at::kHalf,
                name, " must be float32, float64, bfloat16 or float16, got ", t.scalar_type());
  HF_CHECK_VALUE(t.device().is_cpu(), name, " must be on the CPU for this backend, got ", t.device());
  HF_CHECK_VALUE(t.is_contiguous(), name, " must be contiguous (call .contiguous()), got strides ",
                 t.strides());
}

// An int64 vector of the given length on the CPU, contiguous.
inline void check_index_vector(const at::Tensor& t, const char* name, int64_t length, const char* length_name) {
  HF_CHECK_TYPE(t.scalar_type() == at::kLong, name, " must be int64, got ", t.scalar_type());
  HF_CHECK_VALUE(t.dim() == 1 && t.size(0) == length, name, " must have shape (", length_name, "=",
                 length, ",), got ", t.sizes());
  HF_CHECK_VALUE(t.device().is_cpu(), name, " must be on the CPU, got ", t.device());
  HF_CHECK_VALUE(t.is_contiguous(), name, " must be contiguous");
}

// 0 <= t[i] < upper for every i: an out-of-range index is a memory error in the kernels.
inline void check_index_range(const at::Tensor& t, const char* name, int64_t upper, const char* upper_name) {
  const int64_t* v = t.data_ptr<int64_t>();
  for (int64_t i = 0; i < t.numel(); ++i) {
    HF_CHECK_VALUE(v[i] >= 0 && v[i] < upper, name, "[", i, "] = ", v[i], " is out of range: expected 0 <= ",
                   name, " < ", upper_name, " = ", upper);
  }
}

}  // namespace hybrid_fast
