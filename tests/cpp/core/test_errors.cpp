// ropekit/error.hpp: the bad-input catalogue. Every case must raise ropekit::Error whose message
// names the argument, and must leave every buffer byte as it was (outputs are NaN-poisoned, inputs
// random). Some near-misses that are valid (fused qkv slices, exact in-place outputs) must pass.
#include <gtest/gtest.h>

#include <functional>
#include <limits>

#include "test_support.hpp"

namespace {

namespace sc = ropekit::scaling;
using ropekit::DType;
using ropekit::Positions;
using ropekit::RopeSpec;
using ropekit::RopeTensors;
using ropekit::TensorView;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

// Valid arguments in one arena: q (B,S,Hq,D), k (B,S,Hk,D), q_out, k_out, then spare room.
struct Env {
  static constexpr int64_t B = 2, S = 4, Hq = 3, Hk = 2, D = 16;
  static constexpr int64_t Q = B * S * Hq * D, K = B * S * Hk * D, kSpare = 256;
  rt::Buffer arena{DType::f32, 2 * Q + 2 * K + kSpare};
  RopeSpec spec{ropekit::SpecParams{.head_dim = D}};
  ropekit::RopeTable table{spec, 32};
  std::vector<int64_t> ids;
  std::vector<int32_t> ids32;

  explicit Env(rt::Rng& rng) {
    arena.fill_random(rng);
    for (int64_t i = Q + K; i < arena.size(); ++i) arena.set(i, kNaN);  // outputs and spare: poisoned
    for (int64_t i = 0; i < B * S; ++i) {
      ids.push_back(i % 7);
      ids32.push_back(static_cast<int32_t>(i % 7));
    }
  }
  float* at(int64_t element) { return static_cast<float*>(arena.data()) + element; }
  TensorView q() { return TensorView::bshd(at(0), DType::f32, B, S, Hq, D); }
  TensorView k() { return TensorView::bshd(at(Q), DType::f32, B, S, Hk, D); }
  TensorView q_out() { return TensorView::bshd(at(Q + K), DType::f32, B, S, Hq, D); }
  TensorView k_out() { return TensorView::bshd(at(2 * Q + K), DType::f32, B, S, Hk, D); }
  RopeTensors qk() { return {q(), k(), std::nullopt, std::nullopt}; }
  RopeTensors qk_out() { return {q(), k(), q_out(), k_out()}; }
  Positions pos() { return Positions::from_offset(0); }
  void apply(const RopeTensors& t, const Positions& p, ropekit::ApplyOptions o = {}) {
    ropekit::apply_rope(t, p, table, o);
  }
};

struct BadCase {
  const char* name;
  std::string fragment;  // must appear in the message
  std::function<void(Env&)> call;
};

// Shorthands for spec cases.
std::function<void(Env&)> spec_of(ropekit::SpecParams p) {
  return [p](Env&) { RopeSpec spec(p); };
}
ropekit::SpecParams with_scaling(ropekit::Scaling s, int64_t head_dim = 16) {
  return {.head_dim = head_dim, .scaling = std::move(s)};
}
sc::LongRope longrope(size_t short_n, size_t long_n) {
  sc::LongRope s;
  s.short_factor.assign(short_n, 1.0);
  s.long_factor.assign(long_n, 2.0);
  return s;
}

std::vector<BadCase> catalogue() {
  using E = Env;
  std::vector<BadCase> c;
  // ---- spec --------------------------------------------------------------------------------
  c.push_back({"odd head_dim", "head_dim", spec_of({.head_dim = 15})});
  c.push_back({"zero head_dim", "head_dim", spec_of({.head_dim = 0})});
  c.push_back({"negative head_dim", "head_dim", spec_of({.head_dim = -8})});
  c.push_back({"rotary_dim > head_dim", "rotary_dim", spec_of({.head_dim = 16, .rotary_dim = 18})});
  c.push_back({"odd rotary_dim", "rotary_dim", spec_of({.head_dim = 16, .rotary_dim = 7})});
  c.push_back({"negative rotary_dim", "rotary_dim", spec_of({.head_dim = 16, .rotary_dim = -2})});
  c.push_back({"NaN base", "base", spec_of({.head_dim = 16, .base = kNaN})});
  c.push_back({"infinite base", "base", spec_of({.head_dim = 16, .base = kInf})});
  c.push_back({"zero base", "base", spec_of({.head_dim = 16, .base = 0.0})});
  c.push_back({"negative base", "base", spec_of({.head_dim = 16, .base = -10000.0})});
  c.push_back({"linear factor 0", "scaling.linear.factor", spec_of(with_scaling(sc::Linear{.factor = 0.0}))});
  c.push_back({"linear factor -2", "scaling.linear.factor", spec_of(with_scaling(sc::Linear{.factor = -2.0}))});
  c.push_back({"ntk alpha inf", "scaling.ntk_aware.alpha", spec_of(with_scaling(sc::NtkAware{.alpha = kInf}))});
  c.push_back({"dynamic factor < 1", "scaling.dynamic.factor", spec_of(with_scaling(sc::DynamicNtk{.factor = 0.5}))});
  c.push_back({"dynamic original_max 0", "scaling.dynamic.original_max",
               spec_of(with_scaling(sc::DynamicNtk{.factor = 2.0, .original_max = 0}))});
  c.push_back({"yarn factor NaN", "scaling.yarn.factor", spec_of(with_scaling(sc::Yarn{.factor = kNaN}))});
  c.push_back({"yarn beta_fast < 0", "scaling.yarn.beta_fast", spec_of(with_scaling(sc::Yarn{.factor = 4, .beta_fast = -1}))});
  c.push_back({"yarn original_max 0", "scaling.yarn.original_max", spec_of(with_scaling(sc::Yarn{.factor = 4, .original_max = 0}))});
  c.push_back({"yarn mscale inf", "scaling.yarn.mscale", spec_of(with_scaling(sc::Yarn{.factor = 4, .mscale = kInf}))});
  c.push_back({"yarn attention_factor 0", "scaling.yarn.attention_factor",
               spec_of(with_scaling(sc::Yarn{.factor = 4, .attention_factor = 0.0}))});
  c.push_back({"llama3 high == low", "scaling.llama3.high_freq_factor",
               spec_of(with_scaling(sc::Llama3{.low_freq_factor = 4.0, .high_freq_factor = 4.0}))});
  c.push_back({"llama3 high < low", "scaling.llama3.high_freq_factor",
               spec_of(with_scaling(sc::Llama3{.low_freq_factor = 4.0, .high_freq_factor = 1.0}))});
  c.push_back({"longrope short_factor length", "scaling.longrope.short_factor", spec_of(with_scaling(longrope(7, 8)))});
  c.push_back({"longrope long_factor length", "scaling.longrope.long_factor", spec_of(with_scaling(longrope(8, 9)))});
  c.push_back({"longrope factor entry 0", "scaling.longrope.short_factor[2]", [](E&) {
                 auto s = longrope(8, 8);
                 s.short_factor[2] = 0.0;
                 RopeSpec spec(with_scaling(s));
               }});
  c.push_back({"truncated a > b", "scaling.truncated.a", spec_of(with_scaling(sc::Truncated{.a = 0.5, .b = 0.1, .rho = 0.0}))});
  c.push_back({"truncated rho < 0", "scaling.truncated.rho", spec_of(with_scaling(sc::Truncated{.a = 0.1, .b = 0.5, .rho = -1}))});
  c.push_back({"truncated length 0", "scaling.truncated.length", [](E&) { (void)sc::Truncated::from_length(0.0); }});
  c.push_back({"xpos scale_base 0", "xpos.scale_base", spec_of({.head_dim = 16, .xpos = ropekit::Xpos{.scale_base = 0.0}})});
  c.push_back({"xpos scale_base NaN", "xpos.scale_base", spec_of({.head_dim = 16, .xpos = ropekit::Xpos{.scale_base = kNaN}})});
  c.push_back({"xpos gamma < 0", "xpos.gamma", spec_of({.head_dim = 16, .xpos = ropekit::Xpos{.gamma = -0.4}})});
  c.push_back({"style name", "style", [](E&) { (void)ropekit::style_from_string("sideways"); }});
  c.push_back({"table grown(-1)", "n", [](E& e) { (void)e.table.grown(-1); }});
  c.push_back({"table for_seq_len(-1)", "seq_len", [](E& e) { (void)e.table.for_seq_len(-1); }});
  c.push_back({"table of -1 positions", "positions", [](E& e) { (void)ropekit::RopeTable(e.spec, -1); }});

  // ---- views ---------------------------------------------------------------------------------
  c.push_back({"q rank 2", "q.rank", [](E& e) {
                 auto q = e.q();
                 q.rank = 2;
                 e.apply({q}, e.pos());
               }});
  c.push_back({"q rank 5", "q.rank", [](E& e) {
                 auto q = e.q();
                 q.rank = 5;
                 e.apply({q}, e.pos());
               }});
  c.push_back({"q dtype enum", "q.dtype", [](E& e) {
                 auto q = e.q();
                 q.dtype = static_cast<DType>(7);
                 e.apply({q}, e.pos());
               }});
  c.push_back({"q last stride 2", "q.strides[-1]", [](E& e) {
                 auto q = TensorView::bshd(e.at(0), DType::f32, 1, 2, 1, 16);
                 q.strides = {64, 32, 32, 2};
                 e.apply({q}, e.pos());
               }});
  c.push_back({"q negative shape", "q.shape[1]", [](E& e) {
                 auto q = e.q();
                 q.shape[1] = -1;
                 e.apply({q}, e.pos());
               }});
  c.push_back({"q head_dim != spec", "q.shape[-1]",
               [](E& e) { e.apply({TensorView::bshd(e.at(0), DType::f32, 2, 4, 6, 8)}, e.pos()); }});
  c.push_back({"q nullptr", "q.data", [](E& e) { e.apply({TensorView::bshd(nullptr, DType::f32, 2, 4, 3, 16)}, e.pos()); }});
  c.push_back({"q misaligned", "q.data: expected an address aligned to 4 bytes (the f32 element size)", [](E& e) {
                 e.apply({TensorView::bshd(reinterpret_cast<char*>(e.at(0)) + 2, DType::f32, 2, 4, 3, 16)}, e.pos());
               }});
  c.push_back({"k_out misaligned", "k_out.data: expected an address aligned to 4 bytes", [](E& e) {
                 auto t = e.qk_out();
                 t.k_out->data = reinterpret_cast<char*>(t.k_out->data) + 1;
                 e.apply(t, e.pos());
               }});
  c.push_back({"ids misaligned", "positions.ids.data: expected an address aligned to 8 bytes (the i64 element size)",
               [](E& e) {
                 const auto* ids = reinterpret_cast<const int64_t*>(reinterpret_cast<const char*>(e.ids.data()) + 4);
                 e.apply(e.qk(), Positions::token_ids({ids, 7}));
               }});
  c.push_back({"k head_dim differs", "k.shape[-1]", [](E& e) {
                 e.apply({e.q(), TensorView::bshd(e.at(Env::Q), DType::f32, 2, 4, 4, 8)}, e.pos());
               }});
  c.push_back({"k dtype differs", "k.dtype", [](E& e) {
                 e.apply({e.q(), TensorView::bshd(e.at(Env::Q), DType::bf16, 2, 4, 2, 16)}, e.pos());
               }});
  c.push_back({"k rank differs", "k.rank", [](E& e) {
                 e.apply({e.q(), TensorView::thd(e.at(Env::Q), DType::f32, 8, 2, 16)}, e.pos());
               }});
  c.push_back({"k batch differs", "k.shape", [](E& e) {
                 e.apply({e.q(), TensorView::bshd(e.at(Env::Q), DType::f32, 1, 4, 2, 16)}, e.pos());
               }});
  c.push_back({"k seq differs", "k.shape", [](E& e) {
                 e.apply({e.q(), TensorView::bshd(e.at(Env::Q), DType::f32, 2, 3, 2, 16)}, e.pos());
               }});
  c.push_back({"k nullptr", "k.data", [](E& e) {
                 e.apply({e.q(), TensorView::bshd(nullptr, DType::f32, 2, 4, 2, 16)}, e.pos());
               }});
  c.push_back({"k on cuda:0, q on cpu", "k.device", [](E& e) {
                 auto k = e.k();
                 k.device = ropekit::Device::cuda(0);
                 e.apply({e.q(), k}, e.pos());
               }});
  c.push_back({"q_out wrong shape", "q_out.shape", [](E& e) {
                 e.apply({e.q(), std::nullopt, TensorView::bshd(e.at(Env::Q + Env::K), DType::f32, 2, 4, 2, 16)}, e.pos());
               }});
  c.push_back({"q_out wrong dtype", "q_out.dtype", [](E& e) {
                 e.apply({e.q(), std::nullopt, TensorView::bshd(e.at(Env::Q + Env::K), DType::f16, 2, 4, 3, 16)}, e.pos());
               }});
  c.push_back({"q_out on cuda", "q_out.device", [](E& e) {
                 auto o = e.q_out();
                 o.device = ropekit::Device::cuda(0);
                 e.apply({e.q(), std::nullopt, o}, e.pos());
               }});
  c.push_back({"k_out without k", "k_out", [](E& e) { e.apply({e.q(), std::nullopt, std::nullopt, e.k_out()}, e.pos()); }});
  c.push_back({"k_out wrong shape", "k_out.shape", [](E& e) {
                 e.apply({e.q(), e.k(), e.q_out(), TensorView::bshd(e.at(2 * Env::Q + Env::K), DType::f32, 2, 4, 1, 16)}, e.pos());
               }});

  // ---- aliasing ------------------------------------------------------------------------------
  c.push_back({"q_out partially overlaps q", "q_out", [](E& e) {
                 e.apply({e.q(), std::nullopt, TensorView::bshd(e.at(16), DType::f32, 2, 4, 3, 16)}, e.pos());
               }});
  c.push_back({"q_out overlaps k", "q_out", [](E& e) {
                 e.apply({e.q(), e.k(), TensorView::bshd(e.at(Env::Q + 32), DType::f32, 2, 4, 3, 16), e.k_out()}, e.pos());
               }});
  c.push_back({"k overlaps q, both in place", "overlap with q", [](E& e) {
                 e.apply({e.q(), TensorView::bshd(e.at(Env::Q - 16), DType::f32, 2, 4, 2, 16)}, e.pos());
               }});
  c.push_back({"k_out overlaps q_out", "k_out", [](E& e) {
                 e.apply({e.q(), e.k(), e.q_out(), TensorView::bshd(e.at(Env::Q + Env::K + 48), DType::f32, 2, 4, 2, 16)},
                         e.pos());
               }});
  // q rotated in place while an overlapping k is read into its own k_out (and the mirror case):
  // accepted before, and k read values q had already rotated.
  c.push_back({"k (read into k_out) overlaps q rotated in place", "k: expected memory disjoint from q", [](E& e) {
                 e.apply({e.q(), TensorView::bshd(e.at(Env::Q - 16), DType::f32, 2, 4, 2, 16), std::nullopt, e.k_out()},
                         e.pos());
               }});
  c.push_back({"q (read into q_out) overlaps k rotated in place", "q: expected memory disjoint from k", [](E& e) {
                 e.apply({TensorView::bshd(e.at(Env::Q - 128), DType::f32, 2, 4, 3, 16), e.k(), e.q_out(), std::nullopt},
                         e.pos());
               }});
  c.push_back({"k_out partially overlaps k", "k_out", [](E& e) {
                 e.apply({e.q(), e.k(), e.q_out(), TensorView::bshd(e.at(Env::Q + 16), DType::f32, 2, 4, 2, 16)}, e.pos());
               }});
  c.push_back({"q in place with stride 0", "reachable twice", [](E& e) {
                 auto q = e.q();
                 q.strides[1] = 0;
                 e.apply({q}, e.pos());
               }});
  c.push_back({"q_out heads overlapping each other", "q_out", [](E& e) {
                 auto o = e.q_out();
                 o.strides[2] = 8;  // heads of 16 elements 8 apart
                 e.apply({e.q(), std::nullopt, o}, e.pos());
               }});

  // ---- positions -----------------------------------------------------------------------------
  c.push_back({"negative start", "positions.start", [](E& e) { e.apply(e.qk(), Positions::from_offset(-1)); }});
  c.push_back({"negative id", "positions.ids[3]", [](E& e) {
                 e.ids[3] = -5;
                 e.apply(e.qk(), Positions::token_ids({e.ids.data(), 8}));
               }});
  c.push_back({"negative id (i32, spec overload)", "positions.ids[5]", [](E& e) {
                 e.ids32[5] = -1;
                 ropekit::apply_rope(e.qk_out(), Positions::token_ids({e.ids32.data(), 8}), e.spec);
               }});
  c.push_back({"xpos position too far from the center", "positions.ids", [](E& e) {
                 const RopeSpec xpos({.head_dim = Env::D, .xpos = ropekit::Xpos{.scale_base = 512.0}});
                 e.ids[6] = 40000;  // k's scale zeta^(-40000/512) would overflow float32
                 ropekit::apply_rope(e.qk(), Positions::token_ids({e.ids.data(), 8}), ropekit::RopeTable(xpos, 8));
               }});
  c.push_back({"xpos start too far from the center", "positions.start", [](E& e) {
                 const RopeSpec xpos({.head_dim = Env::D, .xpos = ropekit::Xpos{.scale_base = 512.0}});
                 ropekit::apply_rope(e.qk(), Positions::from_offset(36000), xpos);
               }});
  c.push_back({"ids wrong count", "positions.ids.size", [](E& e) { e.apply(e.qk(), Positions::token_ids({e.ids.data(), 7})); }});
  c.push_back({"ids nullptr", "positions.ids.data", [](E& e) {
                 e.apply(e.qk(), Positions::token_ids({static_cast<const int64_t*>(nullptr), 8}));
               }});
  c.push_back({"ids on cuda", "positions.ids.device", [](E& e) {
                 e.apply(e.qk(), Positions::token_ids({e.ids.data(), 8, ropekit::Device::cuda(0)}));
               }});
  c.push_back({"negative offset", "positions.offsets[1]", [](E& e) {
                 const int64_t off[] = {0, -3};
                 e.apply(e.qk(), Positions::per_sequence({off, 2}));
               }});
  c.push_back({"offsets wrong count", "positions.offsets.size", [](E& e) {
                 const int64_t off[] = {0, 1, 2};
                 e.apply(e.qk(), Positions::per_sequence({off, 3}));
               }});
  auto packed_call = [](std::vector<int64_t> cu, std::vector<int64_t> offsets = {}) {
    return [cu, offsets](E& e) {
      const auto q = TensorView::thd(e.at(0), DType::f32, 8, 3, 16);
      const auto k = TensorView::thd(e.at(Env::Q), DType::f32, 8, 2, 16);
      e.apply({q, k}, Positions::packed({cu.data(), static_cast<int64_t>(cu.size())},
                                        offsets.empty() ? ropekit::IndexView{}
                                                        : ropekit::IndexView{offsets.data(), static_cast<int64_t>(offsets.size())}));
    };
  };
  c.push_back({"cu_seqlens not starting at 0", "positions.cu_seqlens[0]", packed_call({1, 4, 8})});
  c.push_back({"cu_seqlens decreasing", "positions.cu_seqlens[2]", packed_call({0, 5, 3, 8})});
  c.push_back({"cu_seqlens not ending at T", "positions.cu_seqlens[2]", packed_call({0, 4, 7})});
  c.push_back({"cu_seqlens too short", "positions.cu_seqlens.size", packed_call({0})});
  c.push_back({"packed with rank 4", "packed", [](E& e) {
                 const int64_t cu[] = {0, 4, 8};
                 e.apply(e.qk(), Positions::packed({cu, 3}));
               }});
  c.push_back({"packed offsets wrong count", "positions.offsets.size", packed_call({0, 4, 8}, {0, 1, 2})});
  c.push_back({"packed negative offset", "positions.offsets[1]", packed_call({0, 4, 8}, {0, -1})});

  // ---- options -------------------------------------------------------------------------------
  c.push_back({"negative num_threads", "options.num_threads", [](E& e) {
                 ropekit::ApplyOptions o;
                 o.num_threads = -1;
                 e.apply(e.qk_out(), e.pos(), o);
               }});
  c.push_back({"direction enum", "options.direction", [](E& e) {
                 ropekit::ApplyOptions o;
                 o.direction = static_cast<ropekit::Direction>(9);
                 e.apply(e.qk_out(), e.pos(), o);
               }});
  c.push_back({"xpos_center NaN", "options.xpos_center", [](E& e) {
                 ropekit::ApplyOptions o;
                 o.xpos_center = kNaN;
                 e.apply(e.qk_out(), e.pos(), o);
               }});
  return c;
}

TEST(Errors, CatalogueRaisesNamedErrorsAndWritesNothing) {
  RT_SEEDED_RNG(rng);
  const auto cases = catalogue();
  EXPECT_GE(cases.size(), 30u);
  for (const auto& bad : cases) {
    SCOPED_TRACE(bad.name);
    Env env(rng);
    const auto before = env.arena.bytes();
    bool raised = false;
    try {
      bad.call(env);
    } catch (const ropekit::Error& e) {
      raised = true;
      const std::string message = e.what();
      EXPECT_NE(message.find(bad.fragment), std::string::npos) << "message \"" << message << "\" lacks \"" << bad.fragment << '"';
      EXPECT_NE(message.find("expected"), std::string::npos) << message;
    } catch (const std::exception& e) {
      ADD_FAILURE() << "wrong exception type: " << e.what();
    }
    EXPECT_TRUE(raised) << "no ropekit::Error";
    EXPECT_TRUE(env.arena.bytes() == before) << "memory written before the error";
  }
}

// ropekit::Error is a std::invalid_argument carrying the "ropekit: " prefix.
TEST(Errors, ErrorTypeAndPrefix) {
  try {
    RopeSpec spec({.head_dim = 3});
    FAIL() << "no error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(dynamic_cast<const ropekit::Error*>(&e), nullptr);
    EXPECT_EQ(std::string(e.what()).rfind("ropekit: head_dim", 0), 0u) << e.what();
    EXPECT_NE(std::string(e.what()).find("got 3"), std::string::npos) << e.what();
  }
}

// Near misses that are valid: they must not be rejected.
TEST(Errors, ValidAliasingIsAccepted) {
  RT_SEEDED_RNG(rng);
  Env env(rng);
  // q_out given as exactly q: in place.
  EXPECT_NO_THROW(env.apply({env.q(), env.k(), env.q(), env.k()}, env.pos()));
  // Fused (T, Hq + 2 Hk, D) qkv buffer, q and k as disjoint head slices, in place.
  const int64_t T = 5, Hq = 2, Hk = 1, D = 16, row = (Hq + 2 * Hk) * D;
  auto slice = [&](int64_t first, int64_t heads) {
    auto v = TensorView::thd(env.at(first * D), DType::f32, T, heads, D);
    v.strides = {row, D, 1, 0};
    return v;
  };
  EXPECT_NO_THROW(env.apply({slice(0, Hq), slice(Hq, Hk)}, env.pos()));
  // The same with q and k written into a fused output buffer's slices.
  auto out_slice = [&](int64_t first, int64_t heads) {
    auto v = TensorView::thd(env.at(Env::Q + Env::K + first * D), DType::f32, T, heads, D);
    v.strides = {row, D, 1, 0};
    return v;
  };
  EXPECT_NO_THROW(env.apply({slice(0, Hq), slice(Hq, Hk), out_slice(0, Hq), out_slice(Hq, Hk)}, env.pos()));
  // Interleaved token rows of two views (BHSD q and k sharing nothing) and broadcast-free size-1 dims.
  auto one = TensorView::bshd(env.at(0), DType::f32, 1, 1, 1, 16);
  one.strides = {0, 0, 0, 1};  // stride 0 on extent-1 dims is harmless
  EXPECT_NO_THROW(env.apply({one}, env.pos()));
}

}  // namespace
