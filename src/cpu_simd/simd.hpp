#pragma once
// The vectorized CPU backend (Highway, dispatched at run time) and the switch between it and the
// scalar reference loop.
#include <cstdint>
#include <string>
#include <vector>

#include "backend.hpp"

namespace ropekit::detail {

// Which CPU loop apply_cpu runs. The default comes from the environment: ROPEKIT_CPU=scalar forces
// the reference loop, anything else (or unset) the vector one.
enum class CpuKernel { scalar, simd };
CpuKernel cpu_kernel();
void set_cpu_kernel(CpuKernel kernel);

void apply_cpu_simd(const RopeParams& params);

// Test hooks. cos/sin of n angles (in double) by the vector path, times `scale`, rounded once to
// float: the in-kernel sincos of apply_cpu_simd.
void simd_sincos(const double* angles, int64_t n, double scale, float* cos_out, float* sin_out);
// The Highway targets compiled in and supported by this CPU, best first, and a way to pin one
// (0: back to the best).
std::vector<int64_t> simd_targets();
void simd_pin_target(int64_t target);
std::string simd_target_name();

}  // namespace ropekit::detail
