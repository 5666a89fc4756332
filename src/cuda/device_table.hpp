#pragma once
// Device copies of a RopeTable's data, owned by the table (TableData::cuda_state).
#include <cstdint>

#include "../table_data.hpp"

namespace ropekit::detail::cuda {

// What a kernel reads from one table on one device. Arrays hold `pairs` entries.
struct DeviceTable {
  const float* rows = nullptr;          // size x (pairs cos, pairs sin); null when made without rows
  int64_t size = 0;                     // rows present
  const double* inv_freq = nullptr;
  const float* inv_freq_f32 = nullptr;
  const double* xpos_log_zeta = nullptr;  // null without xPos
};

// The copy of `table` on the current device, uploaded on `stream` on first use (with rows when
// `with_rows`, else the frequencies only) and kept until the table is destroyed. Thread-safe; the
// reference stays valid as long as the table.
const DeviceTable& device_table(const TableData& table, bool with_rows, void* stream);

}  // namespace ropekit::detail::cuda
