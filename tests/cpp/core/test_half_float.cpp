// src/half_float.hpp (the library's private fp16 / bf16 conversions) against the formats'
// definitions in test_support.hpp: every 16-bit pattern decodes right, and float -> 16 bits rounds
// to nearest even, saturates to infinity and keeps NaN, on edge values and random floats.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>

#include "half_float.hpp"
#include "test_support.hpp"

namespace {

using ropekit::detail::bf16_to_float;
using ropekit::detail::float_to_bf16;
using ropekit::detail::float_to_half;
using ropekit::detail::half_to_float;

TEST(HalfFloat, EveryPatternDecodes) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const auto bits = static_cast<uint16_t>(h);
    const double f16 = rt::f16_value(bits), bf16 = rt::bf16_value(bits);
    if (std::isnan(f16)) {
      EXPECT_TRUE(std::isnan(half_to_float(bits))) << std::hex << h;
    } else {
      ASSERT_EQ(static_cast<double>(half_to_float(bits)), f16) << std::hex << h;
      ASSERT_EQ(std::signbit(half_to_float(bits)), std::signbit(f16)) << std::hex << h;
    }
    if (!std::isnan(bf16)) {
      ASSERT_EQ(static_cast<double>(bf16_to_float(bits)), bf16) << std::hex << h;
      ASSERT_EQ(float_to_bf16(bf16_to_float(bits)), bits) << std::hex << h;  // round trip
    }
    if (!std::isnan(f16)) {
      ASSERT_EQ(float_to_half(half_to_float(bits)), bits) << std::hex << h;  // round trip
    }
  }
}

void expect_rounds(float x) {
  const double want16 = rt::round_to_f16(x);
  const double got16 = rt::f16_value(float_to_half(x));
  if (std::isnan(want16)) {
    EXPECT_TRUE(std::isnan(got16)) << x;
  } else {
    EXPECT_EQ(got16, want16) << std::hexfloat << x;
    EXPECT_EQ(std::signbit(got16), std::signbit(want16)) << std::hexfloat << x;
  }
  const double wantb = rt::round_to_bf16(x);
  const double gotb = rt::bf16_value(float_to_bf16(x));
  if (std::isnan(wantb)) {
    EXPECT_TRUE(std::isnan(gotb)) << x;
  } else {
    EXPECT_EQ(gotb, wantb) << std::hexfloat << x;
  }
}

TEST(HalfFloat, EncodeEdgeValues) {
  const float edges[] = {0.0f, -0.0f, 1.0f, -1.0f, 65504.0f, 65519.99f, 65520.0f, 70000.0f, -1e30f, INFINITY, -INFINITY,
                         NAN, 6.1035156e-05f /* 2^-14 */, 6.0e-05f, 5.9604645e-08f /* 2^-24 */, 2.9802322e-08f /* tie to 0 */,
                         2.9802326e-08f, 8.940697e-08f /* 1.5 * 2^-24: tie to even 2^-23 */,
                         1.0009765625f /* 1 + 2^-10 */, 1.00048828125f /* tie: 1 */, 1.00146484375f /* tie: up */,
                         1.00390625f /* bf16 tie */, 1.01171875f, 3.3895314e38f, 3.4028235e38f, 1e-40f, -1e-45f};
  for (float x : edges) expect_rounds(x);
  // NaN stays NaN (quiet) in both.
  EXPECT_TRUE(std::isnan(half_to_float(float_to_half(NAN))));
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(std::bit_cast<float>(0x7f800001u)))));  // signalling payload
}

TEST(HalfFloat, EncodeRandomFloats) {
  RT_SEEDED_RNG(rng);
  for (int i = 0; i < 200000; ++i) {
    // Random bit patterns cover every exponent; random small magnitudes cover the f16 range densely.
    const auto bits = static_cast<uint32_t>(rng.integer(0, 0xffffffffLL));
    expect_rounds(std::bit_cast<float>(bits));
    expect_rounds(static_cast<float>(rng.uniform(-70000.0, 70000.0) * std::pow(2.0, -static_cast<double>(rng.integer(0, 30)))));
    if (HasFailure()) return;
  }
}

}  // namespace
