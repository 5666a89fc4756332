// ropekit/cache.hpp: the fp32 cos/sin table. Default angles are torch's float32 p * inv_freq; the
// exact option is accurate at position 1e7; growth keeps old rows; dynamic NTK and LongRoPE follow
// HF's switching rule; the attention factor is folded in.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "hf_formulas.hpp"
#include "test_support.hpp"

namespace {

namespace sc = ropekit::scaling;
using ropekit::CacheOptions;
using ropekit::CosSinCache;
using ropekit::RopeSpec;

// cos/sin of the float32 angle float(p) * float(f), rounded to float: what the default table holds.
float f32_angle(int64_t p, double f) { return static_cast<float>(p) * static_cast<float>(f); }

void expect_rows_match(const CosSinCache& table, const std::vector<double>& inv_freq, double attention, bool exact,
                       int64_t begin, int64_t end) {
  const int64_t n = table.pairs();
  for (int64_t p = begin; p < end; ++p) {
    const float* row = table.row(p);
    for (int64_t i = 0; i < n; ++i) {
      const double f = inv_freq[static_cast<size_t>(i)];
      const long double angle = exact ? static_cast<long double>(p) * f : static_cast<long double>(f32_angle(p, f));
      const double c = static_cast<double>(std::cos(angle)) * attention;
      const double s = static_cast<double>(std::sin(angle)) * attention;
      // One float rounding (half an ulp of 1: 6e-8), relative to the attention factor.
      ASSERT_NEAR(row[i], c, 1.2e-7 * attention) << "cos p=" << p << " i=" << i;
      ASSERT_NEAR(row[n + i], s, 1.2e-7 * attention) << "sin p=" << p << " i=" << i;
    }
  }
}

TEST(Cache, DefaultAnglesAreFloat32Products) {
  const RopeSpec spec({.head_dim = 64, .base = 10000.0});
  const CosSinCache table(spec, 5000);
  ASSERT_GE(table.size(), 5000);
  EXPECT_EQ(table.pairs(), 32);
  EXPECT_EQ(table.table().size(), static_cast<size_t>(table.size() * 64));
  expect_rows_match(table, hf::default_inv_freq(64, 10000.0), 1.0, false, 0, 5000);
  // The float32 angle is not the double one at large p: the default table follows torch.
  int differ = 0;
  for (int64_t p = 4000; p < 5000; ++p) {
    const double f = hf::default_inv_freq(64, 10000.0)[3];
    differ += static_cast<double>(f32_angle(p, f)) != static_cast<double>(p) * f;
  }
  EXPECT_GT(differ, 500);
  // inv_freq_f32 is each frequency rounded to float.
  for (size_t i = 0; i < table.inv_freq().size(); ++i)
    EXPECT_EQ(table.inv_freq_f32()[i], static_cast<float>(table.inv_freq()[i]));
}

TEST(Cache, ExactOptionAccurateAtTenMillion) {
  // head_dim 2 keeps a 1e7-row table small (80 MB) and still exercises the largest angles.
  const RopeSpec spec({.head_dim = 2, .base = 10000.0});
  const int64_t p = 10'000'000;
  const CosSinCache exact(spec, p + 1, CacheOptions{.exact = true});
  ASSERT_TRUE(exact.options().exact);
  expect_rows_match(exact, {1.0}, 1.0, true, p - 3, p + 1);
  const long double angle = static_cast<long double>(p);
  EXPECT_NEAR(exact.row(p)[0], static_cast<double>(std::cos(angle)), 1.2e-7);
  EXPECT_NEAR(exact.row(p)[1], static_cast<double>(std::sin(angle)), 1.2e-7);
}

TEST(Cache, ExactOptionAtTenMillionWithRealFrequencies) {
  // compute_sincos honours `exact` without a 1e7-row table: rotate (1, 0) at p = 1e7 + k and read
  // back (cos, sin) of p * inv_freq.
  const RopeSpec spec({.head_dim = 16, .base = 10000.0, .style = ropekit::Style::half});
  const CosSinCache table(spec, 0, CacheOptions{.exact = true});
  const auto f = hf::default_inv_freq(16, 10000.0);
  for (int64_t p : {int64_t{10'000'000}, int64_t{12'345'677}}) {
    std::vector<float> q(16, 0.0f);
    for (int i = 0; i < 8; ++i) q[static_cast<size_t>(i)] = 1.0f;  // x_a = 1, x_b = 0 for every pair
    ropekit::ApplyOptions options;
    options.compute_sincos = true;
    ropekit::apply_rope({ropekit::TensorView::thd(q.data(), ropekit::DType::f32, 1, 1, 16)},
                        ropekit::Positions::from_offset(p), table, options);
    for (int i = 0; i < 8; ++i) {
      const long double angle = static_cast<long double>(p) * static_cast<long double>(f[static_cast<size_t>(i)]);
      EXPECT_NEAR(q[static_cast<size_t>(i)], static_cast<double>(std::cos(angle)), 1.2e-7) << "p=" << p << " i=" << i;
      EXPECT_NEAR(q[static_cast<size_t>(i) + 8], static_cast<double>(std::sin(angle)), 1.2e-7) << "p=" << p << " i=" << i;
    }
  }
}

TEST(Cache, GrowthKeepsOldRowsAndBumpsGeneration) {
  const RopeSpec spec({.head_dim = 32, .base = 500000.0});
  CosSinCache table(spec, 100);
  const auto gen0 = table.generation();
  const int64_t size0 = table.size();
  std::vector<float> before(table.table().begin(), table.table().end());
  table.ensure(50);  // already covered: nothing changes
  EXPECT_EQ(table.generation(), gen0);
  EXPECT_EQ(table.size(), size0);
  table.ensure(size0 + 1);
  EXPECT_GT(table.generation(), gen0);
  EXPECT_GE(table.size(), size0 + 1);
  EXPECT_EQ(std::memcmp(before.data(), table.table().data(), before.size() * sizeof(float)), 0);
  expect_rows_match(table, hf::default_inv_freq(32, 500000.0), 1.0, false, 0, table.size());
  // Growth from a table built one row at a time gives the same bytes as one built at once.
  CosSinCache stepwise(spec, 1);
  for (int64_t n = 2; n <= 300; n += 7) stepwise.ensure(n);
  const CosSinCache at_once(spec, 300);
  EXPECT_EQ(std::memcmp(stepwise.table().data(), at_once.table().data(), 300 * 32 * sizeof(float)), 0);
  EXPECT_THROW(table.ensure(-1), ropekit::Error);
}

TEST(Cache, AttentionFactorFoldedIn) {
  const sc::Yarn yarn{.factor = 4.0, .original_max = 64};
  const RopeSpec spec({.head_dim = 16, .scaling = yarn});
  const CosSinCache table(spec, 200);
  EXPECT_NEAR(table.attention_factor(), hf::yarn_attention(yarn), 1e-15);
  expect_rows_match(table, hf::yarn_inv_freq(yarn, 16, 10000.0), hf::yarn_attention(yarn), false, 0, 200);
  // Row 0: cos = a, sin = 0.
  EXPECT_FLOAT_EQ(table.row(0)[0], static_cast<float>(hf::yarn_attention(yarn)));
  EXPECT_EQ(table.row(0)[8], 0.0f);
}

TEST(Cache, XposLogZeta) {
  const RopeSpec spec({.head_dim = 16, .rotary_dim = 8, .xpos = ropekit::Xpos{.scale_base = 256.0}});
  const CosSinCache table(spec, 4);
  const auto z = hf::xpos_zeta(8, 0.4);
  ASSERT_EQ(table.xpos_log_zeta().size(), 4u);
  for (size_t i = 0; i < 4; ++i) EXPECT_NEAR(table.xpos_log_zeta()[i], std::log(z[i]) / 256.0, 1e-16);
  EXPECT_TRUE(CosSinCache(RopeSpec({.head_dim = 16})).xpos_log_zeta().empty());
}

TEST(Cache, DynamicNtkFollowsHfRule) {
  const sc::DynamicNtk s{.factor = 2.0, .original_max = 64};
  const RopeSpec spec({.head_dim = 16, .scaling = s});
  CosSinCache table(spec, 10);
  EXPECT_EQ(table.scaled_for(), 64);
  auto expect_freq = [&](int64_t len) {
    const auto want = hf::dynamic_inv_freq(s, 16, 10000.0, len);
    for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(table.inv_freq()[i], want[i], 1e-12 * want[i]) << "len " << len;
    expect_rows_match(table, want, 1.0, false, 0, table.size());
  };
  table.prepare_for_seq_len(50);  // below original: default frequencies
  expect_freq(64);
  EXPECT_EQ(table.scaled_for(), 64);
  auto gen = table.generation();
  table.prepare_for_seq_len(200);  // grows past original: rescaled for 200
  EXPECT_EQ(table.scaled_for(), 200);
  EXPECT_GT(table.generation(), gen);
  EXPECT_GE(table.size(), 200);
  expect_freq(200);
  table.prepare_for_seq_len(100);  // shorter but still past original: kept
  EXPECT_EQ(table.scaled_for(), 200);
  expect_freq(200);
  table.prepare_for_seq_len(300);  // longer again
  EXPECT_EQ(table.scaled_for(), 300);
  expect_freq(300);
  gen = table.generation();
  table.prepare_for_seq_len(20);  // below original: reset
  EXPECT_EQ(table.scaled_for(), 64);
  EXPECT_GT(table.generation(), gen);
  expect_freq(64);
  EXPECT_THROW(table.prepare_for_seq_len(-1), ropekit::Error);
}

TEST(Cache, LongRopeSwitchesAtOriginalMax) {
  sc::LongRope s;
  for (int i = 0; i < 8; ++i) {
    s.short_factor.push_back(1.0 + 0.01 * i);
    s.long_factor.push_back(1.0 + 3.0 * i);
  }
  s.original_max = 32;
  s.factor = 4.0;
  const RopeSpec spec({.head_dim = 16, .scaling = s});
  CosSinCache table(spec);
  const double a = std::sqrt(1.0 + std::log(4.0) / std::log(32.0));
  EXPECT_NEAR(table.attention_factor(), a, 1e-15);
  auto expect_freq = [&](int64_t len) {
    const auto want = hf::longrope_inv_freq(s, 16, 10000.0, len);
    for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(table.inv_freq()[i], want[i], 1e-12 * want[i]) << "len " << len;
    expect_rows_match(table, want, a, false, 0, table.size());
  };
  table.prepare_for_seq_len(32);
  expect_freq(32);  // short
  table.prepare_for_seq_len(33);
  expect_freq(33);  // long
  table.prepare_for_seq_len(100);
  expect_freq(100);
  table.prepare_for_seq_len(10);
  expect_freq(10);  // short again
}

TEST(Cache, OtherSchemesIgnoreLength) {
  const RopeSpec spec({.head_dim = 16, .scaling = sc::Linear{.factor = 2.0}});
  CosSinCache table(spec, 4);
  const auto gen = table.generation();
  table.prepare_for_seq_len(3);
  EXPECT_EQ(table.generation(), gen);
  table.prepare_for_seq_len(1000);
  EXPECT_GE(table.size(), 1000);
  auto want = hf::default_inv_freq(16, 10000.0);
  for (double& f : want) f /= 2.0;
  expect_rows_match(table, want, 1.0, false, 0, table.size());
}

}  // namespace
