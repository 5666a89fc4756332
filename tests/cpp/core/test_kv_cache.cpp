// rotary_embedding_with_kv_cache against its unfused parts (rotary_embedding, then each token's k
// and v written to its slot by a plain loop here, FP8 rounded by a reference written from the
// format's definition), paged_kv_slots against hand-made page tables, and the bad-input errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <optional>
#include <sstream>
#include <vector>

#include "test_support.hpp"

namespace {

using ropekit::CosSinCacheView;
using ropekit::IndexView;
using ropekit::KvLayout;
using ropekit::PagedKvCache;
using ropekit::TensorView;
using rt::Buffer;
using rt::DType;
using rt::error_of;

// ---- FP8 from the OCP definitions --------------------------------------------------------------
struct Fp8Def {
  int mantissa, bias;
  double max;
};
Fp8Def fp8_def(DType t) { return t == DType::f8_e4m3 ? Fp8Def{3, 7, 448.0} : Fp8Def{2, 15, 57344.0}; }

// The value of a code; NaN for the codes past the largest finite one (e5m2: inf and NaN).
double fp8_value(DType t, uint8_t code) {
  const Fp8Def f = fp8_def(t);
  const double sign = (code & 0x80) ? -1.0 : 1.0;
  const int e = (code & 0x7f) >> f.mantissa;
  const int m = code & ((1 << f.mantissa) - 1);
  const double v = e == 0 ? std::ldexp(m, 1 - f.bias - f.mantissa) : std::ldexp((1 << f.mantissa) + m, e - f.bias - f.mantissa);
  if (std::fabs(v) > f.max) return std::numeric_limits<double>::quiet_NaN();
  return sign * v;
}

// x rounded to nearest even, clamped to +-max, as a code (NaN: any NaN code).
uint8_t fp8_code(DType t, double x) {
  const Fp8Def f = fp8_def(t);
  if (std::isnan(x)) return t == DType::f8_e4m3 ? 0x7f : 0x7e;
  double r = std::fabs(x) >= f.max ? std::copysign(f.max, x) : rt::round_to_format(x, f.mantissa, 1 - f.bias, INFINITY);
  r = std::clamp(r, -f.max, f.max);
  for (int c = 0; c < 256; ++c) {
    const auto code = static_cast<uint8_t>(c);
    if (fp8_value(t, code) == r && std::signbit(fp8_value(t, code)) == std::signbit(r)) return code;
  }
  ADD_FAILURE() << "no FP8 code for " << r;
  return 0;
}

int64_t esize(DType d) { return ropekit::dtype_size(d); }

// One element of a source dtype (f32 / f16 / bf16) stored as `to` (divided by scale for FP8).
void store_reference(DType from, const unsigned char* src, DType to, unsigned char* dst, float scale) {
  Buffer one(from, 1);
  std::memcpy(one.data(), src, static_cast<size_t>(esize(from)));
  const double v = one.get(0);
  if (to == DType::f8_e4m3 || to == DType::f8_e5m2) {
    *dst = fp8_code(to, static_cast<float>(static_cast<float>(v) / scale));
    return;
  }
  Buffer out(to, 1);
  out.set(0, v);
  std::memcpy(dst, out.bytes().data(), static_cast<size_t>(esize(to)));
}

struct KvCase {
  DType dtype = DType::bf16;           // query, key, value
  DType cache_dtype = DType::bf16;     // both caches
  KvLayout layout = KvLayout::nhd;
  bool combined = false;               // k and v caches as the two halves of one [pages, 2, ...] buffer
  bool is_neox = true;
  int64_t tokens = 23, q_heads = 4, k_heads = 2, head_size = 32, v_head_dim = 32, rot_dim = 32, offset = 0;
  int64_t pages = 6, page_size = 16;
  bool with_value = true;
  bool per_head_scale = false;
  int num_threads = 1;
  bool mrope = false;

  std::string describe() const {
    std::ostringstream o;
    o << ropekit::to_string(dtype) << " cache=" << ropekit::to_string(cache_dtype)
      << (layout == KvLayout::nhd ? " NHD" : " HND") << (combined ? " combined" : "") << (is_neox ? " neox" : " gptj")
      << " T=" << tokens << " Hq=" << q_heads << " Hk=" << k_heads << " D=" << head_size << " Dv=" << v_head_dim
      << " rot=" << rot_dim << "@" << offset << " pages=" << pages << "x" << page_size << (with_value ? "" : " no-v")
      << (per_head_scale ? " per-head-scale" : "") << " threads=" << num_threads << (mrope ? " mrope" : "");
    return o.str();
  }
};

// A cache of `pages` x page_size slots in `layout`; combined: k and v share one [pages, 2, ...]
// allocation (the caller keeps both halves in `bytes`).
TensorView cache_view(unsigned char* base, DType t, KvLayout layout, int64_t pages, int64_t page_size, int64_t heads,
                      int64_t dim, int64_t page_stride) {
  TensorView v;
  v.data = base;
  v.dtype = t;
  v.rank = 4;
  if (layout == KvLayout::nhd) {
    v.shape = {pages, page_size, heads, dim};
    v.strides = {page_stride, heads * dim, dim, 1};
  } else {
    v.shape = {pages, heads, page_size, dim};
    v.strides = {page_stride, page_size * dim, dim, 1};
  }
  return v;
}

// Runs the case fused and unfused and compares q and every cache byte.
void check_kv_case(const KvCase& c, rt::Rng& rng) {
  SCOPED_TRACE(c.describe());
  const int64_t T = c.tokens;
  Buffer q(c.dtype, T * c.q_heads * c.head_size), k(c.dtype, T * c.k_heads * c.head_size),
      v(c.dtype, T * c.k_heads * c.v_head_dim);
  q.fill_random(rng);
  k.fill_random(rng);
  v.fill_random(rng);
  const int64_t max_pos = 96;
  std::vector<int64_t> positions(static_cast<size_t>((c.mrope ? 3 : 1) * T));
  for (auto& p : positions) p = rng.integer(0, max_pos - 1);
  // Distinct slots, some tokens skipped.
  std::vector<int64_t> all(static_cast<size_t>(c.pages * c.page_size));
  std::iota(all.begin(), all.end(), 0);
  std::shuffle(all.begin(), all.end(), rng.gen);
  std::vector<int64_t> slots(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) slots[static_cast<size_t>(t)] = rng.integer(0, 5) == 0 ? -1 : all[static_cast<size_t>(t)];
  ropekit::SpecParams sp;
  sp.head_dim = c.rot_dim;
  sp.rotary_dim = c.rot_dim;
  sp.style = c.is_neox ? ropekit::Style::half : ropekit::Style::interleaved;
  if (c.mrope) sp.mrope = ropekit::MRope{{c.rot_dim / 8, c.rot_dim / 8, c.rot_dim / 4}, false};
  const std::vector<float> table = ropekit::cos_sin_cache(ropekit::RopeSpec(sp), max_pos);
  CosSinCacheView cache{table.data(), DType::f32, ropekit::Device::cpu(), max_pos, c.rot_dim};
  ropekit::EngineOptions options;
  options.num_threads = c.num_threads;
  if (c.mrope) options.mrope = sp.mrope;

  const int64_t k_page = c.k_heads * c.page_size * c.head_size, v_page = c.k_heads * c.page_size * c.v_head_dim;
  const int64_t ce = esize(c.cache_dtype);
  // k cache at 0; v cache after it, or (combined) each page holds its k part then its v part.
  const int64_t page_elems = c.combined ? k_page + v_page : 0;
  std::vector<unsigned char> bytes(static_cast<size_t>(c.pages * (k_page + v_page) * ce));
  for (auto& b : bytes) b = static_cast<unsigned char>(rng.integer(0, 255));
  auto expected = bytes;
  unsigned char* k_base = bytes.data();
  unsigned char* v_base = c.combined ? bytes.data() + k_page * ce : bytes.data() + c.pages * k_page * ce;
  const TensorView kc = cache_view(k_base, c.cache_dtype, c.layout, c.pages, c.page_size, c.k_heads, c.head_size,
                                   c.combined ? page_elems : k_page);
  const TensorView vc = cache_view(v_base, c.cache_dtype, c.layout, c.pages, c.page_size, c.k_heads, c.v_head_dim,
                                   c.combined ? page_elems : v_page);
  const bool fp8 = c.cache_dtype == DType::f8_e4m3 || c.cache_dtype == DType::f8_e5m2;
  std::vector<float> k_scale, v_scale;
  if (fp8) {
    for (int64_t h = 0; h < (c.per_head_scale ? c.k_heads : 1); ++h) {
      k_scale.push_back(static_cast<float>(rng.uniform(0.002, 0.05)));
      v_scale.push_back(static_cast<float>(rng.uniform(0.002, 0.05)));
    }
  }
  PagedKvCache kv{kc, c.with_value ? vc : TensorView{}, c.layout, k_scale,
                  c.with_value ? std::span<const float>(v_scale) : std::span<const float>()};

  // Unfused: rotary_embedding on copies, then the writes.
  Buffer q_ref = q, k_ref = k;
  const TensorView qv = TensorView::contiguous(q.data(), c.dtype, {T, c.q_heads * c.head_size});
  const TensorView kv_in = TensorView::contiguous(k.data(), c.dtype, {T, c.k_heads, c.head_size});
  const TensorView vv = TensorView::contiguous(v.data(), c.dtype, {T, c.k_heads * c.v_head_dim});
  const IndexView pos(positions.data(), static_cast<int64_t>(positions.size()));
  ropekit::rotary_embedding(pos, TensorView::contiguous(q_ref.data(), c.dtype, {T, c.q_heads * c.head_size}),
                            TensorView::contiguous(k_ref.data(), c.dtype, {T, c.k_heads * c.head_size}), c.head_size,
                            cache, c.is_neox, c.offset, false, options);
  const int64_t se = esize(c.dtype);
  const auto write = [&](const Buffer& src, const TensorView& dst_view, int64_t dim, const std::vector<float>& scale,
                         int64_t slot, int64_t t) {
    const int64_t page = slot / c.page_size, in_page = slot % c.page_size;
    const int axis_h = c.layout == KvLayout::nhd ? 2 : 1, axis_t = c.layout == KvLayout::nhd ? 1 : 2;
    for (int64_t h = 0; h < c.k_heads; ++h) {
      const float s = scale.empty() ? 1.0f : scale[static_cast<size_t>(scale.size() == 1 ? 0 : h)];
      for (int64_t d = 0; d < dim; ++d) {
        const int64_t at = page * dst_view.strides[0] + in_page * dst_view.strides[static_cast<size_t>(axis_t)] +
                           h * dst_view.strides[static_cast<size_t>(axis_h)] + d;
        const auto* from = src.bytes().data() + ((t * c.k_heads + h) * dim + d) * se;
        unsigned char* to = expected.data() + (static_cast<unsigned char*>(dst_view.data) - bytes.data()) + at * ce;
        store_reference(c.dtype, from, c.cache_dtype, to, s);
      }
    }
  };
  for (int64_t t = 0; t < T; ++t) {
    const int64_t slot = slots[static_cast<size_t>(t)];
    if (slot < 0) continue;
    write(k_ref, kc, c.head_size, k_scale, slot, t);
    if (c.with_value) write(v, vc, c.v_head_dim, v_scale, slot, t);
  }

  const Buffer k_before = k, v_before = v;
  ropekit::rotary_embedding_with_kv_cache(pos, qv, kv_in, c.with_value ? std::optional<TensorView>(vv) : std::nullopt,
                                          c.head_size, cache, c.is_neox, IndexView(slots.data(), T), kv, c.offset,
                                          options);
  EXPECT_EQ(q.bytes(), q_ref.bytes()) << "query differs from rotary_embedding's";
  EXPECT_EQ(k.bytes(), k_before.bytes()) << "key was written";
  EXPECT_EQ(v.bytes(), v_before.bytes()) << "value was written";
  size_t differing = 0, first = 0;
  for (size_t i = 0; i < bytes.size(); ++i)
    if (bytes[i] != expected[i] && differing++ == 0) first = i;
  EXPECT_EQ(differing, 0u) << "cache bytes differ from the unfused writes, first at byte " << first;
}

TEST(KvCache, Fp8ConversionsEqualTheDefinition) {
  RT_SEEDED_RNG(rng);
  for (DType t : {DType::f8_e4m3, DType::f8_e5m2}) {
    SCOPED_TRACE(ropekit::to_string(t));
    const float scale = 1.0f;
    // Every finite code round-trips; values between codes (midpoints: ties to the even code),
    // past the largest (saturated), tiny and huge values, NaN and inf.
    std::vector<float> values;
    for (int code = 0; code < 256; ++code) {
      const double a = fp8_value(t, static_cast<uint8_t>(code));
      if (std::isnan(a)) continue;
      values.push_back(static_cast<float>(a));
      const double b = fp8_value(t, static_cast<uint8_t>(code + 1));
      if ((code & 0x7f) != 0x7f && !std::isnan(b) && (code & 0x80) == ((code + 1) & 0x80)) {
        const double mid = (a + b) / 2;
        for (double x : {mid, std::nextafter(mid, a), std::nextafter(mid, b)}) values.push_back(static_cast<float>(x));
      }
    }
    for (int i = 0; i < 20000; ++i) values.push_back(static_cast<float>(std::ldexp(rng.uniform(-1, 1), static_cast<int>(rng.integer(-24, 20)))));
    for (float x : {500.0f, -1e9f, 6e4f, 57344.0f, 61440.0f, 1e-30f, -0.0f, INFINITY, -INFINITY, NAN}) values.push_back(x);
    Buffer src(DType::f32, static_cast<int64_t>(values.size()));
    for (size_t i = 0; i < values.size(); ++i) src.set(static_cast<int64_t>(i), values[i]);
    std::vector<unsigned char> got(values.size());
    // Through the op itself: one token, one head per value row.
    const int64_t n = static_cast<int64_t>(values.size());
    std::vector<float> q(1), key(2, 0.0f);
    std::vector<float> table = {1.0f, 0.0f};  // position 0: cos 1, sin 0 (k unrotated)
    CosSinCacheView cache{table.data(), DType::f32, ropekit::Device::cpu(), 1, 2};
    std::vector<unsigned char> kcache(2), vcache(static_cast<size_t>(n));
    const TensorView kc = cache_view(kcache.data(), t, KvLayout::nhd, 1, 1, 1, 2, 2);
    const TensorView vc = cache_view(vcache.data(), t, KvLayout::nhd, 1, 1, 1, n, n);
    const std::vector<float> one{scale};
    int64_t pos = 0, slot = 0;
    ropekit::rotary_embedding_with_kv_cache(IndexView(&pos, 1), TensorView::contiguous(q.data(), DType::f32, {1, 0}),
                                            TensorView::contiguous(key.data(), DType::f32, {1, 2}),
                                            TensorView::contiguous(src.data(), DType::f32, {1, n}), 2, cache, true,
                                            IndexView(&slot, 1), PagedKvCache{kc, vc, KvLayout::nhd, one, one});
    for (size_t i = 0; i < values.size(); ++i) {
      const uint8_t want = fp8_code(t, values[i]);
      if (std::isnan(values[i])) {
        EXPECT_TRUE(std::isnan(fp8_value(t, vcache[i])));
      } else {
        ASSERT_EQ(static_cast<int>(vcache[i]), static_cast<int>(want)) << "value " << values[i];
      }
    }
  }
}

TEST(KvCache, FusedEqualsRopeThenCacheWrite) {
  RT_SEEDED_RNG(rng);
  std::vector<KvCase> cases;
  for (DType dt : {DType::f32, DType::f16, DType::bf16}) {
    for (DType cdt : {dt, DType::f8_e4m3, DType::f8_e5m2, DType::bf16, DType::f32}) {
      for (KvLayout layout : {KvLayout::nhd, KvLayout::hnd}) {
        KvCase c;
        c.dtype = dt;
        c.cache_dtype = cdt;
        c.layout = layout;
        c.page_size = rng.pick(std::vector<int64_t>{1, 16, 64});
        c.pages = std::max<int64_t>(2, (c.tokens + c.page_size - 1) / c.page_size + 1);
        c.is_neox = rng.coin();
        c.combined = rng.coin();
        c.per_head_scale = rng.coin();
        cases.push_back(c);
      }
    }
  }
  KvCase partial;  // partial rotary window at an offset (trailing channels, as DeepSeek's)
  partial.head_size = 48;
  partial.v_head_dim = 48;
  partial.rot_dim = 16;
  partial.offset = 32;
  cases.push_back(partial);
  KvCase mla;  // MLA: one shared kpe head of 64 (rotated) and the ckv latent of 512 (copied)
  mla.q_heads = 8;
  mla.k_heads = 1;
  mla.head_size = 64;
  mla.rot_dim = 64;
  mla.v_head_dim = 512;
  mla.page_size = 64;
  mla.pages = 2;
  cases.push_back(mla);
  KvCase no_value;
  no_value.with_value = false;
  no_value.is_neox = false;
  cases.push_back(no_value);
  KvCase threads;  // many tokens over 2 threads, chunks crossing pages
  threads.tokens = 700;
  threads.pages = 50;
  threads.page_size = 16;
  threads.num_threads = 2;
  threads.cache_dtype = DType::f8_e4m3;
  cases.push_back(threads);
  KvCase mrope;
  mrope.mrope = true;
  mrope.num_threads = 2;
  mrope.tokens = 300;
  mrope.pages = 24;
  cases.push_back(mrope);
  KvCase gqa1;  // a page of 1 slot, one k head
  gqa1.k_heads = 1;
  gqa1.page_size = 1;
  gqa1.pages = 40;
  gqa1.dtype = DType::f16;
  gqa1.cache_dtype = DType::f8_e5m2;
  cases.push_back(gqa1);
  for (const auto& c : cases) check_kv_case(c, rng);
}

TEST(KvCache, BadInputIsAnErrorThatWritesNothing) {
  const int64_t T = 3, D = 8;
  std::vector<float> q(T * 2 * D, 1.0f), k(T * D, 2.0f), v(T * D, 3.0f);
  ropekit::SpecParams sp;
  sp.head_dim = D;
  std::vector<float> table = ropekit::cos_sin_cache(ropekit::RopeSpec(sp), 16);
  CosSinCacheView cache{table.data(), DType::f32, ropekit::Device::cpu(), 16, D};
  std::vector<float> kcache(4 * 2 * D, 7.0f), vcache(4 * 2 * D, 7.0f);
  const auto kc = cache_view(reinterpret_cast<unsigned char*>(kcache.data()), DType::f32, KvLayout::nhd, 4, 2, 1, D, 2 * D);
  const auto vc = cache_view(reinterpret_cast<unsigned char*>(vcache.data()), DType::f32, KvLayout::nhd, 4, 2, 1, D, 2 * D);
  std::vector<int64_t> pos{0, 1, 2};
  const auto qv = TensorView::contiguous(q.data(), DType::f32, {T, 2 * D});
  const auto kv = TensorView::contiguous(k.data(), DType::f32, {T, D});
  const auto vv = TensorView::contiguous(v.data(), DType::f32, {T, D});
  const auto q0 = q;
  const auto k0 = kcache;
  const auto run = [&](std::vector<int64_t> slots, PagedKvCache c, std::optional<TensorView> value) {
    return error_of([&] {
      ropekit::rotary_embedding_with_kv_cache(IndexView(pos.data(), T), qv, kv, value, D, cache, true,
                                              IndexView(slots.data(), static_cast<int64_t>(slots.size())), c);
    });
  };
  const PagedKvCache good{kc, vc};
  EXPECT_EQ(run({0, -1, 7}, good, vv), "");
  std::fill(kcache.begin(), kcache.end(), 7.0f);
  q = q0;
  const float scale = 0.5f;
  struct Bad {
    std::vector<int64_t> slots;
    PagedKvCache cache;
    std::optional<TensorView> value;
    std::string error;
  };
  TensorView wrong_heads = kc;
  wrong_heads.shape[2] = 2;
  TensorView hnd_rank3 = kc;
  hnd_rank3.rank = 3;
  TensorView f64 = kc;
  f64.dtype = DType::f64;
  TensorView on_key = kc;
  on_key.data = k.data();
  on_key.shape = {1, 2, 1, D};
  TensorView one_page = vc;
  one_page.shape[0] = 1;
  const std::vector<Bad> bad = {
      {{0, 1, 8}, good, vv, "slot_mapping[2]: expected negative (skip) or below pages * page_size (8), got 8"},
      {{0, 1}, good, vv, "slot_mapping.size: expected 3 (one slot per token), got 2"},
      {{5, 1, 5}, good, vv, "slot_mapping[2]: expected a slot no other token writes (token 0 writes it too), got 5"},
      {{0, 1, 2}, {wrong_heads, vc}, vv, "cache.k_cache.shape[2]: expected 1 heads (as its source)"},
      {{0, 1, 2}, {hnd_rank3, vc}, vv, "cache.k_cache.rank: expected 4 [pages, page_size, heads, head_dim] (NHD)"},
      {{0, 1, 2}, {f64, vc}, vv, "cache.k_cache.dtype: expected f32, f16, bf16, f8_e4m3 or f8_e5m2, got f64"},
      {{0, 1, 2}, {kc, vc, KvLayout::nhd, std::span<const float>(&scale, 1)}, vv,
       "cache.k_scale: expected empty for a f32 cache (scales quantise FP8 caches)"},
      {{0, 1, 2}, {kc, TensorView{}}, vv, "cache.v_cache.rank: expected 4 (the cache of value)"},
      {{0, 1, 2}, good, std::nullopt, "cache.v_cache: expected absent (data null, rank 0) without a value"},
      {{0, 1, -1}, {on_key, one_page}, vv, "cache.k_cache: expected memory apart from key"},
  };
  for (const auto& b : bad) {
    const std::string e = run(b.slots, b.cache, b.value);
    EXPECT_NE(e.find(b.error), std::string::npos) << "got: " << e << "\nwant: " << b.error;
    EXPECT_EQ(q, q0) << b.error;
    EXPECT_EQ(kcache, k0) << b.error;
  }
  std::vector<int64_t> past{0, 1, 16};
  const std::string e = error_of([&] {
    std::vector<int64_t> slots{0, 1, 2};
    ropekit::rotary_embedding_with_kv_cache(IndexView(past.data(), T), qv, kv, vv, D, cache, true,
                                            IndexView(slots.data(), T), good);
  });
  EXPECT_NE(e.find("positions[2]: expected in [0, 16)"), std::string::npos) << e;
  EXPECT_EQ(kcache, k0);
}

TEST(KvCache, RerotationTurnsCachedKeysToNewPositions) {
  RT_SEEDED_RNG(rng);
  const int64_t H = 2, D = 32, pages = 4, ps = 4, max_pos = 64, n = 10;
  ropekit::SpecParams sp;
  sp.head_dim = D;
  const std::vector<float> table = ropekit::cos_sin_cache(ropekit::RopeSpec(sp), max_pos);
  const CosSinCacheView cache{table.data(), DType::f32, ropekit::Device::cpu(), max_pos, D};
  for (DType cdt : {DType::f32, DType::bf16, DType::f8_e4m3}) {
    for (KvLayout layout : {KvLayout::nhd, KvLayout::hnd}) {
      SCOPED_TRACE(ropekit::to_string(cdt) + (layout == KvLayout::nhd ? " NHD" : " HND"));
      // Keys k_t, written rotated at `from` by the fused op; re-rotated to `to`; compared with k_t
      // rotated at `to` in float64 and stored.
      Buffer k(DType::f32, n * H * D);
      k.fill_random(rng);
      std::vector<int64_t> from(n), to(n), slots(n);
      std::vector<int64_t> order(pages * ps);
      std::iota(order.begin(), order.end(), 0);
      std::shuffle(order.begin(), order.end(), rng.gen);
      for (int64_t i = 0; i < n; ++i) {
        from[i] = rng.integer(0, max_pos - 1);
        to[i] = rng.integer(0, max_pos - 1);
        slots[i] = order[i];
      }
      const float scale = 0.01f;
      const bool fp8 = cdt == DType::f8_e4m3;
      std::vector<float> scales = fp8 ? std::vector<float>{scale} : std::vector<float>{};
      const int64_t ce = esize(cdt);
      std::vector<unsigned char> bytes(static_cast<size_t>(pages * ps * H * D * ce));
      for (auto& b : bytes) b = static_cast<unsigned char>(rng.integer(0, 255));
      const TensorView kc = cache_view(bytes.data(), cdt, layout, pages, ps, H, D, ps * H * D);
      std::vector<float> q0;
      ropekit::rotary_embedding_with_kv_cache(IndexView(from.data(), n), TensorView::contiguous(q0.data(), DType::f32, {n, 0}),
                                              TensorView::contiguous(k.data(), DType::f32, {n, H * D}), std::nullopt, D,
                                              cache, true, IndexView(slots.data(), n), PagedKvCache{kc, {}, layout, scales});
      slots[3] = -1;  // skipped: stays rotated at from[3]
      const auto before = bytes;
      ropekit::rerotate_kv_cache(IndexView(slots.data(), n), IndexView(from.data(), n), IndexView(to.data(), n), cache,
                                 true, kc, layout, scales);
      std::vector<bool> owned(bytes.size(), false);
      for (int64_t i = 0; i < n; ++i) {
        const int64_t slot = i == 3 ? order[3] : slots[i];
        const int64_t page = slot / ps, in_page = slot % ps;
        for (int64_t h = 0; h < H; ++h) {
          const int64_t base = layout == KvLayout::nhd ? ((page * ps + in_page) * H + h) * D : ((page * H + h) * ps + in_page) * D;
          const int64_t p = i == 3 ? from[i] : to[i];
          for (int64_t d = 0; d < D; ++d) {
            owned[static_cast<size_t>((base + d) * ce)] = true;
            const int64_t j = d % (D / 2);
            const double c = table[p * D + j], sn = table[p * D + D / 2 + j];
            const double a = k.get((i * H + h) * D + j), b = k.get((i * H + h) * D + D / 2 + j);
            const double want = d < D / 2 ? a * c - b * sn : b * c + a * sn;
            double got;
            if (fp8) {
              got = fp8_value(cdt, bytes[static_cast<size_t>(base + d)]) * scale;
            } else {
              Buffer one(cdt, 1);
              std::memcpy(one.data(), bytes.data() + (base + d) * ce, static_cast<size_t>(ce));
              got = one.get(0);
            }
            // Quantised twice (written, re-rotated): two of the format's steps at the pair's size
            // (a rotation mixes the errors of both elements; it keeps the pair's norm).
            const double norm = std::hypot(a, b);
            const double step = fp8 ? norm / 8 + scale * std::ldexp(1.0, -9)
                                    : cdt == DType::bf16 ? norm / 128 : 1e-5 * norm + 1e-7;
            ASSERT_LE(std::fabs(got - want), 2 * step) << "slot " << slot << " head " << h << " d " << d;
          }
        }
      }
      for (size_t i = 0; i < bytes.size(); i += static_cast<size_t>(ce)) {
        if (!owned[i]) ASSERT_EQ(std::memcmp(bytes.data() + i, before.data() + i, static_cast<size_t>(ce)), 0) << "byte " << i;
      }
      // Errors leave the cache as it was.
      const auto kept = bytes;
      std::vector<int64_t> twice = slots;
      twice[1] = twice[0];
      EXPECT_NE(error_of([&] {
                  ropekit::rerotate_kv_cache(IndexView(twice.data(), n), IndexView(from.data(), n), IndexView(to.data(), n),
                                             cache, true, kc, layout, scales);
                }).find("slots[1]: expected a slot no other token writes"),
                std::string::npos);
      std::vector<int64_t> far = to;
      far[n - 1] = max_pos;
      EXPECT_NE(error_of([&] {
                  ropekit::rerotate_kv_cache(IndexView(slots.data(), n), IndexView(from.data(), n), IndexView(far.data(), n),
                                             cache, true, kc, layout, scales);
                }).find("to_positions[9]: expected in [0, 64)"),
                std::string::npos);
      EXPECT_EQ(bytes, kept);
    }
  }
}

TEST(KvCache, PageTableToSlots) {
  // Two requests: 0 owns pages {3, 1} (last filled to 2 of 4), 1 owns page {0} (filled to 4).
  std::vector<int64_t> indices{3, 1, 0}, indptr{0, 2, 3}, last{2, 4};
  std::vector<int64_t> batch{0, 0, 0, 1, 1}, kv_pos{0, 4, 5, 0, 3};
  const auto slots = ropekit::paged_kv_slots(IndexView(batch.data(), 5), IndexView(kv_pos.data(), 5),
                                             IndexView(indices.data(), 3), IndexView(indptr.data(), 3),
                                             IndexView(last.data(), 2), 4, 4);
  EXPECT_EQ(slots, (std::vector<int64_t>{12, 4, 5, 0, 3}));
  const auto err = [&](std::vector<int64_t> b, std::vector<int64_t> p, std::vector<int64_t> ind, std::vector<int64_t> ptr,
                       std::vector<int64_t> l, int64_t pages) {
    return error_of([&] {
      ropekit::paged_kv_slots(IndexView(b.data(), static_cast<int64_t>(b.size())), IndexView(p.data(), static_cast<int64_t>(p.size())),
                              IndexView(ind.data(), static_cast<int64_t>(ind.size())),
                              IndexView(ptr.data(), static_cast<int64_t>(ptr.size())),
                              IndexView(l.data(), static_cast<int64_t>(l.size())), 4, pages);
    });
  };
  EXPECT_NE(err({0}, {6}, indices, indptr, last, 4).find("kv_positions[0]: expected in [0, 6) (request 0's pages, filled), got 6"), std::string::npos);
  EXPECT_NE(err({0}, {0}, indices, {0, 2, 1}, last, 4).find("kv_indptr[2]: expected >= kv_indptr[1] (2)"), std::string::npos);
  EXPECT_NE(err({2}, {0}, indices, indptr, last, 4).find("batch_indices[0]: expected in [0, 2), got 2"), std::string::npos);
  EXPECT_NE(err({0}, {0}, indices, indptr, last, 3).find("kv_indices[0]: expected in [0, num_pages (3)), got 3"), std::string::npos);
  EXPECT_NE(err({0}, {0}, indices, indptr, {0, 4}, 4).find("kv_last_page_len[0]: expected in [1, page_size (4)], got 0"), std::string::npos);
  EXPECT_NE(err({0}, {0}, indices, {0, 2, 5}, last, 4).find("kv_indptr[2]: expected <= kv_indices.size (3), got 5"), std::string::npos);
}

}  // namespace
