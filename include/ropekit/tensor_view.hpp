#pragma once
// Layer 4: non-owning views. Layout is strides: BSHD, BHSD and packed THD are the same code path.
#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "ropekit/export.hpp"

namespace ropekit {

// f64 runs on the CPU only, in double with the table's fp32 cos/sin (for gradient checks and
// scientific users); every other dtype computes in fp32 and rounds once on store. The FP8 types
// (OCP e4m3 "fn": no infinities, max 448; e5m2: max 57344) are KV-cache storage only
// (ropekit/kv_cache.hpp); q and k are never FP8.
enum class DType : uint8_t { f32, f16, bf16, f64, f8_e4m3, f8_e5m2 };
enum class DeviceType : uint8_t { cpu, cuda };

struct Device {
  DeviceType type = DeviceType::cpu;
  int index = 0;
  static Device cpu() { return {DeviceType::cpu, 0}; }
  static Device cuda(int index = 0) { return {DeviceType::cuda, index}; }
  friend bool operator==(const Device&, const Device&) = default;
};

ROPEKIT_API int64_t dtype_size(DType dtype);
ROPEKIT_API std::string to_string(DType dtype);
ROPEKIT_API std::string to_string(const Device& device);

// q, k and outputs. Logical axes are (batch, seq, heads, dim) for rank 4 and (tokens, heads, dim)
// for rank 3; memory order is whatever the strides say (a BHSD tensor is a rank-4 view with
// permuted strides, see bhsd()). Strides are in elements; the last one must be 1.
struct ROPEKIT_API TensorView {
  void* data = nullptr;
  DType dtype = DType::f32;
  Device device{};
  int rank = 0;
  std::array<int64_t, 4> shape{};
  std::array<int64_t, 4> strides{};

  int64_t numel() const;
  std::string shape_string() const;  // "[2, 16, 8, 128]"

  // Row-major view of `shape` (rank 3 or 4).
  static TensorView contiguous(void* data, DType dtype, std::initializer_list<int64_t> shape,
                               Device device = Device::cpu());
  // Memory laid out (B, S, H, D) row-major: the natural view.
  static TensorView bshd(void* data, DType dtype, int64_t B, int64_t S, int64_t H, int64_t D,
                         Device device = Device::cpu());
  // Memory laid out (B, H, S, D) row-major, viewed with logical axes (B, S, H, D).
  static TensorView bhsd(void* data, DType dtype, int64_t B, int64_t H, int64_t S, int64_t D,
                         Device device = Device::cpu());
  // Packed tokens (T, H, D) row-major.
  static TensorView thd(void* data, DType dtype, int64_t T, int64_t H, int64_t D, Device device = Device::cpu());
};

// Integer vectors: position ids, per-sequence offsets, cu_seqlens. Contiguous.
enum class IndexType : uint8_t { i32, i64 };

struct IndexView {
  const void* data = nullptr;
  IndexType type = IndexType::i64;
  int64_t size = 0;
  Device device{};

  IndexView() = default;
  IndexView(const int64_t* values, int64_t n, Device d = Device::cpu())
      : data(values), type(IndexType::i64), size(n), device(d) {}
  IndexView(const int32_t* values, int64_t n, Device d = Device::cpu())
      : data(values), type(IndexType::i32), size(n), device(d) {}
  bool empty() const { return size == 0; }
  // Host-side read (device must be cpu).
  int64_t operator[](int64_t i) const {
    return type == IndexType::i64 ? static_cast<const int64_t*>(data)[i] : static_cast<const int32_t*>(data)[i];
  }
};

}  // namespace ropekit
