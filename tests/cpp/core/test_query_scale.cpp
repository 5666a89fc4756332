// QueryScale (ropekit/spec.hpp): its values at the positions where Llama 4's and Ministral 3's
// steps turn, its checks, and both ways of applying it: apply_query_scale (no rotation, a NoPE
// layer) and ApplyOptions::query_scale (fused into the rotation). Every dtype and layout is
// compared with a float64 reference; the fused form is also run through the shared case table
// (src/cases) on every CPU backend and through the CUDA kernel's emulation.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "ropekit/ropekit.hpp"
#include "test_support.hpp"

namespace {

using ropekit::DType;
using ropekit::Direction;
using ropekit::Positions;
using ropekit::QueryScale;
using ropekit::TensorView;
using rt::Buffer;

using rt::error_of;

TEST(QueryScale, ValuesWhereTheStepsTurn) {
  const QueryScale llama4{1.0, 0.1, 8192, 1};  // HF: 1 + attn_scale log1p(floor((p + 1) / floor_scale))
  EXPECT_EQ(llama4.at(0), 1.0);
  EXPECT_EQ(llama4.at(8190), 1.0);
  EXPECT_DOUBLE_EQ(llama4.at(8191), 1.0 + 0.1 * std::log(2.0));
  EXPECT_DOUBLE_EQ(llama4.at(16382), 1.0 + 0.1 * std::log(2.0));
  EXPECT_DOUBLE_EQ(llama4.at(16383), 1.0 + 0.1 * std::log(3.0));
  const QueryScale ministral{1.0, 0.1, 16384, 0};  // 1 + beta log(1 + floor(p / original_max))
  EXPECT_EQ(ministral.at(16383), 1.0);
  EXPECT_DOUBLE_EQ(ministral.at(16384), 1.0 + 0.1 * std::log(2.0));
  EXPECT_DOUBLE_EQ(ministral.at(int64_t{1} << 40), 1.0 + 0.1 * std::log1p(static_cast<double>((int64_t{1} << 40) / 16384)));
  // The largest position: no overflow in p + shift.
  const int64_t last = std::numeric_limits<int64_t>::max() - 1;
  EXPECT_DOUBLE_EQ(llama4.at(last), 1.0 + 0.1 * std::log1p(static_cast<double>(last / 8192)));
  const QueryScale constant{2.25, 0.0, 1, 0};  // DeepSeek-style mscale^2
  EXPECT_EQ(constant.at(123456), 2.25);
  EXPECT_EQ(llama4.describe(), "1 + 0.1 ln(1 + floor((p + 1) / 8192))");
  EXPECT_EQ(ministral.describe(), "1 + 0.1 ln(1 + floor(p / 16384))");
  EXPECT_EQ(constant.describe(), "2.25");
  EXPECT_EQ((QueryScale{2, 0.5, 4, 0}.describe()), "2 x (1 + 0.5 ln(1 + floor(p / 4)))");
}

TEST(QueryScale, BadFieldsAreNamed) {
  EXPECT_NE(error_of([] { QueryScale{0.0, 0.1, 8, 0}.validate(); }).find("query_scale.factor: expected a finite number >= 1e-30"), std::string::npos);
  EXPECT_NE(error_of([] { QueryScale{1.0, -0.1, 8, 0}.validate(); }).find("query_scale.beta: expected a finite number >= 0"), std::string::npos);
  EXPECT_NE(error_of([] { QueryScale{1.0, NAN, 8, 0}.validate(); }).find("query_scale.beta"), std::string::npos);
  EXPECT_NE(error_of([] { QueryScale{1.0, 0.1, 0, 0}.validate(); }).find("query_scale.length: expected an integer > 0, got 0"), std::string::npos);
  EXPECT_NE(error_of([] { QueryScale{1.0, 0.1, 8, 9}.validate(); }).find("query_scale.shift: expected an integer in [0, length (8)], got 9"), std::string::npos);
  EXPECT_NE(error_of([] { QueryScale{1e30, 1e10, 1, 0}.validate(); }).find("below float32's largest value"), std::string::npos);
  // Lengths near 2^63 with shift == length: no overflow inside the floor.
  const int64_t huge = std::numeric_limits<int64_t>::max();
  EXPECT_DOUBLE_EQ((QueryScale{1.0, 0.5, huge, huge}.at(0)), 1.0 + 0.5 * std::log(2.0));
  EXPECT_EQ((QueryScale{1.0, 0.5, huge, 0}.at(huge - 1)), 1.0);
  EXPECT_NE(error_of([] { QueryScale{1e-31, 0.0, 1, 0}.validate(); }).find("query_scale.factor"), std::string::npos);
  EXPECT_NE(error_of([] { (void)QueryScale{}.at(-1); }).find("position: expected >= 0, got -1"), std::string::npos);
}

// q times t(position), every channel, rounded once: the reference of both entry points.
double scaled(const QueryScale& qs, double x, int64_t position, Direction d) {
  const double t = qs.at(position);
  return d == Direction::inverse ? x / t : x * t;
}

TEST(QueryScale, ApplyQueryScaleEveryDtypeLayoutAndPositionKind) {
  RT_SEEDED_RNG(rng);
  const QueryScale qs{1.5, 0.4, 3, 1};
  for (DType dtype : {DType::f32, DType::f16, DType::bf16, DType::f64})
    for (int rank : {3, 4})
      for (bool in_place : {true, false})
        for (Direction d : {Direction::forward, Direction::backward, Direction::inverse}) {
          SCOPED_TRACE(ropekit::to_string(dtype) + " rank " + std::to_string(rank) + (in_place ? " in place" : " out of place") +
                       " direction " + std::to_string(static_cast<int>(d)));
          const int64_t B = rank == 4 ? 2 : 1, S = 300, H = 3, D = 72;  // enough bytes for threads
          Buffer q(dtype, B * S * H * D), out(dtype, B * S * H * D);
          q.fill_random(rng);
          out.poison();
          const Buffer before = q;
          const TensorView qv = rank == 4 ? TensorView::bshd(q.data(), dtype, B, S, H, D) : TensorView::thd(q.data(), dtype, S, H, D);
          const TensorView ov = rank == 4 ? TensorView::bshd(out.data(), dtype, B, S, H, D) : TensorView::thd(out.data(), dtype, S, H, D);
          std::vector<int64_t> ids(static_cast<size_t>(B * S));
          for (auto& id : ids) id = rng.integer(0, 40);
          const bool by_ids = rng.coin();
          const Positions positions = by_ids ? Positions::token_ids(ropekit::IndexView(ids.data(), B * S)) : Positions::from_offset(5);
          ropekit::ApplyOptions options;
          options.direction = d;
          if (in_place) ropekit::apply_query_scale(qv, positions, qs, options);
          else ropekit::apply_query_scale(qv, positions, qs, options, ov);
          const Buffer& result = in_place ? q : out;
          int failures = 0;
          for (int64_t b = 0; b < B; ++b)
            for (int64_t s = 0; s < S; ++s)
              for (int64_t h = 0; h < H; ++h)
                for (int64_t e = 0; e < D; ++e) {
                  const int64_t i = rt::offset_of(qv, b, s, h, e);
                  const int64_t position = by_ids ? ids[static_cast<size_t>(b * S + s)] : 5 + s;
                  const double want = scaled(qs, before.get(i), position, d);
                  const double got = result.get(i);
                  if (!(std::fabs(got - want) <= rt::tolerance(dtype) * std::fabs(want)) && ++failures <= 3)
                    ADD_FAILURE() << "b=" << b << " s=" << s << " h=" << h << " e=" << e << " position " << position
                                  << ": got " << got << ", reference " << want;
                }
          if (!in_place) EXPECT_EQ(q.bytes(), before.bytes()) << "the input of an out-of-place call changed";
          if (failures > 0) return;
        }
}

TEST(QueryScale, FusedIntoTheRotationMatchesRotateThenScale) {
  RT_SEEDED_RNG(rng);
  const QueryScale qs{1.0, 0.1, 4, 1};
  for (DType dtype : {DType::f32, DType::bf16})
    for (int64_t rotary : {int64_t{64}, int64_t{40}}) {
      ropekit::SpecParams sp;
      sp.head_dim = 64;
      sp.rotary_dim = rotary;
      const ropekit::RopeSpec spec(sp);
      const int64_t S = 50, Hq = 4, Hk = 2, D = 64;
      Buffer q(dtype, S * Hq * D), k(dtype, S * Hk * D);
      q.fill_random(rng);
      k.fill_random(rng);
      Buffer q_plain = q, k_plain = k;
      ropekit::ApplyOptions options;
      options.query_scale = qs;
      ropekit::apply_rope({TensorView::thd(q.data(), dtype, S, Hq, D), TensorView::thd(k.data(), dtype, S, Hk, D)},
                          Positions::from_offset(7), spec, options);
      ropekit::apply_rope({TensorView::thd(q_plain.data(), dtype, S, Hq, D), TensorView::thd(k_plain.data(), dtype, S, Hk, D)},
                          Positions::from_offset(7), spec);
      EXPECT_EQ(k.bytes(), k_plain.bytes()) << "k must not be scaled";
      int failures = 0;
      for (int64_t s = 0; s < S; ++s)
        for (int64_t i = s * Hq * D; i < (s + 1) * Hq * D; ++i) {
          // Rotate-then-scale rounds twice, the fused call once: within one more rounding.
          const double want = q_plain.get(i) * qs.at(7 + s);
          if (!(std::fabs(q.get(i) - want) <= 2 * rt::tolerance(dtype) * (std::fabs(want) + 0.05)) && ++failures <= 3)
            ADD_FAILURE() << ropekit::to_string(dtype) << " rotary " << rotary << " element " << i << ": got " << q.get(i)
                          << ", rotate then scale " << want;
        }
    }
}

TEST(QueryScale, BadCallsAreNamedAndWriteNothing) {
  std::vector<float> q(2 * 3 * 8, 1.0f), out(2 * 3 * 8, 0.0f);
  const TensorView qv = TensorView::thd(q.data(), DType::f32, 2, 3, 8);
  const QueryScale qs{1.0, 0.1, 8, 1};
  ropekit::ApplyOptions with_scale;
  with_scale.query_scale = qs;
  EXPECT_NE(error_of([&] { ropekit::apply_query_scale(qv, Positions::from_offset(0), qs, with_scale); })
                .find("options.query_scale: expected absent (the scale is the query_scale argument)"),
            std::string::npos);
  EXPECT_NE(error_of([&] { ropekit::apply_query_scale(qv, Positions::from_offset(-1), qs); }).find("positions.start: expected >= 0"),
            std::string::npos);
  EXPECT_NE(error_of([&] { ropekit::apply_query_scale(qv, Positions::from_offset(0), QueryScale{1.0, 0.1, 8, 9}); })
                .find("query_scale.shift"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              ropekit::apply_query_scale(qv, Positions::from_offset(0), qs, {}, TensorView::thd(out.data(), DType::f32, 2, 2, 12));
            }).find("q_out.shape"),
            std::string::npos);
  ropekit::ApplyOptions bad_scale;
  bad_scale.query_scale = QueryScale{1.0, 0.1, 0, 0};
  ropekit::SpecParams sp;
  sp.head_dim = 8;
  EXPECT_NE(error_of([&] { ropekit::apply_rope({qv}, Positions::from_offset(0), ropekit::RopeSpec(sp), bad_scale); })
                .find("options.query_scale.length: expected an integer > 0"),
            std::string::npos);
  for (float v : q) ASSERT_EQ(v, 1.0f);
  for (float v : out) ASSERT_EQ(v, 0.0f);
}

}  // namespace
