// CPU backend: the plain loop (the formulas are rope_math.hpp's). Per token, the pair coefficients
// are computed once and reused for every head of q and k; each head row is then rotated in fp32
// (f64 storage: double) and stored once. A query scale folds into q's coefficients (and scales q's
// pass-through channels).
#include <cmath>
#include <cstring>
#include <vector>

#include "backend.hpp"
#include "half_float.hpp"

namespace ropekit::detail {
namespace {

// cos then sin of one position, from the table's row or computed here (past the rows).
const float* cos_sin_row(const RopeParams& p, int64_t position, float* scratch) {
  if (position < p.rows_count) return p.rows + position * 2 * p.pairs;
  for (int64_t i = 0; i < p.pairs; ++i) {
    scaled_cos_sin(rope_angle(position, p.inv_freq[i], p.inv_freq_f32[i], p.exact), p.attention_factor, scratch[i],
                   scratch[i + p.pairs]);
  }
  return scratch;
}

// cos then sin of every pair of token (b, s) at `position` (axis 0). Several axes (M-RoPE,
// axial), unequal: pair i from the row of its axis's position.
const float* token_cos_sin(const RopeParams& p, const TokenPositions& pos, int64_t b, int64_t s, int64_t position) {
  thread_local std::vector<float> scratch;
  scratch.resize(static_cast<size_t>(4 * p.pairs));
  float* row_scratch = scratch.data();
  if (pos.axes == 1) return cos_sin_row(p, position, row_scratch);
  int64_t at[3];
  pos.axis_positions(b, s, position, at);
  if (at[1] == at[0] && at[2] == at[0]) return cos_sin_row(p, position, row_scratch);
  float* mixed = row_scratch + 2 * p.pairs;
  for (int axis = 0; axis < 3; ++axis) {
    const float* row = cos_sin_row(p, at[axis], row_scratch);
    for (int64_t i = 0; i < p.pairs; ++i) {
      if (p.pair_axes.of(i) != axis) continue;
      mixed[i] = row[i];
      mixed[i + p.pairs] = row[i + p.pairs];
    }
  }
  return mixed;
}

// Coefficients for one token from its cos/sin row, one operand sign and the operand's query scale
// (1: none).
void token_coefficients(const RopeParams& p, const float* row, int64_t position, float sign, float query_scale,
                        float* c, float* s) {
  const float inv_attention_sq = inverse_attention_sq(p.attention_factor);
  for (int64_t i = 0; i < p.pairs; ++i) {
    const float x = p.has_xpos ? xpos_scale(static_cast<double>(position), p.xpos_center, p.xpos_log_zeta[i], sign) *
                                     query_scale
                               : query_scale;
    pair_coefficients(row[i], row[i + p.pairs], x, p.direction, inv_attention_sq, c[i], s[i]);
  }
}

// pass_scale: the factor of the channels past rotary_dim (1: copied out of place, left in place).
template <typename T>
void rotate_row(const RopeParams& p, const typename T::Storage* in, typename T::Storage* out, bool in_place,
                const float* c, const float* s, double pass_scale) {
  using M = typename T::Math;
  const int64_t n = p.pairs;
  // Pair i: elements (i, i + n) in the half style, (2i, 2i + 1) interleaved.
  const int64_t step = p.style == Style::half ? 1 : 2;
  const int64_t partner = p.style == Style::half ? n : 1;
  for (int64_t i = 0; i < n; ++i) {
    M ya, yb;
    rotate_pair<M>(T::load(in[step * i]), T::load(in[step * i + partner]), c[i], s[i], ya, yb);
    out[step * i] = T::store(ya);
    out[step * i + partner] = T::store(yb);
  }
  if (pass_scale != 1.0) {
    for (int64_t j = p.rotary_dim; j < p.head_dim; ++j) out[j] = T::store(T::load(in[j]) * static_cast<M>(pass_scale));
  } else if (!in_place && p.rotary_dim < p.head_dim) {
    std::memcpy(out + p.rotary_dim, in + p.rotary_dim,
                static_cast<size_t>(p.head_dim - p.rotary_dim) * sizeof(typename T::Storage));
  }
}

template <typename T>
void rotate_heads(const RopeParams& p, const Operand& op, int64_t b, int64_t s_idx, const float* c, const float* s,
                  double pass_scale = 1.0) {
  using S = typename T::Storage;
  if (op.heads == 0) return;  // an empty q or k beside a non-empty one: its data may be null
  const auto* in = static_cast<const S*>(op.in) + b * op.in_stride[0] + s_idx * op.in_stride[1];
  auto* out = static_cast<S*>(op.out) + b * op.out_stride[0] + s_idx * op.out_stride[1];
  for (int64_t h = 0; h < op.heads; ++h) {
    rotate_row<T>(p, in + h * op.in_stride[2], out + h * op.out_stride[2], op.in_place, c, s, pass_scale);
  }
}

template <typename T>
void run(const RopeParams& p) {
  std::vector<float> coef(static_cast<size_t>(4 * p.pairs));
  float* cq = coef.data();
  float* sq = cq + p.pairs;
  float* ck = sq + p.pairs;
  float* sk = ck + p.pairs;
  const TokenPositions positions = token_positions(p);
  const int64_t tokens = p.positions.kind == Positions::Kind::packed ? p.seq : p.batch * p.seq;
  for_each_token(positions, 0, tokens, [&](int64_t b, int64_t s_idx, int64_t position) {
    const double t = p.has_query_scale ? query_scale_at(p.query_scale, position) : 1.0;
    const float* row = token_cos_sin(p, positions, b, s_idx, position);
    token_coefficients(p, row, position, p.q.xpos_sign, static_cast<float>(t), cq, sq);
    rotate_heads<T>(p, p.q, b, s_idx, cq, sq, p.has_query_scale ? query_pass_scale(t, p.direction) : 1.0);
    if (!p.has_k) return;
    if (p.has_xpos || p.has_query_scale) {
      token_coefficients(p, row, position, p.k.xpos_sign, 1.0f, ck, sk);
      rotate_heads<T>(p, p.k, b, s_idx, ck, sk);
    } else {
      rotate_heads<T>(p, p.k, b, s_idx, cq, sq);  // the same coefficients without xPos or a query scale
    }
  });
}

}  // namespace

void apply_cpu_scalar(const RopeParams& params) {
  with_storage_format(params.dtype, [&]<class Format>() { run<Format>(params); });
}

#if !defined(ROPEKIT_HAS_CPU_SIMD)  // else src/cpu_simd chooses between this loop and the vector one
void apply_cpu(const RopeParams& params) { apply_cpu_scalar(params); }
void cpu_parallel_chunks(int64_t units, int64_t, int, const std::function<void(int64_t, int64_t)>& fn) { fn(0, units); }
#endif

}  // namespace ropekit::detail
