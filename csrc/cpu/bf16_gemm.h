// bf16 x bf16 -> fp32 matrix products for the CPU kernels, used where use_bf16_gemm()
// (csrc/common/isa.h) says so.
#pragma once
#include <ATen/ATen.h>

namespace hybrid_fast::cpu {

// C (+)= A B for row-major A (m, k) and B (k, n) in bf16 (unit column stride, any row stride)
// and C (m, n) in fp32: the bf16 products are exact in fp32 (8 x 8 significand bits) and are
// accumulated in fp32, so the result carries fp32 rounding only. accumulate = false overwrites C
// (it may be uninitialised). Runs ATen's CPU BLAS bf16 -> fp32 GEMM (at::native::cpublas: MKL's
// gemm_bf16bf16f32, AMX tiles where the CPU has them), multi-threaded outside parallel regions.
void gemm_bf16_f32(const at::Tensor& A, const at::Tensor& B, const at::Tensor& C, bool accumulate);

}  // namespace hybrid_fast::cpu
