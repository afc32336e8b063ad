#include "common/isa.h"
#include <ATen/Version.h>

namespace hybrid_fast {

Isa cpu_isa() {
  static const Isa isa = [] {
#if defined(__x86_64__)
    // "DEFAULT" | "AVX2" | "AVX512" (| "ZVECTOR"...), already capped by ATEN_CPU_CAPABILITY.
    const std::string cap = at::get_cpu_capability();
    const bool allow512 = cap == "AVX512", allow2 = allow512 || cap == "AVX2";
    if (allow512 && __builtin_cpu_supports("avx512f") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512dq")) {
      return Isa::AVX512;
    }
    if (allow2 && __builtin_cpu_supports("avx2") &&
        __builtin_cpu_supports("fma")) {
      return Isa::AVX2;
    }
#endif
    return Isa::DEFAULT;
  }();
  return isa;
}

std::string isa_name(Isa isa) {
  switch (isa) {
    case Isa::AVX512: return "avx512";
    case Isa::AVX2: return "avx2";
    default: return "default";
  }
}

}  // namespace hybrid_fast
