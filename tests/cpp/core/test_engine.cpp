// rotary_embedding (the engine convention) against a float64 rotation with the cache's own values,
// against apply_rope with the same frequencies, and its bad-input errors.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <optional>
#include <sstream>
#include <vector>

#include "test_support.hpp"

namespace {

using ropekit::CosSinCacheView;
using ropekit::TensorView;
using rt::Buffer;
using rt::DType;

enum class EngineLayout { t_flat, t_heads, bs_flat, bs_heads };  // [T,H*D], [T,H,D], [B,S,H*D], [B,S,H,D]

const char* name(EngineLayout l) {
  switch (l) {
    case EngineLayout::t_flat: return "[T, H*D]";
    case EngineLayout::t_heads: return "[T, H, D]";
    case EngineLayout::bs_flat: return "[B, S, H*D]";
    case EngineLayout::bs_heads: return "[B, S, H, D]";
  }
  return "?";
}

// A contiguous view of `heads` heads of head_size per token in `layout`; row_pad extra elements
// after each token's heads (a strided token dimension).
TensorView engine_view(EngineLayout layout, void* data, DType dtype, int64_t batch, int64_t seq, int64_t heads,
                       int64_t head_size, int64_t row_pad) {
  TensorView v;
  v.data = data;
  v.dtype = dtype;
  const int64_t row = heads * head_size + row_pad;
  switch (layout) {
    case EngineLayout::t_flat:
      v.rank = 2;
      v.shape = {batch * seq, heads * head_size};
      v.strides = {row, 1};
      break;
    case EngineLayout::t_heads:
      v.rank = 3;
      v.shape = {batch * seq, heads, head_size};
      v.strides = {row, head_size, 1};
      break;
    case EngineLayout::bs_flat:
      v.rank = 3;
      v.shape = {batch, seq, heads * head_size};
      v.strides = {seq * row, row, 1};
      break;
    case EngineLayout::bs_heads:
      v.rank = 4;
      v.shape = {batch, seq, heads, head_size};
      v.strides = {seq * row, row, head_size, 1};
      break;
  }
  return v;
}

struct EngineCase {
  DType dtype = DType::f32;
  DType cache_dtype = DType::f32;
  bool is_neox = true;
  EngineLayout layout = EngineLayout::t_flat;
  int64_t batch = 1, seq = 5, q_heads = 4, k_heads = 2;  // k_heads 0: no key
  int64_t head_size = 16, rot_dim = 16, offset = 0, row_pad = 0;
  int64_t max_position = 64;
  bool positions_i32 = false;
  bool inverse = false;
  int64_t cache_misalign = 0;  // the cache starts this many elements into its buffer

  std::string describe() const {
    std::ostringstream o;
    o << ropekit::to_string(dtype) << " cache=" << ropekit::to_string(cache_dtype) << (is_neox ? " neox " : " gptj ")
      << name(layout) << " B=" << batch << " S=" << seq << " Hq=" << q_heads << " Hk=" << k_heads
      << " D=" << head_size << " R=" << rot_dim << " off=" << offset << " pad=" << row_pad
      << (positions_i32 ? " i32" : " i64") << (inverse ? " inverse" : "") << " misalign=" << cache_misalign;
    return o.str();
  }
};

struct Operand {
  Buffer before, after;
  TensorView view;
  int64_t heads;
};

Operand make_operand(const EngineCase& c, int64_t heads, rt::Rng& rng) {
  const int64_t n = c.batch * c.seq * (heads * c.head_size + c.row_pad);
  Operand op{Buffer(c.dtype, n), Buffer(c.dtype, n), {}, heads};
  op.before.fill_random(rng);
  op.after = op.before;
  op.view = engine_view(c.layout, op.after.data(), c.dtype, c.batch, c.seq, heads, c.head_size, c.row_pad);
  return op;
}

// Every element of token t, head h: rotated channels against the float64 rotation with the
// cache's values (as stored), every other element bit-identical to its input.
void expect_rotated(const EngineCase& c, const Operand& op, const Buffer& cache, int64_t cache_base,
                    const std::vector<int64_t>& positions, const char* which) {
  const int64_t row = op.heads * c.head_size + c.row_pad;
  const int64_t half = c.rot_dim / 2;
  const double tol = rt::tolerance(c.dtype);
  int bad = 0;
  for (int64_t t = 0; t < c.batch * c.seq; ++t) {
    const int64_t crow = cache_base + positions[static_cast<size_t>(t)] * c.rot_dim;
    for (int64_t h = 0; h < op.heads; ++h) {
      const int64_t base = t * row + h * c.head_size;
      for (int64_t d = 0; d < c.head_size; ++d) {
        const int64_t j = d - c.offset;
        const double got = op.after.get(base + d);
        if (j < 0 || j >= c.rot_dim) {
          if (!(got == op.before.get(base + d) || (std::isnan(got) && std::isnan(op.before.get(base + d)))))
            if (bad++ < 5) ADD_FAILURE() << which << " t=" << t << " h=" << h << " d=" << d << ": pass-through changed";
          continue;
        }
        const int64_t i = c.is_neox ? j % half : j / 2;
        const bool first = c.is_neox ? j < half : j % 2 == 0;
        const int64_t ja = c.is_neox ? i : 2 * i;
        const int64_t jb = c.is_neox ? i + half : 2 * i + 1;
        const double a = op.before.get(base + c.offset + ja);
        const double b = op.before.get(base + c.offset + jb);
        const double cs = cache.get(crow + i);
        const double sn = (c.inverse ? -1.0 : 1.0) * cache.get(crow + half + i);
        const double want = first ? a * cs - b * sn : b * cs + a * sn;
        if (!(std::fabs(got - want) <= tol * (1.0 + std::fabs(want))))
          if (bad++ < 5) ADD_FAILURE() << which << " t=" << t << " h=" << h << " d=" << d << ": got " << got << ", want " << want;
      }
    }
  }
  EXPECT_EQ(bad, 0) << which << " mismatches";
}

void run_engine_case(const EngineCase& c, rt::Rng& rng) {
  SCOPED_TRACE(c.describe());
  // A cache of unit rotations at random angles, stored in cache_dtype.
  Buffer cache(c.cache_dtype, c.cache_misalign + c.max_position * c.rot_dim);
  for (int64_t p = 0; p < c.max_position; ++p)
    for (int64_t i = 0; i < c.rot_dim / 2; ++i) {
      const double angle = rng.uniform(-10.0, 10.0);
      cache.set(c.cache_misalign + p * c.rot_dim + i, std::cos(angle));
      cache.set(c.cache_misalign + p * c.rot_dim + c.rot_dim / 2 + i, std::sin(angle));
    }
  const int64_t tokens = c.batch * c.seq;
  std::vector<int64_t> pos64(static_cast<size_t>(tokens));
  for (auto& p : pos64) p = rng.integer(0, c.max_position - 1);
  pos64[0] = c.max_position - 1;  // the last row is reachable
  std::vector<int32_t> pos32(pos64.begin(), pos64.end());
  const ropekit::IndexView positions = c.positions_i32 ? ropekit::IndexView(pos32.data(), tokens)
                                                       : ropekit::IndexView(pos64.data(), tokens);
  Operand q = make_operand(c, c.q_heads, rng);
  std::optional<Operand> k;
  if (c.k_heads > 0) k = make_operand(c, c.k_heads, rng);
  const CosSinCacheView view{static_cast<const char*>(cache.data()) + c.cache_misalign * Buffer::esize(c.cache_dtype),
                             c.cache_dtype, ropekit::Device::cpu(), c.max_position, c.rot_dim};
  ropekit::rotary_embedding(positions, q.view, k ? std::optional<TensorView>(k->view) : std::nullopt, c.head_size,
                            view, c.is_neox, c.offset, c.inverse);
  expect_rotated(c, q, cache, c.cache_misalign, pos64, "query");
  if (k) expect_rotated(c, *k, cache, c.cache_misalign, pos64, "key");
}

TEST(RotaryEmbedding, EveryDtypeCacheDtypeLayoutAndOption) {
  RT_SEEDED_RNG(rng);
  const std::vector<DType> dtypes{DType::f32, DType::f16, DType::bf16, DType::f64};
  const std::vector<DType> cache_dtypes{DType::f32, DType::f16, DType::bf16};
  const std::vector<EngineLayout> layouts{EngineLayout::t_flat, EngineLayout::t_heads, EngineLayout::bs_flat,
                                          EngineLayout::bs_heads};
  int cases = 0;
  for (DType dtype : dtypes)
    for (DType cache_dtype : cache_dtypes)
      for (EngineLayout layout : layouts)
        for (bool neox : {true, false}) {
          EngineCase c;
          c.dtype = dtype;
          c.cache_dtype = cache_dtype;
          c.layout = layout;
          c.is_neox = neox;
          c.batch = layout == EngineLayout::bs_flat || layout == EngineLayout::bs_heads ? 2 : 1;
          c.seq = rng.integer(1, 9);
          c.q_heads = rng.integer(1, 5);
          c.k_heads = rng.integer(0, 3);
          c.head_size = rng.pick(std::vector<int64_t>{8, 16, 24, 64, 80, 128});
          c.rot_dim = 2 * rng.integer(1, c.head_size / 2);
          c.offset = rng.integer(0, c.head_size - c.rot_dim);
          c.row_pad = rng.coin() ? 0 : rng.integer(1, 7);
          c.positions_i32 = rng.coin();
          c.inverse = rng.coin();
          c.cache_misalign = rng.integer(0, 3);
          c.max_position = rng.integer(1, 300);
          run_engine_case(c, rng);
          ++cases;
        }
  EXPECT_EQ(cases, 4 * 3 * 4 * 2);
}

TEST(RotaryEmbedding, WideHeadsTakeTheVectorPath) {
  // Full-width heads, aligned rows, many tokens: the SIMD kernels (threads too) read the cache.
  RT_SEEDED_RNG(rng);
  for (DType dtype : {DType::f32, DType::f16, DType::bf16})
    for (bool neox : {true, false}) {
      EngineCase c;
      c.dtype = dtype;
      c.is_neox = neox;
      c.seq = 300;
      c.q_heads = 8;
      c.k_heads = 2;
      c.head_size = 128;
      c.rot_dim = 128;
      c.max_position = 4096;
      run_engine_case(c, rng);
      c.rot_dim = 64;  // rotate the trailing half (DeepSeek-style window)
      c.offset = 64;
      run_engine_case(c, rng);
    }
}

TEST(RotaryEmbedding, SameAnswerAsApplyRopeWithTheSpecsTable) {
  // cos_sin_cache(spec) holds the table's rows (attention factor folded in): rotating with it is
  // apply_rope with that table, bit for bit, forward and inverse.
  RT_SEEDED_RNG(rng);
  ropekit::scaling::Yarn yarn;
  yarn.factor = 4.0;
  yarn.original_max = 64;
  for (ropekit::Style style : {ropekit::Style::half, ropekit::Style::interleaved})
    for (bool inverse : {false, true}) {
      ropekit::SpecParams sp;
      sp.head_dim = 64;
      sp.rotary_dim = 64;
      sp.style = style;
      sp.scaling = inverse ? ropekit::Scaling{ropekit::scaling::None{}} : ropekit::Scaling{yarn};
      const ropekit::RopeSpec spec(sp);
      const int64_t max_position = 512, tokens = 37, heads = 3;
      const std::vector<float> cache = ropekit::cos_sin_cache(spec, max_position);
      ASSERT_EQ(static_cast<int64_t>(cache.size()), max_position * 64);
      std::vector<int64_t> positions(tokens);
      for (auto& p : positions) p = rng.integer(0, max_position - 1);
      std::vector<float> a(static_cast<size_t>(tokens * heads * 64));
      for (auto& v : a) v = rng.nonzero();
      std::vector<float> b = a;
      const TensorView va = TensorView::thd(a.data(), DType::f32, tokens, heads, 64);
      const TensorView vb = TensorView::thd(b.data(), DType::f32, tokens, heads, 64);
      ropekit::rotary_embedding(ropekit::IndexView(positions.data(), tokens), va, std::nullopt, 64,
                                {cache.data(), DType::f32, ropekit::Device::cpu(), max_position, 64},
                                style == ropekit::Style::half, 0, inverse);
      ropekit::ApplyOptions options;
      options.direction = inverse ? ropekit::Direction::inverse : ropekit::Direction::forward;
      ropekit::apply_rope({vb, std::nullopt, std::nullopt, std::nullopt},
                          ropekit::Positions::token_ids(ropekit::IndexView(positions.data(), tokens)),
                          ropekit::RopeTable(spec, max_position), options);
      EXPECT_EQ(a, b) << ropekit::to_string(style) << (inverse ? " inverse" : " forward");
    }
}

TEST(RotaryEmbedding, InverseUndoesForwardWithAUnitCache) {
  RT_SEEDED_RNG(rng);
  ropekit::SpecParams sp;
  sp.head_dim = 32;
  const ropekit::RopeSpec spec(sp);
  const std::vector<float> cache = ropekit::cos_sin_cache(spec, 100);
  std::vector<int64_t> positions{0, 99, 42, 7};
  std::vector<float> x(4 * 2 * 32);
  for (auto& v : x) v = rng.nonzero();
  const std::vector<float> original = x;
  const TensorView v = TensorView::thd(x.data(), DType::f32, 4, 2, 32);
  const CosSinCacheView cv{cache.data(), DType::f32, ropekit::Device::cpu(), 100, 32};
  ropekit::rotary_embedding(ropekit::IndexView(positions.data(), 4), v, std::nullopt, 32, cv, false);
  EXPECT_NE(x, original);
  ropekit::rotary_embedding(ropekit::IndexView(positions.data(), 4), v, std::nullopt, 32, cv, false, 0, true);
  for (size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(x[i], original[i], 1e-5f * (1.0f + std::fabs(original[i]))) << i;
}

// Bad input: an Error naming the argument, and neither query nor key changed.
struct Call {
  std::vector<int64_t> positions{0, 1, 2};
  std::vector<float> q = std::vector<float>(3 * 2 * 16, 0.5f);
  std::vector<float> k = std::vector<float>(3 * 1 * 16, 0.25f);
  std::vector<float> cache = std::vector<float>(8 * 16, 0.75f);
  int64_t head_size = 16;
  int64_t rot_dim = 16;
  int64_t max_position = 8;
  int64_t offset = 0;
  DType cache_dtype = DType::f32;
  bool null_cache = false;
  int64_t cache_byte_offset = 0;
  TensorView query() { return TensorView::thd(q.data(), DType::f32, 3, 2, 16); }
  TensorView key() { return TensorView::thd(k.data(), DType::f32, 3, 1, 16); }
};

void expect_error(Call call, const std::function<void(Call&, TensorView&, std::optional<TensorView>&)>& edit,
                  const std::string& needle) {
  TensorView q = call.query();
  std::optional<TensorView> k = call.key();
  edit(call, q, k);
  const std::vector<float> q0 = call.q, k0 = call.k;
  try {
    ropekit::rotary_embedding(ropekit::IndexView(call.positions.data(), static_cast<int64_t>(call.positions.size())), q,
                              k, call.head_size,
                              {call.null_cache ? nullptr : reinterpret_cast<char*>(call.cache.data()) + call.cache_byte_offset, call.cache_dtype, ropekit::Device::cpu(), call.max_position, call.rot_dim},
                              true, call.offset);
    ADD_FAILURE() << "no error; expected one containing '" << needle << "'";
  } catch (const ropekit::Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
  EXPECT_EQ(call.q, q0);
  EXPECT_EQ(call.k, k0);
}

TEST(RotaryEmbedding, BadInputIsANamedErrorAndWritesNothing) {
  using Q = TensorView;
  using K = std::optional<TensorView>;
  expect_error({}, [](Call& c, Q&, K&) { c.positions[2] = 8; }, "positions[2]: expected in [0, 8)");
  expect_error({}, [](Call& c, Q&, K&) { c.positions[1] = -1; }, "positions[1]");
  expect_error({}, [](Call& c, Q&, K&) { c.rot_dim = 15; }, "cos_sin_cache.rot_dim: expected an even number");
  expect_error({}, [](Call& c, Q&, K&) { c.rot_dim = 18; }, "cos_sin_cache.rot_dim: expected <= head_size (16), got 18");
  expect_error({}, [](Call& c, Q&, K&) { c.rot_dim = 8; c.offset = 10; }, "rope_dim_offset: expected <= head_size - rot_dim (16 - 8)");
  expect_error({}, [](Call& c, Q&, K&) { c.offset = -2; c.rot_dim = 8; }, "rope_dim_offset: expected >= 0");
  expect_error({}, [](Call& c, Q&, K&) { c.head_size = 0; }, "head_size: expected > 0");
  expect_error({}, [](Call& c, Q&, K&) { c.cache_dtype = DType::f64; }, "cos_sin_cache.dtype");
  expect_error({}, [](Call& c, Q&, K&) { c.null_cache = true; }, "cos_sin_cache.data: expected a non-null pointer");
  expect_error({}, [](Call& c, Q&, K&) { c.cache_byte_offset = 2; c.max_position = 7; },
               "cos_sin_cache.data: expected an address aligned to 4 bytes (the f32 element size)");
  expect_error({}, [](Call&, Q& q, K&) { q.data = static_cast<char*>(q.data) + 2; },  // rejected before any read
               "query.data: expected an address aligned to 4 bytes");
  expect_error({}, [](Call&, Q& q, K&) { q.rank = 2; q.shape = {3, 30}; q.strides = {32, 1}; }, "query.shape[-1]: expected a multiple of head_size (16)");
  expect_error({}, [](Call&, Q& q, K&) { q.shape[0] = 2; }, "query.shape: expected 3 tokens");
  expect_error({}, [](Call&, Q&, K& k) { k->shape[2] = 8; }, "key.shape");
  expect_error({}, [](Call&, Q& q, K&) { q.rank = 5; }, "query.rank");
  expect_error({}, [](Call&, Q&, K& k) { k->data = nullptr; }, "key.data: expected a non-null pointer");
  expect_error({}, [](Call&, Q& q, K&) { q.dtype = DType::f16; }, "key.dtype: expected f16 (as query)");
  expect_error({}, [](Call& c, Q&, K&) { c.positions.push_back(0); }, "tokens");
  expect_error({}, [](Call&, Q& q, K& k) { k->data = static_cast<float*>(q.data) + 8; }, "key: expected memory disjoint from query");
}

TEST(RotaryEmbedding, NoTokensIsANoOpAndCosSinCacheChecksItsArguments) {
  std::vector<float> cache(16, 1.0f);
  const TensorView q = TensorView::thd(nullptr, DType::f32, 0, 2, 16);
  ropekit::rotary_embedding(ropekit::IndexView(static_cast<const int64_t*>(nullptr), 0), q, std::nullopt, 16,
                            {cache.data(), DType::f32, ropekit::Device::cpu(), 1, 16}, true);
  ropekit::SpecParams sp;
  sp.head_dim = 16;
  EXPECT_THROW(ropekit::cos_sin_cache(ropekit::RopeSpec(sp), -1), ropekit::Error);
  EXPECT_TRUE(ropekit::cos_sin_cache(ropekit::RopeSpec(sp), 0).empty());
}

}  // namespace
