#pragma once
// Rotation with caller-provided coefficients, for APIs that hand over their own angle tables:
// Zeta's apply_rotary_pos_emb(q, k, freqs, scale), the xPos-style apply_rotary_pos_emb(x, sin, cos,
// scale) and LLaMA's apply_rotary_emb(xq, xk, freqs_cis). CPU only.
#include <cstdint>
#include <optional>

#include "ropekit/apply.hpp"
#include "ropekit/export.hpp"
#include "ropekit/spec.hpp"
#include "ropekit/tensor_view.hpp"

namespace ropekit {

// fp32 tables of `width` coefficients per sequence index, row-major and contiguous: element j of
// every row of x at sequence index s (axis 1 of a rank-4 view, axis 0 of a rank-3 one) uses
// cos[s * width + j] and sin[s * width + j]. For each pair (a, b) of `style` within the first
// `width` elements:
//   forward:  y[a] = cos[a] x[a] - sin[a] x[b],   y[b] = cos[b] x[b] + sin[b] x[a]
//   backward: the transpose (vector-Jacobian product with respect to x).
// Per element rather than per pair, so that tables whose two halves differ, and scales folded into
// them, are applied exactly as the caller wrote them. Elements past `width` are passed through.
struct ExplicitCoefficients {
  const float* cos = nullptr;
  const float* sin = nullptr;
  int64_t seq = 0;    // rows
  int64_t width = 0;  // even, <= head_dim
};

// Rotates x into out (or in place when out is absent). Checks everything before writing; an Error
// leaves out untouched. Direction::inverse is refused (the tables need not be invertible).
ROPEKIT_API void apply_explicit(const TensorView& x, const std::optional<TensorView>& out, const ExplicitCoefficients& coefficients,
                    Style style, Direction direction = Direction::forward);

}  // namespace ropekit
