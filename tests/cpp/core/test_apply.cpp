// apply_rope against the float64 reference over the whole option matrix: every dtype x style x layout
// (one test per triple), and inside each every position mode x in/out of place x direction x xPos x
// partial rotary x GQA / no k x compute_sincos x exact angles x attention factor (none / YaRN).
// Sizes are drawn per case from a fresh seed; a few odd and large sizes get their own tests.
#include <gtest/gtest.h>

#include <tuple>

#include "apply_harness.hpp"

namespace {

using namespace rt;
using ropekit::DType;
namespace sc = ropekit::scaling;

enum class Heads { same, grouped, no_k };

using MatrixParam = std::tuple<DType, Style, Layout>;

class ApplyMatrix : public ::testing::TestWithParam<MatrixParam> {};

TEST_P(ApplyMatrix, MatchesFloat64Reference) {
  const auto [dtype, style, layout] = GetParam();
  RT_SEEDED_RNG(rng);
  std::vector<PosMode> modes{PosMode::offset, PosMode::per_sequence, PosMode::ids32, PosMode::ids64};
  if (layout == Layout::thd) {
    modes.push_back(PosMode::packed);
    modes.push_back(PosMode::packed_offsets);
  }
  const std::vector<ropekit::Scaling> scalings{sc::None{}, sc::Yarn{.factor = 4.0, .original_max = 64}};
  int64_t cases = 0;
  for (PosMode pos : modes)
    for (bool in_place : {true, false})
      for (Direction dir : {Direction::forward, Direction::backward, Direction::inverse})
        for (bool xpos : {false, true})
          for (bool partial : {false, true})
            for (Heads heads : {Heads::same, Heads::grouped, Heads::no_k})
              for (bool sincos : {false, true})
                for (bool exact : {false, true})
                  for (const auto& scaling : scalings) {
                    Case c;
                    c.dtype = dtype;
                    c.style = style;
                    c.layout = layout;
                    // Out of place, write into the other rank-4 layout half the time.
                    c.out_layout = layout == Layout::thd ? Layout::thd
                                   : rng.coin()          ? layout
                                                         : (layout == Layout::bshd ? Layout::bhsd : Layout::bshd);
                    c.pos = pos;
                    c.in_place = in_place;
                    c.direction = dir;
                    if (xpos) {
                      c.xpos = ropekit::Xpos{.scale_base = rng.coin() ? 512.0 : 64.0, .gamma = 0.4};
                      c.xpos_center = rng.coin() ? 0.0 : rng.uniform(-4.0, 24.0);
                    }
                    c.scaling = scaling;
                    c.base = rng.coin() ? 10000.0 : 500000.0;
                    c.compute_sincos = sincos;
                    c.exact = exact;
                    c.num_threads = static_cast<int>(rng.integer(0, 2));
                    c.batch = layout == Layout::thd ? 1 : rng.integer(1, 3);
                    c.seq = layout == Layout::thd ? rng.integer(1, 9) : rng.integer(1, 5);
                    c.head_dim = rng.pick<int64_t>({4, 8, 12, 16, 32});
                    c.rotary_dim = partial ? 2 * rng.integer(1, c.head_dim / 2 - 1) : c.head_dim;
                    c.q_heads = heads == Heads::grouped ? rng.integer(2, 4) : rng.integer(1, 3);
                    c.k_heads = heads == Heads::same ? c.q_heads : heads == Heads::grouped ? rng.integer(1, c.q_heads - 1) : 0;
                    run_case(c, rng);
                    ++cases;
                    if (HasFailure()) return;  // the first failing case says enough
                  }
  EXPECT_GT(cases, 500);
}

std::string matrix_name(const ::testing::TestParamInfo<MatrixParam>& info) {
  const auto [dtype, style, layout] = info.param;
  return ropekit::to_string(dtype) + "_" + ropekit::to_string(style) + "_" + name(layout);
}

INSTANTIATE_TEST_SUITE_P(AllDtypesStylesLayouts, ApplyMatrix,
                         ::testing::Combine(::testing::Values(DType::f32, DType::f16, DType::bf16, DType::f64),
                                            ::testing::Values(Style::half, Style::interleaved),
                                            ::testing::Values(Layout::bshd, Layout::bhsd, Layout::thd)),
                         matrix_name);

// Head sizes engines ship (64, 80, 96, 128, 256), a single token, and one long prefill.
TEST(ApplyShapes, CommonHeadSizesAndSingleToken) {
  RT_SEEDED_RNG(rng);
  for (DType dtype : {DType::f32, DType::f16, DType::bf16, DType::f64})
    for (Style style : {Style::half, Style::interleaved})
      for (int64_t head_dim : {64, 80, 96, 128, 256})
        for (int64_t seq : {1, 3}) {
          Case c;
          c.dtype = dtype;
          c.style = style;
          c.layout = rng.pick<Layout>({Layout::bshd, Layout::bhsd});
          c.out_layout = c.layout;
          c.pos = PosMode::offset;
          c.in_place = rng.coin();
          c.batch = 1;
          c.seq = seq;
          c.q_heads = 4;
          c.k_heads = 2;
          c.head_dim = head_dim;
          c.rotary_dim = head_dim == 80 ? 40 : head_dim;  // one partial case
          c.base = 500000.0;
          run_case(c, rng);
          if (HasFailure()) return;
        }
}

TEST(ApplyShapes, LongPrefill4097Tokens) {
  RT_SEEDED_RNG(rng);
  for (auto [dtype, style, pos] : {std::tuple{DType::f32, Style::half, PosMode::offset},
                                   std::tuple{DType::bf16, Style::interleaved, PosMode::packed_offsets}}) {
    Case c;
    c.dtype = dtype;
    c.style = style;
    c.layout = Layout::thd;
    c.out_layout = Layout::thd;
    c.pos = pos;
    c.in_place = style == Style::half;
    c.seq = 4097;
    c.q_heads = 2;
    c.k_heads = 1;
    c.head_dim = 128;
    c.rotary_dim = 128;
    c.max_position = 8192;
    c.scaling = sc::Llama3{.factor = 8.0, .low_freq_factor = 1.0, .high_freq_factor = 4.0, .original_max = 1024};
    c.base = 500000.0;
    run_case(c, rng);
  }
}

// Positions far past the training length: float32 angles (default) and exact ones, from the table
// and computed in the kernel.
TEST(ApplyShapes, LargePositionIds) {
  RT_SEEDED_RNG(rng);
  for (bool exact : {false, true})
    for (bool sincos : {false, true}) {
      Case c;
      c.dtype = rng.pick<DType>({DType::f32, DType::f16, DType::bf16, DType::f64});
      c.style = rng.coin() ? Style::half : Style::interleaved;
      c.layout = Layout::thd;
      c.out_layout = Layout::thd;
      c.pos = PosMode::ids64;
      c.max_position = 200000;
      c.exact = exact;
      c.compute_sincos = sincos;
      c.in_place = rng.coin();
      c.seq = 16;
      c.q_heads = 2;
      c.k_heads = 1;
      c.head_dim = 16;
      c.rotary_dim = 16;
      run_case(c, rng);
    }
}

// Every scaling family through the table and through apply_rope(spec), which prepares the table for
// the largest position (dynamic NTK and LongRoPE depend on it).
TEST(ApplyScalings, EveryFamilyAgainstReference) {
  RT_SEEDED_RNG(rng);
  const int64_t head_dim = 32;
  std::vector<double> short_f, long_f;
  for (int i = 0; i < head_dim / 2; ++i) {
    short_f.push_back(rng.uniform(1.0, 1.5));
    long_f.push_back(rng.uniform(1.0, 40.0));
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
  };
  for (const auto& scaling : scalings)
    for (bool spec_overload : {false, true})
      for (int64_t max_position : {40, 200}) {  // below and above original_max = 64
        Case c;
        c.scaling = scaling;
        c.spec_overload = spec_overload;
        c.dtype = DType::f32;
        c.style = rng.coin() ? Style::half : Style::interleaved;
        c.layout = Layout::bshd;
        c.pos = PosMode::ids64;
        c.max_position = max_position;
        c.in_place = rng.coin();
        c.head_dim = head_dim;
        c.rotary_dim = head_dim;
        c.xpos = rng.coin() ? std::optional<ropekit::Xpos>(ropekit::Xpos{}) : std::nullopt;
        c.direction = rng.pick<Direction>({Direction::forward, Direction::backward, Direction::inverse});
        run_case(c, rng);
        if (HasFailure()) return;
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
