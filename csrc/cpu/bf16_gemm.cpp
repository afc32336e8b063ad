#include "cpu/bf16_gemm.h"

#include <ATen/native/CPUBlas.h>

#include <algorithm>

namespace hybrid_fast::cpu {

void gemm_bf16_f32(const at::Tensor& A, const at::Tensor& B, const at::Tensor& C, bool accumulate) {
  TORCH_INTERNAL_ASSERT(A.scalar_type() == at::kBFloat16 && B.scalar_type() == at::kBFloat16 &&
                        C.scalar_type() == at::kFloat);
  TORCH_INTERNAL_ASSERT(A.dim() == 2 && B.dim() == 2 && C.dim() == 2 && A.size(1) == B.size(0) &&
                        C.size(0) == A.size(0) && C.size(1) == B.size(1));
  TORCH_INTERNAL_ASSERT(A.stride(1) == 1 && B.stride(1) == 1 && C.stride(1) == 1);
  const int64_t m = A.size(0), n = B.size(1), k = A.size(1);
  if (m == 0 || n == 0) return;
  if (k == 0) {
    if (!accumulate) C.zero_();
    return;
  }
  // The exported entry to ATen's bf16 -> fp32 GEMM (the cpublas::gemm overload itself is not
  // exported): cpublas::brgemm (ATen/native/CPUBlas.h, batch size 1, C (+)= A B) with
  // is_vnni = false takes plain row-major B and hands the product to cpublas::gemm; the oneDNN
  // micro-kernel path needs B packed in VNNI order, which ATen packs only on AMX CPUs.
  // Leading dimensions must be >= the row length even for one-row / one-column operands.
  at::native::cpublas::brgemm(m, n, k, std::max(A.stride(0), k), std::max(B.stride(0), n),
                              std::max(C.stride(0), n), accumulate, A.const_data_ptr<at::BFloat16>(),
                              B.const_data_ptr<at::BFloat16>(), C.data_ptr<float>(), /*is_vnni=*/false);
}

}  // namespace hybrid_fast::cpu
