#pragma once
// How the CUDA rotation kernel splits its work: plain C++ (no CUDA headers) so the choice is
// unit-tested on machines without a GPU.
//
// One work item = one token x one chunk of a head row x one group of heads of q or of k. A chunk
// is what one thread rotates with one or two accesses (rope_kernel.cuh: KernelSpec), or a
// same-sized piece of the pass-through tail (out-of-place partial rotary). The item fetches
// cos/sin once and reuses them for every head of its group. Big groups save cos/sin fetches; small
// groups make more, smaller items: enough to fill the GPU when there are few tokens (decode), and
// a smaller last wave otherwise.
//
// The grid gives the decomposition directly (no division in the kernel):
//   threadIdx.x: chunk;  blockIdx.y x blockDim.y + threadIdx.y: head group (q groups, then k);
//   blockIdx.x x blockDim.z + threadIdx.z: token of a batch row;  blockIdx.z: batch row.
// Every dimension is a grid-stride loop, so a grid capped to the resident blocks covers all.
#include <algorithm>
#include <cmath>
#include <atomic>
#include <cstdint>
#include <cstdlib>

namespace ropekit::detail::cuda {

struct LaunchShape {
  int64_t batch = 1;             // rank 3: 1
  int64_t seq = 0;               // tokens per batch row
  int64_t rotary_chunks = 0;     // chunks covering the rotary dims
  int64_t pass_chunks = 0;       // pass-through chunks per row (0 when nothing is copied)
  int64_t q_heads = 0;
  int64_t k_heads = 0;           // 0 without k
  int multiprocessors = 1;
  int resident_threads_per_multiprocessor = 2048;  // occupancy of the kernel at kBlock threads
  int64_t forced_heads_per_thread = 0;  // > 0: use this (tests and benchmarks reach every path)
};

struct LaunchConfig {
  int64_t heads_per_thread = 1;
  int64_t q_groups = 0;          // ceil(q_heads / heads_per_thread)
  int64_t k_groups = 0;
  int64_t chunks_per_row = 0;    // rotary_chunks + pass_chunks
  int64_t items = 0;             // tokens x chunks_per_row x (q_groups + k_groups)
  unsigned block[3] = {1, 1, 1};  // chunks, head groups, tokens
  unsigned grid[3] = {1, 1, 1};   // token blocks, head-group blocks, batch rows
  int64_t threads() const { return int64_t{block[0]} * block[1] * block[2]; }
  int64_t blocks() const { return int64_t{grid[0]} * grid[1] * grid[2]; }
};

constexpr int64_t kMaxHeadsPerThread = 8;  // enough reuse of cos/sin
constexpr int kBlock = 256;                // threads per block at most (__launch_bounds__)
constexpr int64_t kMaxBlockZ = 64;
constexpr int64_t kMaxGridX = (int64_t{1} << 31) - 1;
constexpr int64_t kMaxGridYZ = 65535;
constexpr int64_t kMaxGroups = (int64_t{1} << 31) - 1;  // head groups and chunks are int in the kernel

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

#if defined(__CUDACC__)
#define ROPEKIT_GRID_HD __host__ __device__ __forceinline__
#else
#define ROPEKIT_GRID_HD inline
#endif

// One thread's place in the launch: blockIdx, threadIdx, gridDim, blockDim (x, y, z).
struct GridPos {
  unsigned block[3];
  unsigned thread[3];
  unsigned grid[3];
  unsigned block_dim[3];
};

struct GridExtent {
  int64_t batch = 1;
  int64_t seq = 0;
  int groups = 0;  // head groups of q and k
  int chunks = 0;  // chunks per head row
};

// The items of one thread: `token(b, s)` before each token of its rows (returns the position, or
// -1 to skip the token; s may be >= seq in the last token block, where it must return -1), `sync()`
// after it (the kernel's barrier; a no-op elsewhere), then `item(b, s, position, group, chunk)`.
// Each loop is grid-stride; every (b, s, group, chunk) is visited once by one thread of the grid.
#if defined(__CUDACC__)
#pragma nv_exec_check_disable  // the callables are device lambdas in the kernel, host ones in tests
#endif
template <typename Token, typename Item, typename Sync>
ROPEKIT_GRID_HD void for_each_item(const GridExtent& e, const GridPos& g, Token&& token, Item&& item, Sync&& sync) {
  const int64_t s_step = static_cast<int64_t>(g.grid[0]) * g.block_dim[2];
  for (int64_t b = g.block[2]; b < e.batch; b += g.grid[2]) {
    for (int64_t s0 = static_cast<int64_t>(g.block[0]) * g.block_dim[2]; s0 < e.seq; s0 += s_step) {
      const int64_t s = s0 + g.thread[2];
      const int64_t position = token(b, s);
      sync();
      if (position < 0) continue;
      // int64: group + step may pass INT32_MAX when there are nearly 2^31 groups.
      for (int64_t group = static_cast<int64_t>(g.block[1]) * g.block_dim[1] + g.thread[1]; group < e.groups;
           group += static_cast<int64_t>(g.grid[1]) * g.block_dim[1])
        for (int chunk = static_cast<int>(g.thread[0]); chunk < e.chunks; chunk += static_cast<int>(g.block_dim[0]))
          item(b, s, position, static_cast<int>(group), chunk);  // group < groups <= INT32_MAX
    }
  }
}

// Share of a wave schedule that does work: `waves` of work on ceil(waves) waves.
inline double wave_efficiency(double waves) { return waves <= 0 ? 0.0 : waves / std::ceil(waves); }

// Block shape and the grid that covers every item once (before cap_grid).
inline LaunchConfig make_launch_config(const LaunchShape& s) {
  LaunchConfig c;
  c.chunks_per_row = s.rotary_chunks + s.pass_chunks;
  const int64_t tokens = s.batch * s.seq;
  const int64_t most_heads = std::max<int64_t>(std::max(s.q_heads, s.k_heads), 1);
  const int64_t resident = int64_t{std::max(s.multiprocessors, 1)} * std::max(s.resident_threads_per_multiprocessor, 32);
  auto items_for = [&](int64_t hpt) {
    return tokens * c.chunks_per_row * (ceil_div(s.q_heads, hpt) + ceil_div(s.k_heads, hpt));
  };
  // The largest group (kMaxHeadsPerThread or fewer, halving) that gives at least one full wave
  // of resident threads and whose last wave is at least 95% full; else the fullest last wave.
  int64_t hpt = 1;
  double best = -1.0;
  for (int64_t h = std::min(kMaxHeadsPerThread, most_heads); h >= 1; h = h == 1 ? 0 : ceil_div(h, 2)) {
    const double waves = static_cast<double>(items_for(h)) / static_cast<double>(resident);
    if (waves < 1.0) continue;
    const double efficiency = wave_efficiency(waves);
    if (efficiency >= 0.95) {
      hpt = h;
      break;
    }
    if (efficiency > best) {
      best = efficiency;
      hpt = h;
    }
  }
  if (s.forced_heads_per_thread > 0) hpt = s.forced_heads_per_thread;
  c.heads_per_thread = hpt;
  c.q_groups = ceil_div(s.q_heads, hpt);
  c.k_groups = ceil_div(s.k_heads, hpt);
  c.items = items_for(hpt);

  // Block: every chunk of a row (up to kBlock), then as many head groups as fit in balanced
  // y-blocks, then tokens, choosing the token count that wastes the fewest warp lanes.
  const int64_t groups = std::max<int64_t>(c.q_groups + c.k_groups, 1);
  const int64_t cx = std::clamp<int64_t>(c.chunks_per_row, 1, kBlock);
  const int64_t per_x = kBlock / cx;
  const int64_t gy = ceil_div(groups, ceil_div(groups, per_x));
  const int64_t most_z = std::clamp<int64_t>(std::min(kBlock / (cx * gy), kMaxBlockZ), 1, std::max<int64_t>(s.seq, 1));
  int64_t tz = 1;
  double least_waste = 2.0;
  for (int64_t z = 1; z <= most_z; ++z) {
    const int64_t threads = cx * gy * z;
    const int64_t lanes = ceil_div(threads, 32) * 32;
    const double waste = static_cast<double>(lanes - threads) / static_cast<double>(lanes);
    if (waste <= least_waste) {  // ties go to more tokens per block
      least_waste = waste;
      tz = z;
    }
  }
  c.block[0] = static_cast<unsigned>(cx);
  c.block[1] = static_cast<unsigned>(gy);
  c.block[2] = static_cast<unsigned>(tz);
  c.grid[0] = static_cast<unsigned>(std::clamp<int64_t>(ceil_div(s.seq, tz), 1, kMaxGridX));
  c.grid[1] = static_cast<unsigned>(std::clamp<int64_t>(ceil_div(groups, gy), 1, kMaxGridYZ));
  c.grid[2] = static_cast<unsigned>(std::clamp<int64_t>(s.batch, 1, kMaxGridYZ));
  return c;
}

// At most `max_blocks` blocks (the resident blocks, from the occupancy API): token blocks go
// first, then batch rows, then head-group blocks; the grid-stride loops do the rest.
inline void cap_grid(LaunchConfig& c, int64_t max_blocks) {
  max_blocks = std::max<int64_t>(max_blocks, 1);
  if (c.blocks() <= max_blocks) return;
  const int64_t yz = int64_t{c.grid[1]} * c.grid[2];
  c.grid[0] = static_cast<unsigned>(std::max<int64_t>(max_blocks / yz, 1));
  if (yz > max_blocks) {
    c.grid[2] = static_cast<unsigned>(std::max<int64_t>(max_blocks / c.grid[1], 1));
    if (c.grid[1] > max_blocks) c.grid[1] = static_cast<unsigned>(max_blocks);
  }
}

// The forced head-group size: ROPEKIT_CUDA_HEADS_PER_THREAD=n (1..64), read once, or what tests
// set; 0 (unset or invalid): automatic.
inline std::atomic<int64_t>& heads_per_thread_setting() {
  static std::atomic<int64_t> value{[] {
    const char* text = std::getenv("ROPEKIT_CUDA_HEADS_PER_THREAD");
    const long n = text ? std::strtol(text, nullptr, 10) : 0;
    return n >= 1 && n <= 64 ? static_cast<int64_t>(n) : int64_t{0};
  }()};
  return value;
}
inline int64_t heads_per_thread_override() { return heads_per_thread_setting().load(std::memory_order_relaxed); }
inline void set_heads_per_thread_override(int64_t n) { heads_per_thread_setting().store(n >= 1 && n <= 64 ? n : 0); }

}  // namespace ropekit::detail::cuda
