// CPU backend, vectorized with Highway: compiled once per x86 target (baseline x86-64, SSE4, AVX2,
// AVX-512) and chosen at run time. Same contract as the scalar loop in cpu/apply_scalar.cpp (the
// reference) and the same formulas (rope_math.hpp, on vectors): per token, the pair coefficients
// are built once per xPos sign and reused for every head of q and k; each row is rotated in fp32
// and rounded once on store. Threads split the tokens (and the heads, when there are few tokens).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "cpu_simd/simd.hpp"
#include "cpu_simd/thread_pool.hpp"
#include "half_float.hpp"
#include "rope_math.hpp"

#ifndef ROPEKIT_SIMD_PLAN_DEFINED  // this file is compiled once per target
#define ROPEKIT_SIMD_PLAN_DEFINED
namespace ropekit::detail {

// What every target's kernel reads: the checked params plus per-call tables padded to whole vectors.
struct SimdPlan {
  static constexpr int64_t kPad = 32;  // a multiple of every target's float lane count
  const RopeParams* p = nullptr;
  int64_t padded_pairs = 0;
  int64_t tokens = 0;  // batch * seq (packed: seq)
  int64_t groups = 1;  // head groups per token: > 1 only when tokens are fewer than threads
  int64_t heads = 0;   // q heads + k heads
  float inv_attention_sq = 1.0f;
  bool bf16_convert = false;  // bf16 rows through AVX512-BF16 (RotateHalfBf16Convert and the interleaved one)
  const double* inv_freq = nullptr;     // padded with zeros
  const float* inv_freq_f32 = nullptr;  // padded with zeros
  const double* log_zeta = nullptr;     // xPos ln(zeta) / scale_base, padded with zeros
  const float* pair_axis = nullptr;     // several position axes: pair_axes.of(i) as 0, 1, 2, padded
};

}  // namespace ropekit::detail
#endif

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "cpu_simd/apply_simd.cpp"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/contrib/math/math-inl.h"
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace ropekit::detail::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// bf16 rows rotate with two elements per 32-bit lane (RotateHalfBf16, RotateInterleavedBf16).
#if HWY_TARGET != HWY_SCALAR && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define ROPEKIT_BF16_PAIR_LANES 1
#endif
// The AVX3 target's bf16 half style may use AVX512-BF16 when the CPU has it (RotateHalfBf16Convert).
#if HWY_TARGET == HWY_AVX3 && defined(__GNUC__) && defined(ROPEKIT_BF16_PAIR_LANES)
#define ROPEKIT_BF16_CONVERT 1
#endif

using DF = hn::ScalableTag<float>;
using DD = hn::Rebind<double, hn::Half<DF>>;  // half as many lanes as DF
using VF = hn::Vec<DF>;
using VD = hn::Vec<DD>;
using DU = hn::RebindToUnsigned<DF>;

// rope_math.hpp's formulas, compiled for this target, on vectors of fp32 lanes.
#include "rope_formulas.inc"
struct VecArith {
  static VF mul(VF x, VF y) { return hn::Mul(x, y); }
  static VF div(VF x, VF y) { return hn::Div(x, y); }
  static VF fma(VF x, VF y, VF z) { return hn::MulAdd(x, y, z); }  // fused with FMA (AVX2, AVX-512)
  static VF neg(VF x) { return hn::Neg(x); }
};

// v rounded to bf16 (nearest even; NaN stays a quiet NaN) in the high 16 bits of each lane, as
// float_to_bf16 (half_float.hpp).
HWY_INLINE hn::Vec<DU> Bf16InHighHalf(VF v) {
  const DU du;
  const auto bits = hn::BitCast(du, v);
  const auto lowest_kept = hn::And(hn::ShiftRight<16>(bits), hn::Set(du, 1u));
  const auto rounded = hn::Add(bits, hn::Add(hn::Set(du, 0x7fffu), lowest_kept));
  return hn::IfThenElse(hn::RebindMask(du, hn::Ne(v, v)), hn::Or(bits, hn::Set(du, 0x00400000u)), rounded);
}

// ---- storage formats: load to fp32, store from fp32 with one round-to-nearest-even ----
struct F32 {
  using Storage = float;
  static VF load(DF d, const float* p) { return hn::LoadU(d, p); }
  static void store(DF d, VF v, float* p) { hn::StoreU(v, d, p); }
};

struct BF16 {
  using Storage = uint16_t;
  static VF load(DF d, const uint16_t* p) {
    const hn::RebindToUnsigned<DF> du32;
    const hn::Rebind<uint16_t, DF> du16;
    return hn::BitCast(d, hn::ShiftLeft<16>(hn::PromoteTo(du32, hn::LoadU(du16, p))));
  }
  static void store(DF, VF v, uint16_t* p) {
    const hn::RebindToSigned<DF> di32;
    const hn::Rebind<uint16_t, DF> du16;
    const auto out = hn::ShiftRight<16>(Bf16InHighHalf(v));
    hn::StoreU(hn::DemoteTo(du16, hn::BitCast(di32, out)), du16, p);  // each lane <= 0xffff
  }
};

struct F16 {
  using Storage = uint16_t;
#if HWY_TARGET <= HWY_AVX2  // F16C: exact widening and round-to-nearest-even narrowing
  static VF load(DF d, const uint16_t* p) {
    const hn::Rebind<hwy::float16_t, DF> dh;
    return hn::PromoteTo(d, hn::LoadU(dh, reinterpret_cast<const hwy::float16_t*>(p)));
  }
  static void store(DF d, VF v, uint16_t* p) {
    const hn::Rebind<hwy::float16_t, DF> dh;
    hn::StoreU(hn::DemoteTo(dh, v), dh, reinterpret_cast<hwy::float16_t*>(p));
    (void)d;
  }
#else  // older targets: the exact scalar conversions, lane by lane
  static VF load(DF d, const uint16_t* p) {
    HWY_ALIGN float lanes[hn::MaxLanes(DF())];
    for (size_t i = 0; i < hn::Lanes(d); ++i) lanes[i] = half_to_float(p[i]);
    return hn::Load(d, lanes);
  }
  static void store(DF d, VF v, uint16_t* p) {
    HWY_ALIGN float lanes[hn::MaxLanes(DF())];
    hn::Store(v, d, lanes);
    for (size_t i = 0; i < hn::Lanes(d); ++i) p[i] = float_to_half(lanes[i]);
  }
#endif
};

// ---- vector sincos in double, accurate for |x| <= kSinCosLimit ----
// Cody-Waite reduction by pi/2 split in three parts (the first two with 30 significant bits, so
// k * part is exact for |k| < 2^23), then Taylor polynomials on [-pi/4, pi/4] (error < 1e-11,
// far below fp32 rounding). Lanes beyond the limit take the scalar library path.
constexpr double kSinCosLimit = 1.0e7;
constexpr double kTwoOverPi = 0x1.45f306dc9c883p-1;
constexpr double kPio2Hi = 0x1.921fb54800000p+0;
constexpr double kPio2Mid = -0x1.de973dc800000p-31;
constexpr double kPio2Lo = -0x1.9d9cceba3f91fp-62;

HWY_INLINE void SinCosReduced(DD d, VD x, VD& sin_out, VD& cos_out) {
  const VD k = hn::Round(hn::Mul(x, hn::Set(d, kTwoOverPi)));
  VD r = hn::NegMulAdd(k, hn::Set(d, kPio2Hi), x);
  r = hn::NegMulAdd(k, hn::Set(d, kPio2Mid), r);
  r = hn::NegMulAdd(k, hn::Set(d, kPio2Lo), r);
  const VD r2 = hn::Mul(r, r);
  // sin r = r (1 - r^2/3! + r^4/5! - ... - r^10/11!)
  VD ps = hn::Set(d, -1.0 / 39916800.0);
  ps = hn::MulAdd(ps, r2, hn::Set(d, 1.0 / 362880.0));
  ps = hn::MulAdd(ps, r2, hn::Set(d, -1.0 / 5040.0));
  ps = hn::MulAdd(ps, r2, hn::Set(d, 1.0 / 120.0));
  ps = hn::MulAdd(ps, r2, hn::Set(d, -1.0 / 6.0));
  const VD sin_r = hn::MulAdd(hn::Mul(ps, r2), r, r);
  // cos r = 1 - r^2/2! + r^4/4! - ... + r^12/12!
  VD pc = hn::Set(d, 1.0 / 479001600.0);
  pc = hn::MulAdd(pc, r2, hn::Set(d, -1.0 / 3628800.0));
  pc = hn::MulAdd(pc, r2, hn::Set(d, 1.0 / 40320.0));
  pc = hn::MulAdd(pc, r2, hn::Set(d, -1.0 / 720.0));
  pc = hn::MulAdd(pc, r2, hn::Set(d, 1.0 / 24.0));
  pc = hn::MulAdd(pc, r2, hn::Set(d, -0.5));
  const VD cos_r = hn::MulAdd(pc, r2, hn::Set(d, 1.0));
  // Quadrant q = k mod 4 (k is an exact integer): 1 -> (cos, -sin), 2 -> (-sin, -cos), 3 -> (-cos, sin).
  const VD q = hn::Sub(k, hn::Mul(hn::Set(d, 4.0), hn::Floor(hn::Mul(k, hn::Set(d, 0.25)))));
  const auto odd = hn::Or(hn::Eq(q, hn::Set(d, 1.0)), hn::Eq(q, hn::Set(d, 3.0)));
  const auto sin_negative = hn::Ge(q, hn::Set(d, 2.0));
  const auto cos_negative = hn::Or(hn::Eq(q, hn::Set(d, 1.0)), hn::Eq(q, hn::Set(d, 2.0)));
  const VD s = hn::IfThenElse(odd, cos_r, sin_r);
  const VD c = hn::IfThenElse(odd, sin_r, cos_r);
  sin_out = hn::IfThenElse(sin_negative, hn::Neg(s), s);
  cos_out = hn::IfThenElse(cos_negative, hn::Neg(c), c);
}

// cos(x) * scale and sin(x) * scale rounded once to float, for Lanes(DD) angles.
HWY_INLINE void SinCosStore(DD d, VD x, double scale, float* cos_out, float* sin_out) {
  const hn::Rebind<float, DD> dfh;
  VD s, c;
  if (HWY_LIKELY(hn::AllTrue(d, hn::Le(hn::Abs(x), hn::Set(d, kSinCosLimit))))) {
    SinCosReduced(d, x, s, c);
  } else {
    HWY_ALIGN double angle[hn::MaxLanes(DD())];
    HWY_ALIGN double sv[hn::MaxLanes(DD())];
    HWY_ALIGN double cv[hn::MaxLanes(DD())];
    hn::Store(x, d, angle);
    for (size_t i = 0; i < hn::Lanes(d); ++i) {
      sv[i] = std::sin(angle[i]);
      cv[i] = std::cos(angle[i]);
    }
    s = hn::Load(d, sv);
    c = hn::Load(d, cv);
  }
  const VD vscale = hn::Set(d, scale);
  hn::StoreU(hn::DemoteTo(dfh, hn::Mul(c, vscale)), dfh, cos_out);
  hn::StoreU(hn::DemoteTo(dfh, hn::Mul(s, vscale)), dfh, sin_out);
}

void SinCosArray(const double* angles, int64_t n, double scale, float* cos_out, float* sin_out) {
  const DD d;
  const auto step = static_cast<int64_t>(hn::Lanes(d));
  int64_t i = 0;
  for (; i + step <= n; i += step) SinCosStore(d, hn::LoadU(d, angles + i), scale, cos_out + i, sin_out + i);
  if (i < n) {
    HWY_ALIGN double a[hn::MaxLanes(DD())] = {};
    HWY_ALIGN float c[hn::MaxLanes(DD())];
    HWY_ALIGN float s[hn::MaxLanes(DD())];
    std::copy(angles + i, angles + n, a);
    SinCosStore(d, hn::Load(d, a), scale, c, s);
    std::copy(c, c + (n - i), cos_out + i);
    std::copy(s, s + (n - i), sin_out + i);
  }
}

// ---- per-token coefficients ----
// Per-thread scratch, padded: cos/sin row (computed), c/s per pair, and in ce/se either the
// interleaved style's per-lane expansion (c0 c0 c1 c1 ..., -s0 s0 -s1 s1 ...) or, for bf16 in the
// half style, c and s split by pair parity (even pairs first, odd pairs from padded_pairs on).
// xPos scales per pair: x_up = zeta^((p - center) / scale_base) (sign +1), x_down = 1 / x_up.
// Several position axes: cos/sin computed for each of a token's (up to 3) axes (cos, sin: 3 rows of
// padded_pairs), then mixed, pair i from its axis.
struct Scratch {
  std::vector<float> cos, sin, mixed_cos, mixed_sin, c, s, ce, se, x_up, x_down;
  void size_for(int64_t padded_pairs) {
    const auto n = static_cast<size_t>(padded_pairs);
    for (auto* v : {&mixed_cos, &mixed_sin, &c, &s, &x_up, &x_down}) v->resize(n);
    for (auto* v : {&ce, &se}) v->resize(2 * n);
    for (auto* v : {&cos, &sin}) v->resize(3 * n);
  }
};

// cos/sin of one position: its table row, or computed here (past the rows) into row `slot` of
// w.cos / w.sin.
void CosSinRow(const SimdPlan& plan, int64_t position, Scratch& w, const float*& cos_row, const float*& sin_row,
               int slot = 0) {
  const RopeParams& p = *plan.p;
  if (position < p.rows_count) {
    cos_row = p.rows + position * 2 * p.pairs;
    sin_row = cos_row + p.pairs;
    return;
  }
  const DD d;
  const hn::Rebind<float, DD> dfh;
  const auto step = static_cast<int64_t>(hn::Lanes(d));
  const bool exact = p.exact;
  const VD pos_d = hn::Set(d, static_cast<double>(position));
  const auto pos_f = hn::Set(dfh, static_cast<float>(position));
  for (int64_t i = 0; i < p.pairs; i += step) {  // tables are padded: whole vectors only
    const VD angle = exact ? hn::Mul(pos_d, hn::LoadU(d, plan.inv_freq + i))
                           : hn::PromoteTo(d, hn::Mul(pos_f, hn::LoadU(dfh, plan.inv_freq_f32 + i)));
    SinCosStore(d, angle, p.attention_factor, w.cos.data() + slot * plan.padded_pairs + i,
                w.sin.data() + slot * plan.padded_pairs + i);
  }
  cos_row = w.cos.data() + slot * plan.padded_pairs;
  sin_row = w.sin.data() + slot * plan.padded_pairs;
}

// cos/sin of token (b, s) at `position` (its axis 0). Several axes (M-RoPE, axial), unequal: pair
// i from the row of axis pair_axes.of(i), one select per vector.
void TokenCosSin(const SimdPlan& plan, const TokenPositions& pos, int64_t b, int64_t s, int64_t position, Scratch& w,
                 const float*& cos_row, const float*& sin_row) {
  CosSinRow(plan, position, w, cos_row, sin_row);
  if (pos.axes == 1) return;
  int64_t at[3];
  pos.axis_positions(b, s, position, at);
  if (at[1] == at[0] && at[2] == at[0]) return;
  const float* c[3] = {cos_row, nullptr, nullptr};
  const float* sn[3] = {sin_row, nullptr, nullptr};
  for (int axis = 1; axis < 3; ++axis) {  // an axis at an earlier axis's position reuses its row
    const int same = at[axis] == at[0] ? 0 : axis == 2 && at[2] == at[1] ? 1 : axis;
    if (same != axis) c[axis] = c[same], sn[axis] = sn[same];
    else CosSinRow(plan, at[axis], w, c[axis], sn[axis], axis);
  }
  const DF df;
  const auto step = static_cast<int64_t>(hn::Lanes(df));
  const int64_t n = plan.p->pairs;
  const VF one = hn::Set(df, 1.0f);
  const VF two = hn::Set(df, 2.0f);
  int64_t i = 0;
  for (; i + step <= n; i += step) {  // table rows end at n: whole vectors here, the rest below
    const VF axis = hn::LoadU(df, plan.pair_axis + i);
    const auto mix = [&](const float* const(&rows)[3]) {
      return hn::IfThenElse(hn::Eq(axis, one), hn::LoadU(df, rows[1] + i),
                            hn::IfThenElse(hn::Eq(axis, two), hn::LoadU(df, rows[2] + i), hn::LoadU(df, rows[0] + i)));
    };
    hn::StoreU(mix(c), df, w.mixed_cos.data() + i);
    hn::StoreU(mix(sn), df, w.mixed_sin.data() + i);
  }
  for (; i < n; ++i) {
    const auto axis = static_cast<int>(plan.pair_axis[i]);
    w.mixed_cos[static_cast<size_t>(i)] = c[axis][i];
    w.mixed_sin[static_cast<size_t>(i)] = sn[axis][i];
  }
  cos_row = w.mixed_cos.data();
  sin_row = w.mixed_sin.data();
}

// xPos scales of one position, both signs from one exp: x = exp(sign (p - center) ln(zeta) /
// scale_base) in double as the scalar loop (x_down = 1 / x_up differs from exp(-a) only in double
// rounding, far below the float it is stored in).
void XposScales(const SimdPlan& plan, int64_t position, Scratch& w) {
  const DD dd;
  const hn::Rebind<float, DD> dfh;
  const auto half_step = static_cast<int64_t>(hn::Lanes(dd));
  const VD distance = hn::Set(dd, static_cast<double>(position) - plan.p->xpos_center);
  const VD one = hn::Set(dd, 1.0);
  for (int64_t i = 0; i < plan.p->pairs; i += half_step) {
    const VD arg = hn::Min(hn::Mul(distance, hn::LoadU(dd, plan.log_zeta + i)), hn::Set(dd, 700.0));
    const VD up = hn::Exp(dd, arg);
    hn::StoreU(hn::DemoteTo(dfh, up), dfh, w.x_up.data() + i);
    hn::StoreU(hn::DemoteTo(dfh, hn::Div(one, up)), dfh, w.x_down.data() + i);
  }
}

// c, s for one token, one xPos sign and the operand's query scale (1: none), then the interleaved
// expansion.
void TokenCoefficients(const SimdPlan& plan, float sign, float query_scale, const float* cos_row, const float* sin_row,
                       Scratch& w) {
  const RopeParams& p = *plan.p;
  const DF df;
  const auto step = static_cast<int64_t>(hn::Lanes(df));
  const float* xscale = sign > 0 ? w.x_up.data() : w.x_down.data();
  const VF inv_att_sq = hn::Set(df, plan.inv_attention_sq);
  for (int64_t i = 0; i < p.pairs; i += step) {
    // cos_row / sin_row may be a table row: read only the valid lanes of the last vector.
    HWY_ALIGN float cbuf[hn::MaxLanes(DF())];
    HWY_ALIGN float sbuf[hn::MaxLanes(DF())];
    VF ca, sa;
    if (i + step <= p.pairs) {
      ca = hn::LoadU(df, cos_row + i);
      sa = hn::LoadU(df, sin_row + i);
    } else {
      std::fill(cbuf, cbuf + step, 0.0f);
      std::fill(sbuf, sbuf + step, 0.0f);
      std::copy(cos_row + i, cos_row + p.pairs, cbuf);
      std::copy(sin_row + i, sin_row + p.pairs, sbuf);
      ca = hn::Load(df, cbuf);
      sa = hn::Load(df, sbuf);
    }
    const VF x = p.has_xpos ? hn::Mul(hn::LoadU(df, xscale + i), hn::Set(df, query_scale)) : hn::Set(df, query_scale);
    VF c, s;
    pair_coefficients<VF, VecArith>(ca, sa, x, p.direction, inv_att_sq, c, s);
    hn::StoreU(c, df, w.c.data() + i);
    hn::StoreU(s, df, w.s.data() + i);
  }
#ifdef ROPEKIT_BF16_CONVERT
  const bool convert = plan.bf16_convert;  // the float layouts: c, s as they are, or expanded
#else
  const bool convert = false;
#endif
#ifdef ROPEKIT_BF16_PAIR_LANES
  if (p.dtype == DType::bf16 && !convert) {
    if (p.style == Style::half) {
      for (int64_t i = 0; i < p.pairs; ++i) {
        const int64_t at = (i % 2) * plan.padded_pairs + i / 2;
        w.ce[at] = w.c[i];
        w.se[at] = w.s[i];
      }
    }
    return;  // the interleaved bf16 path reads c and s as they are
  }
#endif
  (void)convert;
  if (p.style == Style::interleaved) {
    for (int64_t i = 0; i < p.pairs; ++i) {
      w.ce[2 * i] = w.ce[2 * i + 1] = w.c[i];
      w.se[2 * i] = -w.s[i];
      w.se[2 * i + 1] = w.s[i];
    }
  }
}

// ---- rotation of head rows, a block of whole vectors at a time ----
// A block type names the vectors of coefficients one block of pairs needs (Coef), how to load them
// for the block at pair i (Load) and the rotation of one block (Rotate). A token's coefficients are
// loaded once and held in registers for all of its heads when its rows are a few whole blocks
// (RotateHeadsHeld), else reloaded per row (RotateRowBlocks); rows' tails go through zero-padded
// buffers so every lane op is a whole vector.

HWY_INLINE void RotatePair(VF a, VF b, VF c, VF s, VF& ya, VF& yb) { rotate_pair<VF, VecArith>(a, b, c, s, ya, yb); }

// Half style: pairs [i, i + lanes), a from the first half of the row, b from the second.
template <class T>
struct HalfBlock {
  using S = typename T::Storage;
  static constexpr bool kHalf = true;
  struct Coef {
    VF c, s;
  };
  static int64_t Pairs() { return static_cast<int64_t>(hn::Lanes(DF())); }
  static Coef Load(const SimdPlan&, const Scratch& w, int64_t i) {
    const DF d;
    return {hn::LoadU(d, w.c.data() + i), hn::LoadU(d, w.s.data() + i)};
  }
  static void Rotate(const Coef& k, const S* a_in, const S* b_in, S* a_out, S* b_out) {
    const DF d;
    VF ya, yb;
    RotatePair(T::load(d, a_in), T::load(d, b_in), k.c, k.s, ya, yb);
    T::store(d, ya, a_out);
    T::store(d, yb, b_out);
  }
};

// Interleaved: lanes / 2 pairs, y = x (c0 c0 ..) + swap_pairs(x) (-s0 s0 ..).
template <class T>
struct InterleavedBlock {
  using S = typename T::Storage;
  static constexpr bool kHalf = false;
  struct Coef {
    VF ce, se;
  };
  static int64_t Pairs() { return static_cast<int64_t>(hn::Lanes(DF())) / 2; }
  static Coef Load(const SimdPlan&, const Scratch& w, int64_t i) {
    const DF d;
    return {hn::LoadU(d, w.ce.data() + 2 * i), hn::LoadU(d, w.se.data() + 2 * i)};
  }
  static void Rotate(const Coef& k, const S* in, S* out) {
    const DF d;
    const VF x = T::load(d, in);
    T::store(d, rotated<VF, VecArith>(x, hn::Reverse2(d, x), k.ce, k.se), out);
  }
};

#ifdef ROPEKIT_BF16_PAIR_LANES
// bf16 interleaved: a 32-bit lane holds one whole pair (x[2i] in its low half, x[2i+1] in its high
// half), so both widen with a shift or a mask and narrow back into the same lane: no pair swap, no
// widening loads and no narrowing pack, which made this the slowest CPU case.
// The two bf16 values of each 32-bit lane as floats, and back (rounded once).
HWY_INLINE void UnpackBf16Pairs(hn::Vec<DU> x, VF& low, VF& high) {
  const DF d;
  low = hn::BitCast(d, hn::ShiftLeft<16>(x));
  high = hn::BitCast(d, hn::And(x, hn::Set(DU(), 0xffff0000u)));
}

HWY_INLINE hn::Vec<DU> PackBf16Pairs(VF low, VF high) {
  return hn::Or(hn::And(Bf16InHighHalf(high), hn::Set(DU(), 0xffff0000u)), hn::ShiftRight<16>(Bf16InHighHalf(low)));
}

struct InterleavedBf16Block {
  using S = uint16_t;
  static constexpr bool kHalf = false;
  using Coef = HalfBlock<BF16>::Coef;
  static int64_t Pairs() { return static_cast<int64_t>(hn::Lanes(DF())); }
  static Coef Load(const SimdPlan& plan, const Scratch& w, int64_t i) { return HalfBlock<BF16>::Load(plan, w, i); }
  static void Rotate(const Coef& k, const uint16_t* in, uint16_t* out) {
    VF a, b, ya, yb;
    UnpackBf16Pairs(hn::LoadU(DU(), reinterpret_cast<const uint32_t*>(in)), a, b);
    RotatePair(a, b, k.c, k.s, ya, yb);
    hn::StoreU(PackBf16Pairs(ya, yb), DU(), reinterpret_cast<uint32_t*>(out));
  }
};

// bf16 half style: lane l of a 32-bit load holds x[2l] and x[2l+1], of the first half (a) and of
// the second half (b) alike, so even and odd pairs rotate side by side with c, s split by parity
// (TokenCoefficients). Pairs [i, i + 2 lanes).
struct HalfBf16Block {
  using S = uint16_t;
  static constexpr bool kHalf = true;
  struct Coef {
    VF c_even, s_even, c_odd, s_odd;
  };
  static int64_t Pairs() { return 2 * static_cast<int64_t>(hn::Lanes(DF())); }
  static Coef Load(const SimdPlan& plan, const Scratch& w, int64_t i) {
    const DF d;
    const float* odd_c = w.ce.data() + plan.padded_pairs;
    const float* odd_s = w.se.data() + plan.padded_pairs;
    return {hn::LoadU(d, w.ce.data() + i / 2), hn::LoadU(d, w.se.data() + i / 2), hn::LoadU(d, odd_c + i / 2),
            hn::LoadU(d, odd_s + i / 2)};
  }
  static void Rotate(const Coef& k, const uint16_t* a_in, const uint16_t* b_in, uint16_t* a_out, uint16_t* b_out) {
    const DU du;
    VF a_even, a_odd, b_even, b_odd, ya_even, yb_even, ya_odd, yb_odd;
    UnpackBf16Pairs(hn::LoadU(du, reinterpret_cast<const uint32_t*>(a_in)), a_even, a_odd);
    UnpackBf16Pairs(hn::LoadU(du, reinterpret_cast<const uint32_t*>(b_in)), b_even, b_odd);
    RotatePair(a_even, b_even, k.c_even, k.s_even, ya_even, yb_even);
    RotatePair(a_odd, b_odd, k.c_odd, k.s_odd, ya_odd, yb_odd);
    hn::StoreU(PackBf16Pairs(ya_even, ya_odd), du, reinterpret_cast<uint32_t*>(a_out));
    hn::StoreU(PackBf16Pairs(yb_even, yb_odd), du, reinterpret_cast<uint32_t*>(b_out));
  }
};
#endif

// The block at pair i of one row (whole, inside the row).
template <class B>
HWY_INLINE void RotateBlockAt(const SimdPlan& plan, const typename B::Coef& k, const typename B::S* in,
                              typename B::S* out, int64_t i) {
  if constexpr (B::kHalf) {
    const int64_t n = plan.p->pairs;
    B::Rotate(k, in + i, in + n + i, out + i, out + n + i);
  } else {
    B::Rotate(k, in + 2 * i, out + 2 * i);
  }
}

// The rotary part of one row, any number of pairs.
template <class B>
void RotateRowBlocks(const SimdPlan& plan, const typename B::S* in, typename B::S* out, const Scratch& w) {
  using S = typename B::S;
  const int64_t n = plan.p->pairs;
  const int64_t step = B::Pairs();
  int64_t i = 0;
  for (; i + step <= n; i += step) RotateBlockAt<B>(plan, B::Load(plan, w, i), in, out, i);
  if (i == n) return;
  // The coefficients past the last pair are zeros (Scratch is padded), so are the padded lanes.
  const auto k = B::Load(plan, w, i);
  if constexpr (B::kHalf) {
    HWY_ALIGN S a_buf[2 * hn::MaxLanes(DF())] = {};
    HWY_ALIGN S b_buf[2 * hn::MaxLanes(DF())] = {};
    std::copy(in + i, in + n, a_buf);
    std::copy(in + n + i, in + 2 * n, b_buf);
    B::Rotate(k, a_buf, b_buf, a_buf, b_buf);
    std::copy(a_buf, a_buf + (n - i), out + i);
    std::copy(b_buf, b_buf + (n - i), out + n + i);
  } else {
    HWY_ALIGN S buf[2 * hn::MaxLanes(DF())] = {};
    std::copy(in + 2 * i, in + 2 * n, buf);
    B::Rotate(k, buf, buf);
    std::copy(buf, buf + 2 * (n - i), out + 2 * i);
  }
}

// Rows of kBlocks whole blocks: each block's coefficients loaded once for all the heads.
template <class B, int kBlocks>
void RotateHeadsHeld(const SimdPlan& plan, const typename B::S* in, typename B::S* out, int64_t in_step,
                     int64_t out_step, int64_t heads, const Scratch& w) {
  typename B::Coef k[kBlocks];
  for (int j = 0; j < kBlocks; ++j) k[j] = B::Load(plan, w, j * B::Pairs());
  for (int64_t h = 0; h < heads; ++h) {
    for (int j = 0; j < kBlocks; ++j) RotateBlockAt<B>(plan, k[j], in + h * in_step, out + h * out_step, j * B::Pairs());
  }
}

template <class B>
void RotateHeadsWith(const SimdPlan& plan, const typename B::S* in, typename B::S* out, int64_t in_step,
                     int64_t out_step, int64_t heads, const Scratch& w) {
  const int64_t n = plan.p->pairs;
  const int64_t step = B::Pairs();
  // Held when they fit in 16 vector registers.
  constexpr int kVectorsPerBlock = static_cast<int>(sizeof(typename B::Coef) / sizeof(VF));
  switch (n % step == 0 ? n / step : 0) {
    case 1: return RotateHeadsHeld<B, 1>(plan, in, out, in_step, out_step, heads, w);
    case 2: return RotateHeadsHeld<B, 2>(plan, in, out, in_step, out_step, heads, w);
    case 4: return RotateHeadsHeld<B, 4>(plan, in, out, in_step, out_step, heads, w);
    case 8:
      if constexpr (kVectorsPerBlock <= 2) return RotateHeadsHeld<B, 8>(plan, in, out, in_step, out_step, heads, w);
      break;
    default: break;
  }
  for (int64_t h = 0; h < heads; ++h) RotateRowBlocks<B>(plan, in + h * in_step, out + h * out_step, w);
}

// The rotary parts of `heads` rows, `in_step` / `out_step` elements apart.
template <class T>
void RotateRotaryParts(const SimdPlan& plan, const typename T::Storage* in, typename T::Storage* out,
                       int64_t in_step, int64_t out_step, int64_t heads, const Scratch& w) {
  if (plan.p->style == Style::half) return RotateHeadsWith<HalfBlock<T>>(plan, in, out, in_step, out_step, heads, w);
#if HWY_TARGET == HWY_SCALAR  // one lane: no neighbour to swap with, rotate pair by pair
  const DF d;
  for (int64_t h = 0; h < heads; ++h) {
    const auto* row_in = in + h * in_step;
    auto* row_out = out + h * out_step;
    for (int64_t i = 0; i < plan.p->pairs; ++i) {
      VF ya, yb;
      RotatePair(T::load(d, row_in + 2 * i), T::load(d, row_in + 2 * i + 1), hn::Set(d, w.c[i]), hn::Set(d, w.s[i]),
                 ya, yb);
      T::store(d, ya, row_out + 2 * i);
      T::store(d, yb, row_out + 2 * i + 1);
    }
  }
#else
  RotateHeadsWith<InterleavedBlock<T>>(plan, in, out, in_step, out_step, heads, w);
#endif
}

#ifdef ROPEKIT_BF16_CONVERT
// With AVX512-BF16 (Cooper Lake, Sapphire Rapids, Zen 4), one instruction rounds two float vectors
// to bf16 (nearest even; a NaN becomes the same quiet NaN as in the other paths), in place of the
// integer rounding sequence that made bf16 the slowest dtype. Unlike the other paths, a result
// below bf16's normal range becomes a signed zero (the instruction flushes; |error| < 1.2e-38).
// Rows of whole 32-element blocks.
#define ROPEKIT_BF16_CONVERT_TARGET __attribute__((target(HWY_TARGET_STR ",avx512bf16")))

ROPEKIT_BF16_CONVERT_TARGET HWY_INLINE void StoreBf16(VF low, VF high, uint16_t* p) {
  _mm512_storeu_si512(p, reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(high.raw, low.raw)));
}

// Pairs [i, i + 32) of one row: a = x[i..], b = x[n + i..], coefficients c[i..], s[i..].
ROPEKIT_BF16_CONVERT_TARGET HWY_INLINE void RotateHalfBf16Block32(const uint16_t* in, uint16_t* out, int64_t n,
                                                                  int64_t i, VF c0, VF c1, VF s0, VF s1) {
  const DF d;
  VF ya0, yb0, ya1, yb1;
  RotatePair(BF16::load(d, in + i), BF16::load(d, in + n + i), c0, s0, ya0, yb0);
  RotatePair(BF16::load(d, in + i + 16), BF16::load(d, in + n + i + 16), c1, s1, ya1, yb1);
  StoreBf16(ya0, ya1, out + i);
  StoreBf16(yb0, yb1, out + n + i);
}

ROPEKIT_BF16_CONVERT_TARGET void RotateHalfBf16Convert(const SimdPlan& plan, const uint16_t* in, uint16_t* out,
                                                       int64_t in_step, int64_t out_step, int64_t heads,
                                                       const Scratch& w) {
  const DF d;
  const int64_t n = plan.p->pairs;
  const float* c = w.c.data();
  const float* s = w.s.data();
  if (n == 64) {  // head_dim 128: the token's coefficients stay in registers for all its heads
    const VF c0 = hn::LoadU(d, c), c1 = hn::LoadU(d, c + 16), c2 = hn::LoadU(d, c + 32), c3 = hn::LoadU(d, c + 48);
    const VF s0 = hn::LoadU(d, s), s1 = hn::LoadU(d, s + 16), s2 = hn::LoadU(d, s + 32), s3 = hn::LoadU(d, s + 48);
    for (int64_t h = 0; h < heads; ++h) {
      RotateHalfBf16Block32(in + h * in_step, out + h * out_step, n, 0, c0, c1, s0, s1);
      RotateHalfBf16Block32(in + h * in_step, out + h * out_step, n, 32, c2, c3, s2, s3);
    }
    return;
  }
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t i = 0; i < n; i += 32) {
      RotateHalfBf16Block32(in + h * in_step, out + h * out_step, n, i, hn::LoadU(d, c + i),
                            hn::LoadU(d, c + i + 16), hn::LoadU(d, s + i), hn::LoadU(d, s + i + 16));
    }
  }
}

// Elements [j, j + 32) of one interleaved row, with the expanded coefficients (TokenCoefficients).
ROPEKIT_BF16_CONVERT_TARGET HWY_INLINE void RotateInterleavedBf16Block32(const uint16_t* in, uint16_t* out, int64_t j,
                                                                         VF ce0, VF ce1, VF se0, VF se1) {
  const DF d;
  const VF x0 = BF16::load(d, in + j);
  const VF x1 = BF16::load(d, in + j + 16);
  StoreBf16(rotated<VF, VecArith>(x0, hn::Reverse2(d, x0), ce0, se0),
            rotated<VF, VecArith>(x1, hn::Reverse2(d, x1), ce1, se1), out + j);
}

ROPEKIT_BF16_CONVERT_TARGET void RotateInterleavedBf16Convert(const SimdPlan& plan, const uint16_t* in,
                                                              uint16_t* out, int64_t in_step, int64_t out_step,
                                                              int64_t heads, const Scratch& w) {
  const DF d;
  const int64_t n = plan.p->rotary_dim;
  const float* ce = w.ce.data();
  const float* se = w.se.data();
  if (n == 128) {  // the token's 16 coefficient vectors stay in registers for all its heads
    VF c[8], s[8];
    for (int v = 0; v < 8; ++v) {
      c[v] = hn::LoadU(d, ce + 16 * v);
      s[v] = hn::LoadU(d, se + 16 * v);
    }
    for (int64_t h = 0; h < heads; ++h) {
      for (int v = 0; v < 8; v += 2) {
        RotateInterleavedBf16Block32(in + h * in_step, out + h * out_step, 16 * v, c[v], c[v + 1], s[v], s[v + 1]);
      }
    }
    return;
  }
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t j = 0; j < n; j += 32) {
      RotateInterleavedBf16Block32(in + h * in_step, out + h * out_step, j, hn::LoadU(d, ce + j),
                                   hn::LoadU(d, ce + j + 16), hn::LoadU(d, se + j), hn::LoadU(d, se + j + 16));
    }
  }
}
#endif

#ifdef ROPEKIT_BF16_PAIR_LANES
template <>
void RotateRotaryParts<BF16>(const SimdPlan& plan, const uint16_t* in, uint16_t* out, int64_t in_step,
                             int64_t out_step, int64_t heads, const Scratch& w) {
#ifdef ROPEKIT_BF16_CONVERT
  if (plan.bf16_convert) {
    if (plan.p->style == Style::half) return RotateHalfBf16Convert(plan, in, out, in_step, out_step, heads, w);
    return RotateInterleavedBf16Convert(plan, in, out, in_step, out_step, heads, w);
  }
#endif
  if (plan.p->style == Style::half) return RotateHeadsWith<HalfBf16Block>(plan, in, out, in_step, out_step, heads, w);
  RotateHeadsWith<InterleavedBf16Block>(plan, in, out, in_step, out_step, heads, w);
}
#endif

// n channels times `scale`, rounded once into the storage type (in == out allowed).
template <class T>
void ScaleChannels(const typename T::Storage* in, typename T::Storage* out, int64_t n, float scale) {
  using S = typename T::Storage;
  const DF d;
  const auto step = static_cast<int64_t>(hn::Lanes(d));
  const VF k = hn::Set(d, scale);
  int64_t j = 0;
  for (; j + step <= n; j += step) T::store(d, hn::Mul(T::load(d, in + j), k), out + j);
  if (j == n) return;
  HWY_ALIGN S buf[hn::MaxLanes(DF())] = {};
  std::copy(in + j, in + n, buf);
  T::store(d, hn::Mul(T::load(d, buf), k), buf);
  std::copy(buf, buf + (n - j), out + j);
}

// Heads [h0, h1) of one operand at token (b, s); the pass-through channels are scaled by
// pass_scale, or with 1 copied out of place (left alone in place).
template <class T>
void RotateHeads(const SimdPlan& plan, const Operand& op, int64_t b, int64_t s, int64_t h0, int64_t h1,
                 const Scratch& w, float pass_scale = 1.0f) {
  using S = typename T::Storage;
  const RopeParams& p = *plan.p;
  const auto* in = static_cast<const S*>(op.in) + b * op.in_stride[0] + s * op.in_stride[1] + h0 * op.in_stride[2];
  auto* out = static_cast<S*>(op.out) + b * op.out_stride[0] + s * op.out_stride[1] + h0 * op.out_stride[2];
  RotateRotaryParts<T>(plan, in, out, op.in_stride[2], op.out_stride[2], h1 - h0, w);
  if (pass_scale != 1.0f) {
    for (int64_t h = 0; h < h1 - h0; ++h) {
      ScaleChannels<T>(in + h * op.in_stride[2] + p.rotary_dim, out + h * op.out_stride[2] + p.rotary_dim,
                       p.head_dim - p.rotary_dim, pass_scale);
    }
  } else if (!op.in_place && p.rotary_dim < p.head_dim) {
    for (int64_t h = 0; h < h1 - h0; ++h) {
      std::memcpy(out + h * op.out_stride[2] + p.rotary_dim, in + h * op.in_stride[2] + p.rotary_dim,
                  static_cast<size_t>(p.head_dim - p.rotary_dim) * sizeof(S));
    }
  }
}

// One token's head group [g0, g1) over q heads then k heads.
template <class T>
void RunToken(const SimdPlan& plan, const TokenPositions& pos, int64_t b, int64_t s, int64_t position, int64_t g0,
              int64_t g1, Scratch& w) {
  const RopeParams& p = *plan.p;
  const float* cos_row = nullptr;
  const float* sin_row = nullptr;
  TokenCosSin(plan, pos, b, s, position, w, cos_row, sin_row);
  if (p.has_xpos) XposScales(plan, position, w);
  const int64_t qh = p.q.heads;
  if (g0 < qh) {
    const double t = p.has_query_scale ? query_scale_at(p.query_scale, position) : 1.0;
    TokenCoefficients(plan, p.q.xpos_sign, static_cast<float>(t), cos_row, sin_row, w);
    RotateHeads<T>(plan, p.q, b, s, g0, std::min(g1, qh), w, p.has_query_scale ? static_cast<float>(query_pass_scale(t, p.direction)) : 1.0f);
  }
  if (p.has_k && g1 > qh) {
    if (p.has_xpos || p.has_query_scale || g0 >= qh) TokenCoefficients(plan, p.k.xpos_sign, 1.0f, cos_row, sin_row, w);
    RotateHeads<T>(plan, p.k, b, s, std::max(g0, qh) - qh, g1 - qh, w);
  }
}

// Work units [u0, u1): unit u is token u / groups, head group u % groups; the units of one token
// in the range run as one group of heads.
template <class T>
void RunUnitsT(const SimdPlan& plan, int64_t u0, int64_t u1) {
  thread_local Scratch w;
  w.size_for(plan.padded_pairs);
  const int64_t groups = plan.groups;
  const int64_t t0 = u0 / groups;
  const int64_t t1 = (u1 + groups - 1) / groups;
  int64_t t = t0;  // the token for_each_token is at
  const TokenPositions pos = token_positions(*plan.p);
  for_each_token(pos, t0, t1, [&](int64_t b, int64_t s, int64_t position) {
    const int64_t g0 = std::max(u0 - t * groups, int64_t{0});
    const int64_t g1 = std::min(u1 - t * groups, groups);
    ++t;
    RunToken<T>(plan, pos, b, s, position, g0 * plan.heads / groups, g1 * plan.heads / groups, w);
  });
}

void RunUnits(const SimdPlan& plan, int64_t u0, int64_t u1) {
  switch (plan.p->dtype) {
    case DType::f32: return RunUnitsT<F32>(plan, u0, u1);
    case DType::f16: return RunUnitsT<F16>(plan, u0, u1);
    case DType::bf16: return RunUnitsT<BF16>(plan, u0, u1);
    case DType::f64: break;  // apply_cpu sends f64 to the plain loop
    case DType::f8_e4m3:
    case DType::f8_e5m2: break;  // refused by apply()
  }
}

}  // namespace ropekit::detail::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();
#undef ROPEKIT_BF16_PAIR_LANES
#undef ROPEKIT_BF16_CONVERT
#undef ROPEKIT_BF16_CONVERT_TARGET

#if HWY_ONCE
namespace ropekit::detail {

HWY_EXPORT(RunUnits);
HWY_EXPORT(SinCosArray);

namespace {
CpuKernel kernel_from_environment() {
  const char* v = std::getenv("ROPEKIT_CPU");
  return v != nullptr && std::strcmp(v, "scalar") == 0 ? CpuKernel::scalar : CpuKernel::simd;
}
std::atomic<CpuKernel>& kernel_choice() {
  static std::atomic<CpuKernel> choice{kernel_from_environment()};
  return choice;
}

// The first n values of v, padded with zeros to `padded` entries, in `out`: the calling thread's
// buffer, whose capacity outlives the call, so that decode steps allocate nothing.
template <typename T>
const T* padded(const T* v, int64_t n, int64_t padded, std::vector<T>& out) {
  out.assign(static_cast<size_t>(padded), T{0});
  std::copy(v, v + n, out.begin());
  return out.data();
}
}  // namespace

// AVX512-BF16, used by the AVX3 target for bf16 rows (RotateHalfBf16Convert, RotateInterleavedBf16Convert).
bool cpu_has_bf16_convert() {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  static const bool has = __builtin_cpu_supports("avx512bf16");
  return has;
#else
  return false;
#endif
}

CpuKernel cpu_kernel() { return kernel_choice().load(std::memory_order_relaxed); }
void set_cpu_kernel(CpuKernel kernel) { kernel_choice().store(kernel, std::memory_order_relaxed); }

void apply_cpu(const RopeParams& params) {
  // f64 (gradient checks, not speed) runs the plain loop.
  if (cpu_kernel() == CpuKernel::scalar || params.dtype == DType::f64) return apply_cpu_scalar(params);
  apply_cpu_simd(params);
}

void apply_cpu_simd(const RopeParams& params) {
  const RopeParams& p = params;
  SimdPlan plan;
  plan.p = &p;
  plan.padded_pairs = (p.pairs + SimdPlan::kPad - 1) / SimdPlan::kPad * SimdPlan::kPad;
  plan.tokens = p.positions.kind == Positions::Kind::packed ? p.seq : p.batch * p.seq;
  plan.heads = p.q.heads + (p.has_k ? p.k.heads : 0);
  plan.inv_attention_sq = inverse_attention_sq(p.attention_factor);
  plan.bf16_convert = p.dtype == DType::bf16 && p.pairs % (p.style == Style::half ? 32 : 16) == 0 &&
                      cpu_has_bf16_convert();
  thread_local std::vector<double> inv_freq, log_zeta;  // read by the workers while this call waits
  thread_local std::vector<float> inv_freq_f32;
  plan.inv_freq = padded(p.inv_freq, p.pairs, plan.padded_pairs, inv_freq);
  plan.inv_freq_f32 = padded(p.inv_freq_f32, p.pairs, plan.padded_pairs, inv_freq_f32);
  if (p.has_xpos) plan.log_zeta = padded(p.xpos_log_zeta, p.pairs, plan.padded_pairs, log_zeta);
  thread_local std::vector<float> pair_axis;
  if (p.positions.kind == Positions::Kind::token_ids && p.positions.axes > 1) {
    pair_axis.assign(static_cast<size_t>(plan.padded_pairs), 0.0f);
    for (int64_t i = 0; i < p.pairs; ++i) pair_axis[static_cast<size_t>(i)] = static_cast<float>(p.pair_axes.of(i));
    plan.pair_axis = pair_axis.data();
  }
  if (plan.tokens == 0 || plan.heads == 0) return;

  const int64_t element = p.dtype == DType::f32 ? 4 : 2;
  const int64_t bytes = 2 * plan.tokens * plan.heads * p.head_dim * element;
  const int threads = cpu_threads_for(bytes, p.num_threads);
  if (threads <= 1) {
    HWY_DYNAMIC_DISPATCH(RunUnits)(plan, 0, plan.tokens);
    return;
  }
  // Few tokens (decode batches): also split each token's heads so every thread has work.
  if (plan.tokens < 4 * threads) {
    plan.groups = std::min<int64_t>(plan.heads, (4 * threads + plan.tokens - 1) / plan.tokens);
  }
  // Chunks handed out from a shared counter: a thread that gets its core late (the machine is
  // shared, or a worker wakes slowly) simply takes fewer chunks.
  const int64_t units = plan.tokens * plan.groups;
  const int64_t chunk = std::max<int64_t>(1, units / (8 * static_cast<int64_t>(threads)));
  std::atomic<int64_t> next{0};
  ThreadPool::instance().run(threads, [&](int) {
    for (;;) {
      const int64_t begin = next.fetch_add(chunk, std::memory_order_relaxed);
      if (begin >= units) break;
      HWY_DYNAMIC_DISPATCH(RunUnits)(plan, begin, std::min(units, begin + chunk));
    }
  });
}

void simd_sincos(const double* angles, int64_t n, double scale, float* cos_out, float* sin_out) {
  HWY_DYNAMIC_DISPATCH(SinCosArray)(angles, n, scale, cos_out, sin_out);
}

std::vector<int64_t> simd_targets() { return hwy::SupportedAndGeneratedTargets(); }

void simd_pin_target(int64_t target) { hwy::SetSupportedTargetsForTest(target); }

std::string simd_target_name() {
  // The target the next dispatch would pick: the best of those supported and compiled.
  const auto targets = hwy::SupportedAndGeneratedTargets();
  return targets.empty() ? "none" : hwy::TargetName(targets.front());
}

}  // namespace ropekit::detail
#endif  // HWY_ONCE
