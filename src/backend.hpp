#pragma once
// The one parameter struct that crosses from apply() into every backend. apply() has checked
// everything in it; a backend only loops.
#include <cstdint>
#include <functional>

#include "ropekit/apply.hpp"
#include "rope_math.hpp"

namespace ropekit::detail {

struct TableData;

// q or k: where to read, where to write, and the (b, s, h) strides in elements of each.
struct Operand {
  const void* in = nullptr;
  void* out = nullptr;
  int64_t heads = 0;        // may be 0 (q or k empty beside a non-empty other): then in/out may be
                            // null, and the operand must be skipped before any pointer arithmetic
  int64_t in_stride[3]{};   // batch, seq, head
  int64_t out_stride[3]{};
  bool in_place = false;    // out == in with the same strides: pass-through dims are left alone
  float xpos_sign = 1.0f;   // +1 for q (zeta^(p/sb)), -1 for k
};

struct RopeParams {
  DType dtype = DType::f32;
  Style style = Style::half;
  Direction direction = Direction::forward;
  Device device{};
  void* stream = nullptr;

  // Token grid: rank 4 is batch x seq; rank 3 is 1 x tokens (packed: cu_seqlens splits it).
  int64_t batch = 0;
  int64_t seq = 0;
  int64_t head_dim = 0;
  int64_t rotary_dim = 0;
  int64_t pairs = 0;

  Operand q;
  Operand k;
  bool has_k = false;

  // Host arrays are checked by apply(): every position is in [0, 2^63 - 2], and below rows_count
  // when rows_only. Device arrays are checked by the backend.
  Positions positions;
  int64_t num_sequences = 0;  // packed: cu_seqlens.size - 1
  // positions.axes > 1: the spec's M-RoPE or axial map; pair j turns at the position of axis
  // pair_axes.of(j) (at most 3 rows a token).
  PairAxes pair_axes;

  // The table's plain data. Positions below `rows_count` read their row (pairs cos, then pairs
  // sin); the others (and all of them with compute_sincos) compute cos/sin from the frequencies.
  const float* rows = nullptr;
  int64_t rows_count = 0;
  const double* inv_freq = nullptr;      // pairs entries
  const float* inv_freq_f32 = nullptr;   // pairs entries, each rounded to float32
  bool exact = false;                    // angles in double (TableOptions::exact)
  double attention_factor = 1.0;
  const double* xpos_log_zeta = nullptr;  // pairs entries of ln(zeta_i) / scale_base; null without xPos
  const TableData* table = nullptr;       // for backends that keep per-table state (device copies);
                                          // null when `rows` is the caller's (rotary_embedding)
  // No frequencies: every position must be below rows_count. Host positions were checked; a
  // backend refuses device positions at or past it as it refuses negative ones.
  bool rows_only = false;

  int num_threads = 0;
  bool has_xpos = false;
  double xpos_center = 0.0;
  // q (every channel of its heads) times query_scale_at(query_scale, position); k is not scaled.
  bool has_query_scale = false;
  QueryScale query_scale;
};

// The params' positions as the kernels read them.
inline TokenPositions token_positions(const RopeParams& p) {
  const Positions& pos = p.positions;
  TokenPositions t;
  t.kind = pos.kind;
  t.start = pos.start;
  if (!pos.values.empty()) {
    t.values = pos.values.data;
    t.values_i64 = pos.values.type == IndexType::i64;
  }
  if (pos.kind == Positions::Kind::packed) {
    t.cu_seqlens = pos.cu_seqlens.data;
    t.cu_i64 = pos.cu_seqlens.type == IndexType::i64;
    t.num_sequences = p.num_sequences;
  }
  t.seq = p.seq;
  t.axes = pos.kind == Positions::Kind::token_ids ? pos.axes : 1;
  t.axis_stride = p.batch * p.seq;
  return t;
}

// The CPU loops' walk over tokens [t0, t1) of the grid (t = b seq + s; packed: b = 0, s = t):
// fn(b, s, position), with host positions that apply() has checked. Packed positions search for
// the first token's sequence once, then step through the boundaries.
template <class F>
void for_each_token(const TokenPositions& pos, int64_t t0, int64_t t1, F&& fn) {
  if (t0 >= t1) return;
  if (pos.kind != Positions::Kind::packed) {
    for (int64_t t = t0; t < t1; ++t) fn(t / pos.seq, t % pos.seq, pos.at(t / pos.seq, t % pos.seq));
    return;
  }
  int64_t sequence = pos.sequence_of(t0);
  int64_t begin = pos.boundary(sequence);
  int64_t end = pos.boundary(sequence + 1);
  for (int64_t t = t0; t < t1; ++t) {
    while (t >= end) {
      ++sequence;
      begin = end;
      end = pos.boundary(sequence + 1);
    }
    fn(int64_t{0}, t, t - begin + pos.sequence_offset(sequence));
  }
}

// Points the params at the table's data; compute_sincos ignores its rows.
void use_table(RopeParams& params, const TableData& table, bool compute_sincos);

// fn(u0, u1) over the work units [0, units), in chunks handed out to up to `requested` threads
// (0: every core; fewer when `bytes` of memory traffic would not keep them busy). fn runs on the
// SIMD build's pool, so it must not start a threaded CPU call itself (num_threads 1 inside).
void cpu_parallel_chunks(int64_t units, int64_t bytes, int requested, const std::function<void(int64_t, int64_t)>& fn);

void apply_cpu(const RopeParams& params);
void apply_cpu_scalar(const RopeParams& params);  // the reference loop (apply_cpu may vectorize)
#if defined(ROPEKIT_HAS_CUDA)
void apply_cuda(const RopeParams& params);
#endif

}  // namespace ropekit::detail
