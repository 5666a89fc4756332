#pragma once
// Shared helpers of the CUDA tests: device detection, device buffers and host tensors in any dtype.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "half_float.hpp"
#include "ropekit/ropekit.hpp"

namespace ropekit_cuda_test {

using namespace ropekit;

inline bool cuda_available() {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  return count > 0;
}

inline int cuda_device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return count;
}

#define ROPEKIT_REQUIRE_GPU() \
  do { \
    if (!::ropekit_cuda_test::cuda_available()) GTEST_SKIP() << "no CUDA device: GPU test skipped"; \
  } while (0)

#define ROPEKIT_CUDA_OK(call) ASSERT_EQ((call), cudaSuccess) << #call

// Owning device allocation (plain cudaMalloc: 256-byte aligned).
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes) : bytes_(bytes) {
    if (cudaMalloc(&ptr_, bytes == 0 ? 1 : bytes) != cudaSuccess) throw std::runtime_error("cudaMalloc failed");
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(o.ptr_), bytes_(o.bytes_) { o.ptr_ = nullptr; }
  ~DeviceBuffer() {
    if (ptr_) (void)cudaFree(ptr_);
  }
  void* get() const { return ptr_; }
  size_t bytes() const { return bytes_; }
  void upload(const void* src, size_t n) const {
    if (cudaMemcpy(ptr_, src, n, cudaMemcpyHostToDevice) != cudaSuccess) throw std::runtime_error("upload failed");
  }
  void download(void* dst, size_t n) const {
    if (cudaMemcpy(dst, ptr_, n, cudaMemcpyDeviceToHost) != cudaSuccess) throw std::runtime_error("download failed");
  }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

inline size_t elem_size(DType t) { return t == DType::f32 ? 4 : 2; }

inline double get(const std::vector<unsigned char>& buf, DType t, int64_t i) {
  const unsigned char* p = buf.data() + static_cast<size_t>(i) * elem_size(t);
  if (t == DType::f32) {
    float f;
    std::memcpy(&f, p, 4);
    return f;
  }
  uint16_t h;
  std::memcpy(&h, p, 2);
  return t == DType::f16 ? ropekit::detail::half_to_float(h) : ropekit::detail::bf16_to_float(h);
}

inline void put(std::vector<unsigned char>& buf, DType t, int64_t i, float v) {
  unsigned char* p = buf.data() + static_cast<size_t>(i) * elem_size(t);
  if (t == DType::f32) {
    std::memcpy(p, &v, 4);
    return;
  }
  const uint16_t h = t == DType::f16 ? ropekit::detail::float_to_half(v) : ropekit::detail::float_to_bf16(v);
  std::memcpy(p, &h, 2);
}

enum class Layout { bshd, bhsd, thd, padded };

// A host tensor of logical shape (B, S, H, D) (rank 3 for thd: (S, H, D) with B = 1), strides per
// layout; `padded` leaves gaps between head rows (pad elements), which must stay untouched.
struct HostTensor {
  DType dtype = DType::f32;
  Layout layout = Layout::bshd;
  int64_t B = 0, S = 0, H = 0, D = 0, pad = 0;
  int64_t stride[4]{};  // b, s, h, d
  std::vector<unsigned char> bytes;

  HostTensor(DType t, Layout l, int64_t b, int64_t s, int64_t h, int64_t d, int64_t padding = 0)
      : dtype(t), layout(l), B(b), S(s), H(h), D(d), pad(padding) {
    const int64_t row = D + pad;
    if (layout == Layout::bhsd) {
      stride[3] = 1; stride[1] = row; stride[2] = S * row; stride[0] = H * S * row;
    } else {
      stride[3] = 1; stride[2] = row; stride[1] = H * row; stride[0] = S * H * row;
    }
    bytes.assign(static_cast<size_t>(B * S * H * row) * elem_size(t), 0);
  }
  int64_t numel_storage() const { return static_cast<int64_t>(bytes.size() / elem_size(dtype)); }
  int64_t index(int64_t b, int64_t s, int64_t h, int64_t d) const {
    return b * stride[0] + s * stride[1] + h * stride[2] + d * stride[3];
  }
  TensorView view(void* data, Device device) const {
    TensorView v;
    v.data = data;
    v.dtype = dtype;
    v.device = device;
    if (layout == Layout::thd) {
      v.rank = 3;
      v.shape = {S, H, D, 0};
      v.strides = {stride[1], stride[2], 1, 0};
    } else {
      v.rank = 4;
      v.shape = {B, S, H, D};
      v.strides = {stride[0], stride[1], stride[2], 1};
    }
    return v;
  }
  void fill_random(std::mt19937_64& rng) {
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    for (int64_t i = 0; i < numel_storage(); ++i) {
      float v = u(rng);
      if (std::fabs(v) < 1e-3f) v = 0.5f;  // never zeros
      put(bytes, dtype, i, v);
    }
  }
};

}  // namespace ropekit_cuda_test
