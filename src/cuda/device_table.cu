// Device copies of a table, made on first use on each device and kept in the table's cuda_state
// until the table is destroyed. The host data never changes, so a copy never goes stale.
#include "device_table.hpp"

#include <algorithm>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "../check.hpp"
#include "cuda_check.hpp"

namespace ropekit::detail::cuda {
namespace {

constexpr size_t kMaxStreams = 8;  // events kept per copy; older streams are folded into the free stream

struct Owned : DeviceTable {
  void* base = nullptr;
  int device = 0;
  cudaStream_t free_stream = nullptr;
  std::vector<std::pair<cudaStream_t, cudaEvent_t>> uses;  // the last launch on each stream
  Owned() = default;
  Owned(const Owned&) = delete;
  Owned& operator=(const Owned&) = delete;
  // Runs when the table is destroyed: launches that read this copy may still be queued, so the
  // free waits for each stream's last one, on the free stream. Errors are ignored (a destructor
  // must not throw, and at process exit the runtime may already be gone).
  ~Owned() {
    if (base == nullptr) return;
    int previous = 0;
    const bool restore = cudaGetDevice(&previous) == cudaSuccess;
    if (cudaSetDevice(device) == cudaSuccess) {
      for (const auto& use : uses) {
        (void)cudaStreamWaitEvent(free_stream, use.second, 0);
        (void)cudaEventDestroy(use.second);  // released once it has completed
      }
      (void)cudaFreeAsync(base, free_stream);
    }
    if (restore && previous != device) (void)cudaSetDevice(previous);
  }
};

size_t round_up(size_t n) { return (n + 255) / 256 * 256; }

std::unique_ptr<Owned> upload(const TableData& t, bool with_rows, const DeviceState& dev) {
  const auto pairs = static_cast<size_t>(t.spec.pairs());
  const size_t row_floats = with_rows ? static_cast<size_t>(t.size) * 2 * pairs : 0;
  const bool xpos = !t.xpos_log_zeta.empty();
  const size_t rows_bytes = round_up(row_floats * sizeof(float));
  const size_t freq_bytes = round_up(pairs * sizeof(double));
  const size_t freq32_bytes = round_up(pairs * sizeof(float));
  const size_t zeta_bytes = xpos ? round_up(pairs * sizeof(double)) : 0;

  auto owned = std::make_unique<Owned>();
  owned->device = dev.device;
  owned->free_stream = dev.free_stream;
  const cudaStream_t stream = dev.upload_stream;
  ROPEKIT_CUDA_CHECK(cudaMallocAsync(&owned->base, std::max<size_t>(rows_bytes + freq_bytes + freq32_bytes + zeta_bytes, 256), stream));
  auto* bytes = static_cast<char*>(owned->base);
  owned->rows = with_rows ? reinterpret_cast<const float*>(bytes) : nullptr;
  owned->size = with_rows ? t.size : 0;
  owned->inv_freq = reinterpret_cast<const double*>(bytes + rows_bytes);
  owned->inv_freq_f32 = reinterpret_cast<const float*>(bytes + rows_bytes + freq_bytes);
  owned->xpos_log_zeta = xpos ? reinterpret_cast<const double*>(bytes + rows_bytes + freq_bytes + freq32_bytes) : nullptr;
  auto copy = [&](const void* dst, const void* src, size_t n) {
    if (n > 0) ROPEKIT_CUDA_CHECK(cudaMemcpyAsync(const_cast<void*>(dst), src, n, cudaMemcpyHostToDevice, stream));
  };
  copy(owned->rows, t.rows.data(), row_floats * sizeof(float));
  copy(owned->inv_freq, t.inv_freq.data(), pairs * sizeof(double));
  copy(owned->inv_freq_f32, t.inv_freq_f32.data(), pairs * sizeof(float));
  if (xpos) copy(owned->xpos_log_zeta, t.xpos_log_zeta.data(), pairs * sizeof(double));
  // Kernels on any stream may read the copy as soon as it is published.
  ROPEKIT_CUDA_CHECK(cudaStreamSynchronize(stream));
  return owned;
}

// TableData::cuda_state: one copy per (device, rows or frequencies only).
struct CudaState {
  struct Entry {
    int device;
    bool with_rows;
    std::unique_ptr<Owned> copy;
  };
  std::vector<Entry> entries;
};

}  // namespace

const DeviceTable& device_table(const TableData& table, const DeviceState& dev, bool with_rows, bool capturing) {
  std::lock_guard<std::mutex> lock(table.backend_mutex);
  if (!table.cuda_state) table.cuda_state = std::make_shared<CudaState>();
  auto& state = *static_cast<CudaState*>(table.cuda_state.get());
  for (const auto& e : state.entries)
    if (e.device == dev.device && (e.with_rows || !with_rows)) return *e.copy;
  if (capturing)
    fail("options.stream", "a stream that is not capturing a CUDA graph the first time a table is used on a device "
         "(the first call uploads the table: make one call before capturing)", "a capturing stream");
  state.entries.push_back({dev.device, with_rows, upload(table, with_rows, dev)});
  return *state.entries.back().copy;
}

void record_use(const TableData& table, const DeviceTable& copy, cudaStream_t stream) {
  std::lock_guard<std::mutex> lock(table.backend_mutex);
  auto& owned = const_cast<Owned&>(static_cast<const Owned&>(copy));
  auto use = std::find_if(owned.uses.begin(), owned.uses.end(), [&](const auto& u) { return u.first == stream; });
  if (use == owned.uses.end()) {
    if (owned.uses.size() == kMaxStreams) {
      // The oldest stream's last use is handed to the free stream (the free waits behind it);
      // its event is reused for this stream.
      ROPEKIT_CUDA_CHECK(cudaStreamWaitEvent(owned.free_stream, owned.uses.front().second, 0));
      owned.uses.front().first = stream;
      std::rotate(owned.uses.begin(), owned.uses.begin() + 1, owned.uses.end());
      use = owned.uses.end() - 1;
    } else {
      cudaEvent_t event = nullptr;
      ROPEKIT_CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
      owned.uses.emplace_back(stream, event);
      use = owned.uses.end() - 1;
    }
  } else if (stream == cudaStreamPerThread) {
    // cudaStreamPerThread names a different stream on each host thread: the use recorded before
    // (perhaps another thread's stream) is handed to the free stream before the event is reused.
    ROPEKIT_CUDA_CHECK(cudaStreamWaitEvent(owned.free_stream, use->second, 0));
  }
  ROPEKIT_CUDA_CHECK(cudaEventRecord(use->second, stream));
}

}  // namespace ropekit::detail::cuda
