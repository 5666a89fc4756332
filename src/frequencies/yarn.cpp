// YaRN: ramp between interpolated and extrapolated frequencies over the correction range, and
// the mscale attention factor. Helpers follow jquesnelle's reference and HF exactly.
#include <algorithm>
#include <cmath>
#include <numbers>

#include "frequencies/families.hpp"
#include "ropekit/frequencies.hpp"

namespace ropekit {

double find_correction_dim(double num_rotations, double dim, double base, double max_position_embeddings) {
  return dim * std::log(max_position_embeddings / (num_rotations * 2.0 * std::numbers::pi)) / (2.0 * std::log(base));
}

std::pair<double, double> find_correction_range(double low_rot, double high_rot, double dim, double base,
                                                double max_position_embeddings, bool truncate) {
  double low = find_correction_dim(low_rot, dim, base, max_position_embeddings);
  double high = find_correction_dim(high_rot, dim, base, max_position_embeddings);
  if (truncate) {
    low = std::floor(low);
    high = std::ceil(high);
  }
  return {std::max(low, 0.0), std::min(high, dim - 1.0)};
}

std::vector<double> linear_ramp_mask(double min, double max, int64_t n) {
  if (min == max) max += 0.001;  // avoid dividing by zero
  std::vector<double> out(static_cast<size_t>(std::max<int64_t>(n, 0)));
  for (size_t i = 0; i < out.size(); ++i) out[i] = std::clamp((static_cast<double>(i) - min) / (max - min), 0.0, 1.0);
  return out;
}

double get_mscale(double scale, double mscale) {
  if (scale <= 1.0) return 1.0;
  return 0.1 * mscale * std::log(scale) + 1.0;
}

namespace detail {

std::vector<double> yarn_inv_freq(const scaling::Yarn& s, int64_t dim, double base) {
  const auto extrapolated = default_inv_freq(dim, base);
  const auto [low, high] = find_correction_range(s.beta_fast, s.beta_slow, static_cast<double>(dim), base,
                                                 static_cast<double>(s.original_max), s.truncate);
  const auto ramp = linear_ramp_mask(low, high, dim / 2);
  std::vector<double> out(extrapolated.size());
  for (size_t i = 0; i < out.size(); ++i) {
    // Weight of the extrapolated (original) frequency: 1 for high-frequency pairs, 0 for low.
    const double keep = (1.0 - ramp[i]) * s.extrapolation_factor;
    const double interpolated = extrapolated[i] / s.factor;
    out[i] = interpolated * (1.0 - keep) + extrapolated[i] * keep;
  }
  return out;
}

double yarn_attention_factor(const scaling::Yarn& s) {
  double factor;
  if (s.attention_factor) {
    factor = *s.attention_factor;
  } else if (s.mscale && s.mscale_all_dim && *s.mscale != 0.0 && *s.mscale_all_dim != 0.0) {
    factor = get_mscale(s.factor, *s.mscale) / get_mscale(s.factor, *s.mscale_all_dim);
  } else {
    factor = get_mscale(s.factor);
  }
  return factor * s.attention_multiplier;
}

}  // namespace detail
}  // namespace ropekit
