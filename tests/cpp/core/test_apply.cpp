// apply_rope, the public entry point, on the shared case table (src/cases) with a table and with a
// spec, against the float64 reference; then what the table leaves to its draws: the head sizes
// engines ship, a long prefill, positions far past the training length, every scaling family below
// and above its original length, a length-dependent spec, empty tensors and fused qkv slices.
#include <gtest/gtest.h>

#include <tuple>

#include "case_test_util.hpp"
#include "hf_formulas.hpp"
#include "reference64.hpp"
#include "test_support.hpp"

namespace {

using namespace rt;
using ropekit::Direction;
using ropekit::DType;
using ropekit::Style;
using ropekit::TensorView;
namespace cases = ropekit::cases;
namespace sc = ropekit::scaling;
using Entry = cases::Backend::Entry;

const Entry kEntries[] = {Entry::apply_rope_table, Entry::apply_rope_spec};

TEST(ApplyRope, EveryCaseOfTheTableThroughTheTableAndTheSpec) {
  const uint64_t seed = cases::test_seed();
  SCOPED_TRACE(cases::replay_note(seed));
  const auto table = cases::test_table(seed);
  for (Entry entry : kEntries) cases::expect_table_passes(table, cases::public_api(entry));
}

// `c` completed from `seed`, then `adjust`, through apply_rope with a table and with the spec.
template <class Adjust>
void expect_passes(cases::Case c, uint64_t seed, Adjust adjust) {
  cases::expect_case_passes(c, seed, adjust, {cases::public_api(Entry::apply_rope_table), cases::public_api(Entry::apply_rope_spec)});
}

// Head sizes engines ship (64, 80, 96, 128, 256), one and three tokens, every dtype and style.
TEST(ApplyShapes, CommonHeadSizesAndSingleToken) {
  uint64_t seed = cases::test_seed();
  SCOPED_TRACE(cases::replay_note(seed));
  for (DType dtype : {DType::f32, DType::f16, DType::bf16, DType::f64})
    for (Style style : {Style::half, Style::interleaved})
      for (int64_t head_dim : {64, 80, 96, 128, 256})
        for (int64_t seq : {1, 3}) {
          const uint64_t n = seed++;
          const cases::Layout layout = n % 2 ? cases::Layout::bshd : cases::Layout::bhsd;
          expect_passes(cases::Case{.dtype = dtype, .style = style, .layout = layout, .out_layout = layout, .in_place = n % 3 != 0},
                        n, [&](cases::Case& c) {
                          c.batch = 1;
                          c.seq = seq;
                          c.q_heads = 4;
                          c.k_heads = 2;
                          cases::set_head_dim(c, head_dim, head_dim == 80 ? 40 : 0);  // one partial case
                          c.spec.base = 500000.0;
                        });
        }
}

// One 4097-token prefill from an offset and one of packed sequences, Llama 3 scaling.
TEST(ApplyShapes, LongPrefill4097Tokens) {
  uint64_t seed = cases::test_seed();
  SCOPED_TRACE(cases::replay_note(seed));
  for (auto [dtype, style, pos] : {std::tuple{DType::f32, Style::half, cases::PositionMode::offset},
                                   std::tuple{DType::bf16, Style::interleaved, cases::PositionMode::packed_offsets}})
    expect_passes(cases::Case{.dtype = dtype, .style = style, .layout = cases::Layout::thd, .out_layout = cases::Layout::thd,
                              .positions = pos, .family = cases::ScalingFamily::fixed, .in_place = style == Style::half},
                  seed++, [](cases::Case& c) {
                    c.seq = 4097;
                    c.q_heads = 2;
                    c.k_heads = 1;
                    cases::set_head_dim(c, 128);
                    c.spec.base = 500000.0;
                    c.spec.scaling = sc::Llama3{.factor = 8.0, .low_freq_factor = 1.0, .high_freq_factor = 4.0, .original_max = 1024};
                  });
}

// Positions near 2 x 10^5, past the training length: a 2 x 10^5-row table (float32 and exact
// angles), rows for the lower half of the positions (the others computed in the kernel), none.
TEST(ApplyShapes, LargePositionIds) {
  uint64_t seed = cases::test_seed();
  SCOPED_TRACE(cases::replay_note(seed));
  for (cases::CosSin cos_sin : {cases::CosSin::rows, cases::CosSin::past_rows, cases::CosSin::compute, cases::CosSin::compute_exact})
    for (DType dtype : {DType::f32, DType::f16, DType::bf16, DType::f64}) {
      const uint64_t n = seed++;
      expect_passes(cases::Case{.dtype = dtype, .style = n % 2 ? Style::half : Style::interleaved, .layout = cases::Layout::thd,
                                .out_layout = cases::Layout::thd, .positions = cases::PositionMode::ids64,
                                .in_place = n / 2 % 2 != 0, .cos_sin = cos_sin, .far_positions = true, .far_start = 199940},
                    n, [](cases::Case& c) {
                      c.seq = 16;
                      c.q_heads = 2;
                      c.k_heads = 1;
                      cases::set_head_dim(c, 16);
                    });
    }
}

// Every scaling family with its own parameters, positions below and above original_max = 64.
TEST(ApplyScalings, EveryFamilyAgainstReference) {
  uint64_t seed = cases::test_seed();
  SCOPED_TRACE(cases::replay_note(seed));
  const int64_t head_dim = 32;
  std::vector<double> short_f, long_f;
  for (int i = 0; i < head_dim / 2; ++i) {
    short_f.push_back(1.0 + 0.03 * i);
    long_f.push_back(1.0 + 2.5 * i);
  }
  const std::vector<ropekit::Scaling> scalings{
      sc::None{},
      sc::Linear{.factor = 4.0},
      sc::NtkAware{.alpha = 8.0},
      sc::DynamicNtk{.factor = 2.0, .original_max = 64},
      sc::Yarn{.factor = 16.0, .original_max = 64, .mscale = 0.707, .mscale_all_dim = 1.0},
      sc::Yarn{.factor = 8.0, .original_max = 64, .extrapolation_factor = 0.5, .attention_multiplier = 0.9, .truncate = false},
      sc::Llama3{.factor = 8.0, .low_freq_factor = 1.0, .high_freq_factor = 4.0, .original_max = 64},
      sc::LongRope{.short_factor = short_f, .long_factor = long_f, .original_max = 64, .factor = 32.0},
      sc::Truncated::from_length(32.0),
      sc::Proportional{.fraction = 0.25, .factor = 8.0},
  };
  const Direction directions[] = {Direction::forward, Direction::backward, Direction::inverse};
  for (const auto& scaling : scalings)
    for (int64_t start : {0, 150}) {  // the largest position below and above original_max
      const uint64_t n = seed++;
      expect_passes(cases::Case{.style = n % 2 ? Style::half : Style::interleaved, .positions = cases::PositionMode::ids64,
                                .family = cases::ScalingFamily::fixed, .xpos = n / 2 % 2 == 0, .direction = directions[n % 3],
                                .in_place = n / 4 % 2 == 0, .far_positions = start > 0, .far_start = start},
                    n, [&](cases::Case& c) {
                      cases::set_head_dim(c, head_dim);
                      c.spec.scaling = scaling;
                      c.spec.xpos = c.xpos ? std::optional<ropekit::Xpos>(ropekit::Xpos{}) : std::nullopt;
                    });
    }
}

// The long-context schemes through apply_rope(spec) use the largest position + 1 as the length.
TEST(ApplyScalings, SpecOverloadPreparesLengthDependentFrequencies) {
  RT_SEEDED_RNG(rng);
  const ropekit::RopeSpec spec({.head_dim = 8, .scaling = sc::DynamicNtk{.factor = 2.0, .original_max = 16}});
  Buffer q(DType::f32, 8);
  q.fill_random(rng);
  const Buffer original = q;
  const std::vector<int64_t> ids{99};  // seq_len 100 > 16: base grows
  ropekit::apply_rope({TensorView::thd(q.data(), DType::f32, 1, 1, 8)},
                      ropekit::Positions::token_ids({ids.data(), 1}), spec);
  const auto f = hf::dynamic_inv_freq(std::get<sc::DynamicNtk>(spec.scaling()), 8, 10000.0, 100);
  for (int64_t i = 0; i < 4; ++i) {
    const double angle = static_cast<float>(99.0f * static_cast<float>(f[static_cast<size_t>(i)]));
    const double a = original.get(i), b = original.get(i + 4);
    EXPECT_NEAR(q.get(i), a * std::cos(angle) - b * std::sin(angle), 1e-5);
    EXPECT_NEAR(q.get(i + 4), b * std::cos(angle) + a * std::sin(angle), 1e-5);
  }
}

// Tensors with no tokens or no heads are valid: nothing is read or written.
TEST(ApplyShapes, EmptyTensorsReturnAtOnce) {
  const ropekit::RopeSpec spec({.head_dim = 8});
  ropekit::RopeTable table(spec, 4);
  Buffer out(DType::f32, 8);
  out.poison();
  const auto before = out.bytes();
  const auto q = TensorView::bshd(nullptr, DType::f32, 2, 0, 4, 8);
  auto q_out = TensorView::bshd(nullptr, DType::f32, 2, 0, 4, 8);
  EXPECT_NO_THROW(ropekit::apply_rope({q, std::nullopt, q_out, std::nullopt}, ropekit::Positions::from_offset(0), table));
  const auto q_no_heads = TensorView::bshd(out.data(), DType::f32, 1, 1, 0, 8);
  EXPECT_NO_THROW(ropekit::apply_rope({q_no_heads}, ropekit::Positions::from_offset(100), spec));
  EXPECT_TRUE(out.bytes() == before);
}

// A fused (T, Hq + 2 Hk, D) qkv buffer: q and k are disjoint head slices rotated in place; v and the
// gaps between rows stay untouched.
TEST(ApplyLayouts, FusedQkvSlicesInPlace) {
  RT_SEEDED_RNG(rng);
  for (DType dtype : {DType::f32, DType::bf16}) {
    const int64_t T = 7, Hq = 4, Hk = 2, D = 16, row = (Hq + 2 * Hk) * D;
    Buffer qkv(dtype, T * row);
    qkv.fill_random(rng);
    const Buffer original = qkv;
    auto slice = [&](int64_t first_head, int64_t heads) {
      TensorView v = TensorView::thd(static_cast<unsigned char*>(qkv.data()) + first_head * D * Buffer::esize(dtype),
                                     dtype, T, heads, D);
      v.strides = {row, D, 1, 0};
      return v;
    };
    const ropekit::RopeSpec spec({.head_dim = D, .style = rng.coin() ? Style::half : Style::interleaved});
    ropekit::RopeTable table(spec, 16);
    ASSERT_NO_THROW(ropekit::apply_rope({slice(0, Hq), slice(Hq, Hk)}, ropekit::Positions::from_offset(3), table));
    const auto f = hf::default_inv_freq(D, 10000.0);
    const ropekit::ref64::RefRope r{.head_dim = D, .rotary_dim = D,
                                  .style = spec.style() == Style::half ? ropekit::ref64::RefStyle::half
                                                                       : ropekit::ref64::RefStyle::interleaved,
                                  .inv_freq = f};
    double worst = 0;
    for (int64_t t = 0; t < T; ++t)
      for (int64_t h = 0; h < Hq + 2 * Hk; ++h) {
        std::vector<double> x(static_cast<size_t>(D));
        for (int64_t d = 0; d < D; ++d) x[static_cast<size_t>(d)] = original.get(t * row + h * D + d);
        const auto y = h < Hq + Hk ? ropekit::ref64::reference_row(r, x, t + 3, h < Hq ? 1.0 : -1.0,
                                                                 ropekit::ref64::RefDirection::forward)
                                   : x;  // v: untouched
        for (int64_t d = 0; d < D; ++d) {
          const double got = qkv.get(t * row + h * D + d);
          if (h >= Hq + Hk) {
            EXPECT_EQ(got, x[static_cast<size_t>(d)]) << "v changed at t=" << t << " h=" << h;
          } else {
            worst = std::max(worst, std::fabs(got - y[static_cast<size_t>(d)]));
          }
        }
      }
    EXPECT_LE(worst, 2 * tolerance(dtype) * 2.0) << ropekit::to_string(dtype);
  }
}

}  // namespace
