// The f16 kernels: every specialisation of rope_kernel for F16 storage.
#include "launch.cuh"

namespace ropekit::detail::cuda {

void launch_f16(KernelArgs& a, const RopeParams& p, const DeviceState& device, cudaStream_t stream) {
  launch_dtype<F16>(a, p, device, stream);
}

}  // namespace ropekit::detail::cuda
