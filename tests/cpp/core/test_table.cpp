// ropekit/table.hpp: the immutable fp32 cos/sin table. Default angles are torch's float32
// p * inv_freq; the exact option is accurate at position 1e7; grown() keeps old rows and leaves the
// original as it was; dynamic NTK and LongRoPE frequencies are a pure function of the sequence
// length (for_seq_len); the attention factor is folded in.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "hf_formulas.hpp"
#include "test_support.hpp"

namespace {

namespace sc = ropekit::scaling;
using ropekit::RopeTable;
using ropekit::TableOptions;
using ropekit::RopeSpec;

// cos/sin of the float32 angle float(p) * float(f), rounded to float: what the default table holds.
float f32_angle(int64_t p, double f) { return static_cast<float>(p) * static_cast<float>(f); }

void expect_rows_match(const RopeTable& table, const std::vector<double>& inv_freq, double attention, bool exact,
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

TEST(Table, DefaultAnglesAreFloat32Products) {
  const RopeSpec spec({.head_dim = 64, .base = 10000.0});
  const RopeTable table(spec, 5000);
  ASSERT_GE(table.size(), 5000);
  EXPECT_EQ(table.pairs(), 32);
  EXPECT_EQ(table.rows().size(), static_cast<size_t>(table.size() * 64));
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

TEST(Table, ExactOptionAccurateAtTenMillion) {
  // head_dim 2 keeps a 1e7-row table small (80 MB) and still exercises the largest angles.
  const RopeSpec spec({.head_dim = 2, .base = 10000.0});
  const int64_t p = 10'000'000;
  const RopeTable exact(spec, p + 1, TableOptions{.exact = true});
  ASSERT_TRUE(exact.options().exact);
  expect_rows_match(exact, {1.0}, 1.0, true, p - 3, p + 1);
  const long double angle = static_cast<long double>(p);
  EXPECT_NEAR(exact.row(p)[0], static_cast<double>(std::cos(angle)), 1.2e-7);
  EXPECT_NEAR(exact.row(p)[1], static_cast<double>(std::sin(angle)), 1.2e-7);
}

TEST(Table, ExactOptionAtTenMillionWithRealFrequencies) {
  // compute_sincos honours `exact` without a 1e7-row table: rotate (1, 0) at p = 1e7 + k and read
  // back (cos, sin) of p * inv_freq.
  const RopeSpec spec({.head_dim = 16, .base = 10000.0, .style = ropekit::Style::half});
  const RopeTable table(spec, 0, TableOptions{.exact = true});
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

TEST(Table, GrownKeepsOldRowsAndLeavesTheOriginal) {
  const RopeSpec spec({.head_dim = 32, .base = 500000.0});
  const RopeTable table(spec, 100);
  const std::vector<float> before(table.rows().begin(), table.rows().end());
  const RopeTable same = table.grown(50);  // already covered: the same table
  EXPECT_EQ(same.rows().data(), table.rows().data());
  const RopeTable bigger = table.grown(101);
  EXPECT_GE(bigger.size(), 101);
  EXPECT_EQ(table.size(), 100);
  EXPECT_EQ(std::vector<float>(table.rows().begin(), table.rows().end()), before);
  EXPECT_EQ(std::memcmp(before.data(), bigger.rows().data(), before.size() * sizeof(float)), 0);
  expect_rows_match(bigger, hf::default_inv_freq(32, 500000.0), 1.0, false, 0, bigger.size());
  // Growth from a table built one row at a time gives the same bytes as one built at once.
  RopeTable stepwise(spec, 1);
  for (int64_t n = 2; n <= 300; n += 7) stepwise = stepwise.grown(n);
  const RopeTable at_once(spec, 300);
  EXPECT_EQ(std::memcmp(stepwise.rows().data(), at_once.rows().data(), 300 * 32 * sizeof(float)), 0);
  EXPECT_THROW((void)table.grown(-1), ropekit::Error);
}

TEST(Table, AttentionFactorFoldedIn) {
  const sc::Yarn yarn{.factor = 4.0, .original_max = 64};
  const RopeSpec spec({.head_dim = 16, .scaling = yarn});
  const RopeTable table(spec, 200);
  EXPECT_NEAR(table.attention_factor(), hf::yarn_attention(yarn), 1e-15);
  expect_rows_match(table, hf::yarn_inv_freq(yarn, 16, 10000.0), hf::yarn_attention(yarn), false, 0, 200);
  // Row 0: cos = a, sin = 0.
  EXPECT_FLOAT_EQ(table.row(0)[0], static_cast<float>(hf::yarn_attention(yarn)));
  EXPECT_EQ(table.row(0)[8], 0.0f);
}

TEST(Table, XposLogZeta) {
  const RopeSpec spec({.head_dim = 16, .rotary_dim = 8, .xpos = ropekit::Xpos{.scale_base = 256.0}});
  const RopeTable table(spec, 4);
  const auto z = hf::xpos_zeta(8, 0.4);
  ASSERT_EQ(table.xpos_log_zeta().size(), 4u);
  for (size_t i = 0; i < 4; ++i) EXPECT_NEAR(table.xpos_log_zeta()[i], std::log(z[i]) / 256.0, 1e-16);
  EXPECT_TRUE(RopeTable(RopeSpec({.head_dim = 16})).xpos_log_zeta().empty());
}

// HF recomputes dynamic NTK frequencies from the current sequence length: below original_max the
// original ones, past it the base grows with the length. ropekit's choice is a pure function of
// the length (TableOptions::seq_len), never of what an earlier call used.
TEST(Table, DynamicNtkFrequenciesArePureInSeqLen) {
  const sc::DynamicNtk s{.factor = 2.0, .original_max = 64};
  const RopeSpec spec({.head_dim = 16, .scaling = s});
  const RopeTable table(spec, 10);
  EXPECT_EQ(table.seq_len(), 0);
  auto expect_freq = [&](const RopeTable& t, int64_t len) {
    const auto want = hf::dynamic_inv_freq(s, 16, 10000.0, len);
    for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(t.inv_freq()[i], want[i], 1e-12 * want[i]) << "len " << len;
    expect_rows_match(t, want, 1.0, false, 0, t.size());
  };
  expect_freq(table, 64);
  const RopeTable short50 = table.for_seq_len(50);  // below original: default frequencies
  EXPECT_EQ(short50.seq_len(), 0);
  expect_freq(short50, 64);
  const RopeTable long200 = table.for_seq_len(200);  // past original: rescaled for 200
  EXPECT_EQ(long200.seq_len(), 200);
  EXPECT_GE(long200.size(), 200);
  expect_freq(long200, 200);
  expect_freq(table, 64);  // the original is unchanged
  const RopeTable long100 = long200.for_seq_len(100);  // a length of its own, whatever came before
  EXPECT_EQ(long100.seq_len(), 100);
  expect_freq(long100, 100);
  const RopeTable back = long200.for_seq_len(20);  // below original again
  EXPECT_EQ(back.seq_len(), 0);
  expect_freq(back, 64);
  expect_freq(long200, 200);
  EXPECT_EQ(RopeTable(spec, 0, TableOptions{.seq_len = 300}).inv_freq(), table.for_seq_len(300).inv_freq());
  EXPECT_THROW((void)table.for_seq_len(-1), ropekit::Error);
}

TEST(Table, LongRopeSwitchesAtOriginalMax) {
  sc::LongRope s;
  for (int i = 0; i < 8; ++i) {
    s.short_factor.push_back(1.0 + 0.01 * i);
    s.long_factor.push_back(1.0 + 3.0 * i);
  }
  s.original_max = 32;
  s.factor = 4.0;
  const RopeSpec spec({.head_dim = 16, .scaling = s});
  const RopeTable table(spec);
  const double a = std::sqrt(1.0 + std::log(4.0) / std::log(32.0));
  EXPECT_NEAR(table.attention_factor(), a, 1e-15);
  auto expect_freq = [&](int64_t len) {
    const RopeTable t = table.for_seq_len(len);
    const auto want = hf::longrope_inv_freq(s, 16, 10000.0, len);
    for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(t.inv_freq()[i], want[i], 1e-12 * want[i]) << "len " << len;
    expect_rows_match(t, want, a, false, 0, t.size());
  };
  expect_freq(32);  // short
  expect_freq(33);  // long
  expect_freq(100);
  expect_freq(10);  // short again
  // 33 and 100 share the long factors: the same frequencies, so for_seq_len only grows.
  EXPECT_EQ(table.for_seq_len(33).for_seq_len(100).seq_len(), table.for_seq_len(100).seq_len());
}

TEST(Table, OtherSchemesIgnoreLength) {
  const RopeSpec spec({.head_dim = 16, .scaling = sc::Linear{.factor = 2.0}});
  const RopeTable small(spec, 4);
  EXPECT_EQ(small.for_seq_len(3).rows().data(), small.rows().data());  // nothing to change
  const RopeTable table = small.for_seq_len(1000);
  EXPECT_GE(table.size(), 1000);
  auto want = hf::default_inv_freq(16, 10000.0);
  for (double& f : want) f /= 2.0;
  expect_rows_match(table, want, 1.0, false, 0, table.size());
}

}  // namespace
