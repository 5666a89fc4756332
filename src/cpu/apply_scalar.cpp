// CPU backend: the plain loop. Per token, the pair coefficients are computed once and reused for
// every head of q and k; each head row is then rotated in fp32 and stored once.
#include <cmath>
#include <cstring>
#include <vector>

#include "backend.hpp"
#include "coefficients.hpp"
#include "half_float.hpp"

namespace ropekit::detail {
namespace {

// Math: the type a rotation is computed in (double only for f64 storage).
struct F32 {
  using Storage = float;
  using Math = float;
  static float load(float v) { return v; }
  static float store(float v) { return v; }
};
struct F64 {
  using Storage = double;
  using Math = double;
  static double load(double v) { return v; }
  static double store(double v) { return v; }
};
struct F16 {
  using Storage = uint16_t;
  using Math = float;
  static float load(uint16_t v) { return half_to_float(v); }
  static uint16_t store(float v) { return float_to_half(v); }
};
struct BF16 {
  using Storage = uint16_t;
  using Math = float;
  static float load(uint16_t v) { return bf16_to_float(v); }
  static uint16_t store(float v) { return float_to_bf16(v); }
};

// cos then sin of one position, from the table's row or computed here (past the rows).
const float* cos_sin_row(const RopeParams& p, int64_t position, float* scratch) {
  if (position < p.rows_count) return p.rows + position * 2 * p.pairs;
  for (int64_t i = 0; i < p.pairs; ++i) {
    const double angle = rope_angle(position, p.inv_freq[i], p.inv_freq_f32[i], p.exact);
    scratch[i] = static_cast<float>(std::cos(angle) * p.attention_factor);
    scratch[i + p.pairs] = static_cast<float>(std::sin(angle) * p.attention_factor);
  }
  return scratch;
}

// Coefficients for one token and one operand sign.
void token_coefficients(const RopeParams& p, int64_t position, float sign, float* c, float* s) {
  thread_local std::vector<float> scratch;
  scratch.resize(static_cast<size_t>(2 * p.pairs));
  const float* row = cos_sin_row(p, position, scratch.data());
  const float* cos_row = row;
  const float* sin_row = row + p.pairs;
  const float inv_attention_sq = static_cast<float>(1.0 / (p.attention_factor * p.attention_factor));
  for (int64_t i = 0; i < p.pairs; ++i) {
    const float x = p.has_xpos ? xpos_scale(static_cast<double>(position), p.xpos_center,
                                            p.xpos_log_zeta[i], sign)
                               : 1.0f;
    pair_coefficients(cos_row[i], sin_row[i], x, p.direction, inv_attention_sq, c[i], s[i]);
  }
}

template <typename T>
void rotate_row(const RopeParams& p, const typename T::Storage* in, typename T::Storage* out, bool in_place,
                const float* c, const float* s) {
  const int64_t n = p.pairs;
  if (p.style == Style::half) {
    for (int64_t i = 0; i < n; ++i) {
      const typename T::Math a = T::load(in[i]);
      const typename T::Math b = T::load(in[i + n]);
      out[i] = T::store(a * c[i] - b * s[i]);
      out[i + n] = T::store(b * c[i] + a * s[i]);
    }
  } else {
    for (int64_t i = 0; i < n; ++i) {
      const typename T::Math a = T::load(in[2 * i]);
      const typename T::Math b = T::load(in[2 * i + 1]);
      out[2 * i] = T::store(a * c[i] - b * s[i]);
      out[2 * i + 1] = T::store(b * c[i] + a * s[i]);
    }
  }
  if (!in_place && p.rotary_dim < p.head_dim) {
    std::memcpy(out + p.rotary_dim, in + p.rotary_dim,
                static_cast<size_t>(p.head_dim - p.rotary_dim) * sizeof(typename T::Storage));
  }
}

template <typename T>
void rotate_heads(const RopeParams& p, const Operand& op, int64_t b, int64_t s_idx, const float* c, const float* s) {
  using S = typename T::Storage;
  if (op.heads == 0) return;  // an empty q or k beside a non-empty one: its data may be null
  const auto* in = static_cast<const S*>(op.in) + b * op.in_stride[0] + s_idx * op.in_stride[1];
  auto* out = static_cast<S*>(op.out) + b * op.out_stride[0] + s_idx * op.out_stride[1];
  for (int64_t h = 0; h < op.heads; ++h) {
    rotate_row<T>(p, in + h * op.in_stride[2], out + h * op.out_stride[2], op.in_place, c, s);
  }
}

template <typename T>
void run(const RopeParams& p) {
  std::vector<float> coef(static_cast<size_t>(4 * p.pairs));
  float* cq = coef.data();
  float* sq = cq + p.pairs;
  float* ck = sq + p.pairs;
  float* sk = ck + p.pairs;
  auto token = [&](int64_t b, int64_t s_idx, int64_t position) {
    token_coefficients(p, position, p.q.xpos_sign, cq, sq);
    rotate_heads<T>(p, p.q, b, s_idx, cq, sq);
    if (!p.has_k) return;
    if (p.has_xpos) {
      token_coefficients(p, position, p.k.xpos_sign, ck, sk);
      rotate_heads<T>(p, p.k, b, s_idx, ck, sk);
    } else {
      rotate_heads<T>(p, p.k, b, s_idx, cq, sq);  // same coefficients without xPos
    }
  };
  const Positions& pos = p.positions;
  switch (pos.kind) {
    case Positions::Kind::offset:
    case Positions::Kind::offsets:
    case Positions::Kind::ids:
      for (int64_t b = 0; b < p.batch; ++b) {
        for (int64_t s_idx = 0; s_idx < p.seq; ++s_idx) {
          int64_t position = 0;
          if (pos.kind == Positions::Kind::offset) position = pos.start + s_idx;
          if (pos.kind == Positions::Kind::offsets) position = pos.values[b] + s_idx;
          if (pos.kind == Positions::Kind::ids) position = pos.values[b * p.seq + s_idx];
          token(b, s_idx, position);
        }
      }
      break;
    case Positions::Kind::packed:
      for (int64_t seq = 0; seq < p.num_sequences; ++seq) {
        const int64_t begin = pos.cu_seqlens[seq];
        const int64_t end = pos.cu_seqlens[seq + 1];
        const int64_t offset = pos.values.empty() ? 0 : pos.values[seq];
        for (int64_t t = begin; t < end; ++t) token(0, t, t - begin + offset);
      }
      break;
  }
}

}  // namespace

void apply_cpu_scalar(const RopeParams& params) {
  switch (params.dtype) {
    case DType::f32: return run<F32>(params);
    case DType::f16: return run<F16>(params);
    case DType::bf16: return run<BF16>(params);
    case DType::f64: return run<F64>(params);
  }
}

#if !defined(ROPEKIT_HAS_CPU_SIMD)  // else src/cpu_simd chooses between this loop and the vector one
void apply_cpu(const RopeParams& params) { apply_cpu_scalar(params); }
#endif

}  // namespace ropekit::detail
