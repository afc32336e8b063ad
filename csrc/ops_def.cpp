// Every op schema of hybrid_fast, in one place (the contract). Backends register kernels in
// their own files (csrc/cpu/*.cpp, csrc/cuda/*.cpp, Triton from Python); fake (meta) and
// autograd formulas are registered in Python (hybrid_fast/ops/). Full contracts: the
// docstrings in hybrid_fast/ops/*.py.
#include <torch/library.h>

TORCH_LIBRARY(hybrid_fast, m) {
  // InfoNCE, one direction. Scores s_ij = scale * <q_i, p_j>; candidate j is masked for row i
  // when p_groups[j] == q_groups[i] and j != labels[i].
  // -> (loss_rows (B,) in the compute dtype (fp32, or fp64 for fp64 inputs), lse (B,) float64:
  //     the backward recovers softmax = exp(s - lse) to full precision from it).
  m.def(
      "infonce_fwd(Tensor q, Tensor p, Tensor labels, Tensor scale, Tensor? q_groups, Tensor? p_groups, "
      "int row_block=0, int col_block=0) -> (Tensor, Tensor)");
  // Gradients of sum_i grad_loss_rows[i] * loss_rows[i] + grad_lse[i] * lse[i].
  // -> (dq like q, dp like p, dscale 0-d compute dtype).
  m.def(
      "infonce_bwd(Tensor grad_loss_rows, Tensor? grad_lse, Tensor q, Tensor p, Tensor labels, Tensor scale, "
      "Tensor? q_groups, Tensor? p_groups, Tensor lse, int row_block=0, int col_block=0) -> (Tensor, Tensor, Tensor)");
  // loss = sum_i row_weights[i] * loss_rows[i] and its gradients, in one pass.
  // -> (loss 0-d compute dtype, lse (B,) float64, dq like q, dp like p, dscale 0-d).
  m.def(
      "infonce_fused(Tensor q, Tensor p, Tensor labels, Tensor scale, Tensor? q_groups, Tensor? p_groups, "
      "Tensor row_weights, int row_block=0, int col_block=0) -> (Tensor, Tensor, Tensor, Tensor, Tensor)");
  // Exact top-k by inner product, s_ij = <queries_i, corpus_j> in fp32 (fp64 for fp64 inputs),
  // fused with k-selection (the Q x N scores are never materialised). exclude: (Q, E) int64 ids
  // to leave out per query, -1 = none. Tiles/splits: 0 = auto. -> (scores (Q, k) compute dtype,
  // indices (Q, k) int64), best first, ties by ascending index, padded with (-inf, -1).
  m.def(
      "topk_ip(Tensor queries, Tensor corpus, int k, Tensor? exclude=None, int tile_q=0, int tile_n=0, "
      "int splits=0) -> (Tensor, Tensor)");
}
