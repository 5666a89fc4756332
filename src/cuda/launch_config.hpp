#pragma once
// How the CUDA rotation kernel splits its work: plain C++ (no CUDA headers) so the choice is
// unit-tested on machines without a GPU.
//
// One work item = one token x one chunk of a head row x one group of heads of q or of k. A chunk
// is `chunk_pairs` rotation pairs (two 16-byte vectors when vectorised), or a same-sized piece of
// the pass-through tail (out-of-place partial rotary). The item fetches cos/sin once and reuses
// them for every head of its group. Big groups save cos/sin fetches (long prefill); small groups
// make enough items to fill the GPU when there are few tokens (decode).
#include <algorithm>
#include <cstdint>
#include <cstdlib>

namespace ropekit::detail::cuda {

struct LaunchShape {
  int64_t tokens = 0;            // batch x seq, or packed tokens
  int64_t rotary_chunks = 0;     // pairs / chunk_pairs
  int64_t pass_chunks = 0;       // pass-through chunks per row (0 when nothing is copied)
  int64_t q_heads = 0;
  int64_t k_heads = 0;           // 0 without k
  int multiprocessors = 1;
  int max_threads_per_multiprocessor = 2048;
  int64_t forced_heads_per_thread = 0;  // > 0: use this (tests and benchmarks reach every path)
};

struct LaunchConfig {
  int64_t heads_per_thread = 1;
  int64_t q_groups = 0;          // ceil(q_heads / heads_per_thread)
  int64_t k_groups = 0;
  int64_t chunks_per_row = 0;    // rotary_chunks + pass_chunks
  int64_t items = 0;             // tokens x chunks_per_row x (q_groups + k_groups)
  int block = 256;
  int64_t grid = 0;              // blocks; the kernel loops if items > grid x block
};

constexpr int64_t kMaxHeadsPerThread = 8;   // enough reuse of cos/sin; keeps q and k items balanced
constexpr int kBlock = 256;
constexpr int64_t kMaxGrid = (int64_t{1} << 31) - 1;

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

inline LaunchConfig make_launch_config(const LaunchShape& s) {
  LaunchConfig c;
  c.chunks_per_row = s.rotary_chunks + s.pass_chunks;
  const int64_t most_heads = std::max<int64_t>(std::max(s.q_heads, s.k_heads), 1);
  const int64_t resident = int64_t{std::max(s.multiprocessors, 1)} * std::max(s.max_threads_per_multiprocessor, 32);
  auto items_for = [&](int64_t hpt) {
    return s.tokens * c.chunks_per_row * (ceil_div(s.q_heads, hpt) + ceil_div(s.k_heads, hpt));
  };
  // Largest group (up to kMaxHeadsPerThread) that still gives one full wave of resident threads.
  int64_t hpt = std::min(kMaxHeadsPerThread, most_heads);
  while (hpt > 1 && items_for(hpt) < resident) hpt = ceil_div(hpt, 2);
  if (s.forced_heads_per_thread > 0) hpt = s.forced_heads_per_thread;
  c.heads_per_thread = hpt;
  c.q_groups = ceil_div(s.q_heads, hpt);
  c.k_groups = ceil_div(s.k_heads, hpt);
  c.items = items_for(hpt);
  // Tiny launches (decode of one token) get one small block instead of a mostly idle 256.
  c.block = c.items >= kBlock ? kBlock : static_cast<int>(std::max<int64_t>(32, ceil_div(c.items, 32) * 32));
  c.grid = std::min(std::max<int64_t>(ceil_div(c.items, c.block), 1), kMaxGrid);
  return c;
}

// ROPEKIT_CUDA_HEADS_PER_THREAD=n (1..64) overrides the choice; unset or invalid: 0 (automatic).
inline int64_t heads_per_thread_override() {
  const char* text = std::getenv("ROPEKIT_CUDA_HEADS_PER_THREAD");
  if (text == nullptr) return 0;
  const long value = std::strtol(text, nullptr, 10);
  return value >= 1 && value <= 64 ? value : 0;
}

}  // namespace ropekit::detail::cuda
