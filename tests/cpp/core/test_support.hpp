#pragma once
// Shared helpers of the core tests: seeded random inputs, typed buffers with storage conversions
// written here from the format definitions (independent of src/half_float.hpp), strided indexing.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "ropekit/ropekit.hpp"

namespace rt {

using ropekit::DType;

// A fresh seed every run (ROPEKIT_TEST_SEED=<n> replays one).
// The message of the ropekit::Error that f throws, or "" when it throws none.
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const ropekit::Error& e) {
    return e.what();
  }
  return "";
}

inline uint64_t fresh_seed() {
  if (const char* s = std::getenv("ROPEKIT_TEST_SEED")) return std::strtoull(s, nullptr, 10);
  std::random_device device;
  return (static_cast<uint64_t>(device()) << 32) ^ device();
}

inline std::string seed_note(uint64_t seed) {
  return "random seed " + std::to_string(seed) + " (replay: ROPEKIT_TEST_SEED=" + std::to_string(seed) + ")";
}

struct Rng {
  std::mt19937_64 gen;
  explicit Rng(uint64_t seed) : gen(seed) {}
  double uniform(double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(gen); }
  int64_t integer(int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(gen); }  // [lo, hi]
  bool coin() { return integer(0, 1) == 1; }
  template <typename T>
  const T& pick(const std::vector<T>& options) {
    return options[static_cast<size_t>(integer(0, static_cast<int64_t>(options.size()) - 1))];
  }
  // A float in +-[0.05, 2): never zero, so a skipped element cannot pass as a rotated zero.
  float nonzero() {
    const double magnitude = uniform(0.05, 2.0);
    return static_cast<float>(coin() ? magnitude : -magnitude);
  }
};

// Declares `rng` seeded freshly, the seed printed with any failure in scope.
#define RT_SEEDED_RNG(rng)                                 \
  const uint64_t rng##_seed = ::rt::fresh_seed();          \
  SCOPED_TRACE(::rt::seed_note(rng##_seed));               \
  ::rt::Rng rng(rng##_seed)

// ---- storage formats, from their definitions ---------------------------------------------------

// IEEE binary16: 1 sign, 5 exponent (bias 15), 10 mantissa bits.
inline double f16_value(uint16_t h) {
  const double sign = (h & 0x8000u) ? -1.0 : 1.0;
  const int exponent = (h >> 10) & 0x1f;
  const int mantissa = h & 0x3ff;
  if (exponent == 0x1f) return mantissa ? std::numeric_limits<double>::quiet_NaN() : sign * INFINITY;
  if (exponent == 0) return sign * std::ldexp(mantissa, -24);
  return sign * std::ldexp(1024 + mantissa, exponent - 25);
}

// bfloat16 is the top half of a binary32.
inline double bf16_value(uint16_t h) { return std::bit_cast<float>(static_cast<uint32_t>(h) << 16); }

// Round to the nearest representable value (ties to even), saturating to infinity like a cast.
// `mantissa_bits` explicit bits, `min_exponent` of the normal range.
inline double round_to_format(double x, int mantissa_bits, int min_exponent, double overflow_threshold) {
  if (std::isnan(x) || std::isinf(x) || x == 0.0) return x;
  const double a = std::fabs(x);
  if (a >= overflow_threshold) return std::copysign(INFINITY, x);
  const int exponent = std::max(std::ilogb(a), min_exponent);
  const double quantum = std::ldexp(1.0, exponent - mantissa_bits);
  return std::copysign(std::nearbyint(a / quantum) * quantum, x);  // nearbyint: ties to even
}
inline double round_to_f16(double x) { return round_to_format(x, 10, -14, 65520.0); }
inline double round_to_bf16(double x) {
  return round_to_format(static_cast<float>(x), 7, -126, std::ldexp(2.0 - std::ldexp(1.0, -8), 127));
}

// Bits of a value already representable in binary16.
inline uint16_t f16_bits(double v) {
  const uint16_t sign = std::signbit(v) ? 0x8000u : 0u;
  if (std::isnan(v)) return 0x7e00u;
  const double a = std::fabs(v);
  if (std::isinf(a)) return sign | 0x7c00u;
  if (a < std::ldexp(1.0, -14)) return static_cast<uint16_t>(sign | static_cast<uint16_t>(a * std::ldexp(1.0, 24)));
  const int e = std::ilogb(a);
  const auto mantissa = static_cast<uint16_t>(a / std::ldexp(1.0, e - 10) - 1024.0);
  return static_cast<uint16_t>(sign | ((e + 15) << 10) | mantissa);
}
inline uint16_t bf16_bits(double v) {
  return static_cast<uint16_t>(std::bit_cast<uint32_t>(static_cast<float>(v)) >> 16);
}

inline double round_to(DType dtype, double v) {
  switch (dtype) {
    case DType::f32: return static_cast<float>(v);
    case DType::f16: return round_to_f16(v);
    case DType::bf16: return round_to_bf16(v);
    case DType::f64: return v;
  }
  return v;
}

inline double tolerance(DType dtype) {
  switch (dtype) {
    case DType::f32: return 1e-5;
    case DType::f16: return 1e-3;
    case DType::bf16: return 8e-3;
    case DType::f64: return 1e-6;  // double arithmetic; the table's cos/sin are fp32 (6e-8)
  }
  return 0;
}

// A flat typed buffer; get/set in double through the storage format.
class Buffer {
 public:
  Buffer(DType dtype, int64_t n) : dtype_(dtype), n_(n), bytes_(static_cast<size_t>(n * esize(dtype))) {}
  static int64_t esize(DType d) { return d == DType::f64 ? 8 : d == DType::f32 ? 4 : 2; }
  DType dtype() const { return dtype_; }
  int64_t size() const { return n_; }
  void* data() { return bytes_.data(); }
  const std::vector<unsigned char>& bytes() const { return bytes_; }

  double get(int64_t i) const {
    if (dtype_ == DType::f64) {
      double f;
      std::memcpy(&f, bytes_.data() + 8 * i, 8);
      return f;
    }
    if (dtype_ == DType::f32) {
      float f;
      std::memcpy(&f, bytes_.data() + 4 * i, 4);
      return f;
    }
    uint16_t h;
    std::memcpy(&h, bytes_.data() + 2 * i, 2);
    return dtype_ == DType::f16 ? f16_value(h) : bf16_value(h);
  }
  // Stores v rounded to the storage type.
  void set(int64_t i, double v) {
    if (dtype_ == DType::f64) {
      std::memcpy(bytes_.data() + 8 * i, &v, 8);
      return;
    }
    if (dtype_ == DType::f32) {
      const float f = static_cast<float>(v);
      std::memcpy(bytes_.data() + 4 * i, &f, 4);
      return;
    }
    const uint16_t h = dtype_ == DType::f16 ? f16_bits(round_to_f16(v)) : bf16_bits(round_to_bf16(v));
    std::memcpy(bytes_.data() + 2 * i, &h, 2);
  }
  void fill_random(Rng& rng) {
    for (int64_t i = 0; i < n_; ++i) set(i, rng.nonzero());
  }
  void poison() {
    for (int64_t i = 0; i < n_; ++i) set(i, std::numeric_limits<double>::quiet_NaN());
  }

 private:
  DType dtype_;
  int64_t n_;
  std::vector<unsigned char> bytes_;
};

// Element offset of logical (b, s, h, d) in a view (rank 3: b must be 0, s is the token).
inline int64_t offset_of(const ropekit::TensorView& v, int64_t b, int64_t s, int64_t h, int64_t d) {
  if (v.rank == 4) return b * v.strides[0] + s * v.strides[1] + h * v.strides[2] + d;
  return s * v.strides[0] + h * v.strides[1] + d;
}

}  // namespace rt
