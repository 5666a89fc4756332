// xPos per-pair base: zeta_i = (2i + gamma * d) / ((1 + gamma) * d).
#include "ropekit/frequencies.hpp"

namespace ropekit {

std::vector<double> xpos_zeta(const RopeSpec& spec) {
  if (!spec.xpos()) return {};
  const double d = static_cast<double>(spec.rotary_dim());
  const double gamma = spec.xpos()->gamma;
  std::vector<double> out(static_cast<size_t>(spec.pairs()));
  for (size_t i = 0; i < out.size(); ++i) out[i] = (2.0 * static_cast<double>(i) + gamma * d) / ((1.0 + gamma) * d);
  return out;
}

}  // namespace ropekit
