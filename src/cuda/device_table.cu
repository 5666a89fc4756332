// Device copies of a table, made on first use on each device and kept in the table's cuda_state
// until the table is destroyed. The host data never changes, so a copy never goes stale.
#include "device_table.hpp"

#include <cstring>
#include <mutex>
#include <vector>

#include "../check.hpp"
#include "cuda_check.hpp"

namespace ropekit::detail::cuda {
namespace {

struct Owned : DeviceTable {
  void* base = nullptr;
  int device = 0;
  Owned() = default;
  Owned(const Owned&) = delete;
  Owned& operator=(const Owned&) = delete;
  // Runs when the table is destroyed: a kernel enqueued with this copy may still be running, so the
  // device is synchronised first. Errors are ignored here (a destructor must not throw, and at
  // process exit the runtime may already be gone).
  ~Owned() {
    if (base == nullptr) return;
    int previous = 0;
    const bool restore = cudaGetDevice(&previous) == cudaSuccess;
    if (cudaSetDevice(device) == cudaSuccess) {
      (void)cudaDeviceSynchronize();
      (void)cudaFree(base);
    }
    if (restore) (void)cudaSetDevice(previous);
  }
};

size_t round_up(size_t n) { return (n + 255) / 256 * 256; }

std::unique_ptr<Owned> upload(const TableData& t, bool with_rows, int device, cudaStream_t stream) {
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  ROPEKIT_CUDA_CHECK(cudaStreamIsCapturing(stream, &capture));
  if (capture != cudaStreamCaptureStatusNone)
    fail("options.stream", "a stream that is not capturing a CUDA graph the first time a table is used on a device "
         "(the first call uploads the table with a synchronising copy: make one call before capturing)",
         "a capturing stream");
  const auto pairs = static_cast<size_t>(t.spec.pairs());
  const size_t row_floats = with_rows ? static_cast<size_t>(t.size) * 2 * pairs : 0;
  const bool xpos = !t.xpos_log_zeta.empty();
  const size_t rows_bytes = round_up(row_floats * sizeof(float));
  const size_t freq_bytes = round_up(pairs * sizeof(double));
  const size_t freq32_bytes = round_up(pairs * sizeof(float));
  const size_t zeta_bytes = xpos ? round_up(pairs * sizeof(double)) : 0;

  auto owned = std::make_unique<Owned>();
  owned->device = device;
  ROPEKIT_CUDA_CHECK(cudaMalloc(&owned->base, std::max<size_t>(rows_bytes + freq_bytes + freq32_bytes + zeta_bytes, 256)));
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
  // The host arrays stay unchanged while the table lives, and the table outlives this copy: no wait.
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

const DeviceTable& device_table(const TableData& table, bool with_rows, void* stream) {
  int device = 0;
  ROPEKIT_CUDA_CHECK(cudaGetDevice(&device));
  std::lock_guard<std::mutex> lock(table.backend_mutex);
  if (!table.cuda_state) table.cuda_state = std::make_shared<CudaState>();
  auto& state = *static_cast<CudaState*>(table.cuda_state.get());
  for (const auto& e : state.entries)
    if (e.device == device && e.with_rows == with_rows) return *e.copy;
  state.entries.push_back({device, with_rows, upload(table, with_rows, device, static_cast<cudaStream_t>(stream))});
  return *state.entries.back().copy;
}

}  // namespace ropekit::detail::cuda
