// GPU benchmark of ropekit's CUDA path (C++, no Python needed): bf16, q 32 heads / k 8 heads x 128,
// in place, both styles, forward and backward, for long prefill and decode shapes. Times are
// medians of CUDA-event measurements; a device-to-device copy of the same bytes is measured in the
// same run. Decode is timed over many back-to-back launches and as a CUDA graph.
//
// Output: a human table, plus one "RESULT impl case median_us GB/s ratio_to_copy" line per
// measurement for scripts/gpu_check.sh.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

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
  int64_t start;  // decode: position of the new token
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

void report(const std::string& impl, const std::string& name, double us, double bytes, double copy_us) {
  const double gbs = bytes / (us * 1e-6) / 1e9;
  std::printf("%-34s %-26s %10.2f us %9.1f GB/s  copy %8.2f us  ratio %.2f\n", impl.c_str(), name.c_str(), us, gbs,
              copy_us, copy_us / us);
  std::printf("RESULT %s %s %.3f %.1f %.3f\n", impl.c_str(), name.c_str(), us, gbs, copy_us / us);
}

}  // namespace

int main(int argc, char** argv) {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    std::printf("no CUDA device: GPU benchmark skipped\n");
    return 0;
  }
  const bool quick = argc > 1 && std::string(argv[1]) == "--quick";
  cudaDeviceProp prop{};
  BENCH_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s, %d SMs\n", prop.name, prop.multiProcessorCount);

  const std::vector<Shape> shapes = {
      {"prefill_B8_S4096", 8, 4096, 0}, {"prefill_B1_S8192", 1, 8192, 0}, {"prefill_B1_S65536", 1, 65536, 0},
      {"decode_B128_S1", 128, 1, 4095}, {"decode_B1_S1", 1, 1, 4095}};
  cudaStream_t stream;
  BENCH_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));

  for (const Shape& sh : shapes) {
    const int64_t q_elems = sh.B * sh.S * kHq * kD;
    const int64_t k_elems = sh.B * sh.S * kHk * kD;
    const size_t bytes_q = static_cast<size_t>(q_elems) * 2, bytes_k = static_cast<size_t>(k_elems) * 2;
    void *q = nullptr, *k = nullptr, *scratch = nullptr;
    BENCH_CHECK(cudaMalloc(&q, bytes_q));
    BENCH_CHECK(cudaMalloc(&k, bytes_k));
    BENCH_CHECK(cudaMalloc(&scratch, bytes_q + bytes_k));
    BENCH_CHECK(cudaMemset(q, 0x3c, bytes_q));  // bf16 0x3c3c ~ 0.0115: finite, normal values
    BENCH_CHECK(cudaMemset(k, 0x3c, bytes_k));
    const bool decode = sh.S == 1;
    const int reps = quick ? 5 : 21;
    const int calls = decode ? (quick ? 100 : 1000) : (sh.B * sh.S >= 32768 ? 5 : 20);
    // Minimal traffic: read and write q and k once. The copy moves the same bytes (read + write).
    const double bytes = 2.0 * static_cast<double>(bytes_q + bytes_k);
    const double copy_us = time_us(stream, reps, calls, [&] {
      BENCH_CHECK(cudaMemcpyAsync(scratch, q, bytes_q, cudaMemcpyDeviceToDevice, stream));
      BENCH_CHECK(cudaMemcpyAsync(static_cast<char*>(scratch) + bytes_q, k, bytes_k, cudaMemcpyDeviceToDevice, stream));
    });

    for (ropekit::Style style : {ropekit::Style::half, ropekit::Style::interleaved}) {
      ropekit::SpecParams p;
      p.head_dim = kD;
      p.base = 500000.0;
      p.style = style;
      const ropekit::RopeTable table{ropekit::RopeSpec(p), sh.start + sh.S};
      for (ropekit::Direction dir : {ropekit::Direction::forward, ropekit::Direction::backward}) {
        ropekit::RopeTensors t;
        t.q = ropekit::TensorView::bshd(q, ropekit::DType::bf16, sh.B, sh.S, kHq, kD, ropekit::Device::cuda(0));
        t.k = ropekit::TensorView::bshd(k, ropekit::DType::bf16, sh.B, sh.S, kHk, kD, ropekit::Device::cuda(0));
        ropekit::ApplyOptions o;
        o.direction = dir;
        o.stream = stream;
        const auto positions = ropekit::Positions::from_offset(sh.start);
        auto call = [&] { ropekit::apply_rope(t, positions, table, o); };
        const std::string name = std::string(sh.name) + (style == ropekit::Style::half ? "_half" : "_inter") +
                                 (dir == ropekit::Direction::forward ? "_fwd" : "_bwd");
        const double us = time_us(stream, reps, calls, call);
        report("ropekit", name, us, bytes, copy_us);
        if (decode) {
          // The same launches replayed from a CUDA graph (host overhead gone).
          constexpr int kInGraph = 100;
          cudaGraph_t graph;
          cudaGraphExec_t exec;
          BENCH_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeRelaxed));
          for (int i = 0; i < kInGraph; ++i) call();
          BENCH_CHECK(cudaStreamEndCapture(stream, &graph));
          BENCH_CHECK(cudaGraphInstantiate(&exec, graph, 0));
          const double g_us = time_us(stream, reps, quick ? 2 : 10, [&] { BENCH_CHECK(cudaGraphLaunch(exec, stream)); }) / kInGraph;
          // The copy baseline as a graph too, for a like-for-like ratio.
          cudaGraph_t cgraph;
          cudaGraphExec_t cexec;
          BENCH_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeRelaxed));
          for (int i = 0; i < kInGraph; ++i) {
            BENCH_CHECK(cudaMemcpyAsync(scratch, q, bytes_q, cudaMemcpyDeviceToDevice, stream));
            BENCH_CHECK(cudaMemcpyAsync(static_cast<char*>(scratch) + bytes_q, k, bytes_k, cudaMemcpyDeviceToDevice, stream));
          }
          BENCH_CHECK(cudaStreamEndCapture(stream, &cgraph));
          BENCH_CHECK(cudaGraphInstantiate(&cexec, cgraph, 0));
          const double cg_us = time_us(stream, reps, quick ? 2 : 10, [&] { BENCH_CHECK(cudaGraphLaunch(cexec, stream)); }) / kInGraph;
          report("ropekit_graph", name, g_us, bytes, cg_us);
          BENCH_CHECK(cudaGraphExecDestroy(exec));
          BENCH_CHECK(cudaGraphDestroy(graph));
          BENCH_CHECK(cudaGraphExecDestroy(cexec));
          BENCH_CHECK(cudaGraphDestroy(cgraph));
        }
      }
    }
    BENCH_CHECK(cudaFree(q));
    BENCH_CHECK(cudaFree(k));
    BENCH_CHECK(cudaFree(scratch));
  }
  BENCH_CHECK(cudaStreamDestroy(stream));
  return 0;
}
