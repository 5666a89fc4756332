#pragma once
// One launch function per dtype, each in its own translation unit (kernels_*.cu) so that the
// kernel specialisations compile in parallel.
#include <cuda_runtime.h>

#include "../backend.hpp"
#include "device_state.hpp"
#include "rope_kernel.cuh"

namespace ropekit::detail::cuda {

// Picks the specialisation for `p`, sets the work split in `a` and launches it on `stream`.
void launch_f32(KernelArgs& a, const RopeParams& p, const DeviceState& device, cudaStream_t stream);
void launch_f16(KernelArgs& a, const RopeParams& p, const DeviceState& device, cudaStream_t stream);
void launch_bf16(KernelArgs& a, const RopeParams& p, const DeviceState& device, cudaStream_t stream);

}  // namespace ropekit::detail::cuda
