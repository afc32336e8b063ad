// hybrid_fast._C_cuda: a bare CPython extension module (no pybind11: the glue uses only
// libtorch's stable ABI). Loading it registers the hybrid_fast_cuda ops (static initialisers of
// csrc/cuda/topk_select.cpp); build_info() reports what was compiled, for hybrid_fast._ext.
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <cuda_runtime_api.h>

#include "topk_select.cuh"

#ifndef HF_TORCH_VERSION
#define HF_TORCH_VERSION "unknown"
#endif
#ifndef HF_CUDA_ARCHITECTURES
#define HF_CUDA_ARCHITECTURES "unknown"
#endif

namespace {

PyObject* build_info(PyObject*, PyObject*) {
  return Py_BuildValue("{s:s,s:i,s:s,s:(ss),s:L,s:L}", "torch_version", HF_TORCH_VERSION, "cuda_runtime",
                       CUDART_VERSION, "cuda_architectures", HF_CUDA_ARCHITECTURES, "ops", "topk_from_scores",
                       "topk_merge_keys", "topk_max_exclude", static_cast<long long>(hybrid_fast::cuda::kTopkMaxExclude),
                       "topk_sort_max", static_cast<long long>(hybrid_fast::cuda::kTopkSortMax));
}

PyMethodDef methods[] = {
    {"build_info", build_info, METH_NOARGS, "What was compiled and for which torch."},
    {nullptr, nullptr, 0, nullptr},
};

PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C_cuda", "hybrid_fast compiled CUDA kernels", -1, methods,
                          nullptr, nullptr, nullptr, nullptr};

}  // namespace

PyMODINIT_FUNC PyInit__C_cuda() { return PyModule_Create(&module_def); }
