#pragma once
// The CUDA rotation kernel: fp32 arithmetic on f32/f16/bf16 storage, q and k in one launch.
// Kernels only loop and move memory; every formula (and the position of a token) comes from
// rope_math.hpp.
//
// Everything a thread runs for one (token, head group, chunk) is __host__ __device__, so that the
// emulation test runs the same code on the CPU: token_position (device-resident positions checked
// here, faults reported), check_cu_seqlens, rope_item and the grid loop (for_each_item).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "../rope_math.hpp"
#include "launch_config.hpp"

#define ROPEKIT_KERNEL_HD __host__ __device__ __forceinline__
#if defined(__CUDA_ARCH__)
#define ROPEKIT_UNROLL _Pragma("unroll")
#else
#define ROPEKIT_UNROLL
#endif

namespace ropekit::detail::cuda {

// rows: every position reads a table row (the host proved position < rows_count): the table path;
// mixed: rows below rows_count, cos/sin computed in the kernel at or past it (and everywhere with
// rows_count = 0: compute_sincos).
enum class CosSin : int { rows, mixed };
// none: no xPos (the direction is two multipliers); xpos: xPos scales (inverse: a run-time flag);
// runtime: either, chosen from the arguments (the narrow vector paths).
enum class XposMode : int { none, xpos, runtime };

constexpr int64_t kMaxPosition = INT64_MAX - 1;  // as apply(): largest position + 1 fits in int64

// What a kernel found wrong in device-resident positions (the first fault of an epoch).
enum class FaultKind : int32_t { none, offsets, ids, cu_first, cu_order, cu_last, packed_offsets };

// In mapped (pinned) host memory, one per device; written by the thread that claimed the fault
// and read by the host without synchronising (device_errors.hpp).
struct FaultRecord {
  int64_t index = 0;   // the array element
  int64_t value = 0;   // its value
  int64_t bound = 0;   // cu_order: cu_seqlens[index - 1]; cu_last: tokens; offsets: largest allowed
  int32_t kind = 0;    // FaultKind
  int32_t epoch = 0;   // set by the host after it reported a fault: opens the next claim
  int32_t ready = 0;   // set last by the device: index, value, bound and kind are complete
};

struct KernelOperand {
  const void* in = nullptr;
  void* out = nullptr;
  int64_t in_stride[3]{};   // batch, seq, head (elements)
  int64_t out_stride[3]{};
  int64_t heads = 0;
  float xpos_sign = 1.0f;
  bool scaled = false;      // q with a query scale: every channel times t(position)
  bool copy_tail = false;   // partial rotary, out of place or scaled: dims [rotary_dim, head_dim)
                            // are copied (or scaled)
};

struct KernelArgs {
  KernelOperand op[2];      // q, then k (k.heads == 0 without k)
  int64_t batch = 0;        // rank 3: 1
  int64_t seq = 0;          // tokens per batch row (rank 3: all tokens)
  int32_t head_dim = 0;
  int32_t rotary_dim = 0;
  int32_t pairs = 0;
  int32_t rotary_chunks = 0;   // chunks covering the rotary dims
  int32_t chunks_per_row = 0;  // plus the pass-through chunks (0 of them when nothing is copied)
  int32_t heads_per_thread = 1;
  int32_t q_groups = 0;        // head groups of q; groups of k follow
  int32_t groups = 0;          // q_groups + k_groups

  TokenPositions pos;
  PairAxes pair_axes;             // several position axes (M-RoPE, axial): the axis of each pair

  const float* rows = nullptr;    // table rows (cos then sin) for positions [0, rows_count)
  int64_t rows_count = 0;         // positions past it compute cos/sin from the frequencies
  // The largest valid device-resident position: rows_count - 1 for a caller's cache without
  // frequencies (rotary_embedding), else the largest int64 whose + 1 fits.
  int64_t max_position = kMaxPosition;
  const double* inv_freq = nullptr;
  const float* inv_freq_f32 = nullptr;
  bool exact = false;
  double attention = 1.0;
  Direction direction = Direction::forward;
  float inv_attention_sq = 1.0f;
  const double* xpos_log_zeta = nullptr;  // null without xPos
  double xpos_center = 0.0;
  QueryScale query_scale;                 // for the scaled operand (q)

  // Device-resident positions: where a fault is claimed (device memory) and recorded.
  int32_t* fault_claim = nullptr;
  FaultRecord* fault_record = nullptr;
};

// Storage <-> fp32. Values travel as raw bits: one value (load/store), or two 16-bit values packed
// in a 32-bit word, element 0 in the low half (lo/hi/pack: one conversion instruction for two).
struct F32 {
  using Storage = float;
  static ROPEKIT_KERNEL_HD float load(float v) { return v; }
  static ROPEKIT_KERNEL_HD float store(float v) { return v; }
};
struct F16 {
  using Storage = uint16_t;
  static ROPEKIT_KERNEL_HD float load(uint16_t v) { return __half2float(__ushort_as_half(v)); }
  static ROPEKIT_KERNEL_HD uint16_t store(float v) { return __half_as_ushort(__float2half_rn(v)); }
  static ROPEKIT_KERNEL_HD float lo(uint32_t w) { return load(static_cast<uint16_t>(w & 0xffffu)); }
  static ROPEKIT_KERNEL_HD float hi(uint32_t w) { return load(static_cast<uint16_t>(w >> 16)); }
  static ROPEKIT_KERNEL_HD uint32_t pack(float a, float b) {
#if defined(__CUDA_ARCH__)
    const __half2 h = __floats2half2_rn(a, b);
    return *reinterpret_cast<const uint32_t*>(&h);
#else
    return static_cast<uint32_t>(store(a)) | static_cast<uint32_t>(store(b)) << 16;
#endif
  }
};
struct BF16 {
  using Storage = uint16_t;
  static ROPEKIT_KERNEL_HD float load(uint16_t v) { return __bfloat162float(__ushort_as_bfloat16(v)); }
  static ROPEKIT_KERNEL_HD uint16_t store(float v) { return __bfloat16_as_ushort(__float2bfloat16_rn(v)); }
#if defined(__CUDA_ARCH__)
  static ROPEKIT_KERNEL_HD float lo(uint32_t w) { return __uint_as_float(w << 16); }
  static ROPEKIT_KERNEL_HD float hi(uint32_t w) { return __uint_as_float(w & 0xffff0000u); }
  static ROPEKIT_KERNEL_HD uint32_t pack(float a, float b) {
    const __nv_bfloat162 h = __floats2bfloat162_rn(a, b);
    return *reinterpret_cast<const uint32_t*>(&h);
  }
#else
  static float lo(uint32_t w) { return load(static_cast<uint16_t>(w & 0xffffu)); }
  static float hi(uint32_t w) { return load(static_cast<uint16_t>(w >> 16)); }
  static uint32_t pack(float a, float b) { return static_cast<uint32_t>(store(a)) | static_cast<uint32_t>(store(b)) << 16; }
#endif
};

// N consecutive stored values moved as one access, held as 32-bit words (a 16-bit value alone
// when the access is 2 bytes): two bf16/f16 values share a register instead of taking one each.
template <typename T, int N>
struct alignas(sizeof(typename T::Storage) * N) Vec {
  static constexpr int kBytes = static_cast<int>(sizeof(typename T::Storage)) * N;
  static constexpr bool kWords = kBytes >= 4;
  using Word = std::conditional_t<kWords, uint32_t, uint16_t>;
  Word w[kWords ? kBytes / 4 : 1];

  // Value e as fp32.
  ROPEKIT_KERNEL_HD float get(int e) const {
    if constexpr (sizeof(typename T::Storage) == 4) {
      return bits_to_float(w[e]);
    } else if constexpr (kWords) {
      return e % 2 == 0 ? T::lo(w[e / 2]) : T::hi(w[e / 2]);
    } else {
      return T::load(w[0]);
    }
  }
  // Values e (even) and e + 1, rounded once each.
  ROPEKIT_KERNEL_HD void set2(int e, float a, float b) {
    if constexpr (sizeof(typename T::Storage) == 4) {
      w[e] = float_to_bits(a);
      w[e + 1] = float_to_bits(b);
    } else {
      w[e / 2] = T::pack(a, b);
    }
  }
  ROPEKIT_KERNEL_HD void set(int e, float a) {  // f32, or a lone 16-bit value
    if constexpr (sizeof(typename T::Storage) == 4) w[e] = float_to_bits(a);
    else w[0] = T::store(a);
  }

 private:
  static ROPEKIT_KERNEL_HD float bits_to_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
    return __uint_as_float(u);
#else
    float f;
    std::memcpy(&f, &u, 4);
    return f;
#endif
  }
  static ROPEKIT_KERNEL_HD uint32_t float_to_bits(float f) {
#if defined(__CUDA_ARCH__)
    return __float_as_uint(f);
#else
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
#endif
  }
};

// The register type of one access of B bytes (what __ldcs / __stcs take).
template <int B> struct Raw;
template <> struct Raw<2> { using type = unsigned short; };
template <> struct Raw<4> { using type = unsigned int; };
template <> struct Raw<8> { using type = uint2; };
template <> struct Raw<16> { using type = uint4; };

// q/k are read and written once: streaming accesses (evict first), so they do not push the table
// out of L2.
template <typename V>
ROPEKIT_KERNEL_HD V load_stream(const V* p) {
#if defined(__CUDA_ARCH__)
  using R = typename Raw<sizeof(V)>::type;
  union {
    R r;
    V v;
  } u;
  u.r = __ldcs(reinterpret_cast<const R*>(p));
  return u.v;
#else
  return *p;
#endif
}
template <typename V>
ROPEKIT_KERNEL_HD void store_stream(V* p, const V& v) {
#if defined(__CUDA_ARCH__)
  using R = typename Raw<sizeof(V)>::type;
  union {
    R r;
    V v;
  } u;
  u.v = v;
  __stcs(reinterpret_cast<R*>(p), u.r);
#else
  *p = v;
#endif
}

// Table rows are read by every head and every token at a position: keep them in L1 and L2
// (evict last). `policy` comes from table_policy().
ROPEKIT_KERNEL_HD uint64_t table_policy() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  uint64_t policy;
  asm("createpolicy.fractional.L2::evict_last.b64 %0, 1.0;" : "=l"(policy));
  return policy;
#else
  return 0;
#endif
}
template <int K>  // K consecutive floats, K in {1, 2, 4}, aligned to 4 K bytes
ROPEKIT_KERNEL_HD void load_table(const float* p, uint64_t policy, float* out) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  if constexpr (K == 4) {
    asm volatile("ld.global.nc.L1::evict_last.L2::cache_hint.v4.f32 {%0, %1, %2, %3}, [%4], %5;"
                 : "=f"(out[0]), "=f"(out[1]), "=f"(out[2]), "=f"(out[3])
                 : "l"(p), "l"(policy));
  } else if constexpr (K == 2) {
    asm volatile("ld.global.nc.L1::evict_last.L2::cache_hint.v2.f32 {%0, %1}, [%2], %3;"
                 : "=f"(out[0]), "=f"(out[1])
                 : "l"(p), "l"(policy));
  } else {
    asm volatile("ld.global.nc.L1::evict_last.L2::cache_hint.f32 %0, [%1], %2;" : "=f"(out[0]) : "l"(p), "l"(policy));
  }
#else
  (void)policy;
  for (int i = 0; i < K; ++i) out[i] = p[i];
#endif
}

// Records the first fault of the current epoch: the thread that raises the claim to epoch + 1
// writes the record, then `ready` (the host reads it without synchronising). Later faults of the
// same epoch are dropped.
ROPEKIT_KERNEL_HD void report_fault(const KernelArgs& a, FaultKind kind, int64_t index, int64_t value, int64_t bound) {
  FaultRecord* r = a.fault_record;
  if (r == nullptr) return;
#if defined(__CUDA_ARCH__)
  const int32_t epoch = *static_cast<volatile int32_t*>(&r->epoch);
  if (*static_cast<volatile int32_t*>(a.fault_claim) > epoch) return;
  if (atomicMax(a.fault_claim, epoch + 1) > epoch) return;
  r->index = index;
  r->value = value;
  r->bound = bound;
  r->kind = static_cast<int32_t>(kind);
  __threadfence_system();
  *static_cast<volatile int32_t*>(&r->ready) = 1;
#else
  if (*a.fault_claim > r->epoch) return;
  *a.fault_claim = r->epoch + 1;
  r->index = index;
  r->value = value;
  r->bound = bound;
  r->kind = static_cast<int32_t>(kind);
  r->ready = 1;
#endif
}

// Position of token s of batch row b (rank 3: b = 0, s = the token), or -1 when device-resident
// positions give it none (reported; the token is then skipped). Reads stay inside the arrays
// whatever they hold.
ROPEKIT_KERNEL_HD int64_t token_position(const KernelArgs& a, int64_t b, int64_t s) {
  const TokenPositions& pos = a.pos;
  switch (pos.kind) {
    case Positions::Kind::from_offset:
      return pos.at(b, s);  // checked on the host
    case Positions::Kind::per_sequence: {
      const int64_t offset = pos.value(b);
      const int64_t largest = a.max_position - (a.seq - 1);
      if (offset < 0 || offset > largest) {
        report_fault(a, FaultKind::offsets, b, offset, largest);
        return -1;
      }
      return pos.at(b, s);
    }
    case Positions::Kind::token_ids: {
      for (int axis = static_cast<int>(pos.axes) - 1; axis >= 0; --axis) {  // every axis, axis 0 last
        const int64_t id = pos.at_axis(b, s, axis);
        if (id < 0 || id > a.max_position) {
          report_fault(a, FaultKind::ids, axis * pos.axis_stride + b * a.seq + s, id, a.max_position);
          return -1;
        }
        if (axis == 0) return id;
      }
      return -1;
    }
    case Positions::Kind::packed: {
      // With malformed cu_seqlens (reported by check_cu_seqlens) the sequence is still in range.
      const int64_t sequence = pos.sequence_of(s);
      const int64_t begin = pos.boundary(sequence);
      const int64_t end = pos.boundary(sequence + 1);
      if (begin < 0 || begin > s || end <= s || end > a.seq || (sequence == 0 && begin != 0)) return -1;  // in no well-formed sequence
      const int64_t offset = pos.sequence_offset(sequence);
      const int64_t largest = a.max_position - (end - begin - 1);
      if (offset < 0 || offset > largest) {
        report_fault(a, FaultKind::packed_offsets, sequence, offset, largest);
        return -1;
      }
      return s - begin + offset;
    }
  }
  return -1;
}

// Packed positions: cu_seqlens[0] = 0, non-decreasing, cu_seqlens[num_sequences] = tokens. Thread
// `first` of `count` checks entries first, first + count, ...
ROPEKIT_KERNEL_HD void check_cu_seqlens(const KernelArgs& a, int64_t first, int64_t count) {
  const TokenPositions& pos = a.pos;
  for (int64_t i = first; i <= pos.num_sequences; i += count) {
    const int64_t cu = pos.boundary(i);
    if (i == 0) {
      if (cu != 0) report_fault(a, FaultKind::cu_first, 0, cu, 0);
    } else {
      const int64_t previous = pos.boundary(i - 1);
      if (cu < previous) report_fault(a, FaultKind::cu_order, i, cu, previous);
    }
    if (i == pos.num_sequences && cu != a.seq) report_fault(a, FaultKind::cu_last, i, cu, a.seq);
  }
}

// One kernel specialisation: storage type, N stored values per access, style, cos/sin source and
// xPos handling, all fixed at compile time.
//   half:             a chunk is P = N pairs: [p0, p0 + N) and [pairs + p0, ...), two accesses;
//   interleaved N>1:  a chunk is P = N/2 pairs: [2 p0, 2 p0 + N), one contiguous access;
//   interleaved N=1:  a chunk is one pair: elements 2 p0 and 2 p0 + 1, two accesses.
template <typename T_, int N_, Style S_, CosSin M_, XposMode X_>
struct KernelSpec {
  using T = T_;
  using S = typename T::Storage;
  static constexpr int N = N_;
  static constexpr bool half = S_ == Style::half;
  static constexpr CosSin cos_sin = M_;
  static constexpr XposMode xpos = X_;
  static constexpr int accesses = half || N == 1 ? 2 : 1;  // per head row and chunk
  static constexpr int P = half ? N : (N == 1 ? 1 : N / 2);  // pairs per chunk
  static constexpr int E = accesses * N;                    // elements per chunk
  static constexpr int bytes = N * static_cast<int>(sizeof(S));
  // Heads loaded before the first store: about 8 registers of q/k data in flight per thread.
  static constexpr int regs_per_access = bytes >= 4 ? bytes / 4 : 1;
  static constexpr int U = 8 / (accesses * regs_per_access) < 1   ? 1
                           : 8 / (accesses * regs_per_access) > 4 ? 4
                                                                  : 8 / (accesses * regs_per_access);
  // The table path is held to 64 registers (4 blocks of 256 threads per multiprocessor); the others
  // (xPos, in-kernel sincos) get what they need.
  static constexpr int min_blocks = M_ == CosSin::rows && X_ == XposMode::none ? 4 : 1;
};

// cos/sin of pairs [p0, p0 + P) from the table row (K floats per load).
template <int P>
ROPEKIT_KERNEL_HD void load_row(const KernelArgs& a, int64_t position, int p0, float (&c)[P], float (&s)[P]) {
  constexpr int K = P % 4 == 0 ? 4 : P % 2 == 0 ? 2 : 1;
  const uint64_t policy = table_policy();
  const float* row = a.rows + position * 2 * a.pairs + p0;
ROPEKIT_UNROLL
  for (int j = 0; j < P; j += K) {
    load_table<K>(row + j, policy, &c[j]);
    load_table<K>(row + a.pairs + j, policy, &s[j]);
  }
}

// cos/sin of pairs [p0, p0 + P) computed here (double-precision sincos, fully range-reduced), as
// the host table's rows.
template <int P>
ROPEKIT_KERNEL_HD void compute_row(const KernelArgs& a, int64_t position, int p0, float (&c)[P], float (&s)[P]) {
ROPEKIT_UNROLL
  for (int j = 0; j < P; ++j) {
    scaled_cos_sin(rope_angle(position, a.inv_freq[p0 + j], a.inv_freq_f32[p0 + j], a.exact), a.attention, c[j], s[j]);
  }
}

// Several position axes (M-RoPE, axial): cos/sin of pairs [p0, p0 + P), each at the position of its axis
// (`position`: axis 0; all checked by token_position), read from the rows below rows_count and
// computed past them.
template <int P>
ROPEKIT_KERNEL_HD void axis_rows(const KernelArgs& a, int64_t b, int64_t s, int64_t position, int p0, float (&c)[P],
                                 float (&sn)[P]) {
  int64_t at[3];
  a.pos.axis_positions(b, s, position, at);
ROPEKIT_UNROLL
  for (int j = 0; j < P; ++j) {
    const int64_t position = at[a.pair_axes.of(p0 + j)];
    if (position < a.rows_count) {
      const float* row = a.rows + position * 2 * a.pairs + p0 + j;
      c[j] = row[0];
      sn[j] = row[a.pairs];
    } else {
      scaled_cos_sin(rope_angle(position, a.inv_freq[p0 + j], a.inv_freq_f32[p0 + j], a.exact), a.attention, c[j], sn[j]);
    }
  }
}

// cos/sin -> the pair coefficients of the direction (and xPos scale, and the operand's query scale:
// 1 for none).
template <class K>
ROPEKIT_KERNEL_HD void coefficients(const KernelArgs& a, int64_t position, int p0, float sign, float query_scale,
                                    float (&c)[K::P], float (&s)[K::P]) {
  constexpr XposMode X = K::xpos;
  const bool xpos = X == XposMode::xpos || (X == XposMode::runtime && a.xpos_log_zeta != nullptr);
ROPEKIT_UNROLL
  for (int j = 0; j < K::P; ++j) {
    const float x = X != XposMode::none && xpos
                        ? Arith<float>::mul(xpos_scale(static_cast<double>(position), a.xpos_center,
                                                       a.xpos_log_zeta[p0 + j], sign),
                                            query_scale)
                        : query_scale;
    pair_coefficients(c[j], s[j], x, a.direction, a.inv_attention_sq, c[j], s[j]);
  }
}

// rotate_pair on the P pairs of one chunk; indices fixed at compile time so the values stay in
// registers. Pair j: half: (x[0][j], x[1][j]); interleaved: (x[0][2j], x[0][2j+1]); interleaved
// N = 1: (x[0][0], x[1][0]).
template <class K>
ROPEKIT_KERNEL_HD void rotate(const Vec<typename K::T, K::N> (&x)[K::accesses], const float (&c)[K::P],
                              const float (&s)[K::P], Vec<typename K::T, K::N> (&y)[K::accesses]) {
  if constexpr (K::N == 1) {
    float ya, yb;
    rotate_pair(x[0].get(0), x[1].get(0), c[0], s[0], ya, yb);
    y[0].set(0, ya);
    y[1].set(0, yb);
  } else if constexpr (K::half) {
ROPEKIT_UNROLL
    for (int j = 0; j < K::P; j += 2) {  // two pairs: one word of each half
      float ya0, yb0, ya1, yb1;
      rotate_pair(x[0].get(j), x[1].get(j), c[j], s[j], ya0, yb0);
      rotate_pair(x[0].get(j + 1), x[1].get(j + 1), c[j + 1], s[j + 1], ya1, yb1);
      y[0].set2(j, ya0, ya1);
      y[1].set2(j, yb0, yb1);
    }
  } else {
ROPEKIT_UNROLL
    for (int j = 0; j < K::P; ++j) {  // one pair: one word
      float ya, yb;
      rotate_pair(x[0].get(2 * j), x[0].get(2 * j + 1), c[j], s[j], ya, yb);
      y[0].set2(2 * j, ya, yb);
    }
  }
}

// One work item: rotates (or, for a pass-through chunk, copies) chunk `chunk` of every head of
// head group `group` of q or k, for token (b, s) at `position` (>= 0).
template <class K>
ROPEKIT_KERNEL_HD void rope_item(const KernelArgs& a, int64_t b, int64_t s, int64_t position, int group, int chunk) {
  using S = typename K::S;
  using V = Vec<typename K::T, K::N>;
  constexpr int U = K::U;
  constexpr int A = K::accesses;
  const bool is_k = group >= a.q_groups;
  const KernelOperand& op = a.op[is_k ? 1 : 0];
  const int64_t h_begin = static_cast<int64_t>(is_k ? group - a.q_groups : group) * a.heads_per_thread;
  const int64_t remaining = op.heads - h_begin;
  const int count = remaining < a.heads_per_thread ? static_cast<int>(remaining) : a.heads_per_thread;
  const int64_t in_h = op.in_stride[2];
  const int64_t out_h = op.out_stride[2];
  const S* in = static_cast<const S*>(op.in) + b * op.in_stride[0] + s * op.in_stride[1] + h_begin * in_h;
  S* out = static_cast<S*>(op.out) + b * op.out_stride[0] + s * op.out_stride[1] + h_begin * out_h;

  const double t = op.scaled ? query_scale_at(a.query_scale, position) : 1.0;
  if (chunk >= a.rotary_chunks) {  // pass-through tail: copied out of place, scaled with a query scale
    if (!op.copy_tail) return;
    const int e0 = a.rotary_dim + (chunk - a.rotary_chunks) * K::E;
    const bool whole = e0 + K::E <= a.head_dim;
    if (op.scaled) {
      using T = typename K::T;
      const auto pass = static_cast<float>(query_pass_scale(t, a.direction));
      const int e1 = whole ? e0 + K::E : a.head_dim;
      for (int h = 0; h < count; ++h, in += in_h, out += out_h)
        for (int e = e0; e < e1; ++e) out[e] = T::store(Arith<float>::mul(T::load(in[e]), pass));
      return;
    }
    for (int h = 0; h < count; ++h, in += in_h, out += out_h) {
      if (whole) {
ROPEKIT_UNROLL
        for (int v = 0; v < A; ++v)
          store_stream(reinterpret_cast<V*>(out + e0 + v * K::N), load_stream(reinterpret_cast<const V*>(in + e0 + v * K::N)));
      } else {
        for (int e = e0; e < a.head_dim; ++e) out[e] = in[e];
      }
    }
    return;
  }

  const int p0 = chunk * K::P;
  // Offsets of the chunk's accesses inside a head row.
  const int off0 = K::half ? p0 : 2 * p0;
  const int off1 = K::half ? a.pairs + p0 : 2 * p0 + 1;  // second access (A == 2) only
  V x[U][A];
  auto load_heads = [&](const S* rows, int left) {  // the next min(U, left) heads from `rows`
ROPEKIT_UNROLL
    for (int u = 0; u < U; ++u) {
      if (u < left) {
        const S* row = rows + u * in_h;
        x[u][0] = load_stream(reinterpret_cast<const V*>(row + off0));
        if constexpr (A == 2) x[u][A - 1] = load_stream(reinterpret_cast<const V*>(row + off1));
      }
    }
  };
  float c[K::P];
  float sn[K::P];
  // q/k loads go out first; cos/sin (a row from L2, or computed) arrive while they are in flight.
  if (K::cos_sin == CosSin::mixed && a.pos.axes > 1) {  // several axes (never on the rows-only path)
    load_heads(in, count);
    axis_rows<K::P>(a, b, s, position, p0, c, sn);
  } else if (K::cos_sin == CosSin::rows || position < a.rows_count) {
    load_heads(in, count);
    load_row<K::P>(a, position, p0, c, sn);
  } else {
    compute_row<K::P>(a, position, p0, c, sn);
    load_heads(in, count);
  }
  coefficients<K>(a, position, p0, op.xpos_sign, static_cast<float>(t), c, sn);
#if defined(__CUDA_ARCH__)
#pragma unroll 1
#endif
  for (int left = count;;) {
ROPEKIT_UNROLL
    for (int u = 0; u < U; ++u) {
      if (u < left) {
        V y[A];
        rotate<K>(x[u], c, sn, y);
        S* row = out + u * out_h;
        store_stream(reinterpret_cast<V*>(row + off0), y[0]);
        if constexpr (A == 2) store_stream(reinterpret_cast<V*>(row + off1), y[A - 1]);
      }
    }
    left -= U;
    if (left <= 0) break;
    in += U * in_h;
    out += U * out_h;
    load_heads(in, left);
  }
}

#if defined(__CUDACC__)
template <class K>
__global__ void __launch_bounds__(256, K::min_blocks) rope_kernel(const __grid_constant__ KernelArgs a) {
  // Packed positions: one binary search per token, shared by the block's threads of that token.
  extern __shared__ int64_t token_positions[];
  const GridPos g{{blockIdx.x, blockIdx.y, blockIdx.z},
                  {threadIdx.x, threadIdx.y, threadIdx.z},
                  {gridDim.x, gridDim.y, gridDim.z},
                  {blockDim.x, blockDim.y, blockDim.z}};
  const bool packed = a.pos.kind == Positions::Kind::packed;
  if (packed) {
    const int64_t threads = static_cast<int64_t>(blockDim.x) * blockDim.y * blockDim.z;
    const int64_t block = (static_cast<int64_t>(blockIdx.z) * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
    const int64_t thread = (static_cast<int64_t>(threadIdx.z) * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x;
    check_cu_seqlens(a, block * threads + thread, threads * gridDim.x * gridDim.y * gridDim.z);
  }
  for_each_item(
      GridExtent{a.batch, a.seq, a.groups, a.chunks_per_row}, g,
      [&](int64_t b, int64_t s) -> int64_t {
        if (!packed) return s < a.seq ? token_position(a, b, s) : -1;
        if (threadIdx.x == 0 && threadIdx.y == 0) token_positions[threadIdx.z] = s < a.seq ? token_position(a, b, s) : -1;
        __syncthreads();
        return token_positions[threadIdx.z];
      },
      [&](int64_t b, int64_t s, int64_t position, int group, int chunk) { rope_item<K>(a, b, s, position, group, chunk); },
      [&] {
        if (packed) __syncthreads();  // every thread has read its token's position
      });
}
#endif

}  // namespace ropekit::detail::cuda
