// Runtime choice of the SIMD instruction set for the per-ISA kernels in csrc/cpu/simd/.
// Follows ATen: at::native::get_cpu_capability() (which honours ATEN_CPU_CAPABILITY=default|avx2|avx512)
// capped by what this CPU supports. Each csrc/cpu/simd/*.cpp is compiled once per ISA into
// namespace hybrid_fast::cpu::<ISA>.
#pragma once
#include <string>

namespace hybrid_fast {
enum class Isa { DEFAULT = 0, AVX2 = 1, AVX512 = 2 };
Isa cpu_isa();
std::string isa_name(Isa isa);
}  // namespace hybrid_fast

// Picks the per-ISA instance of a function template: HF_ISA_DISPATCH(isa, row_stats<float>)
#ifdef HF_DEFAULT_ISA_ONLY
#define HF_ISA_DISPATCH(isa, fn) (&::hybrid_fast::cpu::DEFAULT::fn)
#else
#define HF_ISA_DISPATCH(isa, fn)                                       \
  ((isa) == ::hybrid_fast::Isa::AVX512 ? &::hybrid_fast::cpu::AVX512::fn \
   : (isa) == ::hybrid_fast::Isa::AVX2 ? &::hybrid_fast::cpu::AVX2::fn   \
                                       : &::hybrid_fast::cpu::DEFAULT::fn)
#endif
