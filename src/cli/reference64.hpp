#pragma once
// A plain float64 RoPE for `ropekit verify`, written from the formulas and sharing no code with the
// kernels or the cos/sin table: it takes inv_freq and the attention factor and rotates one head row.
#include <cmath>
#include <cstdint>
#include <vector>

namespace ropekit::cli {

enum class RefDirection { forward, backward, inverse };

struct Reference64 {
  int64_t rotary_dim = 0;
  bool interleaved = false;
  std::vector<double> inv_freq;  // rotary_dim / 2
  double attention = 1.0;
  std::vector<double> xpos_zeta;  // empty: no xPos
  double xpos_scale_base = 512.0;
  double xpos_center = 0.0;       // the exponent is (position - center) / scale_base

  // x: one head row (head_dim values, float64 copies of what is stored). sign: +1 for q, -1 for k.
  std::vector<double> rotate(const std::vector<double>& x, int64_t position, double sign, RefDirection dir) const {
    std::vector<double> y = x;
    const int64_t pairs = rotary_dim / 2;
    for (int64_t i = 0; i < pairs; ++i) {
      const auto k = static_cast<size_t>(i);
      // Angles as PyTorch forms them in float32 (the models' convention), then cos/sin in double.
      const double angle = static_cast<double>(static_cast<float>(position) * static_cast<float>(inv_freq[k]));
      double scale = attention;
      if (!xpos_zeta.empty())
        scale *= std::pow(xpos_zeta[k], sign * (static_cast<double>(position) - xpos_center) / xpos_scale_base);
      double c = std::cos(angle), s = std::sin(angle);
      if (dir != RefDirection::forward) s = -s;                 // R(-theta)
      const double m = dir == RefDirection::inverse ? 1.0 / scale : scale;
      const int64_t ia = interleaved ? 2 * i : i;
      const int64_t ib = interleaved ? 2 * i + 1 : i + pairs;
      const double a = x[static_cast<size_t>(ia)], b = x[static_cast<size_t>(ib)];
      y[static_cast<size_t>(ia)] = m * (a * c - b * s);
      y[static_cast<size_t>(ib)] = m * (b * c + a * s);
    }
    return y;
  }

  // What an error in each element of y is measured against: the norm of its rotated pair (rotation
  // mixes the two, so an element near zero still carries its partner's rounding), else |y|.
  std::vector<double> magnitudes(const std::vector<double>& y) const {
    std::vector<double> m(y.size());
    for (size_t e = 0; e < y.size(); ++e) m[e] = std::fabs(y[e]);
    const int64_t pairs = rotary_dim / 2;
    for (int64_t i = 0; i < pairs; ++i) {
      const auto ia = static_cast<size_t>(interleaved ? 2 * i : i);
      const auto ib = static_cast<size_t>(interleaved ? 2 * i + 1 : i + pairs);
      m[ia] = m[ib] = std::hypot(y[ia], y[ib]);
    }
    return m;
  }
};

}  // namespace ropekit::cli
