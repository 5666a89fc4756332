#include "overlap.hpp"

#include "check.hpp"

#include <algorithm>
#include <array>
#include <cstdint>

namespace ropekit::detail {
namespace {

struct Dim {
  int64_t extent;
  int64_t stride;  // bytes
};

// A view as base + {sum i_k * stride_k} + [0, block) bytes, dims sorted by stride, outermost first.
// At most rank - 1 dims (the last is the block), held inline: every apply_rope call, decode
// included, takes this path, and an allocation here cost more than a decode step's rotation.
struct Dims {
  std::array<Dim, std::tuple_size_v<decltype(TensorView::shape)> - 1> items{};
  size_t count = 0;
  size_t size() const { return count; }
  const Dim& operator[](size_t k) const { return items[k]; }
  void push_back(Dim d) { items[count++] = d; }
};

struct Layout {
  Dims dims;
  int64_t block = 0;       // bytes of the contiguous last dimension
  bool broadcast = false;  // a dim of extent > 1 and stride 0 (adds no addresses)
};

Layout layout_of(const TensorView& v) {
  const int64_t esize = dtype_size(v.dtype);
  Layout out;
  out.block = v.shape[static_cast<size_t>(v.rank - 1)] * esize;
  for (int d = 0; d < v.rank - 1; ++d) {
    const auto n = v.shape[static_cast<size_t>(d)];
    if (n <= 1) continue;  // its stride is never used (and may be anything: no multiply)
    const auto stride = v.strides[static_cast<size_t>(d)] * esize;
    if (stride == 0) out.broadcast = true;
    if (stride != 0) out.dims.push_back({n, stride});
  }
  // Largest stride first; an insertion sort, for at most three dims.
  auto& d = out.dims.items;
  for (size_t i = 1; i < out.dims.count; ++i)
    for (size_t j = i; j > 0 && d[j - 1].stride < d[j].stride; --j) std::swap(d[j - 1], d[j]);
  return out;
}

int64_t span(const Dims& dims, size_t from, int64_t block) {
  int64_t s = block;
  for (size_t k = from; k < dims.size(); ++k) s += (dims[k].extent - 1) * dims[k].stride;
  return s;
}

struct Search {
  const Layout& a;
  const Layout& b;
  int64_t budget = 1 << 16;

  // Do a's dims [ia..] at offset 0 and b's dims [ib..] at offset delta (bytes) share a byte?
  bool overlap(size_t ia, int64_t delta, size_t ib) {
    if (--budget < 0) return true;  // too costly to decide: say "may overlap"
    const int64_t span_a = span(a.dims, ia, a.block);
    const int64_t span_b = span(b.dims, ib, b.block);
    if (delta >= span_a || delta + span_b <= 0) return false;
    const bool has_a = ia < a.dims.size();
    const bool has_b = ib < b.dims.size();
    if (!has_a && !has_b) return true;
    if (has_a && has_b && a.dims[ia].stride == b.dims[ib].stride) {
      const int64_t s = a.dims[ia].stride;
      const int64_t inner_a = span(a.dims, ia + 1, a.block);
      const int64_t inner_b = span(b.dims, ib + 1, b.block);
      if (inner_a <= s && inner_b <= s) {
        // Block i of a and block j of b can meet only when k = j - i puts them within one stride.
        const int64_t na = a.dims[ia].extent;
        const int64_t nb = b.dims[ib].extent;
        const int64_t k_lo = floor_div(-inner_b - delta, s);
        for (int64_t k = k_lo; k <= k_lo + 2; ++k) {
          // Need i in [0, na) with i + k in [0, nb).
          if (std::max<int64_t>(0, -k) >= std::min(na, nb - k)) continue;
          if (overlap(ia + 1, delta + k * s, ib + 1)) return true;
        }
        return false;
      }
    }
    // Split whichever view has the larger outer stride, block by block.
    const bool split_a = has_a && (!has_b || a.dims[ia].stride >= b.dims[ib].stride);
    if (split_a) {
      const Dim d = a.dims[ia];
      for (int64_t i = 0; i < d.extent; ++i) {
        if (overlap(ia + 1, delta - i * d.stride, ib)) return true;
        if (budget < 0) return true;
      }
    } else {
      const Dim d = b.dims[ib];
      for (int64_t j = 0; j < d.extent; ++j) {
        if (overlap(ia, delta + j * d.stride, ib + 1)) return true;
        if (budget < 0) return true;
      }
    }
    return false;
  }

  static int64_t floor_div(int64_t x, int64_t y) {
    int64_t q = x / y;
    if ((x % y != 0) && ((x < 0) != (y < 0))) --q;
    return q;
  }
};

int64_t address(const TensorView& v) { return static_cast<int64_t>(reinterpret_cast<uintptr_t>(v.data)); }

}  // namespace

bool may_overlap(const TensorView& a, const TensorView& b) {
  if (a.numel() == 0 || b.numel() == 0) return false;
  const Layout la = layout_of(a);
  const Layout lb = layout_of(b);
  Search search{la, lb};
  return search.overlap(0, address(b) - address(a), 0);
}

bool self_overlapping(const TensorView& v) {
  if (v.numel() == 0) return false;
  const Layout l = layout_of(v);
  if (l.broadcast) return true;
  for (size_t k = 0; k < l.dims.size(); ++k) {
    if (l.dims[k].stride < span(l.dims, k + 1, l.block)) return true;
  }
  return false;
}

bool same_view(const TensorView& a, const TensorView& b) {
  if (a.data != b.data || a.dtype != b.dtype || a.rank != b.rank || !(a.device == b.device)) return false;
  for (int d = 0; d < a.rank; ++d) {
    const auto i = static_cast<size_t>(d);
    if (a.shape[i] != b.shape[i] || (a.shape[i] > 1 && a.strides[i] != b.strides[i])) return false;
  }
  return true;
}

// Views larger than 2^62 bytes exist in no address space; the bound keeps every element count, byte
// offset and overlap computation (address differences plus spans) inside int64. Extents of 0 are
// skipped in the count so that (batch * seq) of an empty view cannot overflow either.
constexpr int64_t kMaxViewBytes = int64_t{1} << 62;

void check_extent(const TensorView& v, const std::string& name) {
  const int64_t esize = dtype_size(v.dtype);
  int64_t count = esize;
  int64_t last = 0;  // offset of the last element, in elements
  bool empty = false;
  for (int d = 0; d < v.rank; ++d) {
    const int64_t n = v.shape[static_cast<size_t>(d)];
    if (n == 0) {
      empty = true;
      continue;
    }
    if (__builtin_mul_overflow(count, n, &count) || count > kMaxViewBytes)
      fail(name + ".shape", "at most 2^62 bytes of elements", v.shape_string());
    int64_t reach = 0;
    if (__builtin_mul_overflow(n - 1, v.strides[static_cast<size_t>(d)], &reach) || __builtin_add_overflow(last, reach, &last))
      last = kMaxViewBytes;
  }
  if (!empty && (last >= kMaxViewBytes / esize))
    fail(name + ".strides", cat("offsets within 2^62 bytes for shape ", v.shape_string()), cat("element offset ", last, " or more"));
}

}  // namespace ropekit::detail
