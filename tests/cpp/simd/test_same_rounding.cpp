// The rounding rope_math.hpp promises: on Highway targets with FMA (AVX2, AVX-512) the vector
// kernels give the scalar loop's results bit for bit, for every dtype, style, direction, partial
// rotary and row length (vector tails included), from table rows. Positions past the rows and xPos
// go through each backend's own sincos and exp, so they are checked against the float64
// reference elsewhere, not here.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "cpu_simd/simd.hpp"
#include "hwy/targets.h"
#include "ropekit/apply.hpp"
#include "ropekit/table.hpp"

namespace {

using namespace ropekit;

uint64_t test_seed() {
  if (const char* s = std::getenv("ROPEKIT_TEST_SEED")) return std::strtoull(s, nullptr, 10);
  return std::random_device{}();
}

bool has_fma(int64_t target) {
  static const std::set<std::string> fused = {"AVX2", "AVX3", "AVX3_DL", "AVX3_ZEN4", "AVX3_SPR"};
  return fused.count(hwy::TargetName(target)) > 0;
}

// q and k rotated in place with the given kernel; returns q then k, as raw bytes.
std::vector<uint8_t> rotate(detail::CpuKernel kernel, const std::vector<uint8_t>& input, DType dtype, int64_t heads,
                            int64_t head_dim, const RopeTable& table, Direction direction) {
  std::vector<uint8_t> data = input;
  const int64_t batch = 2;
  const int64_t seq = 7;
  const int64_t q_bytes = batch * seq * heads * head_dim * static_cast<int64_t>(dtype_size(dtype));
  RopeTensors t;
  t.q = TensorView::bshd(data.data(), dtype, batch, seq, heads, head_dim);
  t.k = TensorView::bshd(data.data() + q_bytes, dtype, batch, seq, heads, head_dim);
  ApplyOptions options;
  options.direction = direction;
  options.num_threads = 1;
  detail::set_cpu_kernel(kernel);
  apply_rope(t, Positions::from_offset(3), table, options);
  detail::set_cpu_kernel(detail::CpuKernel::simd);
  return data;
}

TEST(CpuSimdRounding, FmaTargetsMatchTheScalarLoopBitForBit) {
  const uint64_t seed = test_seed();
  SCOPED_TRACE("random seed " + std::to_string(seed) + " (replay: ROPEKIT_TEST_SEED=" + std::to_string(seed) + ")");
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> value(-2.0f, 2.0f);
  int fma_targets = 0;
  int compared = 0;
  for (int64_t target : detail::simd_targets()) {
    if (!has_fma(target)) continue;
    ++fma_targets;
    detail::simd_pin_target(target);
    for (DType dtype : {DType::f32, DType::f16, DType::bf16}) {
      for (Style style : {Style::half, Style::interleaved}) {
        // head_dim 128 (held coefficients, AVX512-BF16), 40 with rotary 24 (tails), 64 (one block).
        for (auto [head_dim, rotary_dim] : {std::pair<int64_t, int64_t>{128, 128}, {40, 24}, {64, 64}, {96, 32}}) {
          SpecParams sp;
          sp.head_dim = head_dim;
          sp.rotary_dim = rotary_dim;
          sp.style = style;
          sp.scaling = scaling::Yarn{4.0, 64};  // attention factor != 1
          const RopeTable table(RopeSpec(sp), 64);
          const int64_t heads = 3;
          const size_t bytes = 2 * 2 * 7 * heads * head_dim * dtype_size(dtype);
          std::vector<uint8_t> input(bytes);
          for (size_t i = 0; i < bytes; i += dtype_size(dtype)) {
            const float v = value(rng);
            if (dtype == DType::f32) {
              std::memcpy(&input[i], &v, 4);
            } else {
              uint32_t bits;
              std::memcpy(&bits, &v, 4);
              const uint16_t h = dtype == DType::bf16 ? static_cast<uint16_t>(bits >> 16)
                                                      : static_cast<uint16_t>(0x3000u + (bits & 0x0fffu) + ((bits >> 31) << 15));
              std::memcpy(&input[i], &h, 2);
            }
          }
          for (Direction direction : {Direction::forward, Direction::backward, Direction::inverse}) {
            const auto scalar = rotate(detail::CpuKernel::scalar, input, dtype, heads, head_dim, table, direction);
            const auto simd = rotate(detail::CpuKernel::simd, input, dtype, heads, head_dim, table, direction);
            ASSERT_NE(scalar, input) << "the scalar loop changed nothing";
            EXPECT_EQ(simd, scalar) << hwy::TargetName(target) << " " << to_string(dtype) << " " << to_string(style)
                                    << " head_dim " << head_dim << " rotary " << rotary_dim << " direction "
                                    << static_cast<int>(direction);
            ++compared;
          }
        }
      }
    }
  }
  detail::simd_pin_target(0);
  if (fma_targets == 0) GTEST_SKIP() << "this CPU runs no Highway target with FMA (AVX2 or AVX-512)";
  EXPECT_EQ(compared, fma_targets * 3 * 2 * 4 * 3);
}

}  // namespace
