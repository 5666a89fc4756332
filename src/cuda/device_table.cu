// Upload-once cache of CosSinCache data on the device, keyed on (cache address, device, rows?)
// and validated by a fingerprint of the generation, size, frequencies and two sample rows, so a
// new cache created at a freed cache's address is not mistaken for it.
#include "device_table.hpp"

#include <cstring>
#include <map>
#include <mutex>
#include <tuple>
#include <vector>

#include "../check.hpp"
#include "cuda_check.hpp"

namespace ropekit::detail::cuda {
namespace {

constexpr size_t kMaxEntries = 8;  // tables kept per process (all devices together)

struct Owned : DeviceTable {
  void* base = nullptr;
  int device = 0;
  Owned() = default;
  Owned(const Owned&) = delete;
  Owned& operator=(const Owned&) = delete;
  // Runs when the last user lets go: a kernel enqueued with this copy may still be running, so the
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

struct Key {
  const CosSinCache* table;
  int device;
  bool with_rows;
  friend bool operator<(const Key& a, const Key& b) {
    return std::tie(a.table, a.device, a.with_rows) < std::tie(b.table, b.device, b.with_rows);
  }
};

struct Entry {
  uint64_t fingerprint = 0;
  uint64_t last_used = 0;
  std::shared_ptr<const Owned> copy;
};

class Fnv {
 public:
  // Eight bytes per step: this runs on every call (decode latency), over ~2 KB for head_dim 128.
  void add(const void* data, size_t bytes) {
    const auto* p = static_cast<const unsigned char*>(data);
    size_t i = 0;
    for (; i + 8 <= bytes; i += 8) {
      uint64_t word;
      std::memcpy(&word, p + i, 8);
      hash_ = (hash_ ^ word) * 0x100000001b3ull;
    }
    for (; i < bytes; ++i) hash_ = (hash_ ^ p[i]) * 0x100000001b3ull;
  }
  template <typename T>
  void add_value(const T& v) { add(&v, sizeof v); }
  template <typename T>
  void add_vector(const std::vector<T>& v) { add(v.data(), v.size() * sizeof(T)); }
  uint64_t value() const { return hash_; }

 private:
  uint64_t hash_ = 0xcbf29ce484222325ull;
};

uint64_t fingerprint(const CosSinCache& t, bool with_rows) {
  Fnv f;
  f.add_value(t.generation());
  f.add_value(t.size());
  f.add_value(t.pairs());
  f.add_value(t.options().exact);
  f.add_value(t.attention_factor());
  f.add_value(with_rows);
  const float* data = t.table().data();
  f.add_value(data);
  f.add_vector(t.inv_freq());
  f.add_vector(t.inv_freq_f32());
  f.add_vector(t.xpos_log_zeta());
  if (with_rows && t.size() > 0) {
    const auto row_bytes = static_cast<size_t>(2 * t.pairs()) * sizeof(float);
    f.add(t.row(t.size() - 1), row_bytes);
    if (t.size() > 1) f.add(t.row(1), row_bytes);
  }
  return f.value();
}

size_t round_up(size_t n) { return (n + 255) / 256 * 256; }

std::shared_ptr<const Owned> upload(const CosSinCache& t, bool with_rows, int device, cudaStream_t stream) {
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  ROPEKIT_CUDA_CHECK(cudaStreamIsCapturing(stream, &capture));
  if (capture != cudaStreamCaptureStatusNone)
    fail("options.stream", "a stream that is not capturing a CUDA graph the first time a table is used on a device "
         "(the first call uploads the table with a synchronising copy: make one call before capturing)",
         "a capturing stream");
  const auto pairs = static_cast<size_t>(t.pairs());
  const size_t row_floats = with_rows ? static_cast<size_t>(t.size()) * 2 * pairs : 0;
  const bool xpos = !t.xpos_log_zeta().empty();
  const size_t rows_bytes = round_up(row_floats * sizeof(float));
  const size_t freq_bytes = round_up(pairs * sizeof(double));
  const size_t freq32_bytes = round_up(pairs * sizeof(float));
  const size_t zeta_bytes = xpos ? round_up(pairs * sizeof(double)) : 0;

  auto owned = std::make_shared<Owned>();
  owned->device = device;
  ROPEKIT_CUDA_CHECK(cudaMalloc(&owned->base, std::max<size_t>(rows_bytes + freq_bytes + freq32_bytes + zeta_bytes, 256)));
  auto* bytes = static_cast<char*>(owned->base);
  owned->rows = with_rows ? reinterpret_cast<const float*>(bytes) : nullptr;
  owned->size = with_rows ? t.size() : 0;
  owned->inv_freq = reinterpret_cast<const double*>(bytes + rows_bytes);
  owned->inv_freq_f32 = reinterpret_cast<const float*>(bytes + rows_bytes + freq_bytes);
  owned->xpos_log_zeta = xpos ? reinterpret_cast<const double*>(bytes + rows_bytes + freq_bytes + freq32_bytes) : nullptr;
  auto copy = [&](const void* dst, const void* src, size_t n) {
    if (n > 0) ROPEKIT_CUDA_CHECK(cudaMemcpyAsync(const_cast<void*>(dst), src, n, cudaMemcpyHostToDevice, stream));
  };
  copy(owned->rows, t.table().data(), row_floats * sizeof(float));
  copy(owned->inv_freq, t.inv_freq().data(), pairs * sizeof(double));
  copy(owned->inv_freq_f32, t.inv_freq_f32().data(), pairs * sizeof(float));
  if (xpos) copy(owned->xpos_log_zeta, t.xpos_log_zeta().data(), pairs * sizeof(double));
  // Pageable sources: wait until the copies are done before the host table may change.
  ROPEKIT_CUDA_CHECK(cudaStreamSynchronize(stream));
  return owned;
}

struct Cache {
  std::mutex mutex;
  std::map<Key, Entry> entries;
  uint64_t clock = 0;
};

Cache& cache() {
  static auto* c = new Cache;  // never destroyed: freeing device memory at exit races the runtime's teardown
  return *c;
}

}  // namespace

std::shared_ptr<const DeviceTable> device_table(const CosSinCache& table, bool with_rows, void* stream) {
  int device = 0;
  ROPEKIT_CUDA_CHECK(cudaGetDevice(&device));
  const Key key{&table, device, with_rows};
  const uint64_t print = fingerprint(table, with_rows);
  std::shared_ptr<const Owned> retired;  // released after the lock, outside the critical section
  std::lock_guard<std::mutex> lock(cache().mutex);
  Cache& c = cache();
  auto it = c.entries.find(key);
  if (it != c.entries.end() && it->second.fingerprint == print) {
    it->second.last_used = ++c.clock;
    return it->second.copy;
  }
  if (it != c.entries.end()) {
    retired = std::move(it->second.copy);
    c.entries.erase(it);
  }
  while (c.entries.size() >= kMaxEntries) {
    auto oldest = c.entries.begin();
    for (auto e = c.entries.begin(); e != c.entries.end(); ++e)
      if (e->second.last_used < oldest->second.last_used) oldest = e;
    c.entries.erase(oldest);
  }
  Entry entry;
  entry.fingerprint = print;
  entry.last_used = ++c.clock;
  entry.copy = upload(table, with_rows, device, static_cast<cudaStream_t>(stream));
  auto result = entry.copy;
  c.entries.emplace(key, std::move(entry));
  return result;
}

}  // namespace ropekit::detail::cuda
