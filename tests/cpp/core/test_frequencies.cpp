// ropekit/frequencies.hpp against HuggingFace's formulas, written independently in hf_formulas.hpp
// (float64), and against what torch computes in float32 (~3e-7 relative), plus the seed decisions'
// reference values for the YaRN helpers.
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>

#include "hf_formulas.hpp"
#include "test_support.hpp"

namespace {

namespace sc = ropekit::scaling;
using ropekit::RopeSpec;

// Relative agreement of two frequency vectors, elementwise (zeros must match exactly).
void expect_close(const std::vector<double>& got, const std::vector<double>& want, double rel, const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < want.size(); ++i) {
    if (want[i] == 0.0) {
      EXPECT_EQ(got[i], 0.0) << what << " [" << i << "]";
    } else {
      EXPECT_LE(std::fabs(got[i] - want[i]), rel * std::fabs(want[i])) << what << " [" << i << "] got " << got[i]
                                                                        << " want " << want[i];
    }
  }
}

RopeSpec make(int64_t head_dim, double base, ropekit::Scaling scaling, int64_t rotary_dim = 0) {
  return RopeSpec({.head_dim = head_dim, .rotary_dim = rotary_dim, .base = base, .scaling = std::move(scaling)});
}

constexpr double kTight = 1e-12;   // same formula in double: agreement to rounding
constexpr double kTorch = 3e-7;    // vs torch's float32 pipeline

TEST(Frequencies, DefaultMatchesHfAndTorchFloat32) {
  for (int64_t dim : {2, 8, 64, 80, 96, 128, 256})
    for (double base : {10000.0, 500000.0, 1e6}) {
      const auto got = ropekit::default_inv_freq(dim, base);
      expect_close(got, hf::default_inv_freq(dim, base), kTight, "default vs hf");
      const auto torch = hf::default_inv_freq_torch_f32(dim, base);
      expect_close(got, std::vector<double>(torch.begin(), torch.end()), kTorch, "default vs torch f32");
      expect_close(ropekit::inv_freq(make(dim, base, sc::None{})), got, 0.0, "spec none");
    }
}

TEST(Frequencies, ExponentIsRoundedToFloat32AsTorchDoes) {
  // dim = 80: 2i/80 is not a binary fraction, so the float32 quotient differs from the double one.
  const auto got = ropekit::default_inv_freq(80, 10000.0);
  const double exact_exponent = 2.0 * 3 / 80.0;
  const double float_exponent = static_cast<double>(6.0f / 80.0f);
  ASSERT_NE(exact_exponent, float_exponent);
  EXPECT_EQ(got[3], 1.0 / std::pow(10000.0, float_exponent));
}

TEST(Frequencies, PartialRotaryUsesRotaryDim) {
  const auto spec = make(128, 10000.0, sc::None{}, 32);
  expect_close(ropekit::inv_freq(spec), hf::default_inv_freq(32, 10000.0), kTight, "partial");
}

TEST(Frequencies, Linear) {
  const auto spec = make(64, 10000.0, sc::Linear{.factor = 4.0});
  auto want = hf::default_inv_freq(64, 10000.0);
  for (double& f : want) f /= 4.0;
  expect_close(ropekit::inv_freq(spec), want, kTight, "linear");
  EXPECT_EQ(ropekit::attention_factor(spec), 1.0);
}

TEST(Frequencies, NtkAware) {
  for (double alpha : {1.0, 2.0, 8.0}) {
    const auto spec = make(64, 10000.0, sc::NtkAware{.alpha = alpha});
    const double base = 10000.0 * std::pow(alpha, 64.0 / 62.0);
    expect_close(ropekit::inv_freq(spec), hf::default_inv_freq(64, base), kTight, "ntk_aware");
  }
}

TEST(Frequencies, DynamicNtkAtSeveralLengths) {
  const sc::DynamicNtk s{.factor = 2.0, .original_max = 2048};
  const auto spec = make(128, 10000.0, s);
  for (int64_t len : {0, 1, 2048, 2049, 4096, 10000, 131072}) {
    const auto want = hf::dynamic_inv_freq(s, 128, 10000.0, len);
    expect_close(ropekit::inv_freq(spec, len), want, kTight, "dynamic");
    // Written out: base * (f * L / orig - (f - 1))^(d / (d - 2)), L = max(len, orig).
    const double L = static_cast<double>(std::max<int64_t>(len, 2048));
    const double base = 10000.0 * std::pow(2.0 * L / 2048.0 - 1.0, 128.0 / 126.0);
    EXPECT_NEAR(ropekit::inv_freq(spec, len)[1], 1.0 / std::pow(base, 2.0 / 128.0), 1e-15);
  }
  expect_close(ropekit::inv_freq(spec, 100), hf::default_inv_freq(128, 10000.0), kTight, "dynamic below original");
}

TEST(Frequencies, YarnHfVariants) {
  const std::vector<sc::Yarn> variants{
      {.factor = 4.0, .original_max = 2048},
      {.factor = 8.0, .original_max = 4096, .beta_fast = 16.0, .beta_slow = 2.0},
      {.factor = 16.0, .original_max = 4096, .truncate = false},
      {.factor = 40.0, .original_max = 4096, .mscale = 1.0, .mscale_all_dim = 1.0},       // DeepSeek-V3
      {.factor = 40.0, .original_max = 4096, .mscale = 0.707, .mscale_all_dim = 1.0},
      {.factor = 32.0, .original_max = 4096, .mscale = 1.0, .mscale_all_dim = 0.0},       // 0: fall back to get_mscale(f)
      {.factor = 4.0, .original_max = 32768, .attention_factor = 1.5},                    // override
      {.factor = 0.5, .original_max = 2048},                                               // factor <= 1: mscale 1
      {.factor = 8.0, .original_max = 2048, .extrapolation_factor = 0.0, .attention_multiplier = 0.8},  // jquesnelle
      {.factor = 8.0, .original_max = 2048, .extrapolation_factor = 0.5, .attention_multiplier = 1.2},
  };
  for (const auto& s : variants)
    for (int64_t dim : {64, 128}) {
      const auto spec = make(dim, 10000.0, s);
      SCOPED_TRACE(spec.describe());
      expect_close(ropekit::inv_freq(spec), hf::yarn_inv_freq(s, dim, 10000.0), kTight, "yarn");
      EXPECT_NEAR(ropekit::attention_factor(spec), hf::yarn_attention(s), 1e-15);
    }
  // Spot values: attention = get_mscale(4) = 0.1 ln 4 + 1; DeepSeek mscale ratio.
  EXPECT_NEAR(ropekit::attention_factor(make(64, 10000.0, sc::Yarn{.factor = 4.0})), 1.1386294361119890, 1e-12);
  EXPECT_NEAR(ropekit::attention_factor(make(64, 10000.0, sc::Yarn{.factor = 40.0, .mscale = 0.707, .mscale_all_dim = 1.0})),
              (0.0707 * std::log(40.0) + 1.0) / (0.1 * std::log(40.0) + 1.0), 1e-12);
  EXPECT_NEAR(ropekit::attention_factor(make(64, 10000.0, sc::Yarn{.factor = 8.0, .attention_multiplier = 0.8})),
              0.8 * (0.1 * std::log(8.0) + 1.0), 1e-12);
}

TEST(Frequencies, YarnEndsAreExtrapolatedAndInterpolated) {
  const auto spec = make(128, 10000.0, sc::Yarn{.factor = 16.0, .original_max = 4096});
  const auto f = ropekit::inv_freq(spec);
  const auto base = hf::default_inv_freq(128, 10000.0);
  EXPECT_DOUBLE_EQ(f.front(), base.front());           // high frequency: kept
  EXPECT_DOUBLE_EQ(f.back(), base.back() / 16.0);      // low frequency: divided by the factor
  // truncate = false moves the ramp off integer boundaries.
  const auto g = ropekit::inv_freq(make(128, 10000.0, sc::Yarn{.factor = 16.0, .original_max = 4096, .truncate = false}));
  bool differs = false;
  for (size_t i = 0; i < f.size(); ++i) differs |= f[i] != g[i];
  EXPECT_TRUE(differs);
}

TEST(Frequencies, Llama3) {
  const std::vector<sc::Llama3> variants{
      {.factor = 8.0, .low_freq_factor = 1.0, .high_freq_factor = 4.0, .original_max = 8192},  // Llama 3.1
      {.factor = 32.0, .low_freq_factor = 1.0, .high_freq_factor = 4.0, .original_max = 8192},  // Llama 3.2
      {.factor = 4.0, .low_freq_factor = 2.0, .high_freq_factor = 3.0, .original_max = 1024},
  };
  for (const auto& s : variants) {
    const auto spec = make(128, 500000.0, s);
    expect_close(ropekit::inv_freq(spec), hf::llama3_inv_freq(s, 128, 500000.0), kTight, "llama3");
  }
  // Llama 3.1's three bands: first pair unchanged, last divided by 8, some pair in between blended.
  const auto f = ropekit::inv_freq(make(128, 500000.0, variants[0]));
  const auto base = hf::default_inv_freq(128, 500000.0);
  EXPECT_EQ(f.front(), base.front());
  EXPECT_DOUBLE_EQ(f.back(), base.back() / 8.0);
  int blended = 0;
  for (size_t i = 0; i < f.size(); ++i) blended += f[i] != base[i] && std::fabs(f[i] - base[i] / 8.0) > 1e-15 * base[i];
  EXPECT_GT(blended, 0);
}

TEST(Frequencies, LongRopeShortLongSwitchAndAttention) {
  RT_SEEDED_RNG(rng);
  sc::LongRope s;
  for (int i = 0; i < 48; ++i) {
    s.short_factor.push_back(rng.uniform(1.0, 1.2));
    s.long_factor.push_back(rng.uniform(1.0, 60.0));
  }
  s.original_max = 4096;
  s.factor = 131072.0 / 4096.0;
  const auto spec = make(96, 10000.0, s);
  expect_close(ropekit::inv_freq(spec, 4096), hf::longrope_inv_freq(s, 96, 10000.0, 4096), kTight, "short at original");
  expect_close(ropekit::inv_freq(spec, 4097), hf::longrope_inv_freq(s, 96, 10000.0, 4097), kTight, "long past original");
  EXPECT_NE(ropekit::inv_freq(spec, 4096), ropekit::inv_freq(spec, 4097));
  EXPECT_NEAR(ropekit::attention_factor(spec), std::sqrt(1.0 + std::log(32.0) / std::log(4096.0)), 1e-15);
  s.factor = 1.0;
  EXPECT_EQ(ropekit::attention_factor(make(96, 10000.0, s)), 1.0);
  s.attention_factor = 1.25;
  EXPECT_EQ(ropekit::attention_factor(make(96, 10000.0, s)), 1.25);
}

TEST(Frequencies, TruncatedReplacesThetaByBand) {
  const double length = 64.0;
  const auto t = sc::Truncated::from_length(length);
  EXPECT_DOUBLE_EQ(t.b, 2.0 * std::numbers::pi / length);
  EXPECT_DOUBLE_EQ(t.a, t.b / 8.0);
  EXPECT_DOUBLE_EQ(t.rho, t.b / 16.0);
  const auto spec = make(128, 10000.0, t);
  const auto f = ropekit::inv_freq(spec);
  expect_close(f, hf::truncated_inv_freq(t, 128, 10000.0), kTight, "truncated");
  const auto theta = hf::default_inv_freq(128, 10000.0);
  int kept = 0, rho = 0, zero = 0;
  for (size_t i = 0; i < f.size(); ++i) {
    if (theta[i] >= t.b) {
      EXPECT_EQ(f[i], theta[i]);
      ++kept;
    } else if (theta[i] >= t.a) {
      EXPECT_EQ(f[i], t.rho);
      ++rho;
    } else {
      EXPECT_EQ(f[i], 0.0);
      ++zero;
    }
  }
  EXPECT_GT(kept, 0);
  EXPECT_GT(rho, 0);
  EXPECT_GT(zero, 0);
  // Explicit a, b, rho.
  const sc::Truncated explicit_band{.a = 0.001, .b = 0.01, .rho = 0.005};
  expect_close(ropekit::inv_freq(make(64, 10000.0, explicit_band)), hf::truncated_inv_freq(explicit_band, 64, 10000.0),
               kTight, "truncated explicit");
}

TEST(Frequencies, XposZeta) {
  EXPECT_TRUE(ropekit::xpos_zeta(make(64, 10000.0, sc::None{})).empty());
  for (double gamma : {0.4, 0.1}) {
    const RopeSpec spec({.head_dim = 64, .rotary_dim = 32, .xpos = ropekit::Xpos{.scale_base = 512.0, .gamma = gamma}});
    const auto z = ropekit::xpos_zeta(spec);
    expect_close(z, hf::xpos_zeta(32, gamma), kTight, "zeta");
  }
  // The xPos paper's numbers: (2i + 0.4 d) / (1.4 d).
  const RopeSpec spec({.head_dim = 8, .xpos = ropekit::Xpos{}});
  const auto z = ropekit::xpos_zeta(spec);
  EXPECT_NEAR(z[0], 3.2 / 11.2, 1e-15);
  EXPECT_NEAR(z[3], 9.2 / 11.2, 1e-15);
}

// Every family against torch's float32 pipeline (what models were trained with): ~3e-7 relative.
TEST(Frequencies, FamiliesMatchTorchFloat32) {
  auto as_double = [](const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); };
  for (int64_t dim : {64, 128}) {
    // linear: inv_freq / factor in float32.
    auto lin = hf::default_inv_freq_torch_f32(dim, 10000.0);
    for (float& f : lin) f /= 8.0f;
    expect_close(ropekit::inv_freq(make(dim, 10000.0, sc::Linear{.factor = 8.0})), as_double(lin), kTorch, "linear f32");
    // NTK-aware and dynamic: the base is a double scalar, the power a float32 tensor op.
    const double d = static_cast<double>(dim);
    expect_close(ropekit::inv_freq(make(dim, 10000.0, sc::NtkAware{.alpha = 4.0})),
                 as_double(hf::default_inv_freq_torch_f32(dim, 10000.0 * std::pow(4.0, d / (d - 2.0)))), kTorch, "ntk f32");
    expect_close(ropekit::inv_freq(make(dim, 10000.0, sc::DynamicNtk{.factor = 4.0, .original_max = 2048}), 6000),
                 as_double(hf::default_inv_freq_torch_f32(dim, 10000.0 * std::pow(4.0 * 6000 / 2048 - 3.0, d / (d - 2.0)))),
                 kTorch, "dynamic f32");
    for (const sc::Yarn& y : {sc::Yarn{.factor = 4.0, .original_max = 4096}, sc::Yarn{.factor = 32.0, .original_max = 4096, .truncate = false},
                              sc::Yarn{.factor = 8.0, .original_max = 2048, .extrapolation_factor = 0.5}})
      // Blended pairs: torch's float32 ramp weight carries ~6e-8 absolute error, which the blend
      // amplifies by up to `factor` relative to the result; ropekit (double) is the exact side.
      expect_close(ropekit::inv_freq(make(dim, 10000.0, y)), as_double(hf::torch_f32::yarn(y, dim, 10000.0)),
                   kTorch * y.factor, "yarn f32");
    const sc::Llama3 l{.factor = 8.0, .low_freq_factor = 1.0, .high_freq_factor = 4.0, .original_max = 8192};
    expect_close(ropekit::inv_freq(make(dim, 500000.0, l)), as_double(hf::torch_f32::llama3(l, dim, 500000.0)),
                 kTorch * l.factor, "llama3 f32");  // same blend amplification
  }
}

// Seed decisions (DESIGN.md): the YaRN helpers' reference values.
TEST(YarnHelpers, SeedReferenceValues) {
  EXPECT_NEAR(ropekit::find_correction_dim(32, 128, 10000, 2048), 16.128, 1e-3);
  EXPECT_NEAR(ropekit::find_correction_dim(1, 128, 10000, 2048), 40.210, 1e-3);
  EXPECT_NEAR(ropekit::find_correction_dim(32, 128, 10000, 2048),
              128.0 * std::log(2048.0 / (2.0 * std::numbers::pi * 32.0)) / (2.0 * std::log(10000.0)), 1e-12);
  EXPECT_NEAR(ropekit::get_mscale(4), 1.1386294361, 1e-10);
  EXPECT_EQ(ropekit::get_mscale(1), 1.0);
  EXPECT_EQ(ropekit::get_mscale(0.5), 1.0);
  EXPECT_NEAR(ropekit::get_mscale(4, 0.707), 0.0707 * std::log(4.0) + 1.0, 1e-15);
}

TEST(YarnHelpers, CorrectionRangeFloorCeilClamp) {
  const auto [lo, hi] = ropekit::find_correction_range(32, 1, 128, 10000, 2048);
  EXPECT_EQ(lo, 16.0);  // floor(16.128)
  EXPECT_EQ(hi, 41.0);  // ceil(40.210)
  const auto [lo2, hi2] = ropekit::find_correction_range(32, 1, 128, 10000, 2048, false);
  EXPECT_NEAR(lo2, 16.128, 1e-3);
  EXPECT_NEAR(hi2, 40.210, 1e-3);
  // Huge contexts push high past the last index: clamped to dim - 1 (not dim / 2 - 1, as upstream).
  const auto [lo3, hi3] = ropekit::find_correction_range(32, 1, 128, 10000, 1e12);
  EXPECT_EQ(hi3, 127.0);
  EXPECT_GT(lo3, 0.0);
  // Tiny contexts push low below zero: clamped to 0.
  const auto [lo4, hi4] = ropekit::find_correction_range(32, 1, 128, 10000, 16);
  EXPECT_EQ(lo4, 0.0);
  EXPECT_LT(hi4, 127.0);
}

TEST(YarnHelpers, LinearRampMask) {
  const auto ramp = ropekit::linear_ramp_mask(2, 6, 8);
  const std::vector<double> want{0, 0, 0, 0.25, 0.5, 0.75, 1, 1};
  ASSERT_EQ(ramp.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) EXPECT_DOUBLE_EQ(ramp[i], want[i]) << i;
  // min == max: max += 0.001, a step at min.
  const auto step = ropekit::linear_ramp_mask(3, 3, 6);
  EXPECT_EQ(step[2], 0.0);
  EXPECT_EQ(step[3], 0.0);
  EXPECT_EQ(step[4], 1.0);
  EXPECT_EQ(step[5], 1.0);
  EXPECT_TRUE(ropekit::linear_ramp_mask(0, 1, 0).empty());
}

}  // namespace
