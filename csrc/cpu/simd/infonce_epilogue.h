// Row epilogues of the fused InfoNCE kernel: they consume one row of a score tile while it is
// in cache. Compiled once per ISA (see CMakeLists.txt); the driver picks one with HF_ISA_DISPATCH.
// T is float (fp32/bf16/fp16 inputs) or double.
#pragma once
#include <cstdint>

#define HF_DECLARE_INFONCE_EPILOGUE(ISA)                                                        \
  namespace hybrid_fast::cpu::ISA {                                                             \
  /* raw[j] := -inf where p_groups[j] == q_group and j != label_in_tile (false negatives). */   \
  template <typename T>                                                                         \
  void mask_false_negatives(T* raw, int64_t n, int64_t label_in_tile, int64_t q_group,          \
                            const int64_t* p_groups);                                           \
  /* Online log-sum-exp of scale*raw[0:n] merged into (m, l): l = sum exp(scale*raw - m). */   \
  template <typename T>                                                                         \
  void row_lse_update(const T* raw, int64_t n, T scale, T& m, T& l);                            \
  /* In place raw[j] := coef * P_j, P_j = exp(scale*raw[j] - (lse_hi + lse_lo)); returns      \
     sum_j P_j * raw_j (masked entries, raw = -inf, give P = 0 and contribute 0). */            \
  template <typename T>                                                                         \
  T row_softmax_grad(T* raw, int64_t n, T scale, T lse_hi, T lse_lo, T coef);                   \
  }

HF_DECLARE_INFONCE_EPILOGUE(DEFAULT)
HF_DECLARE_INFONCE_EPILOGUE(AVX2)
HF_DECLARE_INFONCE_EPILOGUE(AVX512)
