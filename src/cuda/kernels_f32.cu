// The f32 kernels: every specialisation of rope_kernel for F32 storage.
#include "launch.cuh"

namespace ropekit::detail::cuda {

void launch_f32(KernelArgs& a, const RopeParams& p, const DeviceState& device, cudaStream_t stream) {
  launch_dtype<F32>(a, p, device, stream);
}

}  // namespace ropekit::detail::cuda
