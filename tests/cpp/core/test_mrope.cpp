// M-RoPE (ropekit/spec.hpp MRope, Positions::token_ids with 3 axes): the spec's checks, the
// positions' checks, the pair-to-axis maps of the real models, text tokens equal to plain RoPE, and
// the models' head sizes through the shared case checker (float64 reference) on every CPU backend.
// The case table (src/cases) draws M-RoPE specs and 3-axis positions with every other option.
#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "case_test_util.hpp"
#include "rope_math.hpp"
#include "ropekit/ropekit.hpp"
#include "test_support.hpp"

namespace {

using ropekit::DType;
using ropekit::IndexView;
using ropekit::MRope;
using ropekit::Positions;
using ropekit::RopeSpec;
using ropekit::SpecParams;
using ropekit::Style;
using ropekit::TensorView;

using rt::error_of;

SpecParams mrope_params(int64_t head_dim, MRope m, int64_t rotary_dim = 0) {
  SpecParams p;
  p.head_dim = head_dim;
  p.rotary_dim = rotary_dim;
  p.mrope = m;
  return p;
}

// The axis of every pair, from the kernels' map (rope_math.hpp PairAxes).
std::vector<int> axes_of(const MRope& m, int64_t pairs) {
  const ropekit::detail::PairAxes a{m.sections[0], m.sections[1], m.sections[2], m.interleaved};
  std::vector<int> out;
  for (int64_t j = 0; j < pairs; ++j) out.push_back(a.of(j));
  return out;
}

TEST(MRope, SpecChecksTheSections) {
  EXPECT_NO_THROW(RopeSpec(mrope_params(128, {{16, 24, 24}, false})));
  EXPECT_NO_THROW(RopeSpec(mrope_params(128, {{24, 20, 20}, true})));
  EXPECT_NO_THROW(RopeSpec(mrope_params(256, {{11, 11, 10}, true}, 64)));  // Qwen3.5: a quarter of 256
  EXPECT_NE(error_of([] { RopeSpec(mrope_params(128, {{16, 24, 23}, false})); })
                .find("mrope.sections: expected pair counts summing to rotary_dim / 2 (64), got [16, 24, 23]"),
            std::string::npos);
  EXPECT_NE(error_of([] { RopeSpec(mrope_params(128, {{-1, 33, 32}, false})); }).find("mrope.sections[0]"),
            std::string::npos);
  // Interleaved height pairs 1, 4, ... below 3h must fit in 64 pairs: h = 22 needs pair 64.
  EXPECT_NE(error_of([] { RopeSpec(mrope_params(128, {{20, 22, 22}, true})); }).find("interleaved sections"),
            std::string::npos);
  EXPECT_NO_THROW(RopeSpec(mrope_params(128, {{20, 22, 22}, false})));  // chunked: any split
  SpecParams with_xpos = mrope_params(128, {{16, 24, 24}, false});
  with_xpos.xpos = ropekit::Xpos{};
  EXPECT_NE(error_of([&] { RopeSpec{with_xpos}; }).find("xpos: expected absent with mrope"), std::string::npos);
  EXPECT_NE(RopeSpec(mrope_params(128, {{24, 20, 20}, true})).describe().find("mrope(sections=24,20,20, interleaved)"),
            std::string::npos);
  EXPECT_FALSE(RopeSpec(mrope_params(128, {{24, 20, 20}, true})) == RopeSpec(mrope_params(128, {{24, 20, 20}, false})));
}

// The maps the models' code builds, written out: Qwen2-VL's sections [16, 24, 24] in order;
// Qwen3-VL's [24, 20, 20] as t h w t h w ... for the first 60 pairs, then t.
TEST(MRope, PairAxesOfTheModels) {
  const auto chunked = axes_of({{16, 24, 24}, false}, 64);
  for (int j = 0; j < 64; ++j) EXPECT_EQ(chunked[static_cast<size_t>(j)], j < 16 ? 0 : j < 40 ? 1 : 2) << j;
  const auto interleaved = axes_of({{24, 20, 20}, true}, 64);
  for (int j = 0; j < 64; ++j) EXPECT_EQ(interleaved[static_cast<size_t>(j)], j < 60 ? j % 3 : 0) << j;
  int per_axis[3] = {};
  for (int a : axes_of({{11, 11, 10}, true}, 32)) ++per_axis[a];
  EXPECT_EQ(per_axis[0], 11);
  EXPECT_EQ(per_axis[1], 11);
  EXPECT_EQ(per_axis[2], 10);
}

struct Qk {
  int64_t B = 2, S = 6, Hq = 4, Hk = 2, D = 128;
  std::vector<float> q, k;
  explicit Qk(uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    q.resize(static_cast<size_t>(B * S * Hq * D));
    k.resize(static_cast<size_t>(B * S * Hk * D));
    for (auto& v : q) v = u(rng);
    for (auto& v : k) v = u(rng);
  }
  ropekit::RopeTensors views() {
    return {TensorView::bshd(q.data(), DType::f32, B, S, Hq, D), TensorView::bshd(k.data(), DType::f32, B, S, Hk, D),
            std::nullopt, std::nullopt};
  }
};

// Three equal axes are plain RoPE, bit for bit, on the table and the in-kernel paths, and so are
// one-axis positions with an M-RoPE spec.
TEST(MRope, TextTokensArePlainRope) {
  for (bool interleaved : {false, true}) {
    for (bool compute : {false, true}) {
      const RopeSpec mrope(mrope_params(128, {{24, 20, 20}, interleaved}));
      SpecParams plain_params = mrope_params(128, {{24, 20, 20}, interleaved});
      plain_params.mrope.reset();
      const RopeSpec plain(plain_params);
      Qk a(7), b(7), c(7);
      std::vector<int64_t> ids(static_cast<size_t>(a.B * a.S)), ids3;
      for (size_t t = 0; t < ids.size(); ++t) ids[t] = static_cast<int64_t>(3 * t + 5);
      for (int axis = 0; axis < 3; ++axis) ids3.insert(ids3.end(), ids.begin(), ids.end());
      ropekit::ApplyOptions o;
      o.compute_sincos = compute;
      const ropekit::RopeTable mt(mrope, 64), pt(plain, 64);
      ropekit::apply_rope(a.views(), Positions::token_ids(IndexView(ids3.data(), static_cast<int64_t>(ids3.size())), 3), mt, o);
      ropekit::apply_rope(b.views(), Positions::token_ids(IndexView(ids.data(), static_cast<int64_t>(ids.size()))), mt, o);
      ropekit::apply_rope(c.views(), Positions::token_ids(IndexView(ids.data(), static_cast<int64_t>(ids.size()))), pt, o);
      EXPECT_EQ(std::memcmp(a.q.data(), c.q.data(), a.q.size() * 4), 0);
      EXPECT_EQ(std::memcmp(a.k.data(), c.k.data(), a.k.size() * 4), 0);
      EXPECT_EQ(std::memcmp(b.q.data(), c.q.data(), b.q.size() * 4), 0);
      EXPECT_EQ(std::memcmp(b.k.data(), c.k.data(), b.k.size() * 4), 0);
    }
  }
}

// Changing one axis of one token changes exactly the pairs of that axis, of that token.
TEST(MRope, EachAxisTurnsItsPairs) {
  const MRope m{{16, 24, 24}, false};
  const RopeSpec spec(mrope_params(128, m));
  const auto axes = axes_of(m, 64);
  for (int axis = 0; axis < 3; ++axis) {
    Qk base(3), moved(3);
    const int64_t tokens = base.B * base.S;
    std::vector<int64_t> ids(static_cast<size_t>(3 * tokens));
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int64_t>(i % 17);
    std::vector<int64_t> ids_moved = ids;
    const int64_t token = 7;
    ids_moved[static_cast<size_t>(axis * tokens + token)] += 1;
    ropekit::apply_rope(base.views(), Positions::token_ids(IndexView(ids.data(), 3 * tokens), 3), spec);
    ropekit::apply_rope(moved.views(), Positions::token_ids(IndexView(ids_moved.data(), 3 * tokens), 3), spec);
    for (int64_t t = 0; t < tokens; ++t)
      for (int64_t h = 0; h < base.Hq; ++h)
        for (int64_t d = 0; d < 128; ++d) {
          const size_t e = static_cast<size_t>((t * base.Hq + h) * 128 + d);
          const bool turned = t == token && axes[static_cast<size_t>(d % 64)] == axis;
          EXPECT_EQ(base.q[e] != moved.q[e], turned) << "axis " << axis << " token " << t << " d " << d;
        }
  }
}

TEST(MRope, PositionsAreChecked) {
  const RopeSpec spec(mrope_params(128, {{16, 24, 24}, false}));
  SpecParams plain_params = mrope_params(128, {});
  plain_params.mrope.reset();
  const RopeSpec plain(plain_params);
  Qk a(1);
  const int64_t tokens = a.B * a.S;
  std::vector<int64_t> ids(static_cast<size_t>(3 * tokens), 2);
  const IndexView all(ids.data(), 3 * tokens);
  EXPECT_NE(error_of([&] { ropekit::apply_rope(a.views(), Positions::token_ids(IndexView(ids.data(), 2 * tokens), 2), spec); })
                .find("positions.axes: expected 1 or 3 (the spec's M-RoPE axes; several axes come axis-major: ids (3, B, S) or (3, T), not (B, S, 3)), got 2"),
            std::string::npos);
  EXPECT_NE(error_of([&] { ropekit::apply_rope(a.views(), Positions::token_ids(IndexView(ids.data(), tokens), 3), spec); })
                .find("positions.ids.size: expected 36 (3 axes x 12 tokens"),
            std::string::npos);
  EXPECT_NE(error_of([&] { ropekit::apply_rope(a.views(), Positions::token_ids(all, 3), plain); })
                .find("positions.axes: expected 1 for a spec without mrope"),
            std::string::npos);
  EXPECT_NE(error_of([&] { ropekit::apply_rope(a.views(), Positions::token_ids(all, 4), spec); })
                .find("positions.axes: expected 1, 2 (axial 2-D RoPE) or 3"),
            std::string::npos);
  Positions offsets = Positions::from_offset(0);
  offsets.axes = 3;
  EXPECT_NE(error_of([&] { ropekit::apply_rope(a.views(), offsets, spec); }).find("positions.axes: expected 1 for offsets"),
            std::string::npos);
  ids[static_cast<size_t>(2 * tokens + 5)] = -1;  // axis w of token 5
  EXPECT_NE(error_of([&] { ropekit::apply_rope(a.views(), Positions::token_ids(all, 3), spec); })
                .find("positions.ids[29]: expected in [0, "),
            std::string::npos);
  ids[static_cast<size_t>(2 * tokens + 5)] = 2;
  ropekit::ApplyOptions scaled;
  scaled.query_scale = ropekit::QueryScale{1.0, 0.1, 8, 0};
  EXPECT_NE(error_of([&] { ropekit::apply_rope(a.views(), Positions::token_ids(all, 3), ropekit::RopeTable(spec, 8), scaled); })
                .find("options.query_scale: expected absent with multi-axis positions"),
            std::string::npos);
  const std::vector<float> before = a.q;
  (void)error_of([&] { ropekit::apply_rope(a.views(), Positions::token_ids(all, 4), spec); });
  EXPECT_EQ(a.q, before);  // an error writes nothing
  // The table a call needs reaches the largest id of any axis.
  ids[static_cast<size_t>(tokens + 3)] = 90;
  EXPECT_EQ(ropekit::required_table_size(a.views(), Positions::token_ids(all, 3)), 91);
}

// The models' heads through the float64 reference on every CPU backend: Qwen2-VL (half, [16, 24,
// 24]), Qwen3-VL (interleaved sections), GLM-4V (interleaved pairs, partial rotary 64 of 128,
// [8, 12, 12]), Qwen3.5 (a quarter of 256, [11, 11, 10] interleaved), table rows and in-kernel.
TEST(MRope, ModelHeadsOnEveryCpuBackend) {
  using namespace ropekit::cases;
  struct Model {
    const char* name;
    int64_t head_dim, rotary_dim;
    Style style;
    MRope m;
  };
  const Model models[] = {{"qwen2_vl", 128, 128, Style::half, {{16, 24, 24}, false}},
                          {"qwen3_vl", 128, 128, Style::half, {{24, 20, 20}, true}},
                          {"glm4v", 128, 64, Style::interleaved, {{8, 12, 12}, false}},
                          {"qwen3_5", 256, 64, Style::half, {{11, 11, 10}, true}}};
  const uint64_t seed = test_seed();
  SCOPED_TRACE(replay_note(seed));
  for (const Model& model : models) {
    for (DType dtype : {DType::f32, DType::bf16, DType::f16}) {
      for (CosSin cos_sin : {CosSin::rows, CosSin::past_rows, CosSin::compute}) {
        SCOPED_TRACE(model.name);
        Case c;
        c.dtype = dtype;
        c.style = model.style;
        c.positions = PositionMode::ids64;
        c.cos_sin = cos_sin;
        c.axis_map = model.m.interleaved ? AxisMap::mrope_interleaved : AxisMap::mrope_chunked;
        expect_case_passes(c, seed, [&](Case& x) {
          set_head_dim(x, model.head_dim, model.rotary_dim);
          x.spec.mrope = model.m;
          x.q_heads = 4;
          x.k_heads = 2;
        }, cpu_backends());
      }
    }
  }
}

}  // namespace

namespace {

using ropekit::MRopeIndexOptions;
using ropekit::VisionGrid;

// Two text tokens, a 4 x 6 image merged 2 x 2 (2 rows of 3), one text token: get_rope_index's
// layout written out.
TEST(MRopeIndex, OneImageWrittenOut) {
  const std::vector<int32_t> types = {0, 0, 1, 1, 1, 1, 1, 1, 0};
  const auto index = ropekit::mrope_index(IndexView(types.data(), 9), 1, 9, {{1, 4, 6}}, {});
  const std::vector<int64_t> want = {0, 1, 2, 2, 2, 2, 2, 2, 5,   // time
                                     0, 1, 2, 2, 2, 3, 3, 3, 5,   // height
                                     0, 1, 2, 3, 4, 2, 3, 4, 5};  // width
  EXPECT_EQ(index.positions, want);
  EXPECT_EQ(index.deltas, std::vector<int64_t>{6 - 9});
}

// A masked (left-padded) row, a video of 2 frames spaced by Qwen2.5-VL's tokens_per_second, and
// the same video split into frames (Qwen3-VL: one run a frame, text between).
TEST(MRopeIndex, PaddingVideosAndFrames) {
  const std::vector<int64_t> types = {0, 0, 2, 2, 2, 2, 0, 0, 0, 2, 2, 2, 2, 0};
  const std::vector<int64_t> mask = {0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
  MRopeIndexOptions qwen25;
  qwen25.tokens_per_second = 2.0;
  const auto a = ropekit::mrope_index(IndexView(types.data(), 14), 2, 7, {}, {{2, 2, 4}, {2, 2, 4}}, qwen25,
                                      IndexView(mask.data(), 14), {0.5, 1.5});
  // Row 0: pad, text 0, video at 1 (frames at time 1 + 0 and 1 + floor(1 * 2 * 0.5) = 2, w 1..2),
  // text from 1 + 2 = 3. Row 1: text 0, 1, video at 2 (times 2 and 2 + floor(1 * 2 * 1.5) = 5),
  // text from 2 + 2 = 4.
  const std::vector<int64_t> want = {0, 0, 1, 1, 2, 2, 3,  0, 1, 2, 2, 5, 5, 4,  // time
                                     0, 0, 1, 1, 1, 1, 3,  0, 1, 2, 2, 2, 2, 4,  // height
                                     0, 0, 1, 2, 1, 2, 3,  0, 1, 2, 3, 2, 3, 4};  // width
  EXPECT_EQ(a.positions, want);
  EXPECT_EQ(a.deltas, (std::vector<int64_t>{4 - 6, 6 - 7}));
  MRopeIndexOptions split;
  split.split_video_frames = true;
  const std::vector<int32_t> frames = {2, 2, 0, 2, 2};
  const auto b = ropekit::mrope_index(IndexView(frames.data(), 5), 1, 5, {}, {{2, 2, 4}}, split);
  const std::vector<int64_t> want_b = {0, 0, 2, 3, 3, 0, 0, 2, 3, 3, 0, 1, 2, 3, 4};
  EXPECT_EQ(b.positions, want_b);
}

TEST(MRopeIndex, BadInputNamesTheArgument) {
  const std::vector<int32_t> types = {0, 1, 1, 1, 1, 0};
  const IndexView t(types.data(), 6);
  EXPECT_NE(error_of([&] { ropekit::mrope_index(t, 1, 6, {{1, 4, 6}}, {}); })
                .find("image_grid_thw[0]: expected a grid of as many merged patches as its run of 4 tokens at "
                      "token_types[1], got (1, 4, 6): 6 tokens"),
            std::string::npos);
  EXPECT_NE(error_of([&] { ropekit::mrope_index(t, 1, 6, {}, {}); }).find("image_grid_thw: expected a grid for the image run"),
            std::string::npos);
  EXPECT_NE(error_of([&] { ropekit::mrope_index(t, 1, 6, {{1, 4, 4}, {1, 2, 2}}, {}); })
                .find("image_grid_thw: expected every grid taken by a run of tokens (1 taken), got 2 grids"),
            std::string::npos);
  EXPECT_NE(error_of([&] { ropekit::mrope_index(t, 1, 6, {{1, 4, 3}}, {}); })
                .find("image_grid_thw[0]: expected h and w divisible by spatial_merge_size (2)"),
            std::string::npos);
  EXPECT_NE(error_of([&] { ropekit::mrope_index(t, 2, 6, {{1, 4, 4}}, {}); }).find("token_types.size: expected 12"),
            std::string::npos);
  const std::vector<int32_t> bad = {0, 3};
  EXPECT_NE(error_of([&] { ropekit::mrope_index(IndexView(bad.data(), 2), 1, 2, {}, {}); })
                .find("token_types[1]: expected 0 (text), 1 (image) or 2 (video), got 3"),
            std::string::npos);
  const std::vector<int32_t> mask = {1, 2, 1, 1, 1, 1};
  EXPECT_NE(error_of([&] { ropekit::mrope_index(t, 1, 6, {{1, 4, 4}}, {}, {}, IndexView(mask.data(), 6)); })
                .find("attention_mask[1]: expected 0 or 1, got 2"),
            std::string::npos);
  EXPECT_NE(error_of([&] { ropekit::mrope_index(t, 1, 6, {}, {{1, 4, 4}}, {}, {}, {1.0, 2.0}); })
                .find("seconds_per_grid.size: expected 1"),
            std::string::npos);
}

}  // namespace

namespace {

using ropekit::Axial2d;

SpecParams axial_params(int64_t head_dim, bool odd, Style style = Style::half) {
  SpecParams p;
  p.head_dim = head_dim;
  p.style = style;
  p.axial = Axial2d{odd};
  return p;
}

// The frequencies of each half: the plain RoPE's even ones twice, or even then odd (Pixtral).
TEST(Axial2d, FrequenciesAndChecks) {
  SpecParams plain_params = axial_params(16, false);
  plain_params.axial.reset();
  const auto plain = ropekit::inv_freq(RopeSpec(plain_params));
  const auto even = ropekit::inv_freq(RopeSpec(axial_params(16, false)));
  const auto odd = ropekit::inv_freq(RopeSpec(axial_params(16, true)));
  ASSERT_EQ(plain.size(), 8u);
  for (size_t j = 0; j < 4; ++j) {
    EXPECT_EQ(even[j], plain[2 * j]);
    EXPECT_EQ(even[4 + j], plain[2 * j]);
    EXPECT_EQ(odd[j], plain[2 * j]);
    EXPECT_EQ(odd[4 + j], plain[2 * j + 1]);
  }
  EXPECT_NE(error_of([] { RopeSpec(axial_params(6, false)); }).find("rotary_dim: expected a multiple of 4"), std::string::npos);
  SpecParams scaled = axial_params(16, false);
  scaled.scaling = ropekit::scaling::Linear{2.0};
  EXPECT_NE(error_of([&] { RopeSpec{scaled}; }).find("scaling: expected none with axial (the vision encoders' frequencies), got linear"),
            std::string::npos);
  SpecParams both = axial_params(16, false);
  both.mrope = MRope{{4, 2, 2}, false};
  EXPECT_NE(error_of([&] { RopeSpec{both}; }).find("mrope: expected absent with axial"), std::string::npos);
  EXPECT_EQ(RopeSpec(axial_params(16, true)).position_axes(), 2);
  EXPECT_NE(RopeSpec(axial_params(16, true)).describe().find("axial(odd second half)"), std::string::npos);
}

// Patches of a 4 x 4 grid merged 2 x 2: block by block, rows then columns inside; Llama 4's order
// (columns first, from 1, CLS last at 0).
TEST(Axial2d, VisionPositionsWrittenOut) {
  ropekit::VisionPositionOptions merged;
  merged.spatial_merge_size = 2;
  EXPECT_EQ(ropekit::vision_position_ids({{1, 4, 4}}, merged),
            (std::vector<int64_t>{0, 0, 1, 1, 0, 0, 1, 1, 2, 2, 3, 3, 2, 2, 3, 3,    // rows
                                  0, 1, 0, 1, 2, 3, 2, 3, 0, 1, 0, 1, 2, 3, 2, 3}));  // columns
  ropekit::VisionPositionOptions llama4;
  llama4.columns_first = true;
  llama4.start = 1;
  llama4.cls_token = true;
  EXPECT_EQ(ropekit::vision_position_ids({{1, 2, 3}}, llama4),
            (std::vector<int64_t>{1, 2, 3, 1, 2, 3, 0,    // columns + 1, then the CLS token
                                  1, 1, 1, 2, 2, 2, 0}));  // rows + 1
  EXPECT_EQ(ropekit::vision_position_ids({{2, 1, 2}}), (std::vector<int64_t>{0, 0, 0, 0, 0, 1, 0, 1}));  // frames repeat
  EXPECT_NE(error_of([&] { ropekit::vision_position_ids({{1, 4, 4}, {1, 4, 3}}, merged); })
                .find("grids[1]: expected h and w divisible by spatial_merge_size (2), got (1, 4, 3)"),
            std::string::npos);
}

// The vision towers' heads through the float64 reference on every CPU backend: Qwen2-VL (80),
// Qwen3-VL (72), GLM-4V (96), Pixtral (64, odd second half), Llama 4 (88, interleaved).
TEST(Axial2d, VisionHeadsOnEveryCpuBackend) {
  using namespace ropekit::cases;
  struct Tower {
    int64_t head_dim;
    Style style;
    bool odd;
  };
  const Tower towers[] = {{80, Style::half, false}, {72, Style::half, false}, {96, Style::half, false},
                          {64, Style::half, true}, {88, Style::interleaved, false}};
  const uint64_t seed = test_seed();
  SCOPED_TRACE(replay_note(seed));
  for (const Tower& tower : towers) {
    for (DType dtype : {DType::f32, DType::bf16, DType::f16}) {
      for (CosSin cos_sin : {CosSin::rows, CosSin::compute}) {
        Case c;
        c.dtype = dtype;
        c.style = tower.style;
        c.layout = Layout::thd;
        c.out_layout = Layout::thd;
        c.positions = PositionMode::ids64;
        c.cos_sin = cos_sin;
        c.axis_map = tower.odd ? AxisMap::axial_odd : AxisMap::axial;
        expect_case_passes(c, seed, [&](Case& x) {
          set_head_dim(x, tower.head_dim);
          x.spec.axial = Axial2d{tower.odd};
          x.q_heads = 4;
          x.k_heads = 4;
        }, cpu_backends());
      }
    }
  }
}

}  // namespace

namespace {

// The engine convention with M-RoPE (vLLM's MRotaryEmbedding: positions [3, T]): the same answer as
// apply_rope with the M-RoPE spec's table, for f32 and (widened) bf16 caches, and its checks.
TEST(MRopeEngine, RotaryEmbeddingEqualsApplyRope) {
  constexpr int64_t T = 9, Hq = 4, Hk = 2, D = 128;
  for (bool interleaved : {false, true}) {
    const MRope m = interleaved ? MRope{{24, 20, 20}, true} : MRope{{16, 24, 24}, false};
    const RopeSpec spec(mrope_params(D, m));
    const std::vector<float> cache = ropekit::cos_sin_cache(spec, 64);
    std::vector<int64_t> ids(static_cast<size_t>(3 * T));
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int64_t>((i * 7 + i / T * 5) % 64);
    std::mt19937_64 rng(9);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    std::vector<float> q(static_cast<size_t>(T * Hq * D)), k(static_cast<size_t>(T * Hk * D));
    for (auto& v : q) v = u(rng);
    for (auto& v : k) v = u(rng);
    std::vector<float> want_q = q, want_k = k;
    ropekit::apply_rope({TensorView::thd(want_q.data(), DType::f32, T, Hq, D), TensorView::thd(want_k.data(), DType::f32, T, Hk, D),
                         std::nullopt, std::nullopt},
                        Positions::token_ids(IndexView(ids.data(), 3 * T), 3), ropekit::RopeTable(spec, 64));
    ropekit::EngineOptions options;
    options.mrope = m;
    std::vector<float> got_q = q, got_k = k;
    ropekit::rotary_embedding(IndexView(ids.data(), 3 * T), TensorView::contiguous(got_q.data(), DType::f32, {T, Hq * D}),
                              TensorView::contiguous(got_k.data(), DType::f32, {T, Hk * D}), D,
                              {cache.data(), DType::f32, ropekit::Device::cpu(), 64, D}, true, 0, false, options);
    EXPECT_EQ(got_q, want_q);
    EXPECT_EQ(got_k, want_k);
    // a bf16 cache: the same rows rounded to bf16, widened per id
    std::vector<uint16_t> cache16(cache.size());
    std::vector<float> rounded(cache.size());
    for (size_t i = 0; i < cache.size(); ++i) {
      uint32_t bits;
      std::memcpy(&bits, &cache[i], 4);
      cache16[i] = static_cast<uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
      const uint32_t back = static_cast<uint32_t>(cache16[i]) << 16;
      std::memcpy(&rounded[i], &back, 4);
    }
    std::vector<float> q16 = q, q32 = q;
    ropekit::rotary_embedding(IndexView(ids.data(), 3 * T), TensorView::contiguous(q16.data(), DType::f32, {T, Hq * D}),
                              std::nullopt, D, {cache16.data(), DType::bf16, ropekit::Device::cpu(), 64, D}, true, 0,
                              false, options);
    ropekit::rotary_embedding(IndexView(ids.data(), 3 * T), TensorView::contiguous(q32.data(), DType::f32, {T, Hq * D}),
                              std::nullopt, D, {rounded.data(), DType::f32, ropekit::Device::cpu(), 64, D}, true, 0,
                              false, options);
    EXPECT_EQ(q16, q32);
  }
  // checks: 3 ids a token, sections of the rotated window, every axis inside the cache
  const MRope m{{16, 24, 24}, false};
  const std::vector<float> cache = ropekit::cos_sin_cache(RopeSpec(mrope_params(D, m)), 8);
  std::vector<int64_t> ids(static_cast<size_t>(3 * T), 1);
  std::vector<float> q(static_cast<size_t>(T * Hq * D), 0.5f);
  ropekit::EngineOptions options;
  options.mrope = m;
  auto call = [&](int64_t n, const ropekit::EngineOptions& o, int64_t rot = 128) {
    const ropekit::CosSinCacheView c{cache.data(), DType::f32, ropekit::Device::cpu(), 8, rot};
    ropekit::rotary_embedding(IndexView(ids.data(), n), TensorView::contiguous(q.data(), DType::f32, {T, Hq * D}),
                              std::nullopt, D, c, true, 0, false, o);
  };
  EXPECT_NE(error_of([&] { call(3 * T - 1, options); }).find("positions.size: expected 3 T"), std::string::npos);
  EXPECT_NE(error_of([&] { call(3 * T, options, 64); }).find("mrope.sections: expected pair counts summing to rotary_dim / 2 (32)"),
            std::string::npos);
  ids[static_cast<size_t>(2 * T + 4)] = 8;
  const std::vector<float> before = q;
  EXPECT_NE(error_of([&] { call(3 * T, options); }).find("positions[22]: expected in [0, 8)"), std::string::npos);
  EXPECT_EQ(q, before);
}

}  // namespace
