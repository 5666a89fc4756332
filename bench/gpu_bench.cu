// GPU benchmark of ropekit's CUDA path (C++, no Python needed): bf16, q 32 heads / k 8 heads x 128,
// in place, both styles (forward; backward too without --quick), long prefill and decode shapes,
// decode also with device-resident per-sequence offsets. Times are medians of CUDA-event
// measurements; a device-to-device copy of the same bytes is measured in the same run. Decode is
// also replayed from a CUDA graph (the kernel without host overhead) and timed on the host (the
// cost of one eager call).
//
// Output: a human table and, per measurement, one line for scripts/gpu_run.sh:
//   RESULT <impl> <case> <median_us> <GB/s> <ratio_to_copy>     (impl ropekit, ropekit_graph)
//   HOST ropekit <case> <host_us_per_call>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <vector>

#include "ropekit/cuda.hpp"
#include "ropekit/ropekit.hpp"

namespace {

#define BENCH_CHECK(call)                                                                        \
  do {                                                                                            \
    const cudaError_t err_ = (call);                                                              \
    if (err_ != cudaSuccess) {                                                                    \
      std::fprintf(stderr, "%s failed: %s (%s:%d)\n", #call, cudaGetErrorString(err_), __FILE__, __LINE__); \
      std::exit(1);                                                                               \
    }                                                                                             \
  } while (0)

struct Shape {
  const char* name;
  int64_t B, S;
  int64_t start;         // decode: position of the new token
  bool device_offsets;   // positions from a device array of per-sequence offsets
  bool quick;            // part of --quick
};

constexpr int64_t kHq = 32, kHk = 8, kD = 128;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Median over `reps` of the per-call time (microseconds) of `calls` back-to-back calls of f.
template <typename F>
double time_us(cudaStream_t stream, int reps, int calls, F&& f) {
  cudaEvent_t a, b;
  BENCH_CHECK(cudaEventCreate(&a));
  BENCH_CHECK(cudaEventCreate(&b));
  for (int i = 0; i < 3; ++i) f();  // warm-up (uploads the table, loads the module)
  BENCH_CHECK(cudaStreamSynchronize(stream));
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    BENCH_CHECK(cudaEventRecord(a, stream));
    for (int c = 0; c < calls; ++c) f();
    BENCH_CHECK(cudaEventRecord(b, stream));
    BENCH_CHECK(cudaEventSynchronize(b));
    float ms = 0;
    BENCH_CHECK(cudaEventElapsedTime(&ms, a, b));
    t.push_back(1000.0 * ms / calls);
  }
  BENCH_CHECK(cudaEventDestroy(a));
  BENCH_CHECK(cudaEventDestroy(b));
  return median(t);
}

// Host wall-clock time of one call (median over reps of `calls` calls), the GPU drained between.
template <typename F>
double host_us(cudaStream_t stream, int reps, int calls, F&& f) {
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    BENCH_CHECK(cudaStreamSynchronize(stream));
    const auto begin = std::chrono::steady_clock::now();
    for (int c = 0; c < calls; ++c) f();
    const auto end = std::chrono::steady_clock::now();
    t.push_back(std::chrono::duration<double, std::micro>(end - begin).count() / calls);
  }
  BENCH_CHECK(cudaStreamSynchronize(stream));
  return median(t);
}

// The per-launch time of `f` (launches `per_graph` times) replayed from a CUDA graph, captured in
// global mode (PyTorch's default); -1 when the capture fails (reported, the run goes on).
template <typename F>
double graph_us(cudaStream_t stream, int reps, int per_graph, F&& f) {
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  BENCH_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
  std::string failure;
  try {
    for (int i = 0; i < per_graph; ++i) f();
  } catch (const std::exception& e) {
    failure = e.what();
  }
  const cudaError_t ended = cudaStreamEndCapture(stream, &graph);
  if (failure.empty() && ended != cudaSuccess) failure = cudaGetErrorString(ended);
  if (!failure.empty()) {
    (void)cudaGetLastError();
    if (graph) (void)cudaGraphDestroy(graph);
    std::printf("graph capture failed: %s\n", failure.c_str());
    return -1.0;
  }
  BENCH_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  const double us = time_us(stream, reps, 2, [&] { BENCH_CHECK(cudaGraphLaunch(exec, stream)); }) / per_graph;
  BENCH_CHECK(cudaGraphExecDestroy(exec));
  BENCH_CHECK(cudaGraphDestroy(graph));
  return us;
}

void report(const std::string& impl, const std::string& name, double us, double bytes, double copy_us) {
  const double gbs = bytes / (us * 1e-6) / 1e9;
  std::printf("%-16s %-36s %10.2f us %9.1f GB/s  copy %8.2f us  ratio %.3f\n", impl.c_str(), name.c_str(), us, gbs,
              copy_us, copy_us / us);
  std::printf("RESULT %s %s %.3f %.1f %.3f\n", impl.c_str(), name.c_str(), us, gbs, copy_us / us);
}

}  // namespace

int main(int argc, char** argv) {
  const std::string arg = argc > 1 ? argv[1] : "";
  if (arg == "--help" || (!arg.empty() && arg != "--quick")) {
    std::printf("usage: ropekit_gpu_bench [--quick]   (--quick: target shapes, forward only, fewer repetitions)\n");
    return arg == "--help" ? 0 : 2;
  }
  const bool quick = arg == "--quick";
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    std::printf("no CUDA device: GPU benchmark skipped\n");
    return 0;
  }
  cudaDeviceProp prop{};
  BENCH_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s, %d SMs, %.0f MB L2\n", prop.name, prop.multiProcessorCount, prop.l2CacheSize / 1e6);

  const std::vector<Shape> shapes = {
      {"prefill_B8_S4096", 8, 4096, 0, false, true},   {"prefill_B1_S8192", 1, 8192, 0, false, true},
      {"prefill_B1_S65536", 1, 65536, 0, false, false}, {"decode_B128_S1", 128, 1, 4095, false, true},
      {"decode_B128_offsets", 128, 1, 0, true, true},   {"decode_B1_S1", 1, 1, 4095, false, false}};
  cudaStream_t stream;
  BENCH_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));

  for (const Shape& sh : shapes) {
    if (quick && !sh.quick) continue;
    const int64_t q_elems = sh.B * sh.S * kHq * kD;
    const int64_t k_elems = sh.B * sh.S * kHk * kD;
    const size_t bytes_q = static_cast<size_t>(q_elems) * 2, bytes_k = static_cast<size_t>(k_elems) * 2;
    void *q = nullptr, *k = nullptr, *scratch = nullptr, *offsets = nullptr;
    BENCH_CHECK(cudaMalloc(&q, bytes_q));
    BENCH_CHECK(cudaMalloc(&k, bytes_k));
    BENCH_CHECK(cudaMalloc(&scratch, bytes_q + bytes_k));
    BENCH_CHECK(cudaMemset(q, 0x3c, bytes_q));  // bf16 0x3c3c ~ 0.0115: finite, normal values
    BENCH_CHECK(cudaMemset(k, 0x3c, bytes_k));
    // Per-sequence cache lengths 3000 .. 4095 (inside an 8192-row table).
    std::vector<int64_t> host_offsets(static_cast<size_t>(sh.B));
    for (int64_t b = 0; b < sh.B; ++b) host_offsets[static_cast<size_t>(b)] = 3000 + (b * 37) % 1096;
    BENCH_CHECK(cudaMalloc(&offsets, host_offsets.size() * sizeof(int64_t)));
    BENCH_CHECK(cudaMemcpy(offsets, host_offsets.data(), host_offsets.size() * sizeof(int64_t), cudaMemcpyHostToDevice));
    const bool decode = sh.S == 1;
    const int reps = quick ? 7 : 21;
    const int calls = decode ? (quick ? 200 : 1000) : (sh.B * sh.S >= 32768 ? 5 : 20);
    // Minimal traffic: read and write q and k once. The copy moves the same bytes (read + write).
    const double bytes = 2.0 * static_cast<double>(bytes_q + bytes_k);
    auto copy = [&] {
      BENCH_CHECK(cudaMemcpyAsync(scratch, q, bytes_q, cudaMemcpyDeviceToDevice, stream));
      BENCH_CHECK(cudaMemcpyAsync(static_cast<char*>(scratch) + bytes_q, k, bytes_k, cudaMemcpyDeviceToDevice, stream));
    };
    const double copy_us = time_us(stream, reps, calls, copy);
    const double copy_graph_us = decode ? graph_us(stream, reps, 100, copy) : 0.0;

    for (ropekit::Style style : {ropekit::Style::half, ropekit::Style::interleaved}) {
      ropekit::SpecParams p;
      p.head_dim = kD;
      p.base = 500000.0;
      p.style = style;
      const ropekit::RopeTable table{ropekit::RopeSpec(p), 8192 > sh.start + sh.S ? 8192 : sh.start + sh.S};
      for (ropekit::Direction dir : {ropekit::Direction::forward, ropekit::Direction::backward}) {
        if (quick && dir == ropekit::Direction::backward) continue;
        ropekit::RopeTensors t;
        t.q = ropekit::TensorView::bshd(q, ropekit::DType::bf16, sh.B, sh.S, kHq, kD, ropekit::Device::cuda(0));
        t.k = ropekit::TensorView::bshd(k, ropekit::DType::bf16, sh.B, sh.S, kHk, kD, ropekit::Device::cuda(0));
        ropekit::ApplyOptions o;
        o.direction = dir;
        o.stream = stream;
        const auto positions =
            sh.device_offsets
                ? ropekit::Positions::per_sequence(
                      ropekit::IndexView(static_cast<const int64_t*>(offsets), sh.B, ropekit::Device::cuda(0)))
                : ropekit::Positions::from_offset(sh.start);
        auto call = [&] { ropekit::apply_rope(t, positions, table, o); };
        const std::string name = std::string(sh.name) + (style == ropekit::Style::half ? "_half" : "_inter") +
                                 (dir == ropekit::Direction::forward ? "_fwd" : "_bwd");
        try {
          report("ropekit", name, time_us(stream, reps, calls, call), bytes, copy_us);
          if (decode) {
            const double g = graph_us(stream, reps, 100, call);
            if (g > 0) report("ropekit_graph", name, g, bytes, copy_graph_us);
            const double h = host_us(stream, reps, 200, call);
            std::printf("%-16s %-36s %10.2f us of host time per call\n", "ropekit_host", name.c_str(), h);
            std::printf("HOST ropekit %s %.3f\n", name.c_str(), h);
          }
          ropekit::cuda_check_errors(stream);
        } catch (const std::exception& e) {
          std::printf("%s: failed (%s)\n", name.c_str(), e.what());
          (void)cudaStreamSynchronize(stream);
        }
      }
    }
    BENCH_CHECK(cudaFree(q));
    BENCH_CHECK(cudaFree(k));
    BENCH_CHECK(cudaFree(scratch));
    BENCH_CHECK(cudaFree(offsets));
  }
  BENCH_CHECK(cudaStreamDestroy(stream));
  return 0;
}
