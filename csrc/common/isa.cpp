#include "common/isa.h"

#include "cpu/bf16_gemm.h"
#include <ATen/Version.h>
#include <ATen/cpu/Utils.h>
#include <c10/util/Exception.h>

#include <cctype>
#include <cstdlib>

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
  static constexpr const char* kNames[] = {"default", "avx2", "avx512"};  // indexed by Isa
  return kNames[static_cast<int>(isa)];
}

namespace {
Bf16Units detect_bf16_units() {
#if defined(__x86_64__)
  if (cpu_isa() != Isa::AVX512) return Bf16Units::NONE;
  // init_amx() asks the kernel for the AMX tile state (arch_prctl); without it the tile
  // instructions fault, so the units do not count.
  if (__builtin_cpu_supports("amx-bf16") && __builtin_cpu_supports("amx-tile") && at::cpu::init_amx()) {
    return Bf16Units::AMX_BF16;
  }
  if (__builtin_cpu_supports("avx512bf16")) return Bf16Units::AVX512_BF16;
#endif
  return Bf16Units::NONE;
}
}  // namespace

Bf16Units bf16_units() {
  static const Bf16Units units = detect_bf16_units();  // probed once, like cpu_isa()
  return units;
}

std::string bf16_units_name(Bf16Units units) {
  static constexpr const char* kNames[] = {"none", "avx512-bf16", "amx-bf16"};  // indexed by Bf16Units
  return kNames[static_cast<int>(units)];
}

std::string bf16_gemm_mode() {
  const char* raw = std::getenv(kBf16GemmEnv);
  std::string mode = raw ? raw : "";
  for (char& c : mode) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (mode.empty()) return "auto";
  TORCH_CHECK_VALUE(mode == "auto" || mode == "on" || mode == "off", "hybrid_fast: environment variable ",
                    kBf16GemmEnv, " must be auto, on or off, got '", raw, "'");
  return mode;
}

bool use_bf16_gemm() {
  const std::string mode = bf16_gemm_mode();
  if (mode == "on") return true;
  if (mode == "off") return false;
  const Bf16Units units = bf16_units();
  return units == Bf16Units::AMX_BF16 || (units == Bf16Units::AVX512_BF16 && cpu::bf16_microkernel_available());
}

}  // namespace hybrid_fast
