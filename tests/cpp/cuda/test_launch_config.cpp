// The launch configuration is plain C++: these tests run on every machine, GPU or not.
#include <gtest/gtest.h>

#include "cuda/launch_config.hpp"

namespace ropekit::detail::cuda {
namespace {

LaunchShape h100(int64_t tokens, int64_t q_heads, int64_t k_heads, int64_t pairs = 64, int64_t per_vector = 8) {
  LaunchShape s;
  s.tokens = tokens;
  s.rotary_chunks = pairs / per_vector;
  s.q_heads = q_heads;
  s.k_heads = k_heads;
  s.multiprocessors = 132;
  s.max_threads_per_multiprocessor = 2048;
  return s;
}

void expect_covers(const LaunchShape& s, const LaunchConfig& c) {
  EXPECT_GE(c.heads_per_thread, 1);
  EXPECT_GE(c.q_groups * c.heads_per_thread, s.q_heads);
  EXPECT_LT((c.q_groups - 1) * c.heads_per_thread, std::max<int64_t>(s.q_heads, 1));
  EXPECT_GE(c.k_groups * c.heads_per_thread, s.k_heads);
  EXPECT_EQ(c.chunks_per_row, s.rotary_chunks + s.pass_chunks);
  EXPECT_EQ(c.items, s.tokens * c.chunks_per_row * (c.q_groups + c.k_groups));
  EXPECT_EQ(c.block % 32, 0);
  EXPECT_LE(c.block, 256);
  EXPECT_GE(c.grid, 1);
  EXPECT_LE(c.grid, kMaxGrid);
  // Every item is reached by the grid-stride loop; no launch of more than one spare block.
  EXPECT_GE(c.grid * c.block, std::min(c.items, kMaxGrid * c.block));
  EXPECT_LT((c.grid - 1) * c.block, std::max<int64_t>(c.items, 1));
}

TEST(CudaLaunchConfig, LongPrefillGroupsHeads) {
  const LaunchShape s = h100(8 * 4096, 32, 8);
  const LaunchConfig c = make_launch_config(s);
  expect_covers(s, c);
  EXPECT_EQ(c.heads_per_thread, 8);  // cos/sin fetched once per 8 heads
  EXPECT_EQ(c.q_groups, 4);
  EXPECT_EQ(c.k_groups, 1);
  EXPECT_EQ(c.block, 256);
}

TEST(CudaLaunchConfig, DecodeSpreadsHeadsOverThreads) {
  for (int64_t batch : {1, 128}) {
    const LaunchShape s = h100(batch, 32, 8);
    const LaunchConfig c = make_launch_config(s);
    expect_covers(s, c);
    EXPECT_EQ(c.heads_per_thread, 1) << batch;  // few tokens: one head per thread for parallelism
    EXPECT_EQ(c.items, batch * 8 * 40);
  }
  const LaunchConfig one = make_launch_config(h100(1, 32, 8));
  EXPECT_EQ(one.grid, 2);  // one token: 320 items
  const LaunchConfig tiny = make_launch_config(h100(1, 4, 2));
  EXPECT_EQ(tiny.items, 48);
  EXPECT_EQ(tiny.block, 64);  // a small block, not a mostly idle 256
  EXPECT_EQ(tiny.grid, 1);
}

TEST(CudaLaunchConfig, MidSizesFillOneWave) {
  for (int64_t tokens : {1, 7, 100, 512, 2048, 4097, 16384, 65536}) {
    const LaunchShape s = h100(tokens, 32, 8);
    const LaunchConfig c = make_launch_config(s);
    expect_covers(s, c);
    const int64_t resident = 132 * 2048;
    if (c.heads_per_thread > 1) EXPECT_GE(c.items, resident) << tokens;
  }
}

TEST(CudaLaunchConfig, PassThroughForcedAndOddShapes) {
  LaunchShape s = h100(300, 5, 3, 16, 8);
  s.pass_chunks = 3;
  expect_covers(s, make_launch_config(s));
  s.forced_heads_per_thread = 3;
  const LaunchConfig c = make_launch_config(s);
  expect_covers(s, c);
  EXPECT_EQ(c.heads_per_thread, 3);
  EXPECT_EQ(c.q_groups, 2);
  EXPECT_EQ(c.k_groups, 1);
  LaunchShape q_only = h100(10, 4, 0);
  const LaunchConfig qc = make_launch_config(q_only);
  expect_covers(q_only, qc);
  EXPECT_EQ(qc.k_groups, 0);
}

}  // namespace
}  // namespace ropekit::detail::cuda
