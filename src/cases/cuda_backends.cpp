// The CUDA kernels as case-table backends: the checker's regions in device memory (cudaMalloc),
// apply_cuda on the default stream, then a synchronisation that surfaces any device fault.
#include <stdexcept>
#include <string>
#include <utility>

#include "check_case.hpp"
#if defined(ROPEKIT_HAS_CUDA)
#include <cuda_runtime.h>

#include "ropekit/cuda.hpp"
#endif

namespace ropekit::cases {

#if defined(ROPEKIT_HAS_CUDA)
namespace {

void cuda_ok(cudaError_t err, const char* what) {
  if (err != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(err));
}

Memory device_memory(int index) {
  Memory m;
  m.device = Device::cuda(index);
  m.allocate = [index](size_t bytes) {
    cuda_ok(cudaSetDevice(index), "cudaSetDevice");
    void* p = nullptr;
    cuda_ok(cudaMalloc(&p, bytes), "cudaMalloc");
    return p;
  };
  m.release = [](void* p) { (void)cudaFree(p); };
  m.upload = [](void* to, const void* host, size_t bytes) {
    cuda_ok(cudaMemcpy(to, host, bytes, cudaMemcpyHostToDevice), "cudaMemcpy to the device");
  };
  m.download = [](void* host, const void* from, size_t bytes) {
    cuda_ok(cudaMemcpy(host, from, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy from the device");
  };
  return m;
}

}  // namespace

std::vector<Backend> cuda_backends() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();
    return {};
  }
  std::vector<Backend> out;
  for (int index = 0; index < count; ++index) {
    Backend b = relocated("cuda:" + std::to_string(index), false, device_memory(index), [index](const detail::RopeParams& p) {
      detail::apply_cuda(p);
      cuda_ok(cudaSetDevice(index), "cudaSetDevice");
      cuda_ok(cudaDeviceSynchronize(), "the kernel");
      cuda_check_errors();  // the table's positions are valid: a reported fault fails the case
    });
    b.agrees_with_scalar = true;  // the kernels share the scalar loop's arithmetic (src/rope_math.hpp)
    out.push_back(std::move(b));
  }
  return out;
}
#else
std::vector<Backend> cuda_backends() { return {}; }
#endif

}  // namespace ropekit::cases
