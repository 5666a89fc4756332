// apply_explicit: checks, then one plain loop over (batch, seq, head) rows.
#include "ropekit/explicit.hpp"

#include <cstring>

#include "check.hpp"
#include "rope_math.hpp"
#include "half_float.hpp"
#include "overlap.hpp"

namespace ropekit {
namespace {

using detail::cat;
using detail::fail;

void check_x(const TensorView& v, const std::string& name, int64_t width) {
  if (v.rank != 3 && v.rank != 4)
    fail(name + ".rank", "3 (tokens, heads, head_dim) or 4 (batch, seq, heads, head_dim)", v.rank);
  if (v.dtype != DType::f32 && v.dtype != DType::f16 && v.dtype != DType::bf16 && v.dtype != DType::f64)
    fail(name + ".dtype", "f32, f16, bf16 or f64", to_string(v.dtype));
  if (v.device.type != DeviceType::cpu) fail(name + ".device", "cpu (explicit coefficients run on the CPU)", to_string(v.device));
  for (int d = 0; d < v.rank; ++d) {
    const auto i = static_cast<size_t>(d);
    if (v.shape[i] < 0) fail(cat(name, ".shape[", d, "]"), ">= 0", v.shape[i]);
    if (v.strides[i] < 0 && v.shape[i] > 1) fail(cat(name, ".strides[", d, "]"), ">= 0 (any stride for an extent of 1)", v.strides[i]);
  }
  detail::check_extent(v, name);
  const int64_t head_dim = v.shape[static_cast<size_t>(v.rank - 1)];
  if (width > head_dim) fail("coefficients.width", cat("<= ", name, ".shape[-1] (", head_dim, ")"), width);
  if (v.numel() > 0) {
    if (v.strides[static_cast<size_t>(v.rank - 1)] != 1)
      fail(name + ".strides[-1]", "1 (last dimension contiguous)", v.strides[static_cast<size_t>(v.rank - 1)]);
    if (v.data == nullptr) fail(name + ".data", "a non-null pointer", "nullptr");
    if (!detail::aligned_to(v.data, dtype_size(v.dtype)))
      detail::fail_misaligned(v.data, dtype_size(v.dtype), name + ".data", to_string(v.dtype));
  }
}

struct Dims {
  int64_t batch, seq, heads, head_dim;
  int64_t stride[3];  // batch, seq, head
};

Dims dims_of(const TensorView& v) {
  if (v.rank == 4) return {v.shape[0], v.shape[1], v.shape[2], v.shape[3], {v.strides[0], v.strides[1], v.strides[2]}};
  return {1, v.shape[0], v.shape[1], v.shape[2], {0, v.strides[0], v.strides[1]}};
}

template <class Format>
void run(const TensorView& x, const TensorView& y, bool in_place, const ExplicitCoefficients& co, Style style,
         bool transpose) {
  using Storage = typename Format::Storage;
  using Math = typename Format::Math;
  const Dims in = dims_of(x);
  const Dims out = dims_of(y);
  const int64_t n = co.width / 2;
  for (int64_t b = 0; b < in.batch; ++b) {
    for (int64_t s = 0; s < in.seq; ++s) {
      const float* c = co.cos + s * co.width;
      const float* sn = co.sin + s * co.width;
      for (int64_t h = 0; h < in.heads; ++h) {
        const auto* src = static_cast<const Storage*>(x.data) + b * in.stride[0] + s * in.stride[1] + h * in.stride[2];
        auto* dst = static_cast<Storage*>(y.data) + b * out.stride[0] + s * out.stride[1] + h * out.stride[2];
        for (int64_t i = 0; i < n; ++i) {
          const int64_t ia = style == Style::half ? i : 2 * i;
          const int64_t ib = style == Style::half ? i + n : 2 * i + 1;
          Math ya, yb;
          detail::rotate_pair_explicit<Math>(Format::load(src[ia]), Format::load(src[ib]), c[ia], sn[ia], c[ib],
                                             sn[ib], transpose, ya, yb);
          dst[ia] = Format::store(ya);
          dst[ib] = Format::store(yb);
        }
        if (!in_place && co.width < in.head_dim)
          std::memcpy(dst + co.width, src + co.width, static_cast<size_t>(in.head_dim - co.width) * sizeof(Storage));
      }
    }
  }
}

}  // namespace

void apply_explicit(const TensorView& x, const std::optional<TensorView>& out, const ExplicitCoefficients& co,
                    Style style, Direction direction) {
  if (co.width <= 0 || co.width % 2 != 0) fail("coefficients.width", "an even number > 0", co.width);
  check_x(x, "x", co.width);
  const Dims d = dims_of(x);
  if (co.seq != d.seq) fail("coefficients.seq", cat(d.seq, " (x's sequence length, ", x.shape_string(), ")"), co.seq);
  if (d.seq > 0 && (co.cos == nullptr || co.sin == nullptr)) fail("coefficients", "cos and sin tables", "nullptr");
  if (direction == Direction::inverse)
    fail("direction", "forward or backward (explicit tables need not be invertible)", "inverse");
  if (direction != Direction::forward && direction != Direction::backward)
    fail("direction", "forward or backward", static_cast<int>(direction));
  const TensorView& y = out ? *out : x;
  if (out) {
    check_x(*out, "out", co.width);
    bool same = out->rank == x.rank;
    for (int i = 0; same && i < x.rank; ++i) same = out->shape[static_cast<size_t>(i)] == x.shape[static_cast<size_t>(i)];
    if (!same) fail("out.shape", cat(x.shape_string(), " (as x)"), out->shape_string());
    if (out->dtype != x.dtype) fail("out.dtype", cat(to_string(x.dtype), " (as x)"), to_string(out->dtype));
    if (!detail::same_view(*out, x) && detail::may_overlap(*out, x))
      fail("out", "memory disjoint from x, or exactly x (in place)", "a partial overlap with x");
  }
  if (detail::self_overlapping(y)) fail(out ? "out" : "x", "a view with no element reachable twice", "overlapping strides");
  if (x.numel() == 0) return;
  const bool in_place = !out || detail::same_view(*out, x);
  const bool transpose = direction == Direction::backward;
  detail::with_storage_format(x.dtype, [&]<class Format>() { run<Format>(x, y, in_place, co, style, transpose); });
}

}  // namespace ropekit
