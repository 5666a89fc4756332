#pragma once
// The per-token math of every backend, defined once: the angle of a pair, its cos/sin with the
// attention factor, the xPos scale, the coefficients of each direction, the rotation of a pair and
// the position of a token. A backend file holds its loop, its vector width and its memory access.
// The formulas are templates over the arithmetic type M and its operations A (Arith<M> below:
// float or double, on the host and on the device; the SIMD kernels pass Highway vectors and their
// own A), so every backend runs the same operations in the same order.
//
// Rounding, the same everywhere the hardware allows: each element of a rotated pair is one fused
// multiply-add of the element and cos over the rounded product of its partner and sin,
//   y_a = fma(a, c, -(b s)),  y_b = fma(b, c, a s).
// The scalar loop calls fma (exact without the instruction, in the C library), the CUDA kernels
// __fmaf_rn, the AVX2 and AVX-512 targets their FMA instructions; the SSE2/SSE4 targets have none
// and round the product and the sum separately (results within one fp32 ulp of the others).
// Transcendentals are each backend's own: the C library (scalar loop, tables), CUDA's sincos and
// exp, and Highway vector versions (cpu_simd: CosSinRow, XposScales) of rope_angle,
// scaled_cos_sin and xpos_scale.
#include <cmath>
#include <cstdint>

#include "ropekit/apply.hpp"

#if defined(__CUDACC__)
#define ROPEKIT_HD __host__ __device__ __forceinline__
#else
#define ROPEKIT_HD inline
#endif

namespace ropekit::detail {

// Single roundings, never contracted into a neighbouring operation (on the device: the _rn
// intrinsics, which nvcc does not fuse).
template <class M>
struct Arith {
  static ROPEKIT_HD M mul(M x, M y) {
#if defined(__CUDA_ARCH__)
    if constexpr (sizeof(M) == 4) return __fmul_rn(x, y);
    else return __dmul_rn(x, y);
#else
    return x * y;
#endif
  }
  static ROPEKIT_HD M div(M x, M y) {
#if defined(__CUDA_ARCH__)
    if constexpr (sizeof(M) == 4) return __fdiv_rn(x, y);
    else return __ddiv_rn(x, y);
#else
    return x / y;
#endif
  }
  // x y + z, rounded once.
  static ROPEKIT_HD M fma(M x, M y, M z) {
#if defined(__CUDA_ARCH__)
    if constexpr (sizeof(M) == 4) return __fmaf_rn(x, y, z);
    else return __fma_rn(x, y, z);
#else
    return std::fma(x, y, z);
#endif
  }
  static ROPEKIT_HD M neg(M x) { return -x; }
};

// ---- angles, cos/sin, xPos ----

// The rotation angle of a pair at a position. Default: float32(p) * float32(inv_freq) with one
// float32 rounding, as PyTorch computes it (models were trained with these angles); exact: double.
ROPEKIT_HD double rope_angle(int64_t position, double inv_freq, float inv_freq_f32, bool exact) {
  return exact ? static_cast<double>(position) * inv_freq
               : static_cast<double>(static_cast<float>(position) * inv_freq_f32);
}

// cos and sin of `angle` times the attention factor, in double, each rounded once to fp32: what a
// table row holds.
ROPEKIT_HD void scaled_cos_sin(double angle, double attention, float& cos_out, float& sin_out) {
  double s = 0.0;
  double c = 0.0;
#if defined(__CUDA_ARCH__)
  sincos(angle, &s, &c);
#else
  s = std::sin(angle);
  c = std::cos(angle);
#endif
  cos_out = static_cast<float>(c * attention);
  sin_out = static_cast<float>(s * attention);
}

// The inverse direction's 1 / a^2 (a: the attention factor), rounded once to fp32.
ROPEKIT_HD float inverse_attention_sq(double attention) { return static_cast<float>(1.0 / (attention * attention)); }

// xPos: q scales by x = zeta^((p - center) / scale_base) (sign +1), k by 1 / x (sign -1); in
// double from ln(zeta) / scale_base, rounded once to fp32.
ROPEKIT_HD float xpos_scale(double position, double center, double log_zeta_over_base, float sign) {
  const double up = std::exp((position - center) * log_zeta_over_base);
  return static_cast<float>(sign > 0 ? up : 1.0 / up);
}

// The query scale (ropekit/spec.hpp QueryScale) at a position >= 0, in double:
// factor (1 + beta ln(1 + floor((p + shift) / length))). The floor is integer division, exact at
// every position (HF divides in float32), written without p + shift (shift <= length: the
// remainder and the shift carry at most one step).
ROPEKIT_HD double query_scale_at(const QueryScale& q, int64_t position) {
  const int64_t steps = position / q.length + (position % q.length >= q.length - q.shift ? 1 : 0);
  return q.factor * (1.0 + q.beta * std::log1p(static_cast<double>(steps)));
}

// What a query scale t does to the channels outside the rotated pairs (and, folded into the xPos
// scale, to the pairs): the forward multiplies by t, so does its VJP; the inverse divides.
// In double: the f64 pass-through channels keep it, everything else rounds it once to fp32 (the
// rotated pairs fold fp32 t into their fp32 coefficients).
ROPEKIT_HD double query_pass_scale(double t, Direction direction) { return direction == Direction::inverse ? 1.0 / t : t; }

#include "rope_formulas.inc"

// ---- the position of a token ----

// One element of an index array of int64 or int32.
ROPEKIT_HD int64_t read_index(const void* data, bool i64, int64_t i) {
  return i64 ? static_cast<const int64_t*>(data)[i] : static_cast<int64_t>(static_cast<const int32_t*>(data)[i]);
}

// The position axis of pair j for multi-axis specs (ropekit/spec.hpp), as plain data: M-RoPE's
// sections (axes 0 time, 1 height, 2 width; chunked or interleaved), and axial 2-D RoPE as two
// chunked sections (t = h = pairs / 2, w = 0).
struct PairAxes {
  int64_t t = 0;  // the sections' pair counts
  int64_t h = 0;
  int64_t w = 0;
  bool interleaved = false;
  ROPEKIT_HD int of(int64_t j) const {
    if (interleaved) return j % 3 == 1 && j < 3 * h ? 1 : j % 3 == 2 && j < 3 * w ? 2 : 0;
    return j < t ? 0 : j < t + h ? 1 : 2;
  }
};

// The spec's map: M-RoPE's sections, axial's halves on axes 0 and 1, or every pair on axis 0.
inline PairAxes pair_axes_of(const RopeSpec& spec) {
  if (const auto& m = spec.mrope()) return {m->sections[0], m->sections[1], m->sections[2], m->interleaved};
  if (spec.axial()) return {spec.pairs() / 2, spec.pairs() / 2, 0, false};
  return {spec.pairs(), 0, 0, false};
}

// Positions (ropekit/apply.hpp) as plain data a kernel can take. Tokens are numbered on the grid:
// batch row b, token s of the row (packed: b = 0 and s is the token).
struct TokenPositions {
  Positions::Kind kind = Positions::Kind::from_offset;
  int64_t start = 0;              // offset
  const void* values = nullptr;   // offsets or ids; packed: per-sequence offsets or null
  bool values_i64 = true;
  const void* cu_seqlens = nullptr;
  bool cu_i64 = true;
  int64_t num_sequences = 0;      // packed
  int64_t seq = 0;                // tokens per batch row
  int64_t axes = 1;               // token_ids: 3 for M-RoPE, 2 axial; axis-major
  int64_t axis_stride = 0;        // token_ids with several axes: ids per axis (the grid's tokens)

  ROPEKIT_HD int64_t value(int64_t i) const { return read_index(values, values_i64, i); }
  ROPEKIT_HD int64_t boundary(int64_t i) const { return read_index(cu_seqlens, cu_i64, i); }
  // offset, offsets or ids: the position of token (b, s), from values as they are.
  ROPEKIT_HD int64_t at(int64_t b, int64_t s) const {
    switch (kind) {
      case Positions::Kind::per_sequence: return value(b) + s;
      case Positions::Kind::token_ids: return value(b * seq + s);
      default: return start + s;
    }
  }
  // Axis a (< axes) of token (b, s); with one axis every axis is at(b, s).
  ROPEKIT_HD int64_t at_axis(int64_t b, int64_t s, int a) const {
    return axes == 1 ? at(b, s) : value(a * axis_stride + b * seq + s);
  }
  // The three axes of token (b, s), axis 0 at `first`; the axes it does not carry repeat axis 0.
  ROPEKIT_HD void axis_positions(int64_t b, int64_t s, int64_t first, int64_t (&out)[3]) const {
    out[0] = first;
    out[1] = axes > 1 ? at_axis(b, s, 1) : first;
    out[2] = axes > 2 ? at_axis(b, s, 2) : first;
  }
  // packed: the offset of a sequence's first token.
  ROPEKIT_HD int64_t sequence_offset(int64_t sequence) const { return values != nullptr ? value(sequence) : 0; }
  // packed: the sequence holding token t, the last one that starts at or before t (empty ones
  // before it are passed over). In [0, num_sequences) whatever cu_seqlens holds.
  ROPEKIT_HD int64_t sequence_of(int64_t t) const {
    int64_t lo = 0;
    int64_t hi = num_sequences - 1;
    while (lo < hi) {
      const int64_t mid = lo + (hi - lo + 1) / 2;
      if (boundary(mid) <= t) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }
};

}  // namespace ropekit::detail
