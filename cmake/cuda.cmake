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
target_compile_options(hf_cuda_kernels PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-O3 -lineinfo -Xcompiler=-Wall>)

string(REPLACE ";" "," HF_CUDA_ARCH_STRING "${CMAKE_CUDA_ARCHITECTURES}")
# Glue definitions: USE_CUDA exposes the CUDA entries of the stable C shim; the target version
# pins the stable ABI the glue may use (2.10: torch_call_dispatcher, new_empty with dtype).
set(HF_CUDA_GLUE_DEFINITIONS USE_CUDA TORCH_TARGET_VERSION=0x020a000000000000
  HF_TORCH_VERSION="${HF_TORCH_VERSION}" HF_CUDA_ARCHITECTURES="${HF_CUDA_ARCH_STRING}")

if(HF_CUDA STREQUAL "CHECK")
  # Compile everything, link nothing: a real compile check on a machine without a GPU. The glue
  # compiles against whatever torch is installed (the CPU wheel ships the stable-ABI headers).
  set(HF_CUDA_CHECK_DEPENDS hf_cuda_kernels)
  if(HF_CUDA_GLUE)
    add_library(hf_cuda_glue_check OBJECT ${HF_CUDA_GLUE})
    target_include_directories(hf_cuda_glue_check PRIVATE "${CMAKE_CURRENT_SOURCE_DIR}/kernels/cuda")
    target_include_directories(hf_cuda_glue_check SYSTEM PRIVATE ${TORCH_INCLUDE_DIRS} ${Python_INCLUDE_DIRS}
      ${CMAKE_CUDA_TOOLKIT_INCLUDE_DIRECTORIES})
    target_compile_definitions(hf_cuda_glue_check PRIVATE ${HF_CUDA_GLUE_DEFINITIONS})
    target_compile_options(hf_cuda_glue_check PRIVATE -Wall -Wextra)
    list(APPEND HF_CUDA_CHECK_DEPENDS hf_cuda_glue_check)
  endif()
  add_custom_target(hf_cuda_check ALL DEPENDS ${HF_CUDA_CHECK_DEPENDS})
  return()
endif()

find_package(CUDAToolkit REQUIRED)
Python_add_library(_C_cuda MODULE WITH_SOABI ${HF_CUDA_GLUE} $<TARGET_OBJECTS:hf_cuda_kernels>)
target_include_directories(_C_cuda PRIVATE "${CMAKE_CURRENT_SOURCE_DIR}/kernels/cuda")
target_compile_definitions(_C_cuda PRIVATE ${HF_CUDA_GLUE_DEFINITIONS})
target_compile_options(_C_cuda PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-O3>)
target_link_libraries(_C_cuda PRIVATE ${TORCH_LIBRARIES} CUDA::cudart)
install(TARGETS _C_cuda DESTINATION hybrid_fast)
