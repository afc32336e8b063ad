# CUDA is optional. Raw-pointer kernels live in kernels/cuda/*.cu (no torch headers, they take
# a cudaStream_t); the glue in csrc/cuda/*.cpp uses libtorch's stable ABI, the only CUDA glue
# that compiles against the CPU wheel. The module is a separate extension, hybrid_fast._C_cuda,
# imported only when torch.version.cuda is set.
if(HF_CUDA STREQUAL "OFF")
  return()
endif()

include(CheckLanguage)
check_language(CUDA)
if(NOT CMAKE_CUDA_COMPILER)
  if(HF_CUDA STREQUAL "ON" OR HF_CUDA STREQUAL "CHECK")
    message(FATAL_ERROR "HF_CUDA=${HF_CUDA} but no CUDA compiler (nvcc) was found")
  endif()
  message(STATUS "hybrid_fast: no nvcc, CUDA module not built")
  return()
endif()
if(HF_CUDA STREQUAL "AUTO" AND HF_TORCH_CUDA STREQUAL "")
  message(STATUS "hybrid_fast: torch ${HF_TORCH_VERSION} is a CPU build, CUDA module not built (HF_CUDA=CHECK compiles it anyway)")
  return()
endif()

if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
  set(CMAKE_CUDA_ARCHITECTURES 90a)
endif()
enable_language(CUDA)
# CMake 3.25 cannot hand C++20 to nvcc; the kernels need only C++17.
set(CMAKE_CUDA_STANDARD 17)

file(GLOB HF_CUDA_KERNELS CONFIGURE_DEPENDS "${CMAKE_CURRENT_SOURCE_DIR}/kernels/cuda/*.cu")
file(GLOB HF_CUDA_GLUE CONFIGURE_DEPENDS "${CMAKE_CURRENT_SOURCE_DIR}/csrc/cuda/*.cpp")
add_library(hf_cuda_kernels OBJECT ${HF_CUDA_KERNELS})
target_include_directories(hf_cuda_kernels PRIVATE "${CMAKE_CURRENT_SOURCE_DIR}/kernels/cuda")
target_compile_options(hf_cuda_kernels PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-O3 -lineinfo>)

if(HF_CUDA STREQUAL "CHECK")
  # Compile everything, link nothing: a real compile check on a machine without a GPU.
  if(HF_CUDA_GLUE)
    add_library(hf_cuda_glue_check OBJECT ${HF_CUDA_GLUE})
    target_include_directories(hf_cuda_glue_check PRIVATE ${TORCH_INCLUDE_DIRS}
      "${CMAKE_CURRENT_SOURCE_DIR}/kernels/cuda" ${CMAKE_CUDA_TOOLKIT_INCLUDE_DIRECTORIES})
    target_compile_definitions(hf_cuda_glue_check PRIVATE USE_CUDA TORCH_TARGET_VERSION=0x020a000000000000)
  endif()
  add_custom_target(hf_cuda_check ALL DEPENDS hf_cuda_kernels)
  return()
endif()

find_package(CUDAToolkit REQUIRED)
Python_add_library(_C_cuda MODULE WITH_SOABI ${HF_CUDA_GLUE} $<TARGET_OBJECTS:hf_cuda_kernels>)
target_include_directories(_C_cuda PRIVATE "${CMAKE_CURRENT_SOURCE_DIR}/kernels/cuda")
target_compile_definitions(_C_cuda PRIVATE USE_CUDA TORCH_TARGET_VERSION=0x020a000000000000)
target_link_libraries(_C_cuda PRIVATE ${TORCH_LIBRARIES} CUDA::cudart)
install(TARGETS _C_cuda DESTINATION hybrid_fast)
