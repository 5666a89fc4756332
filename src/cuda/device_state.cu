// Per-device state and the reports of invalid device-resident positions (device_state.hpp).
#include "device_state.hpp"

#include <array>
#include <atomic>
#include <mutex>
#include <string>

#include "../check.hpp"
#include "cuda_check.hpp"
#include "ropekit/cuda.hpp"

namespace ropekit::detail::cuda {
namespace {

std::mutex g_mutex;  // creation and reports
std::array<std::atomic<DeviceState*>, kMaxDevices> g_states{};
std::atomic<FaultRecord*> g_records{nullptr};  // kMaxDevices records in mapped host memory (host address)
FaultRecord* g_records_device = nullptr;       // their device address

std::string describe(const FaultRecord& r) {
  const auto kind = static_cast<FaultKind>(r.kind);
  const std::string at = cat("[", r.index, "]");
  switch (kind) {
    case FaultKind::offsets:
    case FaultKind::packed_offsets:
      return cat("positions.offsets", at, ": expected ", r.value < 0 ? std::string(">= 0") : cat("<= ", r.bound, " (its last position must be < 2^63 - 1)"), ", got ", r.value);
    case FaultKind::ids:
      return cat("positions.ids", at, ": expected in [0, ", r.bound, "], got ", r.value);
    case FaultKind::cu_first:
      return cat("positions.cu_seqlens[0]: expected 0, got ", r.value);
    case FaultKind::cu_order:
      return cat("positions.cu_seqlens", at, ": expected >= cu_seqlens[", r.index - 1, "] (", r.bound, "), got ", r.value);
    case FaultKind::cu_last:
      return cat("positions.cu_seqlens", at, ": expected ", r.bound, " (the number of tokens in q), got ", r.value);
    case FaultKind::none:
      break;
  }
  return cat("positions: an invalid device-resident position (fault kind ", r.kind, ")");
}

void raise_one(int device) {
  FaultRecord* records = g_records.load(std::memory_order_acquire);
  if (records == nullptr) return;
  FaultRecord& r = records[device];
  if (*static_cast<volatile int32_t*>(&r.ready) == 0) return;  // the common case: no lock
  std::lock_guard<std::mutex> lock(g_mutex);
  if (*static_cast<volatile int32_t*>(&r.ready) == 0) return;  // reported by another thread
  std::atomic_thread_fence(std::memory_order_acquire);
  const FaultRecord seen = const_cast<const FaultRecord&>(r);
  *static_cast<volatile int32_t*>(&r.ready) = 0;
  std::atomic_thread_fence(std::memory_order_release);
  *static_cast<volatile int32_t*>(&r.epoch) = seen.epoch + 1;  // the next fault may claim again
  throw Error(cat(describe(seen), " (found on cuda:", device,
                  " by the kernel of an earlier apply_rope call; its tokens without a valid position were left unwritten)"));
}

}  // namespace

int device_count() {
  static const int count = [] {
    int n = 0;
    const cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess) {
      (void)cudaGetLastError();
      return -static_cast<int>(err);  // remembered: the next call reports the same
    }
    return n;
  }();
  if (count < 0)
    fail("q.device", "a usable CUDA device", cat("none (", cudaGetErrorString(static_cast<cudaError_t>(-count)), ")"));
  return count;
}

const DeviceState& device_state(int device, bool capturing) {
  if (device < 0 || device >= kMaxDevices) fail("q.device", cat("cuda:0 .. cuda:", kMaxDevices - 1), device);
  if (const DeviceState* s = g_states[static_cast<size_t>(device)].load(std::memory_order_acquire)) return *s;
  std::lock_guard<std::mutex> lock(g_mutex);
  if (const DeviceState* s = g_states[static_cast<size_t>(device)].load(std::memory_order_acquire)) return *s;
  if (capturing)
    fail("options.stream", "a stream that is not capturing a CUDA graph on the first call on a device (it allocates: "
         "make one call before capturing)", "a capturing stream");
  auto state = std::make_unique<DeviceState>();
  state->device = device;
  ROPEKIT_CUDA_CHECK(cudaDeviceGetAttribute(&state->multiprocessors, cudaDevAttrMultiProcessorCount, device));
  ROPEKIT_CUDA_CHECK(cudaStreamCreateWithFlags(&state->upload_stream, cudaStreamNonBlocking));
  ROPEKIT_CUDA_CHECK(cudaStreamCreateWithFlags(&state->free_stream, cudaStreamNonBlocking));
  if (g_records.load() == nullptr) {
    void* host = nullptr;
    ROPEKIT_CUDA_CHECK(cudaHostAlloc(&host, sizeof(FaultRecord) * kMaxDevices, cudaHostAllocMapped | cudaHostAllocPortable));
    auto* records = static_cast<FaultRecord*>(host);
    for (int i = 0; i < kMaxDevices; ++i) records[i] = FaultRecord{};
    void* mapped = nullptr;
    ROPEKIT_CUDA_CHECK(cudaHostGetDevicePointer(&mapped, host, 0));
    g_records_device = static_cast<FaultRecord*>(mapped);  // under UVA the same address on every device
    g_records.store(records, std::memory_order_release);
  }
  state->fault_record = g_records_device + device;
  void* claim = nullptr;
  ROPEKIT_CUDA_CHECK(cudaMallocAsync(&claim, sizeof(int32_t), state->upload_stream));
  ROPEKIT_CUDA_CHECK(cudaMemsetAsync(claim, 0, sizeof(int32_t), state->upload_stream));
  ROPEKIT_CUDA_CHECK(cudaStreamSynchronize(state->upload_stream));
  state->fault_claim = static_cast<int32_t*>(claim);
  DeviceState* made = state.release();  // lives as long as the process
  g_states[static_cast<size_t>(device)].store(made, std::memory_order_release);
  return *made;
}

void raise_pending_fault(int device) {
  if (device >= 0) {
    if (device < kMaxDevices) raise_one(device);
    return;
  }
  for (int d = 0; d < kMaxDevices; ++d) raise_one(d);
}

}  // namespace ropekit::detail::cuda

namespace ropekit {

void cuda_check_errors() { detail::cuda::raise_pending_fault(-1); }

void cuda_check_errors(void* stream) {
  ROPEKIT_CUDA_CHECK(cudaStreamSynchronize(static_cast<cudaStream_t>(stream)));
  detail::cuda::raise_pending_fault(-1);
}

}  // namespace ropekit
