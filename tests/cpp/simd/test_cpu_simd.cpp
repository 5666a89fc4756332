// The vectorized CPU backend on every Highway target this CPU runs: the shared case table
// (src/cases) at the head sizes and shapes it leaves to its draws (vector tails, partial rotary,
// long prefills, threads over tokens and heads, positions to 10^7), the kernel switch, the vector
// sincos and NaN inputs. The table's own covering run is tests/cpp/cases.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "apply_call.hpp"
#include "case_test_util.hpp"
#include "cpu_simd/simd.hpp"
#include "half_float.hpp"
#include "ropekit/apply.hpp"
#include "ropekit/table.hpp"
#include "table_data.hpp"

namespace {

using namespace ropekit;
namespace cases = ropekit::cases;

// The Highway targets of cases::cpu_backends() (each pins its target for the call).
std::vector<cases::Backend> simd_backends() {
  std::vector<cases::Backend> out;
  for (cases::Backend& b : cases::cpu_backends())
    if (b.name != "scalar") out.push_back(std::move(b));
  return out;
}

// `c` completed from `seed`, then `adjust`, on every target (or the best one only: for cases whose
// float64 reference takes seconds).
template <class Adjust>
void expect_passes_everywhere(cases::Case c, uint64_t seed, Adjust adjust, bool best_target_only = false) {
  auto backends = simd_backends();
  if (best_target_only && !backends.empty()) backends.resize(1);
  cases::expect_case_passes(c, seed, adjust, backends);
}

constexpr DType kDTypes[] = {DType::f32, DType::f16, DType::bf16};
constexpr Style kStyles[] = {Style::half, Style::interleaved};
constexpr Direction kDirections[] = {Direction::forward, Direction::backward, Direction::inverse};

// Run on its own (ctest runs each test in its own process; the ROPEKIT_CPU=scalar copy is added in
// CMakeLists.txt): the default kernel follows the environment.
TEST(CpuSimd, DefaultKernelFollowsEnvironment) {
  const char* env = std::getenv("ROPEKIT_CPU");
  const bool scalar = env != nullptr && std::string(env) == "scalar";
  EXPECT_EQ(detail::cpu_kernel(), scalar ? detail::CpuKernel::scalar : detail::CpuKernel::simd);
}

// The switch picks the loop apply_rope runs: bit for bit the scalar loop's or the vector kernel's
// results, under a target without FMA, whose kernels round twice where the scalar loop fuses (so
// the two differ on some elements of a large enough call).
TEST(CpuSimd, KernelSwitchPicksTheLoop) {
  const int64_t tokens = 64, heads = 4, head_dim = 128;
  std::mt19937_64 rng(cases::test_seed());
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> input(static_cast<size_t>(tokens * heads * head_dim));
  for (float& x : input) x = u(rng);
  const RopeSpec spec({.head_dim = head_dim, .base = 10000});
  const RopeTable table(spec, tokens + 100);
  const Positions positions = Positions::from_offset(100);
  auto through_apply = [&](detail::CpuKernel kernel) {
    std::vector<float> q = input;
    detail::set_cpu_kernel(kernel);
    apply_rope({TensorView::thd(q.data(), DType::f32, tokens, heads, head_dim)}, positions, table, ApplyOptions{.num_threads = 1});
    detail::set_cpu_kernel(detail::CpuKernel::simd);
    return q;
  };
  auto direct = [&](void (*loop)(const detail::RopeParams&)) {
    std::vector<float> q = input;
    detail::CheckedCall call =
        detail::check_call({TensorView::thd(q.data(), DType::f32, tokens, heads, head_dim)}, positions, spec, {});
    call.params.num_threads = 1;
    detail::use_table(call.params, detail::TableAccess::data(table), /*compute_sincos=*/false);
    loop(call.params);
    return q;
  };
  const std::vector<float> scalar = direct(detail::apply_cpu_scalar);
  int tried = 0;
  for (int64_t target : detail::simd_targets()) {
    detail::simd_pin_target(target);
    const std::vector<float> simd = direct(detail::apply_cpu_simd);
    if (simd != scalar) {  // a target that rounds twice
      SCOPED_TRACE(detail::simd_target_name());
      EXPECT_EQ(through_apply(detail::CpuKernel::scalar), scalar);
      EXPECT_EQ(through_apply(detail::CpuKernel::simd), simd);
      ++tried;
    }
  }
  detail::simd_pin_target(0);
  if (tried == 0) GTEST_SKIP() << "every Highway target here gives the scalar loop's bits: the switch is not observable";
}

// Every dtype, style and direction at head sizes with vector tails and partial rotary.
TEST(CpuSimd, HeadSizesAndVectorTailsOnEveryTarget) {
  uint64_t seed = cases::test_seed();
  SCOPED_TRACE(cases::replay_note(seed));
  for (DType dtype : kDTypes)
    for (Style style : kStyles)
      for (Direction dir : kDirections)
        for (auto [head_dim, rotary] : {std::pair<int64_t, int64_t>{64, 0}, {80, 0}, {96, 64}, {128, 0},
                                        {128, 40}, {256, 0}, {36, 18}})
          expect_passes_everywhere(cases::Case{.dtype = dtype, .style = style, .direction = dir,
                                               .in_place = (head_dim / 16) % 2 == 0},
                                   seed++, [&](cases::Case& c) { cases::set_head_dim(c, head_dim, rotary); });
}

// Threads over tokens (4097 tokens) and over heads (1 and 3 tokens), 1, 2 and 7 threads (the CPU
// backends lower the per-thread traffic floor so small calls split too), and packed sequences
// split across threads.
TEST(CpuSimd, ThreadsOverTokensAndHeads) {
  uint64_t seed = cases::test_seed();
  SCOPED_TRACE(cases::replay_note(seed));
  for (int threads : {1, 2, 7}) {
    for (auto [batch, seq] : {std::pair<int64_t, int64_t>{1, 1}, {3, 1}, {1, 4097}})
      for (DType dtype : {DType::f32, DType::bf16})
        expect_passes_everywhere(cases::Case{.dtype = dtype, .style = seq > 1 ? Style::half : Style::interleaved,
                                             .xpos = threads == 2, .in_place = threads != 7},
                                 seed++, [&](cases::Case& c) {
                                   c.num_threads = threads;
                                   c.batch = batch;
                                   c.seq = seq;
                                   c.q_heads = 4;
                                   c.k_heads = 2;
                                   cases::set_head_dim(c, seq > 1 ? 64 : 128, 0);
                                 },
                                 /*best_target_only=*/seq > 1);
    expect_passes_everywhere(cases::Case{.dtype = DType::f16, .layout = cases::Layout::thd, .out_layout = cases::Layout::thd,
                                         .positions = cases::PositionMode::packed_offsets},
                             seed++, [&](cases::Case& c) {
                               c.num_threads = threads;
                               c.seq = 301;
                             });
  }
}

// The vector sincos against double std::cos / std::sin up to |x| = 1e7, near multiples of pi/2,
// and past the reduction's range (library fallback), on every target.
TEST(CpuSimd, VectorSinCosIsFloatAccurateToTenMillion) {
  const uint64_t seed = cases::test_seed();
  SCOPED_TRACE(cases::replay_note(seed));
  std::mt19937_64 rng(seed);
  std::vector<double> angles;
  for (double limit : {1.0, 100.0, 1e4, 1e6, 1e7}) {
    std::uniform_real_distribution<double> u(-limit, limit);
    for (int i = 0; i < 2000; ++i) angles.push_back(u(rng));
  }
  for (int64_t k = 1; k < 6000000; k = k * 3 + 1) {  // just around k * pi/2, where reduction cancels
    const double x = static_cast<double>(k) * 1.5707963267948966;
    angles.push_back(std::nextafter(x, 0.0));
    angles.push_back(x);
  }
  for (double big : {2e7, 1e8, 1e9}) angles.push_back(big);
  angles.push_back(0.0);
  for (int i = 0; i < 1000; ++i) angles.push_back(static_cast<double>(static_cast<float>(1e6 + i * 7919.0) * 0.9f));
  for (int64_t target : detail::simd_targets()) {
    detail::simd_pin_target(target);
    SCOPED_TRACE(detail::simd_target_name());
    for (double scale : {1.0, 1.1386294361}) {
      std::vector<float> c(angles.size()), s(angles.size());
      detail::simd_sincos(angles.data(), static_cast<int64_t>(angles.size()), scale, c.data(), s.data());
      int64_t bad = 0;
      double worst = 0;
      for (size_t i = 0; i < angles.size(); ++i) {
        const double wc = std::cos(angles[i]) * scale, ws = std::sin(angles[i]) * scale;
        // One float rounding of a value of magnitude <= scale: half an ulp of scale, plus a hair.
        const double bound = 0.6 * std::ldexp(1.0, -23) * scale;
        const double err = std::max(std::fabs(c[i] - wc), std::fabs(s[i] - ws));
        worst = std::max(worst, err);
        if (!(err <= bound)) ++bad;
      }
      EXPECT_EQ(bad, 0) << "worst error " << worst;
    }
  }
  detail::simd_pin_target(0);
}

// In-kernel sincos at positions near 10^6 and 10^7, both angle modes and styles.
TEST(CpuSimd, InKernelSinCosAtLongPositions) {
  uint64_t seed = cases::test_seed();
  SCOPED_TRACE(cases::replay_note(seed));
  for (cases::CosSin cos_sin : {cases::CosSin::compute, cases::CosSin::compute_exact})
    for (Style style : kStyles)
      for (int64_t start : {int64_t{1000000}, int64_t{10000000}})
        expect_passes_everywhere(cases::Case{.style = style, .positions = cases::PositionMode::ids64, .cos_sin = cos_sin,
                                             .far_positions = true, .far_start = start},
                                 seed++, [](cases::Case& c) {
                                   c.batch = 2;
                                   c.seq = 16;
                                 });
}

// A NaN in the input stays NaN in its rotated pair (never turns into a number) and spreads no
// further, on every target.
TEST(CpuSimd, NanInputsStayNan) {
  const int64_t seq = 2, heads = 1, head_dim = 80, nan_at = 78;  // in the vector tail for both styles
  detail::set_cpu_kernel(detail::CpuKernel::simd);  // apply_rope through the vector kernels
  for (int64_t target : detail::simd_targets()) {
    detail::simd_pin_target(target);
    for (DType dtype : kDTypes)
      for (Style style : kStyles) {
        SCOPED_TRACE(to_string(dtype) + " " + to_string(style) + " " + detail::simd_target_name());
        const RopeTable table(RopeSpec({.head_dim = head_dim, .base = 10000, .style = style}), 16);
        const size_t n = static_cast<size_t>(seq * heads * head_dim);
        std::vector<uint16_t> half(n);
        std::vector<float> single(n);
        for (size_t i = 0; i < n; ++i) {
          single[i] = 0.25f + static_cast<float>(i % 7) / 8.0f;
          half[i] = dtype == DType::f16 ? detail::float_to_half(single[i]) : detail::float_to_bf16(single[i]);
        }
        single[nan_at] = std::numeric_limits<float>::quiet_NaN();
        half[nan_at] = dtype == DType::f16 ? 0x7e00 : 0x7fc0;
        void* data = dtype == DType::f32 ? static_cast<void*>(single.data()) : static_cast<void*>(half.data());
        apply_rope({TensorView::thd(data, dtype, seq, heads, head_dim)}, Positions::from_offset(5), table,
                   ApplyOptions{.num_threads = 1});
        auto value = [&](size_t i) {
          return dtype == DType::f32 ? single[i] : dtype == DType::f16 ? detail::half_to_float(half[i]) : detail::bf16_to_float(half[i]);
        };
        const size_t partner = style == Style::half ? nan_at - head_dim / 2 : nan_at + 1;
        EXPECT_TRUE(std::isnan(value(nan_at)));
        EXPECT_TRUE(std::isnan(value(partner)));
        int64_t nans = 0;
        for (size_t i = 0; i < n; ++i) nans += std::isnan(value(i)) ? 1 : 0;
        EXPECT_EQ(nans, 2);
      }
  }
  detail::simd_pin_target(0);
}

}  // namespace
