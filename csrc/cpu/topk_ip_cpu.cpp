// Exact top-k by inner product on the CPU, fused: tiles of the score matrix are produced by
// at::mm (or, for query blocks of <= kDotMaxQueries rows, by the dot-product kernel of
// csrc/cpu/simd/score_tile.cpp) and consumed in cache by a threshold filter + keep-best-k
// handler; the Q x N score matrix is never written.
//
// Work decomposition. Queries are cut into blocks of Qt rows and the corpus into S contiguous
// ranges; a task is one (query block, corpus range) pair and runs on one thread:
//   for each corpus tile of Nt rows in its range (ascending):
//     Qt <= kDotMaxQueries: S_tile = dot_scores(Q_blk, tile)  (reads the rows as stored)
//     else: [bf16/fp16 corpus: convert the tile to fp32 in a thread-local buffer]
//           S_tile = Q_blk . tile^T        (at::mm_out, single-threaded inside the task)
//     excluded ids -> -inf                 (per query, only ids falling in the tile)
//     per query row: filter_greater(row, theta_row) -> KeepBestK::push_positions
// Many queries (memory is not the bottleneck): S = 1, the query blocks are split over threads
// (each thread streams the corpus once per block, compute-bound). Few queries (memory-bound,
// Q < 64 per thread): one query block and S = threads corpus ranges, so each thread streams a
// disjoint part of the corpus; the S partial top-k lists of each query are merged at the end
// (topk_merge, same total order). Tasks run in rounds of at most `threads` query blocks so the
// handler buffers are bounded.
//
// bf16 queries and corpus where use_bf16_gemm() (csrc/common/isa.h: AMX-BF16 CPUs, or forced by
// HYBRID_FAST_BF16_GEMM=on): the at::mm path instead multiplies the bf16 rows as they are,
// S_tile = Q_blk . tile^T as a bf16 x bf16 -> fp32 GEMM (csrc/cpu/bf16_gemm.h) on the tile
// packed for the micro-kernel per task (O(Nt d), against the product's O(Qt Nt d), Qt > 32); the
// products are exact in fp32, so the scores equal those of the fp32 path on the same bf16 values
// up to fp32 summation order.
//
// Memory: per task Qt x topk_capacity(k) handler entries + Qt x Nt scores (+ Nt x d fp32 conversion
// buffer for bf16/fp16 corpora on the at::mm path); never Q x N. Flops 2 Q N d; bytes streamed N d sizeof(corpus)
// per query block.
// Determinism: the result is a deterministic function of the inputs and the tile sizes
// (ties are broken by index; the scores of one (query, id) pair depend on the GEMM blocking).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <functional>
#include <type_traits>
#include <limits>
#include <vector>

#include "common/checks.h"
#include "common/isa.h"
#include "common/topk_handler.h"
#include "cpu/bf16_gemm.h"
#include "cpu/simd/score_tile.h"
#include "cpu/simd/topk_filter.h"

namespace hybrid_fast::cpu {
namespace {

constexpr int64_t kScoreTileElems = int64_t(1) << 18;
constexpr int64_t kMinTileN = 256, kMaxTileN = 4096;
constexpr int64_t kMaxTileQ = 512;
constexpr int64_t kSplitCorpusBelowRowsPerThread = 64;
constexpr int64_t kHandlerBytesPerTask = int64_t(64) << 20;
// Query blocks of at most this many rows score with the dot-product kernel (score_tile.h),
// which streams the corpus without packing it; larger blocks use at::mm (packed GEMM).
constexpr int64_t kDotMaxQueries = 32;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

struct Plan {
  int64_t Qt, Nt, S;
};

Plan make_plan(int64_t Q, int64_t N, int64_t k, int64_t tile_q, int64_t tile_n, int64_t splits, int64_t entry_bytes) {
  const int64_t threads = std::max<int64_t>(1, at::get_num_threads());
  Plan p{};
  const bool few_queries = Q < kSplitCorpusBelowRowsPerThread * threads;
  if (tile_q > 0) {
    p.Qt = std::min(Q, tile_q);
  } else if (few_queries) {
    p.Qt = std::min(Q, kMaxTileQ);
  } else {
    const int64_t nqb = threads * ceil_div(Q, threads * kMaxTileQ);
    p.Qt = ceil_div(Q, nqb);
  }
  if (tile_q <= 0) {  // bound the handler memory of one task (matters for k ~ N)
    const int64_t per_query = topk_capacity(k) * entry_bytes;
    p.Qt = std::max<int64_t>(1, std::min(p.Qt, kHandlerBytesPerTask / per_query));
  }
  // Score tile of about kScoreTileElems (1 MiB fp32), at least 256 columns so at::mm calls stay
  // large; few queries get long tiles. Auto widths are multiples of 64 columns: on a 500-query
  // block MKL ran 0-16% slower at the former 262 columns than at 256, while 256 / 512 / 1024
  // were within run-to-run noise of each other (hybrid_fast.benchmarks.topk --tile-widths, 4 runs); the
  // filter reads the tile once, from L2/L3.
  p.Nt = std::min(N, tile_n > 0 ? tile_n : std::clamp<int64_t>(kScoreTileElems / p.Qt / 64 * 64, kMinTileN, kMaxTileN));
  const int64_t nqb = ceil_div(Q, p.Qt);
  if (splits > 0) {
    p.S = splits;
  } else {
    p.S = nqb >= threads ? 1 : ceil_div(threads, nqb);
  }
  p.S = std::max<int64_t>(1, std::min(p.S, ceil_div(N, p.Nt)));
  return p;
}

// The dot-product score kernel for this corpus dtype and CPU, resolved once per search:
// fn(q, qb, c0, nc, c_end, out, scratch) scores queries q[0:qb] (fp32, row stride d) against
// corpus rows [c0, c0 + nc) into out (qb x nc, row-major); prefetch may run on to row c_end.
using DotTileFn = std::function<void(const float*, int64_t, int64_t, int64_t, int64_t, float*, float*)>;

DotTileFn dot_tile_kernel(const at::Tensor& corpus) {
  const int64_t d = corpus.size(1);
  const Isa isa = cpu_isa();
  auto bind = [d](auto kernel, const auto* base) -> DotTileFn {
    return [=](const float* q, int64_t qb, int64_t c0, int64_t nc, int64_t c_end, float* out, float* scratch) {
      kernel(q, qb, base + c0 * d, nc, c_end - c0, d, out, nc, scratch);
    };
  };
  switch (corpus.scalar_type()) {
    case at::kFloat:
      return bind(HF_ISA_DISPATCH(isa, dot_scores<float>), corpus.data_ptr<float>());
    case at::kBFloat16:
      return bind(HF_ISA_DISPATCH(isa, dot_scores<c10::BFloat16>), corpus.data_ptr<c10::BFloat16>());
    case at::kHalf:
      return bind(HF_ISA_DISPATCH(isa, dot_scores<c10::Half>), corpus.data_ptr<c10::Half>());
    default:
      TORCH_CHECK(false, "hybrid_fast: no dot-product score kernel for corpus dtype ", corpus.scalar_type());
  }
}

// Per-thread buffers of the search tasks, allocated on a thread's first task and reused by every
// round (one round per `threads` query blocks): score tile, converted corpus tile, filter
// positions, dot-kernel scratch, and the keep-best-k storage of Qt handlers (+ their shared scratch).
template <typename T>
struct TaskBuffers {
  at::Tensor scores, tile_buf;
  std::vector<int32_t> pos;
  std::vector<float> dot_scratch;
  std::vector<T> hs, sel;
  std::vector<int64_t> hi;
};

// T: compute dtype (float or double). corpus may be T, bf16 or fp16 (converted tile by tile).
// q_bf16: the queries in bf16 when the at::mm path runs as bf16 GEMM tiles (corpus bf16), else
// undefined.
template <typename T>
void run_topk(const at::Tensor& q, const at::Tensor& q_bf16, const at::Tensor& corpus, int64_t k,
              const int64_t* excl, int64_t E, const Plan& plan, T* out_s, int64_t* out_i) {
  const auto filter = HF_ISA_DISPATCH(cpu_isa(), filter_greater<T>);
  const int64_t Q = q.size(0), N = corpus.size(0), d = q.size(1);
  const int64_t Qt = plan.Qt, Nt = plan.Nt, S = plan.S, cap = topk_capacity(k);
  const int64_t nqb = ceil_div(Q, Qt), range = ceil_div(N, S);
  // Skinny query blocks (fp32 compute only): dot-product kernel straight on the corpus rows,
  // 16-bit rows widened in registers/L1; otherwise at::mm on (converted) tiles.
  const bool use_dot = std::is_same_v<T, float> && Qt <= kDotMaxQueries;
  const bool bf16_tiles = !use_dot && q_bf16.defined();
  const bool convert = !use_dot && !bf16_tiles && corpus.scalar_type() != q.scalar_type();
  const int64_t threads = std::max<int64_t>(1, at::get_num_threads());
  const int64_t round_blocks = std::max<int64_t>(1, std::min(nqb, threads));
  const T neg_inf = -std::numeric_limits<T>::infinity();
  const DotTileFn dot_tile = use_dot ? dot_tile_kernel(corpus) : DotTileFn();
  std::vector<TaskBuffers<T>> buffers(static_cast<size_t>(threads));

  // Results of one round: [block][split][row][k] sorted entries, and how many each holds.
  std::vector<TopkEntry<T>> entries(static_cast<size_t>(round_blocks * S * Qt * k));
  std::vector<int64_t> kept(static_cast<size_t>(round_blocks * S * Qt));

  for (int64_t b0 = 0; b0 < nqb; b0 += round_blocks) {
    const int64_t nb = std::min(round_blocks, nqb - b0);
    at::parallel_for(0, nb * S, 1, [&](int64_t t_begin, int64_t t_end) {
      TaskBuffers<T>& w = buffers[static_cast<size_t>(at::get_thread_num())];
      if (!w.scores.defined()) {
        w.scores = at::empty({Qt * Nt}, q.options());
        if (convert) w.tile_buf = at::empty({Nt, d}, q.options());
        w.pos.resize(static_cast<size_t>(Nt));
        if (use_dot) w.dot_scratch.resize(static_cast<size_t>(dot_scratch_floats(d)));
        w.hs.resize(static_cast<size_t>(Qt * cap));
        w.sel.resize(static_cast<size_t>(cap));
        w.hi.resize(static_cast<size_t>(Qt * cap));
      }
      T* sp = w.scores.template data_ptr<T>();
      for (int64_t task = t_begin; task < t_end; ++task) {
        const int64_t blk = task / S, split = task % S;
        const int64_t q0 = (b0 + blk) * Qt, qb = std::min(Qt, Q - q0);
        const int64_t lo = std::min(N, split * range), hi = std::min(N, lo + range);  // corpus rows
        const at::Tensor qblk = q.narrow(0, q0, qb);
        std::vector<KeepBestK<T>> keep;
        keep.reserve(qb);
        for (int64_t r = 0; r < qb; ++r) keep.emplace_back(w.hs.data() + r * cap, w.hi.data() + r * cap, w.sel.data(), k);
        for (int64_t c0 = lo; c0 < hi; c0 += Nt) {
          const int64_t nc = std::min(Nt, hi - c0);
          if constexpr (std::is_same_v<T, float>) {
            if (use_dot) dot_tile(q.data_ptr<float>() + q0 * d, qb, c0, nc, hi, sp, w.dot_scratch.data());
          }
          if (bf16_tiles) {
            gemm_bf16_f32(q_bf16.narrow(0, q0, qb), pack_b(corpus.narrow(0, c0, nc), /*transposed=*/true),
                          w.scores.narrow(0, 0, qb * nc).view({qb, nc}), /*accumulate=*/false);
          } else if (!use_dot) {
            at::Tensor tile = corpus.narrow(0, c0, nc);
            if (convert) tile = w.tile_buf.narrow(0, 0, nc).copy_(tile);
            at::Tensor st = w.scores.narrow(0, 0, qb * nc).view({qb, nc});
            at::mm_out(st, qblk, tile.t());
          }
          for (int64_t r = 0; r < qb; ++r) {
            T* row = sp + r * nc;
            if (E > 0) {
              const int64_t* ex = excl + (q0 + r) * E;
              for (int64_t e = 0; e < E; ++e) {
                if (ex[e] >= c0 && ex[e] < c0 + nc) row[ex[e] - c0] = neg_inf;
              }
            }
            const int64_t m = filter(row, nc, keep[r].threshold(), w.pos.data());
            keep[r].push_positions(row, w.pos.data(), m, c0);
          }
        }
        int64_t* kp = kept.data() + (blk * S + split) * Qt;
        TopkEntry<T>* res = entries.data() + (blk * S + split) * Qt * k;
        for (int64_t r = 0; r < qb; ++r) kp[r] = keep[r].finish(res + r * k);
      }
    });
    // Merge the S partial lists of every query of the round into the output (padded).
    const int64_t q_begin = b0 * Qt, q_end = std::min(Q, (b0 + nb) * Qt);
    at::parallel_for(q_begin, q_end, 16, [&](int64_t i_begin, int64_t i_end) {
      std::vector<TopkEntry<T>> scratch(static_cast<size_t>(S > 1 ? S * k : 0));
      std::vector<const TopkEntry<T>*> parts(static_cast<size_t>(S));
      std::vector<int64_t> sizes(static_cast<size_t>(S));
      for (int64_t i = i_begin; i < i_end; ++i) {
        const int64_t blk = i / Qt - b0, r = i % Qt;
        for (int64_t s = 0; s < S; ++s) {
          parts[s] = entries.data() + ((blk * S + s) * Qt + r) * k;
          sizes[s] = kept[(blk * S + s) * Qt + r];
        }
        const TopkEntry<T>* best = parts[0];
        int64_t n = sizes[0];
        if (S > 1) {
          n = topk_merge(parts.data(), sizes.data(), S, k, scratch.data());
          best = scratch.data();
        }
        T* os = out_s + i * k;
        int64_t* oi = out_i + i * k;
        for (int64_t j = 0; j < n; ++j) {
          os[j] = best[j].score;
          oi[j] = best[j].index;
        }
        for (int64_t j = n; j < k; ++j) {
          os[j] = neg_inf;
          oi[j] = -1;
        }
      }
    });
  }
}

std::tuple<at::Tensor, at::Tensor> topk_ip_cpu(const at::Tensor& queries, const at::Tensor& corpus, int64_t k,
                                               const c10::optional<at::Tensor>& exclude, int64_t tile_q,
                                               int64_t tile_n, int64_t splits) {
  check_embeddings(queries, "queries");
  check_embeddings(corpus, "corpus");
  const int64_t Q = queries.size(0), N = corpus.size(0), d = queries.size(1);
  HF_CHECK_VALUE(N > 0, "corpus is empty: expected at least one row, got shape ", corpus.sizes());
  HF_CHECK_VALUE(corpus.size(1) == d, "queries and corpus must have the same dim, got queries ", queries.sizes(),
                 " and corpus ", corpus.sizes());
  HF_CHECK_VALUE(k >= 1 && k <= N, "k must satisfy 1 <= k <= N = ", N, " (corpus rows), got k = ", k);
  HF_CHECK_VALUE(tile_q >= 0 && tile_n >= 0 && splits >= 0, "tile_q, tile_n and splits must be >= 0 (0 = auto), got ",
                 tile_q, ", ", tile_n, ", ", splits);
  const bool f64 = queries.scalar_type() == at::kDouble;
  HF_CHECK_TYPE(f64 == (corpus.scalar_type() == at::kDouble),
                "float64 queries need a float64 corpus and vice versa, got queries ", queries.scalar_type(),
                " and corpus ", corpus.scalar_type());
  const int64_t* excl = nullptr;
  int64_t E = 0;
  if (exclude.has_value()) {
    const at::Tensor& ex = *exclude;
    HF_CHECK_TYPE(ex.scalar_type() == at::kLong, "exclude must be int64, got ", ex.scalar_type());
    HF_CHECK_VALUE(ex.dim() == 2 && ex.size(0) == Q, "exclude must have shape (Q=", Q, ", E), got ", ex.sizes());
    HF_CHECK_VALUE(ex.device().is_cpu() && ex.is_contiguous(), "exclude must be a contiguous CPU tensor");
    E = ex.size(1);
    excl = ex.data_ptr<int64_t>();
    for (int64_t i = 0; i < ex.numel(); ++i) {
      HF_CHECK_VALUE(excl[i] >= -1 && excl[i] < N, "exclude[", i / std::max<int64_t>(E, 1), ", ",
                     i % std::max<int64_t>(E, 1), "] = ", excl[i], " is out of range: expected -1 (none) or 0 <= id < N = ", N);
    }
  }
  const at::ScalarType ct = f64 ? at::kDouble : at::kFloat;
  const at::Tensor q = queries.to(ct).contiguous();
  // A corpus in the compute dtype is used in place; bf16/fp16 is converted one tile at a time.
  const at::Tensor c = corpus.contiguous();
  at::Tensor out_s = at::empty({Q, k}, q.options());
  at::Tensor out_i = at::empty({Q, k}, q.options().dtype(at::kLong));
  if (Q == 0) return {out_s, out_i};
  const Plan plan = make_plan(Q, N, k, tile_q, tile_n, splits, f64 ? sizeof(TopkEntry<double>) : sizeof(TopkEntry<float>));
  if (f64) {
    run_topk<double>(q, at::Tensor(), c, k, excl, E, plan, out_s.data_ptr<double>(), out_i.data_ptr<int64_t>());
  } else {
    const bool bf16_tiles =
        queries.scalar_type() == at::kBFloat16 && c.scalar_type() == at::kBFloat16 && use_bf16_gemm();
    run_topk<float>(q, bf16_tiles ? queries.contiguous() : at::Tensor(), c, k, excl, E, plan,
                    out_s.data_ptr<float>(), out_i.data_ptr<int64_t>());
  }
  return {out_s, out_i};
}

}  // namespace

TORCH_LIBRARY_IMPL(hybrid_fast, CPU, m) { m.impl("topk_ip", &topk_ip_cpu); }

}  // namespace hybrid_fast::cpu
