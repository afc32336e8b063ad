// hybrid_fast._C: the Python module that carries the CPU kernels (registered with the torch
// dispatcher when the library loads) plus small helpers describing the build.
#include <torch/extension.h>

#include "common/isa.h"
#include "cpu/bf16_gemm.h"

#ifndef HF_TORCH_VERSION
#define HF_TORCH_VERSION "unknown"
#endif

PYBIND11_MODULE(_C, m) {
  m.doc() = "hybrid_fast compiled CPU kernels";
  m.def("build_info", [] {
    pybind11::dict info;
    info["torch_version"] = HF_TORCH_VERSION;
#ifdef _OPENMP
    info["openmp"] = true;
#else
    info["openmp"] = false;
#endif
#ifdef HF_DEFAULT_ISA_ONLY
    info["isa_compiled"] = pybind11::make_tuple("default");
#else
    info["isa_compiled"] = pybind11::make_tuple("default", "avx2", "avx512");
#endif
    info["compiler"] = __VERSION__;
    return info;
  });
  m.def("cpu_isa", [] { return hybrid_fast::isa_name(hybrid_fast::cpu_isa()); },
        "SIMD instruction set the CPU kernels use on this machine (ATEN_CPU_CAPABILITY caps it)");
  m.def("bf16_units", [] { return hybrid_fast::bf16_units_name(hybrid_fast::bf16_units()); },
        "bf16 matrix units of this CPU: 'amx-bf16', 'avx512-bf16' or 'none' (capped like cpu_isa)");
  m.def("bf16_gemm_mode", [] { return hybrid_fast::bf16_gemm_mode(); },
        "HYBRID_FAST_BF16_GEMM as set: 'auto' (default), 'on' or 'off' (ValueError otherwise)");
  m.def("bf16_gemm_engine",
        [] { return std::string(hybrid_fast::cpu::bf16_microkernel_available() ? "onednn-brgemm" : "cpublas"); },
        "what runs the bf16 GEMM tiles: oneDNN's brgemm micro-kernel via ATen, or ATen's cpublas GEMM");
  m.def("bf16_gemm", [] { return hybrid_fast::use_bf16_gemm(); },
        "whether bf16 inputs run as bf16 x bf16 -> fp32 GEMM tiles now (mode and bf16_units)");
}
