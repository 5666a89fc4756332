// Giraffe truncated basis: keep theta_k >= b, set [a, b) to rho, drop below a.
#include "frequencies/families.hpp"
#include "ropekit/frequencies.hpp"

namespace ropekit::detail {

std::vector<double> truncated_inv_freq(const scaling::Truncated& s, int64_t dim, double base) {
  auto out = default_inv_freq(dim, base);
  for (auto& theta : out) {
    if (theta >= s.b) continue;
    theta = theta >= s.a ? s.rho : 0.0;
  }
  return out;
}

}  // namespace ropekit::detail
