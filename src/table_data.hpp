#pragma once
// What a RopeTable holds. Everything is set once when the table is built; only the backend state
// (device copies) is created later, under its mutex.
#include <memory>
#include <mutex>
#include <vector>

#include "ropekit/table.hpp"

namespace ropekit::detail {

struct TableData {
  RopeSpec spec;
  TableOptions options;
  std::vector<double> inv_freq;
  std::vector<float> inv_freq_f32;
  double attention_factor = 1.0;
  std::vector<double> xpos_log_zeta;
  std::vector<float> rows;  // size x (pairs cos, pairs sin)
  int64_t size = 0;

  // State a backend keeps for the lifetime of this table (the CUDA backend's device copies).
  mutable std::mutex backend_mutex;
  mutable std::shared_ptr<void> cuda_state;

  explicit TableData(RopeSpec s) : spec(std::move(s)) {}
};

// The one way from a RopeTable to its data (not part of the public API).
struct TableAccess {
  static const TableData& data(const RopeTable& table) { return *table.data_; }
};

}  // namespace ropekit::detail
