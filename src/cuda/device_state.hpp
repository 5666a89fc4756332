#pragma once
// What the CUDA backend keeps per device for the life of the process: the multiprocessor count, two
// private streams (table uploads; stream-ordered frees) and where kernels report invalid
// device-resident positions. Made on the first call on a device; read without locks afterwards.
#include <cuda_runtime.h>

#include <cstdint>

#include "rope_kernel.cuh"

namespace ropekit::detail::cuda {

constexpr int kMaxDevices = 64;

struct DeviceState {
  int device = 0;
  int multiprocessors = 1;
  cudaStream_t upload_stream = nullptr;   // non-blocking, never destroyed: first-use uploads
  cudaStream_t free_stream = nullptr;     // frees of device copies, behind their last uses
  int32_t* fault_claim = nullptr;         // device memory: the last epoch claimed
  FaultRecord* fault_record = nullptr;    // mapped host memory (device address, same under UVA)
};

// cudaGetDeviceCount once; a failure (no driver, no device) is an Error naming q.device.
int device_count();

// The state of `device`, made on first use (refused while `capturing`: it allocates).
const DeviceState& device_state(int device, bool capturing);

// Throws ropekit::Error for an invalid position a kernel on `device` (any device: -1) has
// recorded and not yet reported, and opens the next report. A plain read of host memory: kernels
// still running or queued report later.
void raise_pending_fault(int device);

}  // namespace ropekit::detail::cuda
