#pragma once
// The CUDA rotation kernel: fp32 arithmetic on f32/f16/bf16 storage, q and k in one launch.
// Kernels only loop; every formula comes from coefficients.hpp.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "../coefficients.hpp"

// Helpers are __host__ __device__ so that tests can run the per-item body on the CPU (emulating the
// grid) on machines without a GPU.
#define ROPEKIT_KERNEL_HD __host__ __device__ __forceinline__
#if defined(__CUDA_ARCH__)
#define ROPEKIT_UNROLL _Pragma("unroll")
#else
#define ROPEKIT_UNROLL
#endif

namespace ropekit::detail::cuda {

enum class PositionKind : int { offset, offsets, ids, packed };

struct KernelOperand {
  const void* in = nullptr;
  void* out = nullptr;
  int64_t in_stride[3]{};   // batch, seq, head (elements)
  int64_t out_stride[3]{};
  int64_t heads = 0;
  int64_t groups = 0;       // ceil(heads / heads_per_thread)
  float xpos_sign = 1.0f;
  bool copy_tail = false;   // out of place with partial rotary: copy dims [rotary_dim, head_dim)
};

struct KernelArgs {
  KernelOperand op[2];      // q, then k (k.groups == 0 without k)
  int64_t seq = 0;          // tokens per batch row (rank 3: all tokens)
  int64_t head_dim = 0;
  int64_t rotary_dim = 0;
  int64_t pairs = 0;
  bool half_style = true;
  Direction direction = Direction::forward;
  int64_t rotary_chunks = 0;
  int64_t chunks_per_row = 0;
  int64_t heads_per_thread = 1;
  int64_t items = 0;

  PositionKind kind = PositionKind::offset;
  int64_t start = 0;
  const void* values = nullptr;   // offsets or ids
  bool values_i64 = true;
  const void* cu_seqlens = nullptr;
  bool cu_i64 = true;
  int64_t num_sequences = 0;

  const float* rows = nullptr;    // table rows (cos then sin) for positions [0, rows_count)
  int64_t rows_count = 0;         // positions past it compute cos/sin from the frequencies
  const double* inv_freq = nullptr;
  const float* inv_freq_f32 = nullptr;
  bool exact = false;
  double attention = 1.0;
  float inv_attention_sq = 1.0f;
  const double* xpos_log_zeta = nullptr;  // null without xPos
  double xpos_center = 0.0;
};

// Storage <-> fp32. Values travel as raw bits so vectors are plain structs.
struct F32 {
  using Storage = float;
  static ROPEKIT_KERNEL_HD float load(float v) { return v; }
  static ROPEKIT_KERNEL_HD float store(float v) { return v; }
};
struct F16 {
  using Storage = uint16_t;
  static ROPEKIT_KERNEL_HD float load(uint16_t v) { return __half2float(__ushort_as_half(v)); }
  static ROPEKIT_KERNEL_HD uint16_t store(float v) { return __half_as_ushort(__float2half_rn(v)); }
};
struct BF16 {
  using Storage = uint16_t;
  static ROPEKIT_KERNEL_HD float load(uint16_t v) { return __bfloat162float(__ushort_as_bfloat16(v)); }
  static ROPEKIT_KERNEL_HD uint16_t store(float v) { return __bfloat16_as_ushort(__float2bfloat16_rn(v)); }
};

// Single roundings, never fused into an FMA: the same float operations as the CPU loop.
ROPEKIT_KERNEL_HD float mul_rn(float x, float y) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(x, y);
#else
  return x * y;
#endif
}
ROPEKIT_KERNEL_HD float add_rn(float x, float y) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(x, y);
#else
  return x + y;
#endif
}
ROPEKIT_KERNEL_HD float sub_rn(float x, float y) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(x, y);
#else
  return x - y;
#endif
}

// N consecutive stored values moved as one access (16 bytes when N x sizeof = 16).
template <typename S, int N>
struct alignas(sizeof(S) * N) Vec {
  S v[N];
};

ROPEKIT_KERNEL_HD int64_t read_index(const void* data, bool i64, int64_t i) {
  return i64 ? static_cast<const int64_t*>(data)[i] : static_cast<int64_t>(static_cast<const int32_t*>(data)[i]);
}

// Position of token `token` (b-major over batch x seq); packed: binary search of cu_seqlens.
ROPEKIT_KERNEL_HD int64_t token_position(const KernelArgs& a, int64_t token) {
  switch (a.kind) {
    case PositionKind::offset:
      return a.start + token % a.seq;
    case PositionKind::offsets:
      return read_index(a.values, a.values_i64, token / a.seq) + token % a.seq;
    case PositionKind::ids:
      return read_index(a.values, a.values_i64, token);
    case PositionKind::packed: {
      // Last sequence whose start is <= token (empty sequences before it are skipped).
      int64_t lo = 0;
      int64_t hi = a.num_sequences - 1;
      while (lo < hi) {
        const int64_t mid = (lo + hi + 1) / 2;
        if (read_index(a.cu_seqlens, a.cu_i64, mid) <= token) lo = mid; else hi = mid - 1;
      }
      const int64_t offset = a.values ? read_index(a.values, a.values_i64, lo) : 0;
      return token - read_index(a.cu_seqlens, a.cu_i64, lo) + offset;
    }
  }
  return 0;
}

// cos and sin of pairs [p0, p0 + P) at `position`: its table row, or (past the rows)
// double-precision sincos, fully range-reduced, as the host table's cos/sin in double rounded to fp32.
template <int P>
ROPEKIT_KERNEL_HD void load_cos_sin(const KernelArgs& a, int64_t position, int64_t p0, float (&cs)[P],
                                             float (&sn)[P]) {
  if (position < a.rows_count) {
    const float* row = a.rows + position * 2 * a.pairs + p0;
    if constexpr (P % 4 == 0) {
ROPEKIT_UNROLL
      for (int j = 0; j < P; j += 4) {
        const float4 c4 = *reinterpret_cast<const float4*>(row + j);
        const float4 s4 = *reinterpret_cast<const float4*>(row + a.pairs + j);
        cs[j] = c4.x; cs[j + 1] = c4.y; cs[j + 2] = c4.z; cs[j + 3] = c4.w;
        sn[j] = s4.x; sn[j + 1] = s4.y; sn[j + 2] = s4.z; sn[j + 3] = s4.w;
      }
    } else {
ROPEKIT_UNROLL
      for (int j = 0; j < P; ++j) {
        cs[j] = row[j];
        sn[j] = row[a.pairs + j];
      }
    }
    return;
  }
ROPEKIT_UNROLL
  for (int j = 0; j < P; ++j) {
    const double angle = rope_angle(position, a.inv_freq[p0 + j], a.inv_freq_f32[p0 + j], a.exact);
    double s = 0.0;
    double c = 0.0;
    sincos(angle, &s, &c);
    cs[j] = static_cast<float>(c * a.attention);
    sn[j] = static_cast<float>(s * a.attention);
  }
}

// y = (a c - b s, b c + a s) for the P pairs of one chunk, indices fixed at compile time so the
// vectors stay in registers. Half: pair j is (lo[j], hi[j]); interleaved: (v[2j], v[2j+1]) of lo|hi.
template <typename T, int P, bool Half>
ROPEKIT_KERNEL_HD void rotate_chunk(const Vec<typename T::Storage, P>& lo, const Vec<typename T::Storage, P>& hi,
                                             const float (&c)[P], const float (&s)[P],
                                             Vec<typename T::Storage, P>& ylo, Vec<typename T::Storage, P>& yhi) {
  using S = typename T::Storage;
  auto at = [&](int e) -> const S& { return e < P ? lo.v[e] : hi.v[e - P]; };
  auto out = [&](int e) -> S& { return e < P ? ylo.v[e] : yhi.v[e - P]; };
ROPEKIT_UNROLL
  for (int j = 0; j < P; ++j) {
    const int ia = Half ? j : 2 * j;
    const int ib = Half ? P + j : 2 * j + 1;
    const float va = T::load(at(ia));
    const float vb = T::load(at(ib));
    out(ia) = T::store(sub_rn(mul_rn(va, c[j]), mul_rn(vb, s[j])));
    out(ib) = T::store(add_rn(mul_rn(vb, c[j]), mul_rn(va, s[j])));
  }
}

// One work item: rotates (or, for pass-through chunks, copies) one chunk of every head of one head
// group of q or k, for one token. P pairs per chunk; the chunk's stored values are two Vec<S, P>:
// for the half style the first half [p0, p0+P) and the second half [pairs+p0, ...); interleaved:
// [2 p0, 2 p0 + 2P).
template <typename T, int P>
ROPEKIT_KERNEL_HD void rope_item(const KernelArgs& a, int64_t item) {
  using S = typename T::Storage;
  using V = Vec<S, P>;
  constexpr int kUnroll = 4;  // heads loaded before the first store: several loads in flight
  const int64_t groups = a.op[0].groups + a.op[1].groups;
  const int64_t chunk = item % a.chunks_per_row;
  const int64_t rest = item / a.chunks_per_row;
  const int64_t group = rest % groups;
  const int64_t token = rest / groups;
  const bool is_k = group >= a.op[0].groups;
  const KernelOperand& op = a.op[is_k ? 1 : 0];
  const int64_t h_begin = (is_k ? group - a.op[0].groups : group) * a.heads_per_thread;
  const int64_t h_end = h_begin + a.heads_per_thread < op.heads ? h_begin + a.heads_per_thread : op.heads;
  const int64_t b = token / a.seq;
  const int64_t s = token % a.seq;
  const S* in = static_cast<const S*>(op.in) + b * op.in_stride[0] + s * op.in_stride[1];
  S* out = static_cast<S*>(op.out) + b * op.out_stride[0] + s * op.out_stride[1];

  if (chunk >= a.rotary_chunks) {  // pass-through tail, out of place only
    if (!op.copy_tail) return;
    const int64_t e0 = a.rotary_dim + (chunk - a.rotary_chunks) * 2 * P;
    const bool whole = e0 + 2 * P <= a.head_dim;
    for (int64_t h = h_begin; h < h_end; ++h) {
      const S* src = in + h * op.in_stride[2] + e0;
      S* dst = out + h * op.out_stride[2] + e0;
      if (whole) {
        const V lo = *reinterpret_cast<const V*>(src);
        const V hi = *reinterpret_cast<const V*>(src + P);
        *reinterpret_cast<V*>(dst) = lo;
        *reinterpret_cast<V*>(dst + P) = hi;
      } else {
        for (int64_t e = 0; e0 + e < a.head_dim; ++e) dst[e] = src[e];
      }
    }
    return;
  }

  const int64_t p0 = chunk * P;
  const int64_t position = token_position(a, token);
  float c[P];
  float sn[P];
  load_cos_sin<P>(a, position, p0, c, sn);
ROPEKIT_UNROLL
  for (int j = 0; j < P; ++j) {
    const float x = a.xpos_log_zeta ? xpos_scale(static_cast<double>(position), a.xpos_center,
                                                 a.xpos_log_zeta[p0 + j], op.xpos_sign)
                                    : 1.0f;
    pair_coefficients(c[j], sn[j], x, a.direction, a.inv_attention_sq, c[j], sn[j]);
  }
  // Offsets of the chunk's two vectors inside a head row.
  const int64_t off0 = a.half_style ? p0 : 2 * p0;
  const int64_t off1 = a.half_style ? a.pairs + p0 : 2 * p0 + P;

  for (int64_t h0 = h_begin; h0 < h_end; h0 += kUnroll) {
    V lo[kUnroll];
    V hi[kUnroll];
ROPEKIT_UNROLL
    for (int u = 0; u < kUnroll; ++u) {
      if (h0 + u < h_end) {
        const S* row = in + (h0 + u) * op.in_stride[2];
        lo[u] = *reinterpret_cast<const V*>(row + off0);
        hi[u] = *reinterpret_cast<const V*>(row + off1);
      }
    }
ROPEKIT_UNROLL
    for (int u = 0; u < kUnroll; ++u) {
      if (h0 + u >= h_end) break;
      V ylo;
      V yhi;
      if (a.half_style) {
        rotate_chunk<T, P, true>(lo[u], hi[u], c, sn, ylo, yhi);
      } else {
        rotate_chunk<T, P, false>(lo[u], hi[u], c, sn, ylo, yhi);
      }
      S* row = out + (h0 + u) * op.out_stride[2];
      *reinterpret_cast<V*>(row + off0) = ylo;
      *reinterpret_cast<V*>(row + off1) = yhi;
    }
  }
}

template <typename T, int P>
__global__ void __launch_bounds__(256) rope_kernel(const __grid_constant__ KernelArgs a) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t item = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; item < a.items; item += stride)
    rope_item<T, P>(a, item);
}

}  // namespace ropekit::detail::cuda
