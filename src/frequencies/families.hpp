#pragma once
// One function per scaling family; frequencies.cpp dispatches on the spec's variant.
#include <cmath>
#include <cstdint>
#include <vector>

#include "ropekit/spec.hpp"

namespace ropekit::detail {

std::vector<double> yarn_inv_freq(const scaling::Yarn& s, int64_t dim, double base);
double yarn_attention_factor(const scaling::Yarn& s);

std::vector<double> llama3_inv_freq(const scaling::Llama3& s, int64_t dim, double base);

std::vector<double> longrope_inv_freq(const scaling::LongRope& s, int64_t dim, double base, int64_t seq_len);
double longrope_attention_factor(const scaling::LongRope& s);

// HF: int(partial_rotary_factor * head_dim // 2), a float floor.
inline size_t proportional_rotated_pairs(const scaling::Proportional& s, int64_t dim) {
  return static_cast<size_t>(std::floor(s.fraction * static_cast<double>(dim) / 2.0));
}

std::vector<double> truncated_inv_freq(const scaling::Truncated& s, int64_t dim, double base);

}  // namespace ropekit::detail
