// The launch configuration and the grid loop are plain C++: these tests run on every machine, GPU
// or not. The grid is enumerated block by block and thread by thread, as the GPU runs it.
#include <gtest/gtest.h>

#include <map>
#include <tuple>
#include <vector>

#include "cuda/launch_config.hpp"

namespace ropekit::detail::cuda {
namespace {

// An H100/H200-like GPU: 132 multiprocessors, 1024 resident threads each (64 registers).
LaunchShape h200(int64_t batch, int64_t seq, int64_t q_heads, int64_t k_heads, int64_t chunks = 16) {
  LaunchShape s;
  s.batch = batch;
  s.seq = seq;
  s.rotary_chunks = chunks;
  s.q_heads = q_heads;
  s.k_heads = k_heads;
  s.multiprocessors = 132;
  s.resident_threads_per_multiprocessor = 1024;
  return s;
}

// Runs for_each_item for every thread of the grid and checks that each (b, s, group, chunk) is
// visited exactly once, and that no thread sees a token past the sequence as valid.
void expect_covers_once(const LaunchShape& s, const LaunchConfig& c) {
  const int64_t groups = c.q_groups + c.k_groups;
  GridExtent e{s.batch, s.seq, static_cast<int>(groups), static_cast<int>(c.chunks_per_row)};
  std::map<std::tuple<int64_t, int64_t, int, int>, int> seen;
  for (unsigned bz = 0; bz < c.grid[2]; ++bz)
    for (unsigned by = 0; by < c.grid[1]; ++by)
      for (unsigned bx = 0; bx < c.grid[0]; ++bx)
        for (unsigned tz = 0; tz < c.block[2]; ++tz)
          for (unsigned ty = 0; ty < c.block[1]; ++ty)
            for (unsigned tx = 0; tx < c.block[0]; ++tx) {
              const GridPos g{{bx, by, bz}, {tx, ty, tz}, {c.grid[0], c.grid[1], c.grid[2]}, {c.block[0], c.block[1], c.block[2]}};
              for_each_item(
                  e, g, [&](int64_t, int64_t sq) { return sq < s.seq ? sq : int64_t{-1}; },
                  [&](int64_t b, int64_t sq, int64_t position, int group, int chunk) {
                    EXPECT_EQ(position, sq);
                    ++seen[{b, sq, group, chunk}];
                  },
                  [] {});
            }
  EXPECT_EQ(static_cast<int64_t>(seen.size()), s.batch * s.seq * groups * c.chunks_per_row);
  for (const auto& [key, count] : seen) ASSERT_EQ(count, 1);
}

void expect_valid(const LaunchShape& s, const LaunchConfig& c) {
  EXPECT_GE(c.heads_per_thread, 1);
  EXPECT_GE(c.q_groups * c.heads_per_thread, s.q_heads);
  EXPECT_LT((c.q_groups - 1) * c.heads_per_thread, std::max<int64_t>(s.q_heads, 1));
  EXPECT_GE(c.k_groups * c.heads_per_thread, s.k_heads);
  EXPECT_EQ(c.chunks_per_row, s.rotary_chunks + s.pass_chunks);
  EXPECT_EQ(c.items, s.batch * s.seq * c.chunks_per_row * (c.q_groups + c.k_groups));
  EXPECT_LE(c.threads(), kBlock);
  EXPECT_LE(c.block[2], kMaxBlockZ);
  EXPECT_LE(c.grid[1], kMaxGridYZ);
  EXPECT_LE(c.grid[2], kMaxGridYZ);
  // The block holds every chunk of a row when a row fits, and its head groups split evenly.
  if (c.chunks_per_row <= kBlock) {
    EXPECT_EQ(c.block[0], c.chunks_per_row);
  }
  const int64_t groups = c.q_groups + c.k_groups;
  EXPECT_LT(int64_t{c.grid[1] - 1} * c.block[1], groups);
}

TEST(CudaLaunchConfig, LongPrefillGroupsHeadsWithoutWastedLanes) {
  for (int64_t seq : {4096, 8192}) {
    const int64_t batch = seq == 4096 ? 8 : 1;
    const LaunchShape s = h200(batch, seq, 32, 8);
    const LaunchConfig c = make_launch_config(s);
    expect_valid(s, c);
    EXPECT_GE(c.heads_per_thread, 2) << seq;  // cos/sin fetched once per group of heads
    EXPECT_EQ(c.block[0], 16u);
    EXPECT_EQ(c.threads() % 32, 0) << c.block[1] << " x " << c.block[2];  // no idle lanes
    // Enough items for the GPU, and a last wave at least 95% full (or the fullest there is).
    const double waves = static_cast<double>(c.items) / (132.0 * 1024);
    EXPECT_GE(waves, 1.0);
  }
}

TEST(CudaLaunchConfig, DecodeSpreadsHeadsOverThreads) {
  for (int64_t batch : {1, 128}) {
    const LaunchShape s = h200(batch, 1, 32, 8);
    const LaunchConfig c = make_launch_config(s);
    expect_valid(s, c);
    expect_covers_once(s, c);
    EXPECT_EQ(c.heads_per_thread, 1) << batch;  // few tokens: one head per thread for parallelism
    EXPECT_EQ(c.items, batch * 16 * 40);
    EXPECT_EQ(c.block[2], 1u);                 // one token per batch row
    EXPECT_EQ(c.grid[2], static_cast<unsigned>(batch));
    EXPECT_LT(c.threads() * c.grid[1], 16 * (40 + c.grid[1]));  // 40 head groups over balanced y-blocks
  }
  const LaunchConfig tiny = make_launch_config(h200(1, 1, 4, 2, 4));
  EXPECT_EQ(tiny.items, 24);
  EXPECT_EQ(tiny.blocks(), 1);
}

TEST(CudaLaunchConfig, EveryShapeIsCoveredOnceEvenWhenCapped) {
  struct Case {
    int64_t batch, seq, q, k, chunks, pass, forced;
  };
  const std::vector<Case> cases = {
      {2, 5, 5, 3, 10, 0, 0},  {1, 23, 5, 3, 10, 3, 3}, {3, 9, 1, 1, 40, 0, 0}, {1, 1, 4, 0, 8, 0, 0},
      {2, 33, 6, 2, 300, 0, 2}, {70, 3, 2, 1, 4, 1, 1},  {1, 100, 12, 4, 16, 0, 8}, {5, 1, 32, 8, 16, 0, 0},
  };
  for (const Case& k : cases) {
    LaunchShape s = h200(k.batch, k.seq, k.q, k.k, k.chunks);
    s.pass_chunks = k.pass;
    s.forced_heads_per_thread = k.forced;
    LaunchConfig c = make_launch_config(s);
    SCOPED_TRACE(::testing::Message() << "B=" << k.batch << " S=" << k.seq << " q=" << k.q << " k=" << k.k
                                      << " chunks=" << k.chunks << " block " << c.block[0] << "x" << c.block[1] << "x"
                                      << c.block[2] << " grid " << c.grid[0] << "x" << c.grid[1] << "x" << c.grid[2]);
    expect_valid(s, c);
    if (k.forced) {
      EXPECT_EQ(c.heads_per_thread, k.forced);
    }
    expect_covers_once(s, c);
    // Capped to fewer blocks than the shape needs: the grid-stride loops still cover everything.
    for (int64_t cap : {1, 2, 7}) {
      LaunchConfig capped = c;
      cap_grid(capped, cap);
      EXPECT_LE(capped.blocks(), std::max<int64_t>(cap, c.grid[1]));
      expect_covers_once(s, capped);
    }
  }
}

TEST(CudaLaunchConfig, CapKeepsTheResidentBlocks) {
  const LaunchShape s = h200(8, 4096, 32, 8);
  LaunchConfig c = make_launch_config(s);
  const int64_t resident = 132 * (1024 / c.threads());
  cap_grid(c, resident);
  EXPECT_LE(c.blocks(), resident);
  EXPECT_GE(c.blocks(), resident * 9 / 10);  // close to a full wave
  EXPECT_EQ(c.grid[2], 8u);
}

TEST(CudaLaunchConfig, HeadsPerThreadOverride) {
  set_heads_per_thread_override(3);
  EXPECT_EQ(heads_per_thread_override(), 3);
  set_heads_per_thread_override(0);
  EXPECT_EQ(heads_per_thread_override(), 0);
  set_heads_per_thread_override(99);  // out of range: automatic
  EXPECT_EQ(heads_per_thread_override(), 0);
}

}  // namespace
}  // namespace ropekit::detail::cuda
