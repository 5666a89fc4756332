#pragma once
// CUDA-only checks that cannot happen inside apply_rope without synchronising (see
// ApplyOptions::stream). Present in every build; without the CUDA backend they do nothing.

#include "ropekit/export.hpp"

namespace ropekit {

// Device-resident positions (offsets, ids, cu_seqlens) are checked by the kernel, not before the
// call returns: tokens without a valid position are left unwritten and the first such position
// is recorded. The next apply_rope call on that device, or one of these, throws ropekit::Error
// naming it (e.g. "positions.ids[7]: expected in [0, ...], got -4") and clears it.
//
// Reports what kernels that have finished recorded (no synchronisation).
ROPEKIT_API void cuda_check_errors();
// Waits for `stream` (cudaStream_t; nullptr: the legacy default stream) first, so that every
// kernel queued on it before the call is checked.
ROPEKIT_API void cuda_check_errors(void* stream);

}  // namespace ropekit
