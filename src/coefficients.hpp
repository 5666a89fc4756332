#pragma once
// The per-pair rotation coefficients, shared by every backend: one place for the formula.
//   y_a = c * a - s * b
//   y_b = s * a + c * b
// with (cos, sin) from the table (attention factor a already folded in) and the xPos scale x.
#include <cmath>

#include "ropekit/apply.hpp"

#if defined(__CUDACC__)
#define ROPEKIT_HD __host__ __device__ __forceinline__
#else
#define ROPEKIT_HD inline
#endif

namespace ropekit::detail {

// The rotation angle of a pair at a position. Default: float32(p) * float32(inv_freq) with one
// float32 rounding, as PyTorch computes it (models were trained with these angles); exact: double.
ROPEKIT_HD double rope_angle(int64_t position, double inv_freq, float inv_freq_f32, bool exact) {
  return exact ? static_cast<double>(position) * inv_freq
               : static_cast<double>(static_cast<float>(position) * inv_freq_f32);
}

// x = zeta^(sign * (p - center) / scale_base), given ln(zeta) / scale_base.
ROPEKIT_HD float xpos_scale(double position, double center, double log_zeta_over_base, float sign) {
  return static_cast<float>(std::exp(static_cast<double>(sign) * (position - center) * log_zeta_over_base));
}

// forward: a x R(t); backward (VJP): a x R(-t); inverse: R(-t) / (a x).
ROPEKIT_HD void pair_coefficients(float cos_a, float sin_a, float xscale, Direction direction,
                                  float inv_attention_sq, float& c, float& s) {
  switch (direction) {
    case Direction::forward:
      c = cos_a * xscale;
      s = sin_a * xscale;
      break;
    case Direction::backward:
      c = cos_a * xscale;
      s = -sin_a * xscale;
      break;
    case Direction::inverse: {
      const float k = inv_attention_sq / xscale;
      c = cos_a * k;
      s = -sin_a * k;
      break;
    }
  }
}

// One pair (a, b) with per-element coefficients (ropekit/explicit.hpp):
//   forward y_a = ca a - sa b, y_b = cb b + sb a; backward (the transpose) y_a = ca a + sb b, y_b = cb b - sa a.
// With ca == cb and sa == sb this is the rotation above.
// M is the arithmetic type: float, or double for f64 storage.
template <typename M>
ROPEKIT_HD void rotate_pair_explicit(M a, M b, float ca, float sa, float cb, float sb, bool transpose, M& ya, M& yb) {
  if (transpose) {
    ya = ca * a + sb * b;
    yb = cb * b - sa * a;
  } else {
    ya = ca * a - sa * b;
    yb = cb * b + sb * a;
  }
}

}  // namespace ropekit::detail
