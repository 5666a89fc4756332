// Properties any correct rotation has, checked on ropekit's output alone (no reference): norms are
// kept, q.k depends only on m - n, inverse undoes forward, backward is the adjoint of forward, and
// half / interleaved pairings agree under the pair permutation.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

#include "test_support.hpp"

namespace {

namespace sc = ropekit::scaling;
using ropekit::ApplyOptions;
using ropekit::Direction;
using ropekit::DType;
using ropekit::Positions;
using ropekit::RopeSpec;
using ropekit::Style;
using ropekit::TensorView;
using rt::Rng;

std::vector<float> random_vector(Rng& rng, int64_t n) {
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = rng.nonzero();
  return v;
}

double dot(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}
double norm(const std::vector<float>& a) { return std::sqrt(dot(a, a)); }
// sum |a_i b_i|: the scale of a dot product's rounding error.
double abs_dot(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += std::fabs(static_cast<double>(a[i]) * b[i]);
  return s;
}

// Rotates a (T, H, D) f32 tensor in place as q (or as k) with explicit per-token ids.
void rotate(std::vector<float>& x, int64_t T, int64_t H, const RopeSpec& spec, const std::vector<int64_t>& ids,
            Direction direction, bool as_k, double xpos_center = 0.0, bool exact = true) {
  ropekit::RopeTable table(spec, 0, ropekit::TableOptions{.exact = exact});
  ApplyOptions options;
  options.direction = direction;
  options.compute_sincos = true;
  options.xpos_center = xpos_center;
  const auto view = TensorView::thd(x.data(), DType::f32, T, H, spec.head_dim());
  const auto positions = Positions::token_ids({ids.data(), static_cast<int64_t>(ids.size())});
  if (!as_k) {
    ropekit::apply_rope({view}, positions, table, options);
  } else {
    // k is rotated with the negative xPos exponent; pass a throwaway one-head q alongside.
    std::vector<float> dummy(static_cast<size_t>(T * spec.head_dim()), 1.0f);
    ropekit::apply_rope({TensorView::thd(dummy.data(), DType::f32, T, 1, spec.head_dim()), view}, positions, table,
                        options);
  }
}

std::vector<RopeSpec> specs_without_scale() {
  return {RopeSpec({.head_dim = 64}), RopeSpec({.head_dim = 64, .style = Style::interleaved}),
          RopeSpec({.head_dim = 96, .rotary_dim = 32, .base = 500000.0}),
          RopeSpec({.head_dim = 128, .base = 500000.0, .scaling = sc::Llama3{}})};
}

std::vector<RopeSpec> specs_with_scale() {
  return {RopeSpec({.head_dim = 64, .scaling = sc::Yarn{.factor = 8.0, .original_max = 512}}),
          RopeSpec({.head_dim = 64, .style = Style::interleaved, .xpos = ropekit::Xpos{.scale_base = 128.0}}),
          RopeSpec({.head_dim = 48, .rotary_dim = 32, .scaling = sc::Yarn{.factor = 16.0, .mscale = 0.707, .mscale_all_dim = 1.0},
                    .xpos = ropekit::Xpos{}})};
}

TEST(Properties, RotationPreservesNorms) {
  RT_SEEDED_RNG(rng);
  for (const auto& spec : specs_without_scale()) {
    const int64_t T = 6, H = 3, D = spec.head_dim();
    auto x = random_vector(rng, T * H * D);
    const auto x0 = x;
    std::vector<int64_t> ids;
    for (int64_t t = 0; t < T; ++t) ids.push_back(rng.integer(0, 100000));
    rotate(x, T, H, spec, ids, Direction::forward, false);
    for (int64_t r = 0; r < T * H; ++r) {
      const std::vector<float> a(x0.begin() + r * D, x0.begin() + (r + 1) * D);
      const std::vector<float> b(x.begin() + r * D, x.begin() + (r + 1) * D);
      EXPECT_NEAR(norm(b), norm(a), 1e-6 * norm(a)) << spec.describe() << " row " << r;
    }
  }
}

// <R_m q, R_n k> = <R_{m+s} q, R_{n+s} k>, also with xPos (q gets zeta^m, k zeta^-n).
TEST(Properties, ScoreDependsOnlyOnRelativePosition) {
  RT_SEEDED_RNG(rng);
  auto all = specs_without_scale();
  for (auto& s : specs_with_scale()) all.push_back(s);
  for (const auto& spec : all) {
    const int64_t D = spec.head_dim();
    const auto q = random_vector(rng, D);
    const auto k = random_vector(rng, D);
    const int64_t m = rng.integer(0, 200), n = rng.integer(0, 200);
    double reference_score = 0;
    for (int64_t shift : {0, 1, 17, 100}) {
      auto qr = q, kr = k;
      rotate(qr, 1, 1, spec, {m + shift}, Direction::forward, false);
      rotate(kr, 1, 1, spec, {n + shift}, Direction::forward, true);
      const double score = dot(qr, kr);
      if (shift == 0) {
        reference_score = score;
      } else {
        EXPECT_NEAR(score, reference_score, 2e-5 * abs_dot(qr, kr))
            << spec.describe() << " m=" << m << " n=" << n << " shift=" << shift;
      }
    }
  }
}

TEST(Properties, InverseUndoesForward) {
  RT_SEEDED_RNG(rng);
  auto all = specs_without_scale();
  for (auto& s : specs_with_scale()) all.push_back(s);
  for (const auto& spec : all)
    for (bool as_k : {false, true})
      for (bool exact : {false, true}) {
        const int64_t T = 5, H = 2, D = spec.head_dim();
        auto x = random_vector(rng, T * H * D);
        const auto x0 = x;
        std::vector<int64_t> ids;
        for (int64_t t = 0; t < T; ++t) ids.push_back(rng.integer(0, 300));
        const double center = rng.uniform(-10, 10);
        rotate(x, T, H, spec, ids, Direction::forward, as_k, center, exact);
        rotate(x, T, H, spec, ids, Direction::inverse, as_k, center, exact);
        double worst = 0;
        for (size_t i = 0; i < x.size(); ++i) worst = std::max(worst, std::fabs(static_cast<double>(x[i]) - x0[i]));
        EXPECT_LE(worst, 2e-6 * 2.0) << spec.describe() << (as_k ? " k" : " q");
      }
}

// <forward(x), g> == <x, backward(g)>: backward is the vector-Jacobian product of forward, with the
// attention factor and the xPos scale (q and k signs) included.
TEST(Properties, BackwardIsAdjointOfForward) {
  RT_SEEDED_RNG(rng);
  auto all = specs_without_scale();
  for (auto& s : specs_with_scale()) all.push_back(s);
  for (const auto& spec : all)
    for (bool as_k : {false, true}) {
      const int64_t T = 4, H = 2, D = spec.head_dim();
      auto x = random_vector(rng, T * H * D);
      auto g = random_vector(rng, T * H * D);
      const auto x0 = x, g0 = g;
      std::vector<int64_t> ids;
      for (int64_t t = 0; t < T; ++t) ids.push_back(rng.integer(0, 300));
      const double center = rng.uniform(0, 50);
      rotate(x, T, H, spec, ids, Direction::forward, as_k, center);
      rotate(g, T, H, spec, ids, Direction::backward, as_k, center);
      const double lhs = dot(x, g0), rhs = dot(x0, g);
      EXPECT_NEAR(lhs, rhs, 1e-5 * norm(x) * norm(g0)) << spec.describe() << (as_k ? " k" : " q");
      // Not trivially equal: forward really changed x.
      EXPECT_GT(std::fabs(dot(x, g0) - dot(x0, g0)), 1e-6);
    }
}

// Half pairs (i, i + r/2) and interleaved pairs (2i, 2i + 1) are one rotation in two memory orders.
TEST(Properties, HalfAndInterleavedAgreeUnderPairPermutation) {
  RT_SEEDED_RNG(rng);
  for (DType dtype : {DType::f32, DType::f16, DType::bf16})
    for (int64_t rotary : {int64_t{16}, int64_t{10}}) {
      const int64_t D = 16, T = 5, H = 2, pairs = rotary / 2;
      const RopeSpec half({.head_dim = D, .rotary_dim = rotary, .style = Style::half, .xpos = ropekit::Xpos{}});
      const RopeSpec inter({.head_dim = D, .rotary_dim = rotary, .style = Style::interleaved, .xpos = ropekit::Xpos{}});
      rt::Buffer xh(dtype, T * H * D), xi(dtype, T * H * D);
      xh.fill_random(rng);
      // Interleaved copy: slot 2i <- i, 2i+1 <- i + pairs; pass-through dims stay in place.
      auto perm = [&](int64_t d) { return d >= rotary ? d : (d < pairs ? 2 * d : 2 * (d - pairs) + 1); };
      for (int64_t r = 0; r < T * H; ++r)
        for (int64_t d = 0; d < D; ++d) xi.set(r * D + perm(d), xh.get(r * D + d));
      for (const auto* spec : {&half, &inter}) {
        rt::Buffer& buf = spec == &half ? xh : xi;
        ropekit::RopeTable table(*spec, 64);
        ropekit::apply_rope({TensorView::thd(buf.data(), dtype, T, H, D)}, Positions::from_offset(40), table);
      }
      for (int64_t r = 0; r < T * H; ++r)
        for (int64_t d = 0; d < D; ++d)
          EXPECT_NEAR(xi.get(r * D + perm(d)), xh.get(r * D + d), dtype == DType::f32 ? 4e-6 : 2.5 * rt::tolerance(dtype))
              << ropekit::to_string(dtype) << " rotary " << rotary << " row " << r << " dim " << d;
    }
}

// Position 0 without scaling is the identity: every element exact.
TEST(Properties, PositionZeroIsIdentity) {
  RT_SEEDED_RNG(rng);
  for (DType dtype : {DType::f32, DType::f16, DType::bf16}) {
    rt::Buffer x(dtype, 3 * 2 * 32);
    x.fill_random(rng);
    const auto x0 = x;
    const RopeSpec spec({.head_dim = 32});
    const std::vector<int64_t> ids{0, 0, 0};
    ropekit::apply_rope({TensorView::thd(x.data(), dtype, 3, 2, 32)}, Positions::token_ids({ids.data(), 3}), spec);
    EXPECT_TRUE(x.bytes() == x0.bytes()) << ropekit::to_string(dtype);
  }
}

}  // namespace
