// The host path does not synchronise: calls with device-resident positions are captured into CUDA
// graphs, and a table destroyed while its launches are still queued is freed only after them.
#include <chrono>
#include <thread>
#include <vector>

#include "cuda_test_util.hpp"
#include "ropekit/cuda.hpp"

namespace ropekit_cuda_test {
namespace {

RopeSpec spec64() {
  SpecParams p;
  p.head_dim = 64;
  return RopeSpec(p);
}

// The CPU result of rotating `host` (B, S, H, 64 f32) at positions offsets[b] + s.
std::vector<unsigned char> cpu_rotated(const HostTensor& host, const RopeTable& table, const std::vector<int64_t>& offsets) {
  HostTensor cpu = host;
  RopeTensors t;
  t.q = cpu.view(cpu.bytes.data(), Device::cpu());
  apply_rope(t, Positions::per_sequence(IndexView(offsets.data(), static_cast<int64_t>(offsets.size()))), table);
  return cpu.bytes;
}

double worst_difference(const std::vector<unsigned char>& a, const std::vector<unsigned char>& b) {
  double worst = 0.0;
  for (size_t i = 0; i < a.size() / 4; ++i)
    worst = std::max(worst, std::fabs(get(a, DType::f32, static_cast<int64_t>(i)) - get(b, DType::f32, static_cast<int64_t>(i))));
  return worst;
}

// Decode with per-sequence offsets on the device, captured once and replayed: no host
// synchronisation may happen inside apply_rope (a capture would fail).
TEST(CudaGraphs, CaptureWithDeviceResidentOffsets) {
  ROPEKIT_REQUIRE_GPU();
  const RopeTable table(spec64(), 64);
  HostTensor q(DType::f32, Layout::bshd, 4, 1, 3, 64);
  std::mt19937_64 rng(31);
  q.fill_random(rng);
  const std::vector<int64_t> offsets = {5, 17, 40, 63};
  DeviceBuffer dq(q.bytes.size()), dsrc(q.bytes.size()), doff(offsets.size() * 8);
  dsrc.upload(q.bytes.data(), q.bytes.size());
  doff.upload(offsets.data(), offsets.size() * 8);
  cudaStream_t stream = nullptr;
  ROPEKIT_CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  RopeTensors t;
  t.q = q.view(dq.get(), Device::cuda(0));
  ApplyOptions o;
  o.stream = stream;
  const auto positions = Positions::per_sequence(IndexView(static_cast<const int64_t*>(doff.get()), 4, Device::cuda(0)));
  ROPEKIT_CUDA_OK(cudaMemcpyAsync(dq.get(), dsrc.get(), q.bytes.size(), cudaMemcpyDeviceToDevice, stream));
  apply_rope(t, positions, table, o);  // first use on the device: uploads the table
  ROPEKIT_CUDA_OK(cudaStreamSynchronize(stream));

  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  ROPEKIT_CUDA_OK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
  cudaError_t copied = cudaMemcpyAsync(dq.get(), dsrc.get(), q.bytes.size(), cudaMemcpyDeviceToDevice, stream);
  try {
    apply_rope(t, positions, table, o);
  } catch (...) {
    (void)cudaStreamEndCapture(stream, &graph);
    throw;
  }
  ROPEKIT_CUDA_OK(cudaStreamEndCapture(stream, &graph));
  ROPEKIT_CUDA_OK(copied);
  ROPEKIT_CUDA_OK(cudaGraphInstantiate(&exec, graph, 0));
  const auto want = cpu_rotated(q, table, offsets);
  for (int replay = 0; replay < 3; ++replay) {
    ROPEKIT_CUDA_OK(cudaGraphLaunch(exec, stream));
    ROPEKIT_CUDA_OK(cudaStreamSynchronize(stream));
    std::vector<unsigned char> got(q.bytes.size());
    dq.download(got.data(), got.size());
    EXPECT_LE(worst_difference(got, want), 1e-6) << "replay " << replay;
  }
  cuda_check_errors(stream);
  ROPEKIT_CUDA_OK(cudaGraphExecDestroy(exec));
  ROPEKIT_CUDA_OK(cudaGraphDestroy(graph));
  ROPEKIT_CUDA_OK(cudaStreamDestroy(stream));
}

// The first use of a table on a device uploads it: refused while capturing, with the reason.
TEST(CudaGraphs, FirstUseOfATableIsRefusedWhileCapturing) {
  ROPEKIT_REQUIRE_GPU();
  HostTensor q(DType::f32, Layout::bshd, 1, 2, 1, 64);
  DeviceBuffer dq(q.bytes.size());
  cudaStream_t stream = nullptr;
  ROPEKIT_CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  {  // make sure the device itself has been used once
    const RopeTable warm(spec64(), 4);
    RopeTensors t;
    t.q = q.view(dq.get(), Device::cuda(0));
    apply_rope(t, Positions::from_offset(0), warm);
    ROPEKIT_CUDA_OK(cudaDeviceSynchronize());
  }
  const RopeTable fresh(spec64(), 8);
  RopeTensors t;
  t.q = q.view(dq.get(), Device::cuda(0));
  ApplyOptions o;
  o.stream = stream;
  ROPEKIT_CUDA_OK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeRelaxed));
  std::string message;
  try {
    apply_rope(t, Positions::from_offset(0), fresh, o);
  } catch (const ropekit::Error& e) {
    message = e.what();
  }
  cudaGraph_t graph = nullptr;
  ROPEKIT_CUDA_OK(cudaStreamEndCapture(stream, &graph));
  if (graph) ROPEKIT_CUDA_OK(cudaGraphDestroy(graph));
  EXPECT_NE(message.find("options.stream"), std::string::npos) << message;
  ROPEKIT_CUDA_OK(cudaStreamDestroy(stream));
}

void CUDART_CB sleep_50ms(void*) { std::this_thread::sleep_for(std::chrono::milliseconds(50)); }

// A table destroyed right after its launch was queued (behind 50 ms of host work on the stream):
// its device copy must outlive the launch. compute-sanitizer's memcheck catches a use after free.
TEST(CudaTables, DestroyedWhileItsLaunchIsQueued) {
  ROPEKIT_REQUIRE_GPU();
  HostTensor q(DType::f32, Layout::bshd, 2, 6, 2, 64);
  std::mt19937_64 rng(41);
  q.fill_random(rng);
  DeviceBuffer dq(q.bytes.size());
  dq.upload(q.bytes.data(), q.bytes.size());
  cudaStream_t stream = nullptr;
  ROPEKIT_CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  for (int round = 0; round < 3; ++round) {
    SpecParams p;
    p.head_dim = 64;
    p.base = 10000.0 * (round + 1);
    auto table = std::make_unique<RopeTable>(RopeSpec(p), 16);
    const auto want = cpu_rotated(q, *table, {0, 0});  // from_offset(0): every sequence starts at 0
    dq.upload(q.bytes.data(), q.bytes.size());
    ROPEKIT_CUDA_OK(cudaLaunchHostFunc(stream, sleep_50ms, nullptr));
    RopeTensors t;
    t.q = q.view(dq.get(), Device::cuda(0));
    ApplyOptions o;
    o.stream = stream;
    apply_rope(t, Positions::from_offset(0), *table, o);  // uploads (first use), then queues the launch
    table.reset();  // destroyed while the launch waits behind the host function
    ROPEKIT_CUDA_OK(cudaStreamSynchronize(stream));
    std::vector<unsigned char> got(q.bytes.size());
    dq.download(got.data(), got.size());
    EXPECT_LE(worst_difference(got, want), 1e-6) << round;
  }
  ROPEKIT_CUDA_OK(cudaStreamDestroy(stream));
}

// Many streams on one table: each keeps its own last-use event (older ones are folded into the
// free stream), and every result is right.
TEST(CudaTables, ManyStreamsOnOneTable) {
  ROPEKIT_REQUIRE_GPU();
  const RopeTable table(spec64(), 32);
  HostTensor q(DType::f32, Layout::bshd, 1, 4, 2, 64);
  std::mt19937_64 rng(43);
  q.fill_random(rng);
  const auto want = cpu_rotated(q, table, {5});
  std::vector<cudaStream_t> streams(12);
  std::vector<DeviceBuffer> buffers;
  for (auto& s : streams) {
    ROPEKIT_CUDA_OK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    buffers.emplace_back(q.bytes.size());
    buffers.back().upload(q.bytes.data(), q.bytes.size());
  }
  for (size_t i = 0; i < streams.size(); ++i) {
    RopeTensors t;
    t.q = q.view(buffers[i].get(), Device::cuda(0));
    ApplyOptions o;
    o.stream = streams[i];
    apply_rope(t, Positions::from_offset(5), table, o);
  }
  for (size_t i = 0; i < streams.size(); ++i) {
    ROPEKIT_CUDA_OK(cudaStreamSynchronize(streams[i]));
    std::vector<unsigned char> got(q.bytes.size());
    buffers[i].download(got.data(), got.size());
    EXPECT_LE(worst_difference(got, want), 1e-6) << i;
    ROPEKIT_CUDA_OK(cudaStreamDestroy(streams[i]));
  }
}

}  // namespace
}  // namespace ropekit_cuda_test
