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

// bf16 matrix units of this CPU: AMX-BF16 (tile multiply) or AVX512-BF16 (vdpbf16ps), probed
// like cpu_isa() and capped by it (both need cpu_isa() == AVX512, so ATEN_CPU_CAPABILITY=avx2
// also turns them off); AMX counts only once the OS grants the tile state (at::cpu::init_amx()).
enum class Bf16Units { NONE = 0, AVX512_BF16 = 1, AMX_BF16 = 2 };
Bf16Units bf16_units();
std::string bf16_units_name(Bf16Units units);  // "none" | "avx512-bf16" | "amx-bf16"

// Whether bf16 inputs are multiplied as bf16 x bf16 -> fp32 GEMM tiles (the fused loss's score
// and gradient products, the top-k search's bf16 score tiles) instead of being upcast to fp32.
// Environment variable HYBRID_FAST_BF16_GEMM, read at every call: "on" / "off" force either path
// on any CPU (tests run both everywhere), "auto" (default, also when unset or empty) chooses
// AMX-BF16, and AVX512-BF16 where oneDNN's brgemm micro-kernel is reachable (csrc/cpu/bf16_gemm.h):
// measured on AMD Zen 4 (avx512-bf16, no AMX) the tiles ran the fused loss 1.7x faster than the
// upcast path, while ATen's other bf16 -> fp32 GEMM (cpublas: MKL gemm_bf16bf16f32) ran no
// faster than fp32 sgemm there (benches/RESULTS.md, "bf16 GEMM tiles"). Any other value:
// ValueError naming the variable.
constexpr const char* kBf16GemmEnv = "HYBRID_FAST_BF16_GEMM";
std::string bf16_gemm_mode();  // "auto" | "on" | "off" as set (validated)
bool use_bf16_gemm();
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
