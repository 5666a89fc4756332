#pragma once
// Device copies of a RopeTable's data, owned by the table (TableData::cuda_state).
#include <cuda_runtime.h>

#include <cstdint>

#include "../table_data.hpp"
#include "device_state.hpp"

namespace ropekit::detail::cuda {

// What a kernel reads from one table on one device. Arrays hold `pairs` entries.
struct DeviceTable {
  const float* rows = nullptr;          // size x (pairs cos, pairs sin); null when made without rows
  int64_t size = 0;                     // rows present
  const double* inv_freq = nullptr;
  const float* inv_freq_f32 = nullptr;
  const double* xpos_log_zeta = nullptr;  // null without xPos
};

// The copy of `table` on `device` (with rows when `with_rows`; a copy with rows also serves calls
// without). Made on first use: allocated and uploaded on the device's upload stream, which is
// then synchronised (refused while `capturing`). Kept until the table is destroyed; the reference
// stays valid as long as the table. Thread-safe.
const DeviceTable& device_table(const TableData& table, const DeviceState& device, bool with_rows, bool capturing);

// After a launch that reads `copy` on `stream` (not a capturing one): records an event there. When
// the table is destroyed its copies are freed on the device's free stream after every recorded use
// (cudaFreeAsync behind cudaStreamWaitEvent): no host or device-wide synchronisation.
void record_use(const TableData& table, const DeviceTable& copy, cudaStream_t stream);

}  // namespace ropekit::detail::cuda
