#pragma once
// fp16 / bf16 (and FP8 cache) storage conversions, round to nearest even, NaN stays NaN; and the
// host loops' storage formats.
#include <bit>
#include <cmath>
#include <cstdint>

#include "ropekit/tensor_view.hpp"

namespace ropekit::detail {

inline float bf16_to_float(uint16_t h) { return std::bit_cast<float>(static_cast<uint32_t>(h) << 16); }

inline uint16_t float_to_bf16(float f) {
  const uint32_t bits = std::bit_cast<uint32_t>(f);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x0040u);  // quiet NaN
  const uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

inline float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu;
  const uint32_t mantissa = h & 0x3ffu;
  if (exponent == 0x1f) return std::bit_cast<float>(sign | 0x7f800000u | (mantissa << 13));  // inf / NaN
  if (exponent != 0) return std::bit_cast<float>(sign | ((exponent + 112u) << 23) | (mantissa << 13));
  // Subnormal (or zero): mantissa * 2^-24.
  const float magnitude = static_cast<float>(mantissa) * 5.9604644775390625e-8f;
  return sign ? -magnitude : magnitude;
}

inline uint16_t float_to_half(float f) {
  const uint32_t bits = std::bit_cast<uint32_t>(f);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t abs = bits & 0x7fffffffu;
  if (abs > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);  // NaN
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to >= 65520: inf
  if (abs >= 0x38800000u) {                                              // normal half
    const uint32_t rounded = abs + 0xfffu + ((abs >> 13) & 1u);
    return static_cast<uint16_t>(sign | ((rounded - 0x38000000u) >> 13));
  }
  // Subnormal half: add 0.5 so float addition does the round-to-nearest-even at 2^-24.
  const float shifted = std::bit_cast<float>(abs) + 0.5f;
  return static_cast<uint16_t>(sign | (std::bit_cast<uint32_t>(shifted) - 0x3f000000u));
}

// OCP FP8 (e4m3 "fn": bias 7, no infinities, 0x7f NaN, max 448; e5m2: bias 15, max 57344), for
// KV caches: round to nearest even, saturating to the largest finite value (as vLLM and FlashInfer
// quantise; torch's casts give NaN / inf past it), NaN stays NaN. kMantissa bits, kBias, the
// smallest normal exponent 1 - kBias; subnormals are multiples of 2^(1 - kBias - kMantissa).
template <int kMantissa, int kBias, uint32_t kMaxBits, uint8_t kNan>
struct Fp8Format {
  static constexpr float kMaxFinite = std::bit_cast<float>(
      (((kMaxBits >> kMantissa) + 127u - kBias) << 23) | ((kMaxBits & ((1u << kMantissa) - 1u)) << (23 - kMantissa)));
  static float to_float(uint8_t v) {
    const uint32_t sign = static_cast<uint32_t>(v & 0x80u) << 24;
    const uint32_t exponent = (v & 0x7fu) >> kMantissa;
    const uint32_t mantissa = v & ((1u << kMantissa) - 1u);
    if ((v & 0x7fu) > kMaxBits) return std::bit_cast<float>(sign | 0x7fc00000u);  // NaN (e5m2: inf too)
    if (exponent != 0)
      return std::bit_cast<float>(sign | ((exponent + 127u - kBias) << 23) | (mantissa << (23 - kMantissa)));
    const float magnitude = std::ldexp(static_cast<float>(mantissa), 1 - kBias - kMantissa);
    return sign ? -magnitude : magnitude;
  }
  // Branch-free (selects), so that the cache's row loops vectorise.
  static uint8_t from_float(float f) {
    const uint32_t bits = std::bit_cast<uint32_t>(f);
    const uint32_t sign = (bits >> 24) & 0x80u;
    const uint32_t abs = bits & 0x7fffffffu;
    // Normal: round the fp32 mantissa to kMantissa bits (nearest even), then rebias.
    constexpr uint32_t kDropped = 23 - kMantissa;
    const uint32_t rounded = abs + ((1u << (kDropped - 1)) - 1u) + ((abs >> kDropped) & 1u);
    const uint32_t normal = (rounded >> kDropped) - (static_cast<uint32_t>(127 - kBias) << kMantissa);
    // Subnormal: adding 2^(23 + q), q the subnormal step's exponent, makes the fp32 addition round
    // to a multiple of 2^q (nearest even); the step count is what lands in the low bits.
    constexpr float kShift = std::bit_cast<float>(static_cast<uint32_t>(127 + 23 + 1 - kBias - kMantissa) << 23);
    const uint32_t subnormal = std::bit_cast<uint32_t>(std::bit_cast<float>(abs) + kShift) - std::bit_cast<uint32_t>(kShift);
    constexpr uint32_t kMinNormal = static_cast<uint32_t>(127 + 1 - kBias) << 23;
    uint32_t code = abs >= kMinNormal ? normal : subnormal;
    code = abs >= std::bit_cast<uint32_t>(kMaxFinite) ? kMaxBits : code;  // (bits of magnitudes are ordered)
    code = abs > 0x7f800000u ? kNan : code;
    return static_cast<uint8_t>(sign | code);
  }
};
using Fp8E4m3 = Fp8Format<3, 7, 0x7eu, 0x7fu>;
using Fp8E5m2 = Fp8Format<2, 15, 0x7bu, 0x7eu>;

// A storage format for the host's plain loops: its element, the type it is computed in (double
// only for f64) and the conversions, rounded once.
template <class S, class M, M (*Load)(S), S (*Store)(M)>
struct StorageFormat {
  using Storage = S;
  using Math = M;
  static M load(S v) { return Load(v); }
  static S store(M v) { return Store(v); }
};
template <class T>
T same_value(T v) {
  return v;
}
using StoredF32 = StorageFormat<float, float, same_value<float>, same_value<float>>;
using StoredF64 = StorageFormat<double, double, same_value<double>, same_value<double>>;
using StoredF16 = StorageFormat<uint16_t, float, half_to_float, float_to_half>;
using StoredBf16 = StorageFormat<uint16_t, float, bf16_to_float, float_to_bf16>;

// f.template operator()<Format>() with the storage format of `dtype`.
template <class F>
void with_storage_format(DType dtype, F&& f) {
  switch (dtype) {
    case DType::f32: return f.template operator()<StoredF32>();
    case DType::f16: return f.template operator()<StoredF16>();
    case DType::bf16: return f.template operator()<StoredBf16>();
    case DType::f64: return f.template operator()<StoredF64>();
    case DType::f8_e4m3:
    case DType::f8_e5m2: break;  // cache storage only: apply() refuses FP8 q and k
  }
}

}  // namespace ropekit::detail
