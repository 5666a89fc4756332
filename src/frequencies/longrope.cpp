// LongRoPE (Phi-3): inv_freq_i = 1 / (ext_i * base^(2i/d)), ext = long factors past original_max.
#include <cmath>

#include "frequencies/families.hpp"
#include "ropekit/frequencies.hpp"

namespace ropekit::detail {

std::vector<double> longrope_inv_freq(const scaling::LongRope& s, int64_t dim, double base, int64_t seq_len) {
  const auto& ext = seq_len > s.original_max ? s.long_factor : s.short_factor;
  auto out = default_inv_freq(dim, base);
  for (size_t i = 0; i < out.size(); ++i) out[i] /= ext[i];
  return out;
}

double longrope_attention_factor(const scaling::LongRope& s) {
  if (s.attention_factor) return *s.attention_factor;
  if (s.factor <= 1.0) return 1.0;
  return std::sqrt(1.0 + std::log(s.factor) / std::log(static_cast<double>(s.original_max)));
}

}  // namespace ropekit::detail
