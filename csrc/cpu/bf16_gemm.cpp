#include "cpu/bf16_gemm.h"

#include <ATen/Parallel.h>
#include <ATen/native/CPUBlas.h>

#include <algorithm>

namespace hybrid_fast::cpu {
namespace {

// Columns of B per micro-kernel call (and per packed block), rows of A per call. 64 x 64 ran
// fastest of {32, 64} x {32, 64, 128} on AMD Zen 4 (avx512-bf16, 1024 x 8192 x 768: 72 GFLOP/s on
// 2 threads, vs 60 for 32-row or 32-column blocks).
constexpr int64_t kColBlock = 64;
constexpr int64_t kRowBlock = 64;

using bf16 = at::BFloat16;

void check_operand(const at::Tensor& t, at::ScalarType dtype) {
  TORCH_INTERNAL_ASSERT(t.dim() == 2 && t.scalar_type() == dtype && (t.size(1) <= 1 || t.stride(1) == 1));
}

// Plain cpublas product (no micro-kernel): C (+)= A B, B row-major (k, n).
void gemm_plain(const at::Tensor& A, const at::Tensor& B, const at::Tensor& C, bool accumulate) {
  const int64_t m = A.size(0), n = B.size(1), k = A.size(1);
  // cpublas::brgemm with is_vnni = false is the exported entry of ATen's bf16 -> fp32 GEMM
  // (batch size 1, C (+)= A B on plain row-major operands). Leading dimensions >= the row length.
  at::native::cpublas::brgemm(m, n, k, std::max(A.stride(0), k), std::max(B.stride(0), n), std::max(C.stride(0), n),
                              accumulate, A.const_data_ptr<bf16>(), B.const_data_ptr<bf16>(), C.data_ptr<float>(),
                              /*is_vnni=*/false);
}

}  // namespace

bool bf16_microkernel_available() {
  static const bool ok = [] {
    // One tiny product through the micro-kernel, checked: ATen throws where it has none.
    try {
      at::Tensor bt = at::arange(1, 1 + 4 * 2, at::kFloat).view({4, 2}).to(at::kBFloat16);  // B^T (n=4, k=2)
      at::Tensor packed = at::zeros({1, 1, kColBlock, 2}, bt.options());
      packed.narrow(2, 0, 4).view({4, 2}).copy_(bt);
      at::Tensor a = at::ones({1, 2}, bt.options()), c = at::zeros({1, 4}, at::kFloat);
      at::native::cpublas::brgemm(1, 4, 2, 2, kColBlock, 4, false, a.const_data_ptr<bf16>(),
                                  packed.const_data_ptr<bf16>(), c.data_ptr<float>(), /*is_vnni=*/true);
      at::native::cpublas::brgemm_release(true);
      return at::equal(c, bt.to(at::kFloat).sum(1).view({1, 4}));
    } catch (const std::exception&) {
      return false;
    }
  }();
  return ok;
}

namespace {

template <typename T>
void pack_vnni(const at::Tensor& b, bool transposed, PackedB& out) {
  const int64_t k = out.k, n = out.n, kp = k / 2, nblk = (n + kColBlock - 1) / kColBlock;
  // B(kk, j) = b[kk, j] (plain) or b[j, kk] (transposed), as strides into b.
  const int64_t sk = transposed ? 1 : b.stride(0), sn = transposed ? b.stride(0) : 1;
  const T* src = b.const_data_ptr<T>();
  bf16* dst = out.data.data_ptr<bf16>();
  at::parallel_for(0, nblk, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t blk = b0; blk < b1; ++blk) {
      const int64_t j0 = blk * kColBlock, nj = std::min(kColBlock, n - j0);
      bf16* o = dst + blk * kp * kColBlock * 2;
      for (int64_t p = 0; p < kp; ++p) {
        bf16* row = o + p * kColBlock * 2;
        const T* s = src + j0 * sn + 2 * p * sk;
        for (int64_t j = 0; j < nj; ++j) {
          row[2 * j] = static_cast<bf16>(s[j * sn]);  // float -> bf16 rounds to nearest even
          row[2 * j + 1] = static_cast<bf16>(s[j * sn + sk]);
        }
        // Tail columns of the last block: zeros (the kernel reads whole rows of a block).
        std::fill(row + 2 * nj, row + 2 * kColBlock, bf16(0.0f));
      }
    }
  });
}

}  // namespace

PackedB pack_b(const at::Tensor& b, bool transposed) {
  TORCH_INTERNAL_ASSERT(b.scalar_type() == at::kBFloat16);
  check_operand(b, at::kBFloat16);
  PackedB out;
  out.k = transposed ? b.size(1) : b.size(0);
  out.n = transposed ? b.size(0) : b.size(1);
  if (!bf16_microkernel_available()) {
    out.data = (transposed ? b.t() : b).to(at::kBFloat16).contiguous();
    return out;
  }
  const int64_t k = out.k;
  out.data = at::empty({(out.n + kColBlock - 1) / kColBlock, k / 2, kColBlock, 2}, b.options().dtype(at::kBFloat16));
  pack_vnni<bf16>(b, transposed, out);
  if (k % 2) {
    // The rank-1 update multiplies by B's last row as the packed values would: bf16-rounded.
    const at::Tensor last = transposed ? b.select(1, k - 1) : b.select(0, k - 1);
    out.last_row = last.to(at::kBFloat16).to(at::kFloat).contiguous();
  }
  return out;
}

void gemm_bf16_f32(const at::Tensor& A, const PackedB& B, const at::Tensor& C, bool accumulate) {
  check_operand(A, at::kBFloat16);
  check_operand(C, at::kFloat);
  TORCH_INTERNAL_ASSERT(A.size(1) == B.k && C.size(0) == A.size(0) && C.size(1) == B.n);
  const int64_t m = A.size(0), n = B.n, k = B.k;
  if (m == 0 || n == 0) return;
  if (k == 0) {
    if (!accumulate) C.zero_();
    return;
  }
  if (!B.data.defined() || B.data.dim() == 2) {
    gemm_plain(A, B.data, C, accumulate);
    return;
  }
  const int64_t ke = k - k % 2;  // the micro-kernel's k (pairs); an odd k's last column is a rank-1 update
  const int64_t lda = A.stride(0), ldc = C.stride(0);
  const int64_t nblk = (n + kColBlock - 1) / kColBlock, mblk = (m + kRowBlock - 1) / kRowBlock;
  const bf16* a = A.const_data_ptr<bf16>();
  const bf16* bp = B.data.const_data_ptr<bf16>();
  const float* last = k % 2 ? B.last_row.const_data_ptr<float>() : nullptr;
  float* c = C.data_ptr<float>();
  // Tasks (row block, column block), column blocks innermost so a thread reuses its A rows.
  at::parallel_for(0, mblk * nblk, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t i0 = (t / nblk) * kRowBlock, mi = std::min(kRowBlock, m - i0);
      const int64_t blk = t % nblk, j0 = blk * kColBlock, nj = std::min(kColBlock, n - j0);
      float* ct = c + i0 * ldc + j0;
      if (ke > 0) {
        at::native::cpublas::brgemm(mi, nj, ke, lda, kColBlock, ldc, accumulate, a + i0 * lda,
                                    bp + blk * (k / 2) * kColBlock * 2, ct, /*is_vnni=*/true);
      } else if (!accumulate) {
        for (int64_t i = 0; i < mi; ++i) std::fill(ct + i * ldc, ct + i * ldc + nj, 0.0f);
      }
      if (last) {
        for (int64_t i = 0; i < mi; ++i) {
          const float ai = static_cast<float>(a[(i0 + i) * lda + k - 1]);
          for (int64_t j = 0; j < nj; ++j) ct[i * ldc + j] += ai * last[j0 + j];
        }
      }
    }
    at::native::cpublas::brgemm_release(true);  // AMX: release the tile state of this thread
  });
}

}  // namespace hybrid_fast::cpu
