#pragma once
// Device copies of host CosSinCache data, uploaded once and reused by later calls.
#include <cstdint>
#include <memory>

#include "ropekit/cache.hpp"

namespace ropekit::detail::cuda {

// What a kernel reads from one CosSinCache on one device. Arrays hold `pairs` entries.
struct DeviceTable {
  const float* rows = nullptr;          // size x (pairs cos, pairs sin); null when uploaded without rows
  int64_t size = 0;                     // rows present
  const double* inv_freq = nullptr;
  const float* inv_freq_f32 = nullptr;
  const double* xpos_log_zeta = nullptr;  // null without xPos
};

// The device copy of `table` on the current device, uploaded (with a synchronising copy on
// `stream`) on first use and after the table changed (generation, size or contents). `with_rows`
// false uploads only the frequencies (in-kernel sincos). Thread-safe. Keep the returned pointer
// alive until the kernel using it has been enqueued: a replaced or evicted copy is freed only when
// its last user lets go, after a device synchronisation.
std::shared_ptr<const DeviceTable> device_table(const CosSinCache& table, bool with_rows, void* stream);

}  // namespace ropekit::detail::cuda
