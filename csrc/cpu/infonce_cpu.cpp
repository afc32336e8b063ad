// Fused InfoNCE on the CPU: forward, backward and fused forward+backward over tiles of the
// score matrix, never materialising the B x N scores.
//
// Tiling: rows of q in blocks of Bt, columns of p in tiles of Nt. A score tile S = q_blk p_tile^T
// (at::mm: MKL/oneDNN, all threads) is consumed in cache by the per-row SIMD epilogues of
// csrc/cpu/simd/infonce_epilogue.cpp (at::parallel_for over rows):
//   mask false negatives -> online log-sum-exp -> G' = scale * (a_i * softmax - b_i * onehot)
// and the gradient tiles go straight into dq += G' p_tile and dp_tile += G'^T q_blk.
// When one tile spans all N columns (the default up to N = 32768 in fp32, 16384 in fp64), the fused op does
// the whole job in one pass: 3 matrix products of 2*B*N*d flops. Otherwise the scores of a row
// block are produced twice (log-sum-exp pass, then gradient pass): 4 products.
// Low-precision inputs (bf16/fp16) are upcast to fp32 (p once, q one row block at a time);
// accumulation is fp32 (fp64 for fp64 inputs). bf16 inputs where use_bf16_gemm() (csrc/common/isa.h:
// CPUs with bf16 matrix units, or forced by HYBRID_FAST_BF16_GEMM=on) skip the upcast: the three
// products run as bf16 x bf16 -> fp32 GEMMs (csrc/cpu/bf16_gemm.h) on p packed once per call
// (twice: as the B of S = q_blk p_tile^T and of dq += G p_tile); dp is accumulated transposed,
// dp_tile^T += q_blk^T G (G packed as B while rounded; no transposed copy of the tile), in a
// (d, N) fp32 buffer. The gradient tile G is rounded to bf16 (the only extra rounding: relative
// 2^-8 at most per entry of G; the scores, the epilogue and the float64 log-sum-exp are as on
// the upcast path).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <limits>
#include <vector>

#include "common/checks.h"
#include "common/isa.h"
#include "cpu/bf16_gemm.h"
#include "cpu/simd/infonce_epilogue.h"

namespace hybrid_fast::cpu {
namespace {

// Score tile budget (bytes). Row blocks are as tall as the budget allows: torch's GEMM runs
// measurably below its ceiling on short (256-row) blocks with 2 threads, and the dp update's
// inner dimension is the row block.
constexpr int64_t kTileBytes = int64_t(32) << 20;
// A whole row of scores fits one tile (single pass, 3 products) while N * kMinRowBlock fits.
constexpr int64_t kMinRowBlock = 256;
constexpr int64_t kDefaultColBlock = 16384;

at::ScalarType compute_type(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

struct Problem {
  // p in the compute dtype (upcast once for bf16/fp16: O(N d)); q as given, upcast one row block
  // at a time, so low-precision inputs cost O(N d + row_block d) extra, not O((B + N) d).
  // bf16 tiles: p stays bf16 (packed for the micro-kernel in run_infonce).
  at::Tensor q, p;
  at::ScalarType compute;
  bool bf16_tiles;
  const int64_t* labels;
  const int64_t* q_groups;  // nullable
  const int64_t* p_groups;  // nullable
  int64_t B, N, d, row_block, col_block;
  at::TensorOptions compute_options() const { return p.options().dtype(compute); }
};

Problem make_problem(const at::Tensor& q, const at::Tensor& p, const at::Tensor& labels,
                     const c10::optional<at::Tensor>& q_groups, const c10::optional<at::Tensor>& p_groups,
                     int64_t row_block, int64_t col_block) {
  check_embeddings(q, "q");
  check_embeddings(p, "p");
  HF_CHECK_VALUE(q.size(0) > 0, "q must have at least one row (B >= 1), got B = 0");
  HF_CHECK_VALUE(p.size(0) > 0, "p must have at least one row (N >= 1), got N = 0");
  HF_CHECK_VALUE(q.size(1) == p.size(1), "q and p must have the same dim, got q ", q.sizes(), " and p ", p.sizes());
  HF_CHECK_TYPE(q.scalar_type() == p.scalar_type(), "q and p must have the same dtype, got ", q.scalar_type(),
                " and ", p.scalar_type());
  HF_CHECK_VALUE(row_block >= 0 && col_block >= 0, "row_block and col_block must be >= 0 (0 = auto)");
  const int64_t B = q.size(0), N = p.size(0);
  check_index_vector(labels, "labels", B, "B");
  check_index_range(labels, "labels", N, "N (rows of p)");
  HF_CHECK_VALUE(q_groups.has_value() == p_groups.has_value(), "q_groups and p_groups must be given together");
  if (q_groups) {
    check_index_vector(*q_groups, "q_groups", B, "B");
    check_index_vector(*p_groups, "p_groups", N, "N");
  }
  const auto ct = compute_type(q.scalar_type());
  Problem pr;
  pr.q = q;
  pr.compute = ct;
  pr.bf16_tiles = q.scalar_type() == at::kBFloat16 && use_bf16_gemm();
  pr.p = pr.bf16_tiles ? p.contiguous() : p.to(ct).contiguous();
  pr.labels = labels.data_ptr<int64_t>();
  pr.q_groups = q_groups ? q_groups->data_ptr<int64_t>() : nullptr;
  pr.p_groups = p_groups ? p_groups->data_ptr<int64_t>() : nullptr;
  pr.B = B;
  pr.N = N;
  pr.d = q.size(1);
  const int64_t elem = ct == at::kDouble ? 8 : 4;
  if (col_block > 0) {
    pr.col_block = col_block;
  } else {
    pr.col_block = (N * kMinRowBlock * elem <= kTileBytes) ? N : kDefaultColBlock;
  }
  const int64_t cols = std::min(pr.col_block, N);
  pr.row_block = row_block > 0 ? row_block : std::max<int64_t>(64, kTileBytes / (cols * elem));
  return pr;
}

double scale_value(const at::Tensor& scale) {
  HF_CHECK_VALUE(scale.numel() == 1, "scale must be a number or a 0-d tensor, got shape ", scale.sizes());
  const double s = scale.item<double>();
  HF_CHECK_VALUE(std::isfinite(s) && s > 0, "scale must be positive and finite (1/temperature), got ", s);
  return s;
}

// What one call of the driver computes.
struct Request {
  bool stats;  // compute lse and the positive score (else lse is an input)
  bool grad;   // compute dq, dp, dscale with row coefficients a (softmax) and b (one-hot)
};

template <typename T>
struct Outputs {
  double* lse;  // (B,) out if stats, in otherwise; float64 so softmax = exp(s - lse) keeps full precision
  T* pos_raw;   // (B,) <q_i, p_label_i>, out
  const T* a;   // (B,) softmax coefficient per row (grad only)
  const T* b;   // (B,) one-hot coefficient per row (grad only)
  at::Tensor dq;  // (B, d) in the input dtype, uninitialised (grad only)
  at::Tensor dp;  // (N, d) compute dtype accumulator, uninitialised (grad only)
  double dscale = 0;
};

template <typename T>
void run_infonce(const Problem& pr, T scale, Request req, Outputs<T>& out) {
  const Isa isa = cpu_isa();
  const auto mask_fn = HF_ISA_DISPATCH(isa, mask_false_negatives<T>);
  const auto lse_fn = HF_ISA_DISPATCH(isa, row_lse_update<T>);
  const auto grad_fn = HF_ISA_DISPATCH(isa, row_softmax_grad<T>);

  const int64_t B = pr.B, N = pr.N, Bt = std::min(pr.row_block, B), Nt = std::min(pr.col_block, N);
  const bool one_tile = Nt >= N;
  const auto copts = pr.compute_options();
  const bool q_upcast = pr.q.scalar_type() != pr.compute;  // dq accumulates in a compute-dtype block
  const bool bf16 = pr.bf16_tiles;
  at::Tensor tile_buf = at::empty({Bt * Nt}, copts);
  // bf16 tiles: the gradient tile rounded to bf16 (A of dq += G p_tile); each column tile of p
  // packed as the B operand of its score product and of its dq product.
  at::Tensor g_buf = (bf16 && req.grad) ? at::empty({Bt * Nt}, pr.p.options()) : at::Tensor();
  std::vector<PackedB> p_scores, p_grad;
  for (int64_t c0 = 0; bf16 && c0 < N; c0 += Nt) {
    const at::Tensor tile = pr.p.narrow(0, c0, std::min(Nt, N - c0));
    p_scores.push_back(pack_b(tile, /*transposed=*/true));
    if (req.grad) p_grad.push_back(pack_b(tile, /*transposed=*/false));
  }
  // dq of one row block is complete once its column tiles are done: accumulate it in the compute
  // dtype here and store it into the (input dtype) output per block.
  at::Tensor dq_block = (req.grad && q_upcast) ? at::empty({Bt, pr.d}, copts) : at::Tensor();
  T* tile_ptr = tile_buf.data_ptr<T>();
  std::vector<T> m(Bt), l(Bt);
  std::vector<double> dsum(Bt);
  const T neg_inf = -std::numeric_limits<T>::infinity();
  const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(Nt, 1));

  for (int64_t r0 = 0; r0 < B; r0 += Bt) {
    const int64_t rb = std::min(Bt, B - r0);
    const at::Tensor qb = (q_upcast && !bf16) ? pr.q.narrow(0, r0, rb).to(pr.compute) : pr.q.narrow(0, r0, rb);
    at::Tensor dq_rows = req.grad ? (q_upcast ? dq_block.narrow(0, 0, rb) : out.dq.narrow(0, r0, rb))
                                        : at::Tensor();
    std::fill(dsum.begin(), dsum.end(), 0.0);
    const at::Tensor qbT = (bf16 && req.grad) ? qb.t().contiguous() : at::Tensor();  // A of dp^T += q^T G

    // Scores of rows [r0, r0+rb) x columns [c0, c0+nc), masked; captures raw positive scores.
    auto score_tile = [&](int64_t c0, int64_t nc) {
      at::Tensor S = tile_buf.narrow(0, 0, rb * nc).view({rb, nc});
      if (bf16) gemm_bf16_f32(qb, p_scores[c0 / Nt], S, /*accumulate=*/false);
      else at::mm_out(S, qb, pr.p.narrow(0, c0, nc).t());
      return S;
    };
    auto prepare_row = [&](int64_t r, int64_t c0, int64_t nc) {
      T* row = tile_ptr + r * nc;
      const int64_t i = r0 + r, lab = pr.labels[i] - c0;
      if (lab >= 0 && lab < nc) out.pos_raw[i] = row[lab];
      if (pr.p_groups) mask_fn(row, nc, lab, pr.q_groups[i], pr.p_groups + c0);
      return row;
    };
    auto grad_row = [&](int64_t r, T* row, int64_t c0, int64_t nc) {
      const int64_t i = r0 + r, lab = pr.labels[i] - c0;
      // lse = hi + lo exactly enough that exp(fma(raw, scale, -hi) - lo) is accurate to the last
      // bit even when |lse| is large (a single rounded lse would cost ~ulp(lse) relative in the
      // softmax, which softmax - onehot then exposes on confident rows).
      const T hi = T(out.lse[i]), lo = T(out.lse[i] - double(hi));
      dsum[r] += double(out.a[i]) * double(grad_fn(row, nc, scale, hi, lo, out.a[i] * scale));
      if (lab >= 0 && lab < nc) row[lab] -= out.b[i] * scale;
    };
    // The first product into an output block overwrites it (outputs start uninitialised: no
    // zero-fill pass over (B+N) x d), later ones accumulate.
    auto apply_grad_tile = [&](const at::Tensor& G, int64_t c0, int64_t nc) {
      at::Tensor dp_rows = out.dp.narrow(0, c0, nc);
      if (bf16) {  // out.dp is a (N, d) view of a (d, N) buffer: dp_rows.t() is row-major
        at::Tensor Gb = g_buf.narrow(0, 0, rb * nc).view({rb, nc}).copy_(G);
        gemm_bf16_f32(Gb, p_grad[c0 / Nt], dq_rows, /*accumulate=*/c0 != 0);
        gemm_bf16_f32(qbT, pack_b(Gb, /*transposed=*/false), dp_rows.t(), /*accumulate=*/r0 != 0);
        return;
      }
      if (c0 == 0) at::mm_out(dq_rows, G, pr.p.narrow(0, c0, nc));
      else dq_rows.addmm_(G, pr.p.narrow(0, c0, nc));
      if (r0 == 0) at::mm_out(dp_rows, G.t(), qb);
      else dp_rows.addmm_(G.t(), qb);
    };

    if (req.stats) {
      std::fill(m.begin(), m.end(), neg_inf);
      std::fill(l.begin(), l.end(), T(0));
      for (int64_t c0 = 0; c0 < N; c0 += Nt) {
        const int64_t nc = std::min(Nt, N - c0);
        at::Tensor S = score_tile(c0, nc);
        const bool fuse_grad = req.grad && one_tile;
        at::parallel_for(0, rb, grain, [&](int64_t lo, int64_t hi) {
          for (int64_t r = lo; r < hi; ++r) {
            T* row = prepare_row(r, c0, nc);
            lse_fn(row, nc, scale, m[r], l[r]);
            if (fuse_grad) {
              out.lse[r0 + r] = double(m[r]) + std::log(double(l[r]));
              grad_row(r, row, c0, nc);
            }
          }
        });
        if (fuse_grad) apply_grad_tile(S, c0, nc);
      }
      for (int64_t r = 0; r < rb; ++r) out.lse[r0 + r] = double(m[r]) + std::log(double(l[r]));
    }
    if (req.grad && !(req.stats && one_tile)) {
      for (int64_t c0 = 0; c0 < N; c0 += Nt) {
        const int64_t nc = std::min(Nt, N - c0);
        at::Tensor S = score_tile(c0, nc);
        at::parallel_for(0, rb, grain, [&](int64_t lo, int64_t hi) {
          for (int64_t r = lo; r < hi; ++r) grad_row(r, prepare_row(r, c0, nc), c0, nc);
        });
        apply_grad_tile(S, c0, nc);
      }
    }
    if (req.grad) {
      if (q_upcast) out.dq.narrow(0, r0, rb).copy_(dq_rows);
      for (int64_t r = 0; r < rb; ++r) {
        const int64_t i = r0 + r;
        out.dscale += dsum[r] - double(out.b[i]) * double(out.pos_raw[i]);
      }
    }
  }
}

// dp in the compute dtype, (N, d); bf16 tiles accumulate dp^T, so there it is a transposed view
// of a (d, N) buffer (grad_outputs returns it contiguous).
at::Tensor dp_accumulator(const Problem& pr) {
  if (pr.bf16_tiles) return at::empty({pr.d, pr.N}, pr.compute_options()).t();
  return at::empty({pr.N, pr.d}, pr.compute_options());
}

template <typename F>
void dispatch_compute_type(at::ScalarType ct, F&& f) {
  if (ct == at::kDouble) f(double{});
  else f(float{});
}

// infonce_fwd -> (loss_rows (B,) compute dtype, lse (B,) float64).
std::tuple<at::Tensor, at::Tensor> infonce_fwd_cpu(const at::Tensor& q, const at::Tensor& p, const at::Tensor& labels,
                                                   const at::Tensor& scale, const c10::optional<at::Tensor>& q_groups,
                                                   const c10::optional<at::Tensor>& p_groups, int64_t row_block,
                                                   int64_t col_block) {
  at::AutoDispatchBelowADInplaceOrView below_autograd;  // raw kernel: autograd is registered in Python
  const Problem pr = make_problem(q, p, labels, q_groups, p_groups, row_block, col_block);
  const double s = scale_value(scale);
  at::Tensor lse = at::empty({pr.B}, pr.compute_options().dtype(at::kDouble));
  at::Tensor pos = at::empty({pr.B}, pr.compute_options());
  dispatch_compute_type(pr.compute, [&](auto zero) {
    using T = decltype(zero);
    Outputs<T> out{lse.data_ptr<double>(), pos.data_ptr<T>(), nullptr, nullptr, {}, {}};
    run_infonce<T>(pr, T(s), Request{true, false}, out);
  });
  return {(lse - pos.to(at::kDouble) * s).to(pr.compute), lse};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> grad_outputs(const Problem& pr, const at::Tensor& q,
                                                            const at::Tensor& p, double dscale,
                                                            const at::Tensor& dq, const at::Tensor& dp) {
  return {dq.to(q.scalar_type()), dp.to(p.scalar_type()).contiguous(), at::scalar_tensor(dscale, pr.compute_options())};
}

// infonce_bwd -> (dq, dp, dscale) for upstream gradients of loss_rows (and optionally lse).
std::tuple<at::Tensor, at::Tensor, at::Tensor> infonce_bwd_cpu(
    const at::Tensor& grad_loss_rows, const c10::optional<at::Tensor>& grad_lse, const at::Tensor& q,
    const at::Tensor& p, const at::Tensor& labels, const at::Tensor& scale, const c10::optional<at::Tensor>& q_groups,
    const c10::optional<at::Tensor>& p_groups, const at::Tensor& lse, int64_t row_block, int64_t col_block) {
  at::AutoDispatchBelowADInplaceOrView below_autograd;  // raw kernel: autograd is registered in Python
  const Problem pr = make_problem(q, p, labels, q_groups, p_groups, row_block, col_block);
  const double s = scale_value(scale);
  const auto opts = pr.compute_options();
  HF_CHECK_VALUE(grad_loss_rows.numel() == pr.B && lse.numel() == pr.B, "grad_loss_rows and lse must have B = ", pr.B,
                 " elements");
  at::Tensor b = grad_loss_rows.to(opts).contiguous();
  at::Tensor a = grad_lse ? (b + grad_lse->to(opts)).contiguous() : b;
  at::Tensor lse_c = lse.to(at::kDouble).contiguous();
  at::Tensor pos = at::empty({pr.B}, opts);
  at::Tensor dq = at::empty({pr.B, pr.d}, q.options()), dp = dp_accumulator(pr);
  double dscale = 0;
  dispatch_compute_type(pr.compute, [&](auto zero) {
    using T = decltype(zero);
    Outputs<T> out{lse_c.data_ptr<double>(), pos.data_ptr<T>(), a.data_ptr<T>(), b.data_ptr<T>(), dq, dp};
    run_infonce<T>(pr, T(s), Request{false, true}, out);
    dscale = out.dscale;
  });
  return grad_outputs(pr, q, p, dscale, dq, dp);
}

// infonce_fused -> (loss = sum_i w_i loss_i, lse, dq, dp, dscale): gradients of that loss,
// computed in the same pass.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> infonce_fused_cpu(
    const at::Tensor& q, const at::Tensor& p, const at::Tensor& labels, const at::Tensor& scale,
    const c10::optional<at::Tensor>& q_groups, const c10::optional<at::Tensor>& p_groups,
    const at::Tensor& row_weights, int64_t row_block, int64_t col_block) {
  at::AutoDispatchBelowADInplaceOrView below_autograd;  // raw kernel: autograd is registered in Python
  const Problem pr = make_problem(q, p, labels, q_groups, p_groups, row_block, col_block);
  const double s = scale_value(scale);
  const auto opts = pr.compute_options();
  HF_CHECK_VALUE(row_weights.numel() == pr.B, "row_weights must have B = ", pr.B, " elements, got ",
                 row_weights.numel());
  at::Tensor w = row_weights.to(opts).contiguous();
  at::Tensor lse = at::empty({pr.B}, opts.dtype(at::kDouble)), pos = at::empty({pr.B}, opts);
  at::Tensor dq = at::empty({pr.B, pr.d}, q.options()), dp = dp_accumulator(pr);
  double dscale = 0;
  dispatch_compute_type(pr.compute, [&](auto zero) {
    using T = decltype(zero);
    Outputs<T> out{lse.data_ptr<double>(), pos.data_ptr<T>(), w.data_ptr<T>(), w.data_ptr<T>(), dq, dp};
    run_infonce<T>(pr, T(s), Request{true, true}, out);
    dscale = out.dscale;
  });
  at::Tensor loss = ((lse - pos.to(at::kDouble) * s) * w.to(at::kDouble)).sum().to(pr.compute);
  auto [gq, gp, gs] = grad_outputs(pr, q, p, dscale, dq, dp);
  return {loss, lse, gq, gp, gs};
}

}  // namespace

TORCH_LIBRARY_IMPL(hybrid_fast, CPU, m) {
  m.impl("infonce_fwd", &infonce_fwd_cpu);
  m.impl("infonce_bwd", &infonce_bwd_cpu);
  m.impl("infonce_fused", &infonce_fused_cpu);
}

}  // namespace hybrid_fast::cpu
