#pragma once
// From RopeParams to the kernel's arguments, its specialisation and its launch shape: no CUDA
// runtime calls here, so the same code drives the real launch and the CPU emulation test.
#include <cstdint>

#include "../backend.hpp"
#include "../check.hpp"
#include "device_table.hpp"
#include "launch_config.hpp"
#include "rope_kernel.cuh"

namespace ropekit::detail::cuda {

inline KernelOperand kernel_operand(const Operand& op) {
  KernelOperand k;
  k.in = op.in;
  k.out = op.out;
  for (int d = 0; d < 3; ++d) {
    k.in_stride[d] = op.in_stride[d];
    k.out_stride[d] = op.out_stride[d];
  }
  k.heads = op.heads;
  k.xpos_sign = op.xpos_sign;
  return k;
}

// Operands, shape, direction and positions (the table is set by set_table, the split by
// configure_launch).
inline KernelArgs kernel_args(const RopeParams& p) {
  KernelArgs a;
  a.op[0] = kernel_operand(p.q);
  if (p.has_k) a.op[1] = kernel_operand(p.k);
  a.batch = p.batch;
  a.seq = p.seq;
  a.head_dim = static_cast<int32_t>(p.head_dim);  // <= 65536 (RopeSpec)
  a.rotary_dim = static_cast<int32_t>(p.rotary_dim);
  a.pairs = static_cast<int32_t>(p.pairs);
  a.pos = token_positions(p);
  a.pair_axes = p.pair_axes;
  return a;
}

// The table's device copy, the attention factor, the direction and xPos.
inline void set_table(KernelArgs& a, const RopeParams& p, const DeviceTable& table) {
  a.rows = table.rows;
  a.rows_count = table.rows ? p.rows_count : 0;
  a.inv_freq = table.inv_freq;
  a.inv_freq_f32 = table.inv_freq_f32;
  a.exact = p.exact;
  a.attention = p.attention_factor;
  a.direction = p.direction;
  a.inv_attention_sq = inverse_attention_sq(p.attention_factor);
  a.xpos_log_zeta = p.has_xpos ? table.xpos_log_zeta : nullptr;
  a.xpos_center = p.xpos_center;
  a.query_scale = p.query_scale;
  a.op[0].scaled = p.has_query_scale;
}

// A caller-owned fp32 cache on the device (rotary_embedding): its rows as the table (attention
// factor 1, no frequencies), so a device-resident position at or past them is a fault, as a
// negative one.
inline void set_caller_rows(KernelArgs& a, const RopeParams& p) {
  DeviceTable caller;
  caller.rows = p.rows;
  caller.size = p.rows_count;
  set_table(a, p, caller);
  a.max_position = p.rows_count - 1;
}

// ---- Which specialisation ----------------------------------------------------------------------

struct KernelChoice {
  int n = 1;                         // stored values per access
  Style style = Style::half;
  CosSin cos_sin = CosSin::mixed;
  XposMode xpos = XposMode::runtime;
};

// The widest access of the hot path: 16 bytes, except 8 for bf16/f16 in the half style (a chunk
// of 8 pairs would need 16 coefficients in registers: 4 pairs keep the table path within 64).
template <typename T>
constexpr int hot_elems(Style style) {
  return sizeof(typename T::Storage) == 4 ? 4 : style == Style::half ? 4 : 8;
}

inline bool aligned(const void* ptr, int64_t bytes) { return reinterpret_cast<uintptr_t>(ptr) % static_cast<uintptr_t>(bytes) == 0; }

// Accesses of n values (n x elem bytes) need whole accesses per chunk, aligned bases and strides
// that keep every row aligned. Strides of extent-1 dimensions are never used, so they do not count.
inline bool vector_ok(const RopeParams& p, int n, int64_t elem_bytes) {
  if (n == 1) return true;
  if (p.style == Style::half ? p.pairs % n != 0 : p.rotary_dim % n != 0) return false;
  const int64_t extents[3] = {p.batch, p.seq, 0};
  auto op_ok = [&](const Operand& op) {
    if (op.heads == 0) return true;  // skipped by the kernel
    if (!aligned(op.in, n * elem_bytes) || !aligned(op.out, n * elem_bytes)) return false;
    for (int d = 0; d < 3; ++d) {
      const int64_t extent = d == 2 ? op.heads : extents[d];
      if (extent > 1 && (op.in_stride[d] % n != 0 || op.out_stride[d] % n != 0)) return false;
    }
    return true;
  };
  return op_ok(p.q) && (!p.has_k || op_ok(p.k));
}

// The widest access every row allows, from the hot width down to one value.
template <typename T>
int vector_elems(const RopeParams& p) {
  constexpr int64_t elem = sizeof(typename T::Storage);
  for (int n = hot_elems<T>(p.style); n > 1; n /= 2)
    if (vector_ok(p, n, elem)) return n;
  return 1;
}

// Every position below the table's rows, known on the host (positions from an offset).
inline bool rows_cover(const RopeParams& p, const KernelArgs& a) {
  return a.rows_count > 0 && a.pos.kind == Positions::Kind::from_offset && p.seq <= a.rows_count &&
         a.pos.start <= a.rows_count - p.seq;
}

// Hot-width accesses get a kernel per style, cos/sin source (rows only, or mixed) and xPos; the
// narrower ones one per style (mixed, xPos chosen at run time).
template <typename T>
KernelChoice choose_kernel(const RopeParams& p, const KernelArgs& a) {
  KernelChoice c;
  c.n = vector_elems<T>(p);
  c.style = p.style;
  if (c.n != hot_elems<T>(p.style)) return c;
  // rows_only: a device position past the rows is a fault (the token is skipped), never computed.
  // M-RoPE reads its rows in the mixed kernels (axis_rows).
  c.cos_sin = (rows_cover(p, a) || p.rows_only) && a.pos.axes == 1 ? CosSin::rows : CosSin::mixed;
  c.xpos = p.has_xpos ? XposMode::xpos : XposMode::none;
  return c;
}

// Calls f.template operator()<K>() with the KernelSpec K of `c`.
template <typename T, int N, Style S, typename F>
void with_style_spec(const KernelChoice& c, F&& f) {
  constexpr int hot = hot_elems<T>(S);
  if constexpr (N > hot) {
    fail("kernel vector width", cat("at most ", hot, " values"), N);
  } else if constexpr (N == hot) {
    auto xpos = [&]<CosSin M>() {
      if (c.xpos == XposMode::none) f.template operator()<KernelSpec<T, N, S, M, XposMode::none>>();
      else f.template operator()<KernelSpec<T, N, S, M, XposMode::xpos>>();
    };
    if (c.cos_sin == CosSin::rows) xpos.template operator()<CosSin::rows>();
    else xpos.template operator()<CosSin::mixed>();
  } else {
    f.template operator()<KernelSpec<T, N, S, CosSin::mixed, XposMode::runtime>>();
  }
}

template <typename T, int N, typename F>
void with_spec(const KernelChoice& c, F&& f) {
  if (c.style == Style::half) with_style_spec<T, N, Style::half>(c, f);
  else with_style_spec<T, N, Style::interleaved>(c, f);
}

template <typename T, typename F>
void with_kernel(const KernelChoice& c, F&& f) {
  switch (c.n) {
    case 1: return with_spec<T, 1>(c, f);
    case 2: return with_spec<T, 2>(c, f);
    case 4: return with_spec<T, 4>(c, f);
    case 8:
      if constexpr (sizeof(typename T::Storage) == 2) return with_spec<T, 8>(c, f);
      break;
    default: break;
  }
  fail("kernel vector width", "1, 2, 4 or 8 values", c.n);
}

// Chooses the work split for K and writes it into `a`.
template <class K>
LaunchConfig configure_launch(KernelArgs& a, const RopeParams& p, int multiprocessors, int resident_threads_per_multiprocessor,
                              int64_t forced_heads_per_thread) {
  const bool tail = p.rotary_dim < p.head_dim;
  a.op[0].copy_tail = tail && (!p.q.in_place || p.has_query_scale);
  a.op[1].copy_tail = p.has_k && tail && !p.k.in_place;
  LaunchShape shape;
  shape.batch = p.batch;
  shape.seq = p.seq;
  shape.rotary_chunks = p.pairs / K::P;
  shape.pass_chunks = (a.op[0].copy_tail || a.op[1].copy_tail) ? ceil_div(p.head_dim - p.rotary_dim, K::E) : 0;
  shape.q_heads = p.q.heads;
  shape.k_heads = p.has_k ? p.k.heads : 0;
  shape.multiprocessors = multiprocessors;
  shape.resident_threads_per_multiprocessor = resident_threads_per_multiprocessor;
  shape.forced_heads_per_thread = forced_heads_per_thread;
  const LaunchConfig config = make_launch_config(shape);
  if (config.q_groups + config.k_groups > kMaxGroups)
    fail("q.shape", "at most 2^31 - 1 head groups of q and k together", config.q_groups + config.k_groups);
  a.rotary_chunks = static_cast<int32_t>(shape.rotary_chunks);
  a.chunks_per_row = static_cast<int32_t>(config.chunks_per_row);
  a.heads_per_thread = static_cast<int32_t>(config.heads_per_thread);
  a.q_groups = static_cast<int32_t>(config.q_groups);
  a.groups = static_cast<int32_t>(config.q_groups + config.k_groups);
  return config;
}

}  // namespace ropekit::detail::cuda
