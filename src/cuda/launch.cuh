#pragma once
// The launch of one dtype's kernels (included by kernels_*.cu only): specialisation, occupancy
// (cached per kernel, device and block size), work split, grid cap, launch.
#include <atomic>

#include "cuda_check.hpp"
#include "kernel_args.hpp"
#include "launch.hpp"

namespace ropekit::detail::cuda {

// Resident blocks of rope_kernel<K> per multiprocessor at `threads` threads per block.
template <class K>
int blocks_per_multiprocessor(int device, int64_t threads) {
  static std::atomic<int> cache[kMaxDevices][kBlock / 32 + 1];
  const int64_t warps = ceil_div(threads, 32);
  std::atomic<int>& slot = cache[device][warps];
  if (const int known = slot.load(std::memory_order_relaxed); known > 0) return known;
  int blocks = 0;
  ROPEKIT_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, rope_kernel<K>, static_cast<int>(warps * 32),
                                                                   kMaxBlockZ * sizeof(int64_t)));
  blocks = blocks > 0 ? blocks : 1;
  slot.store(blocks, std::memory_order_relaxed);
  return blocks;
}

template <typename T>
void launch_dtype(KernelArgs& a, const RopeParams& p, const DeviceState& dev, cudaStream_t stream) {
  with_kernel<T>(choose_kernel<T>(p, a), [&]<class K>() {
    const int resident = blocks_per_multiprocessor<K>(dev.device, kBlock) * kBlock;
    LaunchConfig c = configure_launch<K>(a, p, dev.multiprocessors, resident, heads_per_thread_override());
    cap_grid(c, int64_t{blocks_per_multiprocessor<K>(dev.device, c.threads())} * dev.multiprocessors);
    const size_t shared = a.pos.kind == Positions::Kind::packed ? c.block[2] * sizeof(int64_t) : 0;
    rope_kernel<K><<<dim3(c.grid[0], c.grid[1], c.grid[2]), dim3(c.block[0], c.block[1], c.block[2]), shared, stream>>>(a);
    ROPEKIT_CUDA_CHECK(cudaGetLastError());
  });
}

}  // namespace ropekit::detail::cuda
