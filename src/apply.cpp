// Checks every argument, then hands one RopeParams to the backend of the views' device.
#include "ropekit/apply.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "apply_call.hpp"
#include "backend.hpp"
#include "check.hpp"
#include "overlap.hpp"
#include "table_data.hpp"

namespace ropekit {
namespace {

using detail::cat;
using detail::fail;

// Token grid of a view: rank 4 is (B, S), rank 3 is (1, T).
struct Grid {
  int64_t batch;
  int64_t seq;
};

Grid grid_of(const TensorView& v) {
  return v.rank == 4 ? Grid{v.shape[0], v.shape[1]} : Grid{1, v.shape[0]};
}

int64_t heads_of(const TensorView& v) { return v.shape[static_cast<size_t>(v.rank - 2)]; }

bool valid_dtype(DType d) { return d == DType::f32 || d == DType::f16 || d == DType::bf16 || d == DType::f64; }

void check_view(const TensorView& v, const std::string& name, int64_t head_dim) {
  if (v.rank != 3 && v.rank != 4)
    fail(name + ".rank", "3 (tokens, heads, head_dim) or 4 (batch, seq, heads, head_dim)", v.rank);
  if (!valid_dtype(v.dtype)) fail(name + ".dtype", "f32, f16, bf16 or f64", to_string(v.dtype));
  if (v.dtype == DType::f64 && v.device.type != DeviceType::cpu)
    fail(name + ".dtype", "f32, f16 or bf16 on a CUDA device (f64 runs on the CPU)", to_string(v.dtype));
  for (int d = 0; d < v.rank; ++d) {
    const auto i = static_cast<size_t>(d);
    if (v.shape[i] < 0) fail(cat(name, ".shape[", d, "]"), ">= 0", v.shape[i]);
    if (v.strides[i] < 0 && v.shape[i] > 1) fail(cat(name, ".strides[", d, "]"), ">= 0 (any stride for an extent of 1)", v.strides[i]);
  }
  detail::check_extent(v, name);
  const int64_t last = v.shape[static_cast<size_t>(v.rank - 1)];
  if (last != head_dim) fail(name + ".shape[-1]", cat(head_dim, " (the spec's head_dim)"), cat(last, " in ", v.shape_string()));
  if (v.numel() > 0) {
    if (v.strides[static_cast<size_t>(v.rank - 1)] != 1)
      fail(name + ".strides[-1]", "1 (last dimension contiguous)", v.strides[static_cast<size_t>(v.rank - 1)]);
    if (v.data == nullptr) fail(name + ".data", "a non-null pointer", "nullptr");
    if (!detail::aligned_to(v.data, dtype_size(v.dtype)))
      detail::fail_misaligned(v.data, dtype_size(v.dtype), name + ".data", to_string(v.dtype));
  }
}

void check_same_shape(const TensorView& out, const std::string& out_name, const TensorView& in,
                      const std::string& in_name) {
  bool same = out.rank == in.rank;
  for (int d = 0; same && d < in.rank; ++d) same = out.shape[static_cast<size_t>(d)] == in.shape[static_cast<size_t>(d)];
  if (!same) fail(out_name + ".shape", cat(in.shape_string(), " (as ", in_name, ")"), out.shape_string());
  if (out.dtype != in.dtype) fail(out_name + ".dtype", cat(to_string(in.dtype), " (as ", in_name, ")"), to_string(out.dtype));
  if (!(out.device == in.device))
    fail(out_name + ".device", cat(to_string(in.device), " (as ", in_name, ")"), to_string(out.device));
}

void check_index_device(const IndexView& v, const char* name, const Device& device) {
  if (!(v.device == device)) fail(cat(name, ".device"), cat(to_string(device), " (as q)"), to_string(v.device));
  if (v.size > 0 && v.data == nullptr) fail(cat(name, ".data"), "a non-null pointer", "nullptr");
  if (v.type != IndexType::i32 && v.type != IndexType::i64) fail(cat(name, ".type"), "i32 or i64", static_cast<int>(v.type));
  const int64_t size = v.type == IndexType::i32 ? 4 : 8;
  if (v.size > 0 && !detail::aligned_to(v.data, size))
    detail::fail_misaligned(v.data, size, cat(name, ".data"), v.type == IndexType::i32 ? "i32" : "i64");
}

// The largest position any token may have: the largest plus one (a table size) must fit in int64.
constexpr int64_t kMaxPosition = std::numeric_limits<int64_t>::max() - 1;

// Whether a run of `count` tokens from `first` has a valid last position, first + count - 1.
bool run_start_fits(int64_t first, int64_t count) { return count <= 0 || first <= kMaxPosition - (count - 1); }

[[noreturn]] void fail_run_start(const std::string& what, int64_t first, int64_t count) {
  fail(what, cat("<= ", kMaxPosition - (count - 1), " (its last position + ", count - 1, " must be < 2^63 - 1)"), first);
}

// Checks the structure of `positions` against the token grid; returns the largest position + 1.
int64_t check_positions(const Positions& pos, const TensorView& q, int64_t& num_sequences, int64_t& lowest_out) {
  const Grid g = grid_of(q);
  if (g.batch < 0 || g.seq < 0) fail("q.shape", ">= 0 in every dimension", q.shape_string());
  int64_t tokens = 0;
  if (__builtin_mul_overflow(g.batch, g.seq, &tokens)) fail("q.shape", "batch * seq that fits in int64", q.shape_string());
  int64_t lowest = std::numeric_limits<int64_t>::max();
  int64_t highest = -1;
  auto see = [&](int64_t p) {
    lowest = std::min(lowest, p);
    highest = std::max(highest, p);
  };
  num_sequences = 0;
  if (pos.kind != Positions::Kind::token_ids && pos.axes != 1)
    fail("positions.axes", "1 for offsets and packed positions (several axes come as token ids)", pos.axes);
  switch (pos.kind) {
    case Positions::Kind::from_offset:
      if (pos.start < 0) fail("positions.start", ">= 0", pos.start);
      if (!run_start_fits(pos.start, tokens > 0 ? g.seq : 0)) fail_run_start("positions.start", pos.start, g.seq);
      if (tokens > 0) {
        see(pos.start);
        see(pos.start + g.seq - 1);
      }
      break;
    case Positions::Kind::per_sequence:
      check_index_device(pos.values, "positions.offsets", q.device);
      if (pos.values.size != g.batch) fail("positions.offsets.size", cat(g.batch, " (one per sequence)"), pos.values.size);
      if (pos.values.device.type != DeviceType::cpu) return -1;  // device arrays: the backend checks
      for (int64_t b = 0; b < g.batch; ++b) {
        const int64_t off = pos.values[b];
        if (off < 0) fail(cat("positions.offsets[", b, "]"), ">= 0", off);
        if (!run_start_fits(off, g.seq)) fail_run_start(cat("positions.offsets[", b, "]"), off, g.seq);
        if (g.seq > 0) {
          see(off);
          see(off + g.seq - 1);
        }
      }
      break;
    case Positions::Kind::token_ids: {
      if (pos.axes < 1 || pos.axes > 3)
        fail("positions.axes", "1, 2 (axial 2-D RoPE) or 3 (M-RoPE's time, height, width)", pos.axes);
      check_index_device(pos.values, "positions.ids", q.device);
      int64_t ids = 0;
      if (__builtin_mul_overflow(tokens, pos.axes, &ids)) fail("q.shape", "axes * batch * seq that fits in int64", q.shape_string());
      if (pos.values.size != ids)
        fail("positions.ids.size",
             pos.axes == 1 ? cat(tokens, " (one per token of ", q.shape_string(), ")")
                           : cat(ids, " (", pos.axes, " axes x ", tokens, " tokens of ", q.shape_string(),
                                 "; several axes come axis-major: (axes, B, S) or (axes, T))"),
             pos.values.size);
      if (pos.values.device.type != DeviceType::cpu) return -1;
      for (int64_t t = 0; t < ids; ++t) {
        const int64_t id = pos.values[t];
        if (id < 0 || id > kMaxPosition) fail(cat("positions.ids[", t, "]"), cat("in [0, ", kMaxPosition, "]"), id);
        see(id);
      }
      break;
    }
    case Positions::Kind::packed: {
      if (q.rank != 3) fail("positions", "packed positions (cu_seqlens) with rank-3 (tokens, heads, head_dim) views", cat("q of rank ", q.rank));
      check_index_device(pos.cu_seqlens, "positions.cu_seqlens", q.device);
      if (pos.cu_seqlens.size < 2) fail("positions.cu_seqlens.size", ">= 2 (number of sequences + 1)", pos.cu_seqlens.size);
      num_sequences = pos.cu_seqlens.size - 1;
      if (!pos.values.empty()) {
        check_index_device(pos.values, "positions.offsets", q.device);
        if (pos.values.size != num_sequences)
          fail("positions.offsets.size", cat(num_sequences, " (one per sequence in cu_seqlens)"), pos.values.size);
      }
      if (pos.cu_seqlens.device.type != DeviceType::cpu) return -1;
      if (pos.cu_seqlens[0] != 0) fail("positions.cu_seqlens[0]", "0", pos.cu_seqlens[0]);
      for (int64_t b = 0; b < num_sequences; ++b) {
        const int64_t begin = pos.cu_seqlens[b];
        const int64_t end = pos.cu_seqlens[b + 1];
        if (end < begin) fail(cat("positions.cu_seqlens[", b + 1, "]"), cat(">= cu_seqlens[", b, "] (", begin, ")"), end);
        if (end > g.seq) fail(cat("positions.cu_seqlens[", b + 1, "]"), cat("<= ", g.seq, " (the number of tokens in q)"), end);
        const int64_t off = pos.values.empty() ? 0 : pos.values[b];
        if (off < 0) fail(cat("positions.offsets[", b, "]"), ">= 0", off);
        if (!run_start_fits(off, end - begin)) fail_run_start(cat("positions.offsets[", b, "]"), off, end - begin);
        if (end > begin) {
          see(off);
          see(off + (end - begin - 1));  // off + end alone may overflow
        }
      }
      const int64_t last = pos.cu_seqlens[num_sequences];
      if (last != g.seq) fail(cat("positions.cu_seqlens[", num_sequences, "]"), cat(g.seq, " (the number of tokens in q)"), last);
      break;
    }
    default:
      fail("positions.kind", "offset, offsets, ids or packed", static_cast<int>(pos.kind));
  }
  lowest_out = lowest;
  return highest + 1;
}

detail::Operand operand(const TensorView& in, const std::optional<TensorView>& out, float sign) {
  detail::Operand op;
  const TensorView& o = out ? *out : in;
  op.in = in.data;
  op.out = o.data;
  op.heads = heads_of(in);
  const int r = in.rank;
  const auto stride = [](const TensorView& v, int d) { return v.strides[static_cast<size_t>(d)]; };
  op.in_stride[0] = r == 4 ? stride(in, 0) : 0;
  op.in_stride[1] = stride(in, r - 3);
  op.in_stride[2] = stride(in, r - 2);
  op.out_stride[0] = r == 4 ? stride(o, 0) : 0;
  op.out_stride[1] = stride(o, r - 3);
  op.out_stride[2] = stride(o, r - 2);
  op.in_place = !out || detail::same_view(in, *out);
  op.xpos_sign = sign;
  return op;
}

// The views and positions against head_dim; the rotation's fields (style, rotary_dim, pairs, xPos)
// are left for the caller.
detail::CheckedCall check_views(const RopeTensors& t, const Positions& positions, int64_t head_dim,
                                const detail::OperandNames& names) {
  const std::string& nq = names.q;
  const std::string& nk = names.k;
  check_view(t.q, nq, head_dim);
  const Grid g = grid_of(t.q);
  if (t.k) {
    const TensorView& k = *t.k;
    check_view(k, nk, head_dim);
    if (k.rank != t.q.rank) fail(nk + ".rank", cat(t.q.rank, " (as ", nq, ")"), k.rank);
    if (k.dtype != t.q.dtype) fail(nk + ".dtype", cat(to_string(t.q.dtype), " (as ", nq, ")"), to_string(k.dtype));
    if (!(k.device == t.q.device)) fail(nk + ".device", cat(to_string(t.q.device), " (as ", nq, ")"), to_string(k.device));
    const Grid gk = grid_of(k);
    if (gk.batch != g.batch || gk.seq != g.seq)
      fail(nk + ".shape", cat("the same leading (batch, seq) / tokens as ", nq, " ", t.q.shape_string()), k.shape_string());
  }
  if (t.k_out && !t.k) fail("k_out", "no k_out without k", "a k_out view");
  if (t.q_out) {
    check_view(*t.q_out, "q_out", head_dim);
    check_same_shape(*t.q_out, "q_out", t.q, "q");
  }
  if (t.k_out) {
    check_view(*t.k_out, "k_out", head_dim);
    check_same_shape(*t.k_out, "k_out", *t.k, "k");
  }

  // Aliasing: each written view is disjoint from every other written and read view, except that
  // an output may be exactly its own input (in place). Tokens and heads run in any order (threads,
  // GPU blocks), so a read that overlaps another operand's write is wrong whichever runs first.
  const TensorView& q_written = t.q_out ? *t.q_out : t.q;
  const std::string q_name = t.q_out ? "q_out" : nq;
  if (detail::self_overlapping(q_written)) fail(q_name, "a view with no element reachable twice (written in place)", cat("strides that overlap for shape ", q_written.shape_string()));
  if (t.q_out && !detail::same_view(*t.q_out, t.q) && detail::may_overlap(*t.q_out, t.q))
    fail("q_out", "memory disjoint from q, or exactly q (in place)", "a partial overlap with q");
  if (t.k) {
    const TensorView& k_written = t.k_out ? *t.k_out : *t.k;
    const std::string k_name = t.k_out ? "k_out" : nk;
    if (detail::self_overlapping(k_written)) fail(k_name, "a view with no element reachable twice (written in place)", cat("strides that overlap for shape ", k_written.shape_string()));
    if (t.k_out && !detail::same_view(*t.k_out, *t.k) && detail::may_overlap(*t.k_out, *t.k))
      fail("k_out", "memory disjoint from k, or exactly k (in place)", "a partial overlap with k");
    if (detail::may_overlap(q_written, k_written)) fail(k_name, cat("memory disjoint from ", q_name), cat("an overlap with ", q_name));
    if (detail::may_overlap(q_written, *t.k)) {
      if (t.q_out) fail("q_out", cat("memory disjoint from ", nk, " (", nk, " is read while q_out is written)"), cat("an overlap with ", nk));
      fail(nk, cat("memory disjoint from ", nq, " (", nq, " is rotated in place while ", nk, " is read)"), cat("an overlap with ", nq));
    }
    if (detail::may_overlap(k_written, t.q)) {
      if (t.k_out) fail("k_out", cat("memory disjoint from ", nq, " (", nq, " is read while k_out is written)"), cat("an overlap with ", nq));
      fail(nq, cat("memory disjoint from ", nk, " (", nk, " is rotated in place while ", nq, " is read)"), cat("an overlap with ", nk));
    }
  }

  detail::CheckedCall c;
  int64_t num_sequences = 0;
  c.needed = check_positions(positions, t.q, num_sequences, c.lowest);

  auto& p = c.params;
  p.dtype = t.q.dtype;
  p.device = t.q.device;
  p.batch = g.batch;
  p.seq = g.seq;
  p.head_dim = head_dim;
  p.q = operand(t.q, t.q_out, 1.0f);
  if (t.k) {
    p.k = operand(*t.k, t.k_out, -1.0f);
    p.has_k = true;
  }
  p.positions = positions;
  p.num_sequences = num_sequences;
  return c;
}

detail::CheckedCall check(const RopeTensors& t, const Positions& positions, const RopeSpec& spec,
                          const detail::OperandNames& names = {}) {
  detail::CheckedCall c = check_views(t, positions, spec.head_dim(), names);
  auto& p = c.params;
  p.style = spec.style();
  p.rotary_dim = spec.rotary_dim();
  p.pairs = spec.pairs();
  p.has_xpos = spec.xpos().has_value();
  if (positions.axes != 1) {
    if (positions.axes != spec.position_axes())
      fail("positions.axes",
           spec.position_axes() == 1 ? std::string("1 for a spec without mrope or axial (several axes turn their own pairs)")
                                     : cat("1 or ", spec.position_axes(), " (the spec's ", spec.mrope() ? "M-RoPE" : "axial 2-D",
                                           " axes; several axes come axis-major: ids (", spec.position_axes(), ", B, S) or (",
                                           spec.position_axes(), ", T), not (B, S, ", spec.position_axes(), "))"),
           positions.axes);
    p.pair_axes = detail::pair_axes_of(spec);
  }
  return c;
}

// direction, num_threads and the query scale (the options every call takes).
void check_common_options(const ApplyOptions& options) {
  if (options.direction != Direction::forward && options.direction != Direction::backward &&
      options.direction != Direction::inverse)
    fail("options.direction", "forward, backward or inverse", static_cast<int>(options.direction));
  if (options.num_threads < 0) fail("options.num_threads", ">= 0 (0: every core)", options.num_threads);
  if (options.query_scale) options.query_scale->validate("options.query_scale");
}

void set_common_options(detail::RopeParams& p, const ApplyOptions& options) {
  p.direction = options.direction;
  p.stream = options.stream;
  p.num_threads = options.num_threads;
  if (options.query_scale) {
    p.has_query_scale = true;
    p.query_scale = *options.query_scale;
  }
}

bool empty(const RopeTensors& t) { return t.q.numel() == 0 && (!t.k || t.k->numel() == 0); }

// xPos scales zeta_i^(+-(p - center) / scale_base) must stay finite and nonzero in the stored
// dtype, with room for the values they multiply: |p - center| * max |ln zeta_i| / scale_base at
// most 64 (a factor e^64 ~ 6e27 of float32's 3e38) or, for f16, 8 (e^8 ~ 3e3 of 65504). Far
// positions need a center near them (ApplyOptions::xpos_center).
double max_xpos_exponent(DType dtype) { return dtype == DType::f16 ? 8.0 : 64.0; }

void check_xpos_range(const RopeTable& table, const Positions& positions, DType dtype, int64_t lowest,
                      int64_t highest, double center) {
  if (!table.spec().xpos() || highest < lowest) return;
  double most = 0.0;
  for (double v : table.xpos_log_zeta()) most = std::max(most, std::fabs(v));
  if (most == 0.0) return;
  const double reach = max_xpos_exponent(dtype) / most;  // the largest |p - center| allowed
  const double far = std::max(std::fabs(static_cast<double>(highest) - center), std::fabs(static_cast<double>(lowest) - center));
  if (far > reach)
    fail(positions.kind == Positions::Kind::from_offset ? "positions.start"
         : positions.kind == Positions::Kind::token_ids  ? "positions.ids"
                                                   : "positions.offsets",
         cat("positions within ", std::floor(reach), " of options.xpos_center (", center, ") for xPos with scale_base ",
             table.spec().xpos()->scale_base, " in ", to_string(dtype),
             ": farther, zeta^(+-(p - center) / scale_base) leaves float32's range"),
         cat("positions ", lowest, " .. ", highest));
}

}  // namespace

namespace detail {
CheckedCall check_call(const RopeTensors& tensors, const Positions& positions, const RopeSpec& spec,
                       const OperandNames& names) {
  return check(tensors, positions, spec, names);
}

void dispatch(const RopeParams& p) {
  if (p.device.type == DeviceType::cpu) return apply_cpu(p);
#if defined(ROPEKIT_HAS_CUDA)
  return apply_cuda(p);
#else
  fail("q.device", "cpu (this build of ropekit has no CUDA backend)", to_string(p.device));
#endif
}

void use_table(RopeParams& p, const TableData& table, bool compute_sincos) {
  p.rows = table.rows.data();
  p.rows_count = compute_sincos ? 0 : table.size;
  p.inv_freq = table.inv_freq.data();
  p.inv_freq_f32 = table.inv_freq_f32.data();
  p.exact = table.options.exact;
  p.attention_factor = table.attention_factor;
  p.xpos_log_zeta = table.xpos_log_zeta.empty() ? nullptr : table.xpos_log_zeta.data();
  p.table = &table;
}
}  // namespace detail

int64_t required_table_size(const RopeTensors& tensors, const Positions& positions) {
  int64_t num_sequences = 0;
  if (tensors.q.rank != 3 && tensors.q.rank != 4)
    fail("q.rank", "3 (tokens, heads, head_dim) or 4 (batch, seq, heads, head_dim)", tensors.q.rank);
  int64_t lowest = 0;
  return std::max<int64_t>(check_positions(positions, tensors.q, num_sequences, lowest), 0);
}

void apply_rope(const RopeTensors& tensors, const Positions& positions, const RopeTable& table,
                const ApplyOptions& options) {
  detail::CheckedCall c = check(tensors, positions, table.spec());
  detail::require_finite(options.xpos_center, "options.xpos_center");
  check_common_options(options);
  if (options.query_scale && positions.axes != 1)
    fail("options.query_scale", "absent with multi-axis positions (the scale needs one position a token)", "a query scale");
  if (c.needed >= 0) check_xpos_range(table, positions, tensors.q.dtype, c.lowest, c.needed - 1, options.xpos_center);
  if (empty(tensors)) return;
  auto& p = c.params;
  set_common_options(p, options);
  p.xpos_center = options.xpos_center;
  detail::use_table(p, detail::TableAccess::data(table), options.compute_sincos);
  detail::dispatch(p);
}

void apply_rope(const RopeTensors& tensors, const Positions& positions, const RopeSpec& spec,
                const ApplyOptions& options) {
  const detail::CheckedCall c = check(tensors, positions, spec);
  if (c.needed < 0) fail("positions", "host (cpu) arrays when no table is given", "device arrays");
  const RopeTable frequencies(spec, 0, TableOptions{false, c.needed});
  apply_rope(tensors, positions, frequencies, options);
}

void apply_query_scale(const TensorView& q, const Positions& positions, const QueryScale& scale,
                       const ApplyOptions& options, const std::optional<TensorView>& q_out) {
  const int64_t head_dim = q.rank == 3 || q.rank == 4 ? q.shape[static_cast<size_t>(q.rank - 1)] : 0;
  if ((q.rank == 3 || q.rank == 4) && (head_dim <= 0 || head_dim > kMaxHeadDim))
    fail("q.shape[-1]", cat("in [1, ", kMaxHeadDim, "]"), head_dim);
  RopeTensors tensors;
  tensors.q = q;
  tensors.q_out = q_out;
  detail::CheckedCall c = check_views(tensors, positions, head_dim, {});
  if (positions.axes != 1) fail("positions.axes", "1 for a query scale (one position a token)", positions.axes);
  scale.validate("query_scale");
  if (options.query_scale) fail("options.query_scale", "absent (the scale is the query_scale argument)", "a query scale");
  if (options.xpos_center != 0.0) fail("options.xpos_center", "0 (no rotation here)", options.xpos_center);
  if (options.compute_sincos) fail("options.compute_sincos", "false (no rotation here)", "true");
  check_common_options(options);
  if (empty(tensors)) return;
  auto& p = c.params;
  set_common_options(p, options);
  p.has_query_scale = true;
  p.query_scale = scale;
  // No pairs: every channel is a pass-through channel, scaled.
  p.rotary_dim = 0;
  p.pairs = 0;
  detail::dispatch(p);
}

}  // namespace ropekit
