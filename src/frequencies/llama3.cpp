// Llama 3.1: keep high frequencies, divide low ones by `factor`, blend in between by wavelength.
#include <cmath>
#include <numbers>

#include "frequencies/families.hpp"
#include "ropekit/frequencies.hpp"

namespace ropekit::detail {

std::vector<double> llama3_inv_freq(const scaling::Llama3& s, int64_t dim, double base) {
  auto out = default_inv_freq(dim, base);
  const double context = static_cast<double>(s.original_max);
  const double low_freq_wavelen = context / s.low_freq_factor;
  const double high_freq_wavelen = context / s.high_freq_factor;
  for (auto& f : out) {
    const double wavelen = 2.0 * std::numbers::pi / f;
    if (wavelen > low_freq_wavelen) {
      f /= s.factor;
    } else if (wavelen >= high_freq_wavelen) {
      const double smooth = (context / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
      f = (1.0 - smooth) * f / s.factor + smooth * f;
    }
  }
  return out;
}

}  // namespace ropekit::detail
