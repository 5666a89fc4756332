#pragma once
// Every CUDA runtime call goes through ROPEKIT_CUDA_CHECK; failures become ropekit::CudaError.
#include <cuda_runtime.h>

#include <string>

#include "ropekit/error.hpp"

namespace ropekit::detail::cuda {

[[noreturn]] inline void throw_cuda(cudaError_t err, const char* what, const char* file, int line) {
  throw CudaError(std::string(what) + " failed: " + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) +
                  ") at " + file + ":" + std::to_string(line));
}

inline void check(cudaError_t err, const char* what, const char* file, int line) {
  if (err != cudaSuccess) throw_cuda(err, what, file, line);
}

// Sets the current device for the scope of a call and restores the caller's afterwards (one
// cudaGetDevice when it already is the current one).
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    check(cudaGetDevice(&previous_), "cudaGetDevice", __FILE__, __LINE__);
    if (device != previous_) {
      check(cudaSetDevice(device), "cudaSetDevice", __FILE__, __LINE__);
      changed_ = true;
    }
  }
  ~DeviceGuard() {
    if (changed_) (void)cudaSetDevice(previous_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
  bool changed_ = false;
};

}  // namespace ropekit::detail::cuda

#define ROPEKIT_CUDA_CHECK(call) ::ropekit::detail::cuda::check((call), #call, __FILE__, __LINE__)
