// SIMD epilogues for the fused InfoNCE kernel; see infonce_epilogue.h for the contracts.
// This file is compiled once per ISA with CPU_CAPABILITY_<ISA> defined, so at::vec::Vectorized
// is the 128/256/512-bit implementation. exp() is Sleef's 1-ulp exp: exp_u20 (20 ulp) was
// measurably worse on confident rows, where softmax - onehot cancels (gradient error ~ scale * ulp).
#include "cpu/simd/infonce_epilogue.h"

#include <ATen/cpu/vec/vec.h>
#include <cmath>
#include <limits>

namespace hybrid_fast::cpu::HF_ISA {
using at::vec::Vectorized;

template <typename T>
void mask_false_negatives(T* raw, int64_t n, int64_t label_in_tile, int64_t q_group, const int64_t* p_groups) {
  const T masked = -std::numeric_limits<T>::infinity();
  // Branch-free so the compiler vectorises the int64 compare.
  for (int64_t j = 0; j < n; ++j) {
    const bool drop = (p_groups[j] == q_group) & (j != label_in_tile);
    raw[j] = drop ? masked : raw[j];
  }
}

template <typename T>
void row_lse_update(const T* raw, int64_t n, T scale, T& m, T& l) {
  using V = Vectorized<T>;
  constexpr int64_t W = V::size();
  const T neg_inf = -std::numeric_limits<T>::infinity();
  // Tile maximum (scale > 0, so max of scale*raw is scale*max raw).
  V vmax(neg_inf);
  int64_t j = 0;
  for (; j + W <= n; j += W) vmax = at::vec::maximum(vmax, V::loadu(raw + j));
  T tmax = neg_inf;
  alignas(64) T buf[W];
  vmax.store(buf);
  for (int64_t k = 0; k < W; ++k) tmax = std::max(tmax, buf[k]);
  for (; j < n; ++j) tmax = std::max(tmax, raw[j]);
  const T new_m = std::max(m, scale * tmax);
  if (new_m == neg_inf) return;  // nothing allowed seen yet
  const V vscale(scale), vneg_m(-new_m);
  V acc(T(0));
  j = 0;
  for (; j + W <= n; j += W) acc += at::vec::fmadd(V::loadu(raw + j), vscale, vneg_m).exp();
  acc.store(buf);
  T sum = 0;
  for (int64_t k = 0; k < W; ++k) sum += buf[k];
  for (; j < n; ++j) sum += std::exp(raw[j] * scale - new_m);
  l = l * std::exp(m - new_m) + sum;
  m = new_m;
}

template <typename T>
T row_softmax_grad(T* raw, int64_t n, T scale, T lse_hi, T lse_lo, T coef) {
  using V = Vectorized<T>;
  constexpr int64_t W = V::size();
  const V vscale(scale), vneg_hi(-lse_hi), vlo(lse_lo), vcoef(coef);
  const V vlowest(std::numeric_limits<T>::lowest());
  V acc(T(0));
  int64_t j = 0;
  for (; j + W <= n; j += W) {
    const V r = V::loadu(raw + j);
    // fma: scale*raw - hi without rounding the product (exact near the row maximum).
    const V prob = (at::vec::fmadd(r, vscale, vneg_hi) - vlo).exp();
    // max(r, lowest) keeps 0 * (-inf) from turning into NaN on masked entries.
    acc = at::vec::fmadd(prob, at::vec::maximum(r, vlowest), acc);
    (prob * vcoef).store(raw + j);
  }
  alignas(64) T buf[W];
  acc.store(buf);
  T sum = 0;
  for (int64_t k = 0; k < W; ++k) sum += buf[k];
  for (; j < n; ++j) {
    const T prob = std::exp(std::fma(raw[j], scale, -lse_hi) - lse_lo);
    sum += prob * std::max(raw[j], std::numeric_limits<T>::lowest());
    raw[j] = prob * coef;
  }
  return sum;
}

#define HF_INSTANTIATE(T)                                                                          \
  template void mask_false_negatives<T>(T*, int64_t, int64_t, int64_t, const int64_t*);           \
  template void row_lse_update<T>(const T*, int64_t, T, T&, T&);                                   \
  template T row_softmax_grad<T>(T*, int64_t, T, T, T, T);
HF_INSTANTIATE(float)
HF_INSTANTIATE(double)

}  // namespace hybrid_fast::cpu::HF_ISA
