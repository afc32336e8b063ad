// Threshold filter of the fused top-k search: the only per-element work done on a score tile
// while it is in cache. Compiled once per ISA (CMakeLists.txt); the driver
// (csrc/cpu/topk_ip_cpu.cpp) picks one with HF_ISA_DISPATCH. It knows nothing of heaps or k:
// keep-best-k lives in csrc/common/topk_handler.h.
#pragma once
#include <cstdint>

#define HF_DECLARE_TOPK_FILTER(ISA)                                                            \
  namespace hybrid_fast::cpu::ISA {                                                            \
  /* Writes to pos[0:m] the positions j in [0, n) with s[j] > theta, ascending, and returns m. \
     NaN never passes (every comparison with NaN is false). pos must hold n entries. */        \
  template <typename T>                                                                        \
  int64_t filter_greater(const T* s, int64_t n, T theta, int32_t* pos);                        \
  }

HF_DECLARE_TOPK_FILTER(DEFAULT)
HF_DECLARE_TOPK_FILTER(AVX2)
HF_DECLARE_TOPK_FILTER(AVX512)
