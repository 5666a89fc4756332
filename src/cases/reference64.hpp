#pragma once
// The float64 RoPE every backend is checked against, written from the formulas and independent of
// ropekit's kernels and tables. Inputs are float64 copies of the stored values.
#include <cmath>
#include <cstdint>
#include <vector>

namespace ropekit::ref64 {

enum class RefStyle { half, interleaved };
enum class RefDirection { forward, backward, inverse };

struct RefRope {
  int64_t head_dim = 0;
  int64_t rotary_dim = 0;
  RefStyle style = RefStyle::half;
  std::vector<double> inv_freq;   // rotary_dim / 2 angles per position unit
  double attention = 1.0;         // folded into cos and sin
  bool xpos = false;
  std::vector<double> xpos_zeta;  // rotary_dim / 2
  double xpos_scale_base = 512.0;
  double xpos_center = 0.0;
  bool float32_angles = true;     // angle = float(p) * float(inv_freq), as torch computes it
  std::vector<int> pair_axis;     // M-RoPE: the position axis of each pair (empty: axis 0)
};

// Rotates one head row x (head_dim values) for a token at `axis_positions` (M-RoPE's t, h, w;
// without M-RoPE only the first is read). sign = +1 for q, -1 for k (the xPos exponent's sign).
inline std::vector<double> reference_row(const RefRope& r, const std::vector<double>& x,
                                         const int64_t (&axis_positions)[3], double sign, RefDirection dir) {
  std::vector<double> y = x;
  const int64_t pairs = r.rotary_dim / 2;
  for (int64_t i = 0; i < pairs; ++i) {
    const int64_t position = axis_positions[r.pair_axis.empty() ? 0 : r.pair_axis[static_cast<size_t>(i)]];
    const double f = r.inv_freq[static_cast<size_t>(i)];
    const double angle = r.float32_angles
                             ? static_cast<double>(static_cast<float>(position) * static_cast<float>(f))
                             : static_cast<double>(position) * f;
    double scale = r.attention;
    if (r.xpos) {
      scale *= std::pow(r.xpos_zeta[static_cast<size_t>(i)],
                        sign * (static_cast<double>(position) - r.xpos_center) / r.xpos_scale_base);
    }
    double c = std::cos(angle);
    double s = std::sin(angle);
    if (dir == RefDirection::backward) {
      s = -s;
      c *= scale;
      s *= scale;
    } else if (dir == RefDirection::inverse) {
      s = -s;
      c /= scale;
      s /= scale;
    } else {
      c *= scale;
      s *= scale;
    }
    const int64_t ia = r.style == RefStyle::half ? i : 2 * i;
    const int64_t ib = r.style == RefStyle::half ? i + pairs : 2 * i + 1;
    const double a = x[static_cast<size_t>(ia)];
    const double b = x[static_cast<size_t>(ib)];
    y[static_cast<size_t>(ia)] = a * c - b * s;
    y[static_cast<size_t>(ib)] = b * c + a * s;
  }
  return y;
}

inline std::vector<double> reference_row(const RefRope& r, const std::vector<double>& x, int64_t position,
                                         double sign, RefDirection dir) {
  const int64_t at[3] = {position, position, position};
  return reference_row(r, x, at, sign, dir);
}

// A query scale at a position, from its definition: factor (1 + beta ln(1 + floor((p + shift) / length))).
inline double query_scale(double factor, double beta, int64_t length, int64_t shift, int64_t position) {
  const long double steps = std::floor((static_cast<long double>(position) + shift) / length);
  return factor * (1.0 + beta * std::log(1.0 + static_cast<double>(steps)));
}

}  // namespace ropekit::ref64
