#include "ropekit/tensor_view.hpp"

#include <algorithm>

#include "check.hpp"

namespace ropekit {

int64_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::f32: return 4;
    case DType::f16:
    case DType::bf16: return 2;
    case DType::f64: return 8;
    case DType::f8_e4m3:
    case DType::f8_e5m2: return 1;
  }
  detail::fail("dtype", "f32, f16, bf16, f64, f8_e4m3 or f8_e5m2", static_cast<int>(dtype));
}

std::string to_string(DType dtype) {
  switch (dtype) {
    case DType::f32: return "f32";
    case DType::f16: return "f16";
    case DType::bf16: return "bf16";
    case DType::f64: return "f64";
    case DType::f8_e4m3: return "f8_e4m3";
    case DType::f8_e5m2: return "f8_e5m2";
  }
  return detail::cat("dtype(", static_cast<int>(dtype), ")");
}

std::string to_string(const Device& device) {
  return device.type == DeviceType::cpu ? std::string("cpu") : detail::cat("cuda:", device.index);
}

int64_t TensorView::numel() const {
  if (rank < 0 || rank > 4) detail::fail("rank", "0 to 4", rank);
  for (int i = 0; i < rank; ++i)
    if (shape[static_cast<size_t>(i)] == 0) return 0;  // before any product can overflow
  int64_t n = 1;
  for (int i = 0; i < rank; ++i) {
    if (__builtin_mul_overflow(n, shape[static_cast<size_t>(i)], &n))
      detail::fail("shape", "a number of elements that fits in int64", shape_string());
  }
  return n;
}

std::string TensorView::shape_string() const {
  std::string out = "[";
  for (int i = 0; i < rank; ++i) out += detail::cat(i ? ", " : "", shape[static_cast<size_t>(i)]);
  return out + "]";
}

TensorView TensorView::contiguous(void* data, DType dtype, std::initializer_list<int64_t> shape, Device device) {
  if (shape.size() < 1 || shape.size() > 4) detail::fail("shape", "1 to 4 dimensions", shape.size());
  TensorView v{data, dtype, device, static_cast<int>(shape.size()), {}, {}};
  int i = 0;
  for (int64_t extent : shape) v.shape[static_cast<size_t>(i++)] = extent;
  int64_t stride = 1;
  for (int d = v.rank - 1; d >= 0; --d) {
    v.strides[static_cast<size_t>(d)] = stride;
    // A row-major size past int64 cannot exist: say so rather than overflow.
    if (d > 0 && __builtin_mul_overflow(stride, std::max<int64_t>(v.shape[static_cast<size_t>(d)], 1), &stride))
      detail::fail("shape", "a row-major size that fits in int64", v.shape_string());
  }
  return v;
}

TensorView TensorView::bshd(void* data, DType dtype, int64_t B, int64_t S, int64_t H, int64_t D, Device device) {
  return contiguous(data, dtype, {B, S, H, D}, device);
}

TensorView TensorView::bhsd(void* data, DType dtype, int64_t B, int64_t H, int64_t S, int64_t D, Device device) {
  TensorView v = contiguous(data, dtype, {B, H, S, D}, device);  // checks that H * S * D fits
  return {data, dtype, device, 4, {B, S, H, D}, {v.strides[0], D, S * D, 1}};
}

TensorView TensorView::thd(void* data, DType dtype, int64_t T, int64_t H, int64_t D, Device device) {
  return contiguous(data, dtype, {T, H, D}, device);
}

}  // namespace ropekit
