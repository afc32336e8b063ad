// bf16 x bf16 -> fp32 matrix products for the CPU kernels, used where use_bf16_gemm()
// (csrc/common/isa.h) says so: C (+)= A B with A (m, k) row-major bf16, C (m, n) row-major fp32,
// and B (k, n) given once as a PackedB so the packing is paid once per operand, not per product.
//
// The products of bf16 values are exact in fp32 (8 x 8 significand bits) and are accumulated in
// fp32, so the result carries fp32 summation rounding only.
//
// Engine: oneDNN's brgemm micro-kernel through ATen (at::native::cpublas::brgemm with
// is_vnni = true: AMX tiles on AMX CPUs, vdpbf16ps on AVX512-BF16 ones), on B packed here in
// VNNI order (pairs of consecutive k interleaved, kColBlock-column blocks), m x kColBlock blocks
// spread over threads with at::parallel_for (run inline inside a parallel region). Where this
// torch has no micro-kernel (bf16_microkernel_available() false: non-x86 builds, oneDNN without
// ukernels) B stays row-major and ATen's cpublas bf16 -> fp32 GEMM runs instead (MKL
// gemm_bf16bf16f32 on x86).
#pragma once
#include <ATen/ATen.h>

namespace hybrid_fast::cpu {

bool bf16_microkernel_available();

struct PackedB {
  int64_t k = 0, n = 0;
  at::Tensor data;      // micro-kernel: (ceil(n / kColBlock), k / 2, kColBlock, 2) bf16; else (k, n) bf16
  at::Tensor last_row;  // micro-kernel with odd k: row k - 1 of B as fp32 (n,), a rank-1 update
};

// B from a row-major matrix: transposed = false: `b` is B (k, n); true: `b` is B^T (n, k)
// (e.g. the rows of p for S = q p^T). Unit column stride required; bf16.
PackedB pack_b(const at::Tensor& b, bool transposed);

// C (+)= A B; accumulate = false overwrites C (which may be uninitialised). A (m, k) bf16 and C
// (m, n) fp32 with unit column stride, any row stride.
void gemm_bf16_f32(const at::Tensor& A, const PackedB& B, const at::Tensor& C, bool accumulate);

}  // namespace hybrid_fast::cpu
