# CUDA backend switch. ROPEKIT_CUDA: AUTO (build it when nvcc is found), ON (required) or OFF.
# Sets ROPEKIT_HAS_CUDA, read by src/cuda, tests/cpp/cuda, bench and the package config.
set(ROPEKIT_HAS_CUDA OFF)
string(TOUPPER "${ROPEKIT_CUDA}" _ropekit_cuda)
if(_ropekit_cuda STREQUAL "OFF" OR _ropekit_cuda STREQUAL "NO" OR _ropekit_cuda STREQUAL "FALSE" OR _ropekit_cuda STREQUAL "0")
  return()
endif()
if(NOT _ropekit_cuda MATCHES "^(AUTO|ON|YES|TRUE|1)$")
  message(FATAL_ERROR "ROPEKIT_CUDA must be AUTO, ON or OFF (got '${ROPEKIT_CUDA}')")
endif()

include(CheckLanguage)
check_language(CUDA)
if(NOT CMAKE_CUDA_COMPILER)
  if(_ropekit_cuda STREQUAL "AUTO")
    message(STATUS "ropekit: no CUDA compiler found, building without the CUDA backend")
    return()
  endif()
  message(FATAL_ERROR "ROPEKIT_CUDA=ON but no CUDA compiler (nvcc) was found; set CMAKE_CUDA_COMPILER or ROPEKIT_CUDA=OFF")
endif()

# Ampere and Hopper by default; a value given by the user (or CUDAARCHS) wins.
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES AND NOT DEFINED ENV{CUDAARCHS})
  set(CMAKE_CUDA_ARCHITECTURES 80 90 CACHE STRING "CUDA architectures for the ropekit CUDA backend")
endif()
enable_language(CUDA)
# CMake 3.25 predates C++20 for nvcc (nvcc >= 12 accepts -std=c++20): teach it the flag.
if(NOT DEFINED CMAKE_CUDA20_STANDARD_COMPILE_OPTION AND CMAKE_CUDA_COMPILER_ID STREQUAL "NVIDIA"
   AND CMAKE_CUDA_COMPILER_VERSION VERSION_GREATER_EQUAL 12.0)
  set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
  set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
endif()
set(CMAKE_CUDA_STANDARD 20)
set(CMAKE_CUDA_STANDARD_REQUIRED ON)
set(CMAKE_CUDA_EXTENSIONS OFF)
find_package(CUDAToolkit REQUIRED)
set(ROPEKIT_HAS_CUDA ON)
message(STATUS "ropekit: CUDA backend ON (nvcc ${CMAKE_CUDA_COMPILER_VERSION}, architectures ${CMAKE_CUDA_ARCHITECTURES})")
