// The bf16 kernels: every specialisation of rope_kernel for BF16 storage.
#include "launch.cuh"

namespace ropekit::detail::cuda {

void launch_bf16(KernelArgs& a, const RopeParams& p, const DeviceState& device, cudaStream_t stream) {
  launch_dtype<BF16>(a, p, device, stream);
}

}  // namespace ropekit::detail::cuda
