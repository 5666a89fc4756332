// CPU apply_rope throughput and latency. Every iteration also times, right after the rotation and
// with the same number of threads, a memcpy of the same bytes and an in-place read-modify-write
// stream over the same number of bytes (the limit of in-place work), and the benchmark reports
//   bytes_per_second  -- bytes read + written by the rotation per second
//   rmw_ratio         -- rotation bandwidth / in-place RMW bandwidth (1.0 = at the in-place limit)
//   memcpy_ratio      -- rotation bandwidth / memcpy bandwidth
// Shapes: Llama-3-8B attention (q 32 heads, k 8 heads, head_dim 128), rotated in place.
// Run with --benchmark_repetitions=5 --benchmark_report_aggregates_only=true for medians.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "ropekit/apply.hpp"
#include "ropekit/engine.hpp"
#include "ropekit/kv_cache.hpp"
#include "ropekit/table.hpp"
#if defined(ROPEKIT_HAS_CPU_SIMD)
#include "cpu_simd/simd.hpp"
#include "cpu_simd/thread_pool.hpp"
#endif

namespace {

using namespace ropekit;
using Clock = std::chrono::steady_clock;

constexpr int64_t kQHeads = 32;
constexpr int64_t kKHeads = 8;
constexpr int64_t kHeadDim = 128;

// kMRope: Qwen2.5-VL-7B (q 28 + k 4 heads, sections [16, 24, 24]); kIMRope: Qwen3-VL-8B (32 + 8,
// interleaved [24, 20, 20]); both on an image prompt's 3-axis positions (mrope_positions).
enum Variant : int64_t { kPlain = 0, kXpos = 1, kYarn = 2, kSinCos = 3, kScalar = 4, kMRope = 5, kIMRope = 6 };

RopeSpec make_spec(Style style, int64_t variant) {
  SpecParams p;
  p.head_dim = kHeadDim;
  p.base = 500000.0;
  p.style = style;
  if (variant == kXpos) p.xpos = Xpos{512.0, 0.4};
  if (variant == kYarn) p.scaling = scaling::Yarn{4.0, 8192, 32.0, 1.0, 1.0, 1.0, {}, {}, {}, true};
  if (variant == kMRope) p.mrope = MRope{{16, 24, 24}, false};
  if (variant == kIMRope) p.mrope = MRope{{24, 20, 20}, true};
  if (p.mrope) p.base = 1000000.0;
  return RopeSpec(p);
}

// One sequence of `seq` tokens as Qwen2.5-VL's get_rope_index lays out a prompt with one image:
// 64 text tokens, an image of 56 x (whatever fits) merged patches (t fixed, h and w on its grid),
// then text again from the largest position + 1. Axis-major (t, h, w).
std::vector<int64_t> mrope_positions(int64_t seq) {
  std::vector<int64_t> ids(static_cast<size_t>(3 * seq));
  auto at = [&](int axis, int64_t s) -> int64_t& { return ids[static_cast<size_t>(axis * seq + s)]; };
  const int64_t text = std::min<int64_t>(64, seq);
  const int64_t rows = 56;
  const int64_t cols = std::max<int64_t>(1, (seq - 2 * text) / rows);
  const int64_t image = std::min(seq - text, rows * cols);
  int64_t s = 0;
  for (; s < text; ++s)
    for (int a = 0; a < 3; ++a) at(a, s) = s;
  for (int64_t i = 0; i < image; ++i, ++s) {
    at(0, s) = text;
    at(1, s) = text + i / cols;
    at(2, s) = text + i % cols;
  }
  int64_t next = text + std::max(rows, cols);
  for (; s < seq; ++s, ++next)
    for (int a = 0; a < 3; ++a) at(a, s) = next;
  return ids;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

// Runs slice(0 .. threads-1) on the pool the rotation uses (or plain threads without it).
template <typename Slice>
void run_slices(int threads, Slice&& slice) {
#if defined(ROPEKIT_HAS_CPU_SIMD)
  ropekit::detail::ThreadPool::instance().run(threads, slice);
#else
  std::vector<std::thread> pool;
  for (int i = 1; i < threads; ++i) pool.emplace_back(slice, i);
  slice(0);
  for (auto& t : pool) t.join();
#endif
}

// Copies `bytes` from src to dst with `threads` threads (each a contiguous slice).
void copy_with_threads(const unsigned char* src, unsigned char* dst, size_t bytes, int threads) {
  run_slices(threads, [&](int i) {
    const size_t begin = bytes * static_cast<size_t>(i) / static_cast<size_t>(threads);
    const size_t end = bytes * static_cast<size_t>(i + 1) / static_cast<size_t>(threads);
    std::memcpy(dst + begin, src + begin, end - begin);
  });
}

// Flips the sign bits of `bytes` in place with `threads` threads: one load and one store per word,
// the memory traffic of an in-place rotation without its arithmetic.
void rmw_with_threads(unsigned char* data, size_t bytes, int threads) {
  run_slices(threads, [&](int i) {
    const size_t words = bytes / 8;
    const size_t begin = words * static_cast<size_t>(i) / static_cast<size_t>(threads);
    const size_t end = words * static_cast<size_t>(i + 1) / static_cast<size_t>(threads);
    auto* w = reinterpret_cast<uint64_t*>(data);
    for (size_t j = begin; j < end; ++j) w[j] ^= 0x8000800080008000ull;
  });
}

void fill_random(std::vector<uint16_t>& v, DType dtype) {
  std::mt19937 rng(12345);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  if (dtype == DType::f32) {
    auto* f = reinterpret_cast<float*>(v.data());
    for (size_t i = 0; i < v.size() / 2; ++i) f[i] = u(rng);
  } else {  // bf16 or f16 bit patterns of moderate values
    for (auto& x : v) x = static_cast<uint16_t>(0x3c00u | (rng() & 0x3ffu));
  }
}

// args: dtype (0 f32, 1 bf16, 2 f16), style (0 half, 1 interleaved), batch, seq, threads, variant.
void BM_Rope(benchmark::State& state) {
  const DType dtype = state.range(0) == 0 ? DType::f32 : state.range(0) == 1 ? DType::bf16 : DType::f16;
  const Style style = state.range(1) == 0 ? Style::half : Style::interleaved;
  const int64_t batch = state.range(2);
  const int64_t seq = state.range(3);
  const int threads = static_cast<int>(state.range(4));
  const int64_t variant = state.range(5);
  const int64_t element = dtype_size(dtype);
  const int64_t q_heads = variant == kMRope ? 28 : kQHeads;
  const int64_t k_heads = variant == kMRope ? 4 : kKHeads;
  const int64_t q_elems = batch * seq * q_heads * kHeadDim;
  const int64_t k_elems = batch * seq * k_heads * kHeadDim;
  std::vector<uint16_t> q(static_cast<size_t>(q_elems * element / 2)), k(static_cast<size_t>(k_elems * element / 2));
  fill_random(q, dtype);
  fill_random(k, dtype);

  // Decode (seq 1): each sequence at its own cache length; prefill: positions 0..seq-1.
  std::vector<int64_t> offsets(static_cast<size_t>(batch));
  for (int64_t b = 0; b < batch; ++b) offsets[static_cast<size_t>(b)] = seq == 1 ? 1000 + 37 * b : 0;
  const bool mrope = variant == kMRope || variant == kIMRope;
  const std::vector<int64_t> ids = mrope ? mrope_positions(seq) : std::vector<int64_t>{};
  const Positions positions = mrope ? Positions::token_ids(IndexView(ids.data(), 3 * seq), 3)
                                    : Positions::per_sequence(IndexView(offsets.data(), batch));
  RopeTensors tensors;
  tensors.q = TensorView::bshd(q.data(), dtype, batch, seq, q_heads, kHeadDim);
  tensors.k = TensorView::bshd(k.data(), dtype, batch, seq, k_heads, kHeadDim);
  const RopeTable table = RopeTable(make_spec(style, variant)).for_seq_len(seq == 1 ? 1000 + 37 * batch + 1 : seq);
  ApplyOptions options;
  options.num_threads = threads;
  options.compute_sincos = variant == kSinCos;
#if defined(ROPEKIT_HAS_CPU_SIMD)
  if (variant == kScalar) detail::set_cpu_kernel(detail::CpuKernel::scalar);
#endif

  // Each iteration times the rotation, then a memcpy of the same bytes with the same threads, so
  // both see the same machine load; the reported time is the rotation's alone (manual time).
  const int64_t bytes = (q_elems + k_elems) * element;  // read once and written once
  const int copy_threads = std::max(threads, 1);
  std::vector<unsigned char> src(static_cast<size_t>(bytes), 1), dst(static_cast<size_t>(bytes), 0);
  std::vector<uint64_t> rmw(static_cast<size_t>(bytes + 7) / 8, 0);
  auto* rmw_bytes = reinterpret_cast<unsigned char*>(rmw.data());
  copy_with_threads(src.data(), dst.data(), src.size(), copy_threads);  // fault the pages in
  rmw_with_threads(rmw_bytes, static_cast<size_t>(bytes), copy_threads);
  apply_rope(tensors, positions, table, options);  // warm: pages, threads, dispatch
  std::vector<double> rope_times, copy_times, rmw_times;
  for (auto _ : state) {
    const auto t0 = Clock::now();
    apply_rope(tensors, positions, table, options);
    const auto t1 = Clock::now();
    copy_with_threads(src.data(), dst.data(), src.size(), copy_threads);
    benchmark::DoNotOptimize(dst.data());
    const auto t2 = Clock::now();
    rmw_with_threads(rmw_bytes, static_cast<size_t>(bytes), copy_threads);
    benchmark::DoNotOptimize(rmw.data());
    const auto t3 = Clock::now();
    const double rope = std::chrono::duration<double>(t1 - t0).count();
    rope_times.push_back(rope);
    copy_times.push_back(std::chrono::duration<double>(t2 - t1).count());
    rmw_times.push_back(std::chrono::duration<double>(t3 - t2).count());
    state.SetIterationTime(rope);
  }
#if defined(ROPEKIT_HAS_CPU_SIMD)
  detail::set_cpu_kernel(detail::CpuKernel::simd);
#endif
  const double rope = median(rope_times);
  const double copy = median(copy_times);
  state.SetBytesProcessed(state.iterations() * 2 * bytes);
  state.counters["median_us"] = rope * 1e6;
  state.counters["memcpy_us"] = copy * 1e6;
  state.counters["memcpy_ratio"] = copy / rope;
  state.counters["rmw_us"] = median(rmw_times) * 1e6;
  state.counters["rmw_ratio"] = median(rmw_times) / rope;
}

void prefill_args(benchmark::internal::Benchmark* b) {
  for (int64_t seq : {4096, 16384})
    for (int64_t dtype : {0, 1, 2})
      for (int64_t style : {0, 1})
        for (int64_t threads : {1, 2}) b->Args({dtype, style, 1, seq, threads, kPlain});
  // Variants at S = 4096, 2 threads (and 1 for the in-kernel sincos).
  for (int64_t seq : {4096, 16384})
    for (int64_t dtype : {0, 1, 2})
      for (int64_t style : {0, 1}) b->Args({dtype, style, 1, seq, 2, kSinCos});
  for (int64_t dtype : {0, 1}) {
    b->Args({dtype, 0, 1, 4096, 2, kXpos});
    b->Args({dtype, 0, 1, 4096, 2, kYarn});
    b->Args({dtype, 0, 1, 4096, 1, kSinCos});
  }
  b->Args({0, 0, 1, 4096, 1, kScalar});  // the scalar reference loop, for scale
  for (int64_t dtype : {0, 1, 2})
    for (int64_t variant : {kMRope, kIMRope}) b->Args({dtype, 0, 1, 4096, 2, variant});
  b->ArgNames({"dtype", "interleaved", "B", "S", "threads", "variant"});
}

void decode_args(benchmark::internal::Benchmark* b) {
  for (int64_t batch : {1, 32})
    for (int64_t dtype : {0, 1})
      for (int64_t variant : {kPlain, kSinCos}) b->Args({dtype, 0, batch, 1, 0, variant});
  b->Args({1, 0, 32, 1, 1, kPlain});  // B = 32 on one thread, against the default (all cores)
  b->ArgNames({"dtype", "interleaved", "B", "S", "threads", "variant"});
}

// RoPE + paged KV-cache write (rotary_embedding_with_kv_cache), Llama-3-8B heads, NHD pages of 16,
// each request's pages shuffled in the cache. args: dtype (0 f32, 1 bf16), cache (0 as k, 1 FP8
// e4m3), tokens, threads, mode (0 fused, 1 unfused: rotary_embedding in place, then each token's k
// and v rows copied to its slot, threaded as the fused op). The limit, timed in the same
// iteration: an in-place RMW stream over q's bytes plus a memcpy of k's and v's bytes (what the
// fused op must read and write with a cache of k's dtype; an FP8 cache writes half of that).
void BM_KvAppend(benchmark::State& state) {
  const DType dtype = state.range(0) == 0 ? DType::f32 : DType::bf16;
  const bool fp8 = state.range(1) == 1;
  const int64_t T = state.range(2);
  const int threads = static_cast<int>(state.range(3));
  const bool fused = state.range(4) == 0;
  const int64_t e = dtype_size(dtype), page = 16, pages = T / page + 2;
  const int64_t q_row = kQHeads * kHeadDim, kv_row = kKHeads * kHeadDim;
  std::vector<uint16_t> q(static_cast<size_t>(T * q_row * e / 2)), k(static_cast<size_t>(T * kv_row * e / 2)),
      v(k.size());
  fill_random(q, dtype);
  fill_random(k, dtype);
  fill_random(v, dtype);
  const DType cache_dtype = fp8 ? DType::f8_e4m3 : dtype;
  const int64_t ce = dtype_size(cache_dtype);
  std::vector<unsigned char> kc(static_cast<size_t>(pages * page * kv_row * ce), 0), vc(kc.size(), 0);
  std::vector<int64_t> order(static_cast<size_t>(pages));
  for (int64_t i = 0; i < pages; ++i) order[static_cast<size_t>(i)] = i;
  std::shuffle(order.begin(), order.end(), std::mt19937(7));
  std::vector<int64_t> slots(static_cast<size_t>(T)), positions(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) {
    slots[static_cast<size_t>(t)] = order[static_cast<size_t>(t / page)] * page + t % page;
    positions[static_cast<size_t>(t)] = t;
  }
  SpecParams sp;
  sp.head_dim = kHeadDim;
  sp.base = 500000.0;
  const std::vector<float> rows = cos_sin_cache(RopeSpec(sp), T);
  const CosSinCacheView table{rows.data(), DType::f32, Device::cpu(), T, kHeadDim};
  const TensorView qv = TensorView::contiguous(q.data(), dtype, {T, q_row});
  const TensorView kv = TensorView::contiguous(k.data(), dtype, {T, kv_row});
  const TensorView vv = TensorView::contiguous(v.data(), dtype, {T, kv_row});
  const auto cache_view = [&](std::vector<unsigned char>& c) {
    return TensorView{c.data(), cache_dtype, Device::cpu(), 4, {pages, page, kKHeads, kHeadDim},
                      {page * kv_row, kv_row, kHeadDim, 1}};
  };
  const float scale = 0.05f;
  PagedKvCache cache{cache_view(kc), cache_view(vc), KvLayout::nhd};
  if (fp8) cache.k_scale = cache.v_scale = std::span<const float>(&scale, 1);
  EngineOptions options;
  options.num_threads = threads;
  const IndexView pos(positions.data(), T), slot_view(slots.data(), T);
  const auto run = [&] {
    if (fused) {
      rotary_embedding_with_kv_cache(pos, qv, kv, vv, kHeadDim, table, true, slot_view, cache, 0, options);
      return;
    }
    rotary_embedding(pos, qv, kv, kHeadDim, table, true, 0, false, options);
    const size_t row = static_cast<size_t>(kv_row * e);
    run_slices(threads, [&](int i) {
      for (int64_t t = T * i / threads; t < T * (i + 1) / threads; ++t) {
        const auto at = static_cast<size_t>(slots[static_cast<size_t>(t)]) * row;
        std::memcpy(kc.data() + at, reinterpret_cast<const unsigned char*>(k.data()) + static_cast<size_t>(t) * row, row);
        std::memcpy(vc.data() + at, reinterpret_cast<const unsigned char*>(v.data()) + static_cast<size_t>(t) * row, row);
      }
    });
  };
  if (!fused && fp8) {
    state.SkipWithError("the unfused sequence is timed with a cache of k's dtype");
    return;
  }
  const size_t q_bytes = static_cast<size_t>(T * q_row * e), kv_bytes = static_cast<size_t>(2 * T * kv_row * e);
  std::vector<uint64_t> rmw((q_bytes + 7) / 8, 0);
  std::vector<unsigned char> src(kv_bytes, 1), dst(kv_bytes, 0);
  run();  // warm: pages, threads
  copy_with_threads(src.data(), dst.data(), kv_bytes, threads);
  std::vector<double> times, limits;
  for (auto _ : state) {
    const auto t0 = Clock::now();
    run();
    const auto t1 = Clock::now();
    rmw_with_threads(reinterpret_cast<unsigned char*>(rmw.data()), q_bytes, threads);
    copy_with_threads(src.data(), dst.data(), kv_bytes, threads);
    benchmark::DoNotOptimize(dst.data());
    const auto t2 = Clock::now();
    times.push_back(std::chrono::duration<double>(t1 - t0).count());
    limits.push_back(std::chrono::duration<double>(t2 - t1).count());
    state.SetIterationTime(times.back());
  }
  state.counters["median_us"] = median(times) * 1e6;
  state.counters["limit_us"] = median(limits) * 1e6;
  state.counters["limit_ratio"] = median(limits) / median(times);
}

void kv_append_args(benchmark::internal::Benchmark* b) {
  for (int64_t dtype : {1, 0})
    for (int64_t mode : {0, 1}) b->Args({dtype, 0, 4096, 2, mode});
  b->Args({1, 1, 4096, 2, 0});
  b->Args({1, 0, 16384, 2, 0});
  b->Args({1, 0, 16384, 2, 1});
  for (int64_t mode : {0, 1}) b->Args({1, 0, 32, 2, mode});  // decode, 32 requests
  b->Args({1, 1, 32, 2, 0});
  b->ArgNames({"dtype", "fp8", "T", "threads", "unfused"});
}

BENCHMARK(BM_KvAppend)->Name("kv_append")->Apply(kv_append_args)->UseManualTime()->Unit(benchmark::kMicrosecond);

BENCHMARK(BM_Rope)->Name("prefill")->Apply(prefill_args)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Rope)->Name("decode")->Apply(decode_args)->UseManualTime()->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
